// The connector contract in TypeScript: a driver implements the o2c.v1.ConnectorService methods, and
// fails with a ConnectorFailure whose ErrorClass decides between retry and fallout.
import type { DescMethod, MessageShape } from '@bufbuild/protobuf';
import { create } from '@bufbuild/protobuf';
import { ErrorClass } from '../gen/o2c/v1/common_pb.js';
import {
  type ConnectorError,
  ConnectorErrorSchema,
  ConnectorService,
} from '../gen/o2c/v1/connector_service_pb.js';

type ServiceMethods = typeof ConnectorService.method;
/** The method's local name, e.g. `createSalesOrder`; also the oneof case in ConnectorCommand/Reply. */
export type MethodName = keyof ServiceMethods;
export type RequestOf<M extends MethodName> = MessageShape<ServiceMethods[M]['input']>;
export type ResponseOf<M extends MethodName> = MessageShape<ServiceMethods[M]['output']>;

/** What every driver call receives besides its request. */
export interface CallContext {
  /** Aborted when the governor's timeout fires or the runtime shuts down. */
  signal: AbortSignal;
  /** The command's idempotency key; drivers turn it into a natural key in their system. */
  idempotencyKey: string;
  correlationId: string;
}

export type DriverMethod<M extends MethodName> = (
  request: RequestOf<M>,
  ctx: CallContext,
) => Promise<ResponseOf<M>>;

/**
 * A connector driver: any subset of the ConnectorService methods. An operation a driver does not
 * implement is answered with ErrorClass VALIDATION ("not supported by driver x").
 */
export type ConnectorDriver = { readonly driverName: string; close?(): Promise<void> } & {
  [M in MethodName]?: DriverMethod<M>;
};

/** ConnectorService methods by their proto name (`CreateSalesOrder`), as ConnectorCommand.operation carries it. */
export const METHODS_BY_OPERATION: ReadonlyMap<string, DescMethod & { localName: MethodName }> = new Map(
  ConnectorService.methods.map((m) => [m.name, m as DescMethod & { localName: MethodName }]),
);

export function methodForOperation(operation: string): (DescMethod & { localName: MethodName }) | undefined {
  return METHODS_BY_OPERATION.get(operation);
}

/** Whether a failure of this class may succeed when tried again unchanged. */
export const RETRYABLE_BY_CLASS: Readonly<Record<ErrorClass, boolean>> = {
  [ErrorClass.UNSPECIFIED]: false,
  [ErrorClass.VALIDATION]: false,
  [ErrorClass.CREDIT]: false,
  [ErrorClass.STOCK]: false,
  [ErrorClass.NOT_FOUND]: false,
  [ErrorClass.CONFLICT]: true,
  [ErrorClass.AUTH]: false,
  [ErrorClass.RATE_LIMITED]: true,
  [ErrorClass.UNAVAILABLE]: true,
  [ErrorClass.TIMEOUT]: true,
  [ErrorClass.OWNERSHIP]: false,
  // An error nobody classified is most often a bug or an unexpected answer: retrying the same
  // request will not fix it, so it becomes fallout a person can look at.
  [ErrorClass.UNKNOWN]: false,
};

export function isRetryableClass(errorClass: ErrorClass): boolean {
  return RETRYABLE_BY_CLASS[errorClass] ?? false;
}

/** A classified failure of an external call. */
export class ConnectorFailure extends Error {
  override readonly name = 'ConnectorFailure';
  readonly errorClass: ErrorClass;
  readonly retryable: boolean;
  /** The external system's own code, e.g. `REQUEST_LIMIT_EXCEEDED`. */
  readonly code: string;
  /** When the system said how long to wait (Retry-After, a limit window), in milliseconds. */
  readonly retryAfterMs: number | undefined;

  constructor(
    errorClass: ErrorClass,
    message: string,
    opts: { code?: string; retryable?: boolean; retryAfterMs?: number; cause?: unknown } = {},
  ) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.errorClass = errorClass;
    this.retryable = opts.retryable ?? isRetryableClass(errorClass);
    this.code = opts.code ?? '';
    this.retryAfterMs = opts.retryAfterMs;
  }

  toProto(): ConnectorError {
    return create(ConnectorErrorSchema, {
      errorClass: this.errorClass,
      message: this.message,
      retryable: this.retryable,
      code: this.code,
    });
  }

  static fromProto(e: ConnectorError): ConnectorFailure {
    return new ConnectorFailure(e.errorClass, e.message, { code: e.code, retryable: e.retryable });
  }
}

/** Classifies anything a driver threw: ConnectorFailures as they are, network errors as unavailable. */
export function toConnectorFailure(err: unknown): ConnectorFailure {
  if (err instanceof ConnectorFailure) return err;
  const e = err as { name?: string; code?: string; message?: string } | undefined;
  const message = e?.message ?? String(err);
  if (e?.name === 'AbortError' || e?.name === 'TimeoutError') {
    return new ConnectorFailure(ErrorClass.TIMEOUT, message, { cause: err });
  }
  const netCodes = [
    'ECONNREFUSED',
    'ECONNRESET',
    'EPIPE',
    'ETIMEDOUT',
    'ENOTFOUND',
    'EAI_AGAIN',
    'UND_ERR_SOCKET',
  ];
  const code = e?.code ?? (e as { cause?: { code?: string } } | undefined)?.cause?.code;
  if (code && netCodes.includes(code)) {
    return new ConnectorFailure(ErrorClass.UNAVAILABLE, message, { code, cause: err });
  }
  if (err instanceof TypeError && message === 'fetch failed') {
    return new ConnectorFailure(ErrorClass.UNAVAILABLE, message, { cause: err });
  }
  return new ConnectorFailure(ErrorClass.UNKNOWN, message, { cause: err });
}

/** Maps an HTTP status of an external REST system to an ErrorClass. */
export function errorClassForHttpStatus(status: number): ErrorClass {
  if (status === 400 || status === 422) return ErrorClass.VALIDATION;
  if (status === 401 || status === 403) return ErrorClass.AUTH;
  if (status === 404) return ErrorClass.NOT_FOUND;
  if (status === 409 || status === 412) return ErrorClass.CONFLICT;
  if (status === 429) return ErrorClass.RATE_LIMITED;
  if (status === 408 || status === 504) return ErrorClass.TIMEOUT;
  if (status >= 500) return ErrorClass.UNAVAILABLE;
  return ErrorClass.UNKNOWN;
}

/** A Retry-After header (seconds or HTTP date) in milliseconds. */
export function parseRetryAfter(value: string | null, now = Date.now()): number | undefined {
  if (!value) return undefined;
  const secs = Number(value);
  if (Number.isFinite(secs)) return Math.max(0, secs * 1000);
  const at = Date.parse(value);
  return Number.isNaN(at) ? undefined : Math.max(0, at - now);
}
