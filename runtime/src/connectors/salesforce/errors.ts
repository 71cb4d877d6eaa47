// Salesforce REST error bodies ([{message, errorCode, fields}]) to ErrorClass, by documented code.
import { ErrorClass } from '../../gen/o2c/v1/common_pb.js';
import { ConnectorFailure, errorClassForHttpStatus } from '../driver.js';

export interface SalesforceErrorBody {
  message: string;
  errorCode: string;
  fields?: string[];
}

export const SALESFORCE_ERROR_CLASSES: Readonly<Record<string, ErrorClass>> = {
  INVALID_SESSION_ID: ErrorClass.AUTH,
  INSUFFICIENT_ACCESS_OR_READONLY: ErrorClass.AUTH,
  INSUFFICIENT_ACCESS_ON_CROSS_REFERENCE_ENTITY: ErrorClass.AUTH,
  API_DISABLED_FOR_ORG: ErrorClass.AUTH,
  REQUEST_LIMIT_EXCEEDED: ErrorClass.RATE_LIMITED,
  NOT_FOUND: ErrorClass.NOT_FOUND,
  ENTITY_IS_DELETED: ErrorClass.NOT_FOUND,
  // A concurrent upsert of the same external id, or a locked row: trying again succeeds.
  DUPLICATE_VALUE: ErrorClass.CONFLICT,
  UNABLE_TO_LOCK_ROW: ErrorClass.CONFLICT,
  REQUIRED_FIELD_MISSING: ErrorClass.VALIDATION,
  INVALID_FIELD: ErrorClass.VALIDATION,
  INVALID_TYPE: ErrorClass.VALIDATION,
  MALFORMED_ID: ErrorClass.VALIDATION,
  MALFORMED_QUERY: ErrorClass.VALIDATION,
  JSON_PARSER_ERROR: ErrorClass.VALIDATION,
  STRING_TOO_LONG: ErrorClass.VALIDATION,
  FIELD_CUSTOM_VALIDATION_EXCEPTION: ErrorClass.VALIDATION,
  FIELD_INTEGRITY_EXCEPTION: ErrorClass.VALIDATION,
  INVALID_CROSS_REFERENCE_KEY: ErrorClass.VALIDATION,
  INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST: ErrorClass.VALIDATION,
  PROCESSING_HALTED: ErrorClass.VALIDATION,
  SERVER_UNAVAILABLE: ErrorClass.UNAVAILABLE,
};

/** A failure from a Salesforce error response (status + body). */
export function salesforceFailure(
  what: string,
  status: number,
  body: unknown,
  retryAfterMs?: number,
): ConnectorFailure {
  if (status === 300) {
    return new ConnectorFailure(
      ErrorClass.VALIDATION,
      `${what}: the external id matches several records (${(body as string[]).join(', ')}); make the field unique`,
      { code: 'MULTIPLE_CHOICES' },
    );
  }
  const errors = Array.isArray(body) ? (body as SalesforceErrorBody[]) : [];
  // PROCESSING_HALTED only says that another subrequest failed: report the one that did.
  const first = errors.find((e) => e.errorCode !== 'PROCESSING_HALTED') ?? errors[0];
  const errorClass = (first && SALESFORCE_ERROR_CLASSES[first.errorCode]) ?? errorClassForHttpStatus(status);
  const fields = first?.fields?.length ? ` (fields: ${first.fields.join(', ')})` : '';
  return new ConnectorFailure(errorClass, `${what}: ${first?.message ?? `HTTP ${status}`}${fields}`, {
    code: first?.errorCode ?? `HTTP_${status}`,
    retryAfterMs,
  });
}

/** `api-usage=18/5000` → {used, limit}. */
export function parseLimitInfo(header: string | null): { used: number; limit: number } | undefined {
  const m = /api-usage=(\d+)\/(\d+)/.exec(header ?? '');
  return m ? { used: Number(m[1]), limit: Number(m[2]) } : undefined;
}
