// The code and text an order API client sees for every failure: the errors connect-es raises while
// reading a request (repaired to the code the specs name), domain errors of the handlers, and
// store failures, which never pass the database's own text on.
import { Code, ConnectError } from '@connectrpc/connect';
import {
  IdempotencyConflictError,
  OrderNotFoundError,
  OrderStateError,
  VersionConflictError,
} from '../orders/repository.js';
import { classifyStoreError, nothingWritten } from '../store/errors.js';
import { ExceptionNotFoundError, ExceptionStateError } from '../workflow/engine.js';

/**
 * connect-es raises these while reading a request, before the service sees it:
 * - `parse binary: …` is Internal in connect-es, but the bytes are the caller's: the Connect
 *   protocol's invalid_argument ("request is invalid, regardless of system state"), as connect-go
 *   answers an unmarshal failure.
 * - `decompression failed` (a truncated gzip/br body; connect-node already answers corrupt data
 *   with InvalidArgument) is the same fault.
 * - `received compressed envelope, but do not know how to decompress` (the compressed flag without
 *   a grpc-encoding / connect-content-encoding) stays Internal: gRPC's doc/compression.md, test
 *   case 6, says such a message "MUST fail with INTERNAL status", and connect-go does the same. It is
 *   still the caller's fault, so it is logged as a client error.
 */
const REPAIRED_TO_INVALID_ARGUMENT = [/^parse binary: /, /^decompression failed$/];
const SPEC_INTERNAL_CLIENT_FAULTS = [/^received compressed envelope, but do not know how to decompress$/];

/** Codes that always mean the request (not the server) was at fault. */
const CLIENT_CODES = new Set([
  Code.Canceled,
  Code.InvalidArgument,
  Code.NotFound,
  Code.AlreadyExists,
  Code.PermissionDenied,
  Code.ResourceExhausted,
  Code.FailedPrecondition,
  Code.OutOfRange,
  Code.Unimplemented,
  Code.Unauthenticated,
]);

/** The error a client should see for `err`, raised by connect-es while reading the request. */
export function repairWireError(err: ConnectError): ConnectError {
  if (err.code !== Code.Internal || !REPAIRED_TO_INVALID_ARGUMENT.some((re) => re.test(err.rawMessage)))
    return err;
  const repaired = new ConnectError(err.rawMessage, Code.InvalidArgument, err.metadata);
  repaired.details.push(...err.details);
  return repaired;
}

/** True when the error is the caller's doing (logged at warn, not error). */
export function isClientFault(err: ConnectError): boolean {
  if (CLIENT_CODES.has(err.code)) return true;
  return err.code === Code.Internal && SPEC_INTERNAL_CLIENT_FAULTS.some((re) => re.test(err.rawMessage));
}

export interface HandlerFailure {
  error: ConnectError;
  /** False for a defect or an outage: logged at error level with the stack. */
  expected: boolean;
}

const STORE_UNAVAILABLE = 'the order store is unavailable; retry later';
const SUBMIT_OUTCOME_UNKNOWN =
  'the order store is unavailable, so whether the order was accepted is unknown; retry with the same idempotency key';
const SUBMIT_NOT_STORED =
  'the order store is unreachable and the order was not accepted; retry with the same idempotency key';

/**
 * Maps whatever a handler (or an interceptor) threw to what the client sees. `method` is the RPC
 * name, `requestId` the id the client can quote; unexpected errors show nothing else.
 */
export function handlerFailure(err: unknown, context: { method: string; requestId: string }): HandlerFailure {
  if (err instanceof ConnectError) {
    const error = repairWireError(err);
    if (error.code === Code.Internal && isClientFault(error)) return { error, expected: true };
    if (error.code !== Code.Internal && error.code !== Code.Unknown && error.code !== Code.DataLoss)
      return { error, expected: true };
    return { error: internal(context.requestId), expected: false };
  }
  if (err instanceof OrderNotFoundError || err instanceof ExceptionNotFoundError)
    return { error: new ConnectError(err.message, Code.NotFound), expected: true };
  if (err instanceof IdempotencyConflictError)
    return { error: new ConnectError(err.message, Code.AlreadyExists), expected: true };
  if (err instanceof OrderStateError || err instanceof ExceptionStateError)
    return { error: new ConnectError(err.message, Code.FailedPrecondition), expected: true };
  if (err instanceof VersionConflictError)
    return {
      error: new ConnectError(`${err.message}; read the order again and retry`, Code.Aborted),
      expected: true,
    };
  if (err instanceof Error && err.name === 'AbortError')
    return { error: new ConnectError('the call was cancelled', Code.Canceled), expected: true };
  switch (classifyStoreError(err)) {
    case 'unavailable':
      return {
        error: new ConnectError(
          context.method !== 'SubmitOrder'
            ? STORE_UNAVAILABLE
            : nothingWritten(err)
              ? SUBMIT_NOT_STORED
              : SUBMIT_OUTCOME_UNKNOWN,
          Code.Unavailable,
        ),
        expected: false,
      };
    case 'conflict':
      return {
        error: new ConnectError('a concurrent change won; read again and retry', Code.Aborted),
        expected: false,
      };
    case 'invalid-input':
      return {
        error: new ConnectError('a value in the request cannot be stored', Code.InvalidArgument),
        expected: false,
      };
    default:
      return { error: internal(context.requestId), expected: false };
  }
}

function internal(requestId: string): ConnectError {
  return new ConnectError(`internal error (request id ${requestId})`, Code.Internal);
}
