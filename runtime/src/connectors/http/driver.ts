// The http driver: any REST system. Each ConnectorService operation maps to one HTTP request whose
// path, query and body are CEL expressions over `request` (the protobuf JSON of the request), and
// whose answer is a CEL expression over `response` (the parsed body), `status` and `request`,
// producing the protobuf JSON of the ConnectorService response.
import { fromJson, type JsonValue as PbJson, toJson } from '@bufbuild/protobuf';
import { ErrorClass } from '../../gen/o2c/v1/common_pb.js';
import { compileCel, type JsonValue } from '../cel.js';
import type { CredentialSource } from '../credentials.js';
import {
  type ConnectorDriver,
  ConnectorFailure,
  type DriverMethod,
  errorClassForHttpStatus,
  type MethodName,
  methodForOperation,
  parseRetryAfter,
} from '../driver.js';
import { OAuthTokenSource } from '../oauth2.js';

export type HttpAuth =
  /** Secret key `token`. */
  | { type: 'bearer' }
  /** Secret keys `username`, `password`. */
  | { type: 'basic' }
  /** Secret keys `client_id`, `client_secret`. */
  | { type: 'oauth2'; tokenUrl: string; scope?: string }
  | { type: 'none' };

export interface HttpOperation {
  method?: 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';
  /** CEL → string, appended to the endpoint, e.g. `'/customers/' + request.customerId`. */
  path: string;
  /** CEL → map of query parameters. */
  query?: string;
  /** CEL → JSON body. */
  body?: string;
  /** CEL → the response message as protobuf JSON, over `response`, `status`, `request`. */
  response: string;
  /**
   * CEL → an ErrorClass name (`CREDIT`, `STOCK`, `VALIDATION`, ...) or "" for a failed status,
   * over `response`, `status`; "" falls back to the status code's class.
   */
  errorClass?: string;
}

export interface HttpDriverConfig {
  auth?: HttpAuth;
  headers?: Record<string, string>;
  /** By proto operation name, e.g. `GetPrice`. */
  operations: Record<string, HttpOperation>;
}

interface CompiledOperation {
  method: string;
  path: ReturnType<typeof compileCel>;
  query?: ReturnType<typeof compileCel>;
  body?: ReturnType<typeof compileCel>;
  response: ReturnType<typeof compileCel>;
  errorClass?: ReturnType<typeof compileCel>;
}

export function createHttpDriver(
  endpoint: string,
  config: HttpDriverConfig,
  credentials: CredentialSource,
): ConnectorDriver {
  const base = endpoint.replace(/\/$/, '');
  const auth = config.auth ?? { type: 'none' };
  const tokens =
    auth.type === 'oauth2'
      ? new OAuthTokenSource(
          { type: 'client_credentials', tokenUrl: auth.tokenUrl, scope: auth.scope },
          credentials,
        )
      : undefined;
  const driver: Record<string, unknown> = { driverName: 'http' };

  const authorization = async (signal: AbortSignal): Promise<string | undefined> => {
    switch (auth.type) {
      case 'bearer':
        return `Bearer ${credentials.require('token')}`;
      case 'basic':
        return `Basic ${Buffer.from(`${credentials.require('username')}:${credentials.require('password')}`).toString('base64')}`;
      case 'oauth2':
        return `Bearer ${(await tokens?.get(signal))?.accessToken}`;
      default:
        return undefined;
    }
  };

  for (const [operation, op] of Object.entries(config.operations)) {
    const method = methodForOperation(operation);
    if (!method) throw new Error(`http driver: operations.${operation} is not a ConnectorService method`);
    const what = `operations.${operation}`;
    const compiled: CompiledOperation = {
      method: op.method ?? (op.body ? 'POST' : 'GET'),
      path: compileCel(op.path, `${what}.path`),
      query: op.query ? compileCel(op.query, `${what}.query`) : undefined,
      body: op.body ? compileCel(op.body, `${what}.body`) : undefined,
      response: compileCel(op.response, `${what}.response`),
      errorClass: op.errorClass ? compileCel(op.errorClass, `${what}.errorClass`) : undefined,
    };
    const fn: DriverMethod<MethodName> = async (req, ctx) => {
      const request = toJson(method.input, req as never) as JsonValue;
      const url = new URL(base + String(compiled.path({ request })));
      const query = compiled.query?.({ request });
      if (query && typeof query === 'object') {
        for (const [k, v] of Object.entries(query)) url.searchParams.set(k, String(v));
      }
      const send = async (retryOn401: boolean): Promise<ReturnType<DriverMethod<MethodName>>> => {
        const headers: Record<string, string> = {
          Accept: 'application/json',
          'Idempotency-Key': ctx.idempotencyKey,
          'X-Correlation-Id': ctx.correlationId,
          ...config.headers,
        };
        const authz = await authorization(ctx.signal);
        if (authz) headers.Authorization = authz;
        let body: string | undefined;
        if (compiled.body) {
          body = JSON.stringify(compiled.body({ request }));
          headers['Content-Type'] = 'application/json';
        }
        const res = await fetch(url, { method: compiled.method, headers, body, signal: ctx.signal });
        const text = await res.text();
        let response: JsonValue = null;
        try {
          response = text ? (JSON.parse(text) as JsonValue) : null;
        } catch {
          response = text;
        }
        if (res.status === 401 && tokens && retryOn401) {
          tokens.invalidate();
          return send(false);
        }
        if (!res.ok) throw failureFor(operation, res, response, compiled);
        const mapped = compiled.response({ response, status: res.status, request });
        return fromJson(method.output, mapped as PbJson, { ignoreUnknownFields: true }) as never;
      };
      return send(true);
    };
    driver[method.localName] = fn;
  }
  return driver as ConnectorDriver;
}

function failureFor(
  operation: string,
  res: Response,
  response: JsonValue,
  op: CompiledOperation,
): ConnectorFailure {
  let errorClass = errorClassForHttpStatus(res.status);
  const named = op.errorClass?.({ response, status: res.status });
  if (typeof named === 'string' && named !== '') {
    const value = ErrorClass[named as keyof typeof ErrorClass];
    if (typeof value === 'number') errorClass = value;
  }
  const detail = typeof response === 'string' ? response : JSON.stringify(response);
  return new ConnectorFailure(errorClass, `${operation}: HTTP ${res.status}: ${detail.slice(0, 500)}`, {
    code: `HTTP_${res.status}`,
    retryAfterMs: parseRetryAfter(res.headers.get('retry-after')),
  });
}
