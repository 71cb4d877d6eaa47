// What kind of failure a store error is, for both drivers (pg's SQLSTATE codes and socket errors,
// node:sqlite's result codes), so callers decide retry or refusal without ever showing the text.

/**
 * - `unavailable`: the database cannot be reached or is shutting down, busy or out of resources;
 *   the same operation may succeed later.
 * - `conflict`: a concurrent transaction won (serialization failure, deadlock, unique race); retry
 *   the whole read-modify-write.
 * - `invalid-input`: the database refused a value (bad encoding, out of range, too long).
 * - `undefined`: anything else, a defect rather than an expected condition.
 */
export type StoreFailure = 'unavailable' | 'conflict' | 'invalid-input';

const NODE_SOCKET_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ECONNABORTED',
  'EPIPE',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ENOTFOUND',
  'EAI_AGAIN',
]);

// pg raises these as plain Errors without a code when a connection breaks or the pool is closing.
const PG_CONNECTION_MESSAGES = [
  /^Connection terminated/,
  /^timeout exceeded when trying to connect/,
  /is not queryable/,
  /^Cannot use a pool after calling end/,
  /^Client was closed and is not queryable/,
];

// SQLite primary result codes (the low byte of an extended code).
const SQLITE_BUSY = 5;
const SQLITE_LOCKED = 6;
const SQLITE_NOMEM = 7;
const SQLITE_READONLY = 8;
const SQLITE_IOERR = 10;
const SQLITE_FULL = 13;
const SQLITE_CANTOPEN = 14;
const SQLITE_TOOBIG = 18;
const SQLITE_CONSTRAINT = 19;
const SQLITE_MISMATCH = 20;
const SQLITE_RANGE = 25;

function sqlStateFailure(state: string): StoreFailure | undefined {
  if (state === '40001' || state === '40P01' || state === '23505' || state === '55P03') return 'conflict';
  // 08 connection exception, 53 insufficient resources, 57P01-57P05 shutdown / cannot connect now,
  // 57014 statement timeout or cancel, 58 system error (I/O).
  if (/^(08|53|58)/.test(state) || /^57P0[1-5]$/.test(state) || state === '57014') return 'unavailable';
  // 22 data exception: invalid encoding (a NUL byte), untranslatable character, value too long or out
  // of range, invalid number or date text.
  if (state.startsWith('22')) return 'invalid-input';
  return undefined;
}

function sqliteFailure(errcode: number): StoreFailure | undefined {
  switch (errcode & 0xff) {
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
    case SQLITE_NOMEM:
    case SQLITE_READONLY:
    case SQLITE_IOERR:
    case SQLITE_FULL:
    case SQLITE_CANTOPEN:
      return 'unavailable';
    case SQLITE_CONSTRAINT:
      return 'conflict';
    case SQLITE_TOOBIG:
    case SQLITE_MISMATCH:
    case SQLITE_RANGE:
      return 'invalid-input';
    default:
      return undefined;
  }
}

/**
 * The database was not reached: no connection could be had, or it broke before the transaction
 * began, within the store's reconnect window. Nothing was written, so a caller can say so for sure
 * (the order was not stored) and any retry is safe. `cause` is the driver's error.
 */
export class StoreUnreachableError extends Error {
  override readonly name = 'StoreUnreachableError';
  constructor(cause: unknown) {
    super('the database is unreachable; nothing was written', { cause });
  }
}

/** True when `err` proves nothing was written (the database was never reached). */
export function nothingWritten(err: unknown): boolean {
  return err instanceof StoreUnreachableError;
}

/** Classifies an error thrown by a store call; `undefined` when it is not a known store condition. */
export function classifyStoreError(err: unknown): StoreFailure | undefined {
  if (typeof err !== 'object' || err === null) return undefined;
  if (err instanceof StoreUnreachableError) return 'unavailable';
  const e = err as { code?: unknown; errcode?: unknown; message?: unknown; errors?: unknown };
  if (typeof e.errcode === 'number' && e.code === 'ERR_SQLITE_ERROR') return sqliteFailure(e.errcode);
  // node:sqlite on a closed database (the process is stopping).
  if (e.code === 'ERR_INVALID_STATE') return 'unavailable';
  if (typeof e.code === 'string') {
    if (NODE_SOCKET_CODES.has(e.code)) return 'unavailable';
    if (/^[0-9A-Z]{5}$/.test(e.code)) return sqlStateFailure(e.code);
  }
  // Node's happy-eyeballs connect wraps one socket error per address in an AggregateError.
  if (
    Array.isArray(e.errors) &&
    e.errors.length > 0 &&
    e.errors.every((x) => classifyStoreError(x) === 'unavailable')
  )
    return 'unavailable';
  if (typeof e.message === 'string' && PG_CONNECTION_MESSAGES.some((re) => re.test(e.message as string)))
    return 'unavailable';
  return undefined;
}
