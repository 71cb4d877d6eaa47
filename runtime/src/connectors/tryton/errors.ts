// Typed errors of the Tryton driver. `kind` follows the connector runtime's error classes; `retryable`
// tells the runtime whether the same call may succeed later without a change of input.

export type TrytonErrorKind =
  | 'validation'
  | 'credit'
  | 'stock'
  | 'not_found'
  | 'conflict'
  | 'auth'
  | 'rate_limited'
  | 'unavailable'
  | 'timeout'
  | 'unknown';

const RETRYABLE: Record<TrytonErrorKind, boolean> = {
  validation: false,
  credit: false,
  stock: false,
  not_found: false,
  conflict: true,
  auth: false,
  rate_limited: true,
  unavailable: true,
  timeout: true,
  unknown: false,
};

export interface TrytonErrorDetails {
  /** Tryton's exception type: UserError, UserWarning, ConcurrencyException, ... */
  trytonType?: string;
  /** UserWarning name, e.g. credit_limit_amount_sale.sale,3 or stock_quantity_warning_7. */
  warningName?: string;
  description?: string;
  httpStatus?: number;
  method?: string;
  cause?: unknown;
}

export class TrytonError extends Error {
  override readonly name = 'TrytonError';
  readonly kind: TrytonErrorKind;
  readonly retryable: boolean;
  readonly trytonType?: string;
  readonly warningName?: string;
  readonly description?: string;
  readonly httpStatus?: number;
  readonly method?: string;

  constructor(kind: TrytonErrorKind, message: string, details: TrytonErrorDetails = {}) {
    super(message, details.cause === undefined ? undefined : { cause: details.cause });
    this.kind = kind;
    this.retryable = RETRYABLE[kind];
    this.trytonType = details.trytonType;
    this.warningName = details.warningName;
    this.description = details.description;
    this.httpStatus = details.httpStatus;
    this.method = details.method;
  }
}

/** A credit limit stops the sale (UserError from a user outside the credit group, or its warning). */
export class TrytonCreditError extends TrytonError {
  constructor(message: string, details: TrytonErrorDetails = {}) {
    super('credit', message, details);
  }
}

/** Not enough stock (sale_stock_quantity warning or error). */
export class TrytonStockError extends TrytonError {
  constructor(message: string, details: TrytonErrorDetails = {}) {
    super('stock', message, details);
  }
}

export function isTrytonError(err: unknown): err is TrytonError {
  return err instanceof TrytonError;
}

const CREDIT_MESSAGE = /credit limit/i;
const STOCK_MESSAGE = /forecast quantity|forcast quantity|stock quantity|lower than its quantity/i;
const ACCESS_MESSAGE = /not allowed to|you are not allowed|access (is )?denied/i;
const TRANSIENT_SERVER = /database is locked|could not serialize|deadlock detected|OperationalError/i;

/** Maps the `error` member of a JSON-RPC reply (HTTP 200) to a typed error. */
export function fromRpcError(error: unknown, method: string): TrytonError {
  if (Array.isArray(error)) {
    const [type, args] = error as [unknown, unknown];
    const typeName = String(type ?? '');
    if (typeName === 'UserError') {
      const [message, description] = asArray(args);
      const msg = String(message ?? 'UserError');
      const details = { trytonType: typeName, description: strOrUndef(description), method };
      if (CREDIT_MESSAGE.test(msg)) return new TrytonCreditError(msg, details);
      if (STOCK_MESSAGE.test(msg)) return new TrytonStockError(msg, details);
      if (ACCESS_MESSAGE.test(msg)) return new TrytonError('auth', msg, details);
      return new TrytonError('validation', msg, details);
    }
    if (typeName === 'UserWarning') {
      const [name, message, description] = asArray(args);
      const warningName = String(name ?? '');
      const msg = String(message ?? warningName);
      const details = { trytonType: typeName, warningName, description: strOrUndef(description), method };
      if (warningName.startsWith('credit_limit')) return new TrytonCreditError(msg, details);
      if (warningName.startsWith('stock_quantity') || STOCK_MESSAGE.test(msg)) {
        return new TrytonStockError(msg, details);
      }
      return new TrytonError('validation', msg, details);
    }
    if (typeName === 'ConcurrencyException') {
      return new TrytonError('conflict', String(args ?? 'record modified concurrently'), {
        trytonType: typeName,
        method,
      });
    }
    if (typeName === 'LoginException' || typeName === 'RateLimitException') {
      return new TrytonError(typeName === 'RateLimitException' ? 'rate_limited' : 'auth', typeName, {
        trytonType: typeName,
        method,
      });
    }
    const text = typeName || JSON.stringify(error);
    if (TRANSIENT_SERVER.test(text)) return new TrytonError('conflict', text, { method });
    return new TrytonError('unknown', text.split('\n')[0] ?? text, { description: text, method });
  }
  return new TrytonError('unknown', `unexpected error reply: ${JSON.stringify(error)}`, { method });
}

/** Maps a non-200 HTTP status. 401 is handled by the client (re-login) before it gets here. */
export function fromHttpStatus(status: number, method: string, body: string): TrytonError {
  const details = { httpStatus: status, method, description: body.slice(0, 500) };
  if (status === 401) return new TrytonError('auth', `Tryton rejected the session or login (401)`, details);
  if (status === 403) return new TrytonError('auth', `Tryton forbids ${method} (403)`, details);
  if (status === 404) return new TrytonError('not_found', `Tryton database or path not found (404)`, details);
  if (status === 429) return new TrytonError('rate_limited', `Tryton rate limited the call (429)`, details);
  if (status === 408) return new TrytonError('timeout', `Tryton timed out (408)`, details);
  if (status >= 500) return new TrytonError('unavailable', `Tryton answered ${status}`, details);
  return new TrytonError('unknown', `Tryton answered HTTP ${status}`, details);
}

function asArray(v: unknown): unknown[] {
  return Array.isArray(v) ? v : [v];
}

function strOrUndef(v: unknown): string | undefined {
  return typeof v === 'string' && v !== '' ? v : undefined;
}
