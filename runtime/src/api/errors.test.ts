import { create } from '@bufbuild/protobuf';
import { Code, ConnectError } from '@connectrpc/connect';
import { describe, expect, it } from 'vitest';
import { OrderSchema, OrderState } from '../gen/o2c/v1/entities_pb.js';
import {
  IdempotencyConflictError,
  OrderNotFoundError,
  OrderStateError,
  VersionConflictError,
} from '../orders/repository.js';
import { StoreUnreachableError } from '../store/errors.js';
import { ExceptionNotFoundError, ExceptionStateError } from '../workflow/engine.js';
import { handlerFailure, isClientFault, repairWireError } from './errors.js';

describe('repairWireError', () => {
  it.each<[string, ConnectError, Code]>([
    [
      'an undecodable binary body is InvalidArgument',
      new ConnectError('parse binary: premature EOF', Code.Internal),
      Code.InvalidArgument,
    ],
    [
      'a truncated compressed body is InvalidArgument',
      new ConnectError('decompression failed', Code.Internal),
      Code.InvalidArgument,
    ],
    [
      'a compressed flag without an encoding stays Internal, as gRPC compression.md requires',
      new ConnectError('received compressed envelope, but do not know how to decompress', Code.Internal),
      Code.Internal,
    ],
    [
      'an oversized body keeps ResourceExhausted',
      new ConnectError(
        'message size 2000000 is larger than configured readMaxBytes 1048576',
        Code.ResourceExhausted,
      ),
      Code.ResourceExhausted,
    ],
    [
      'a response that cannot be serialized stays Internal',
      new ConnectError('serialize binary: boom', Code.Internal),
      Code.Internal,
    ],
  ])('%s', (_name, err, code) => {
    expect(repairWireError(err).code).toBe(code);
  });

  it('keeps the message and metadata of a repaired error', () => {
    const repaired = repairWireError(
      new ConnectError('parse binary: invalid wire type 7', Code.Internal, { 'x-request-id': 'r1' }),
    );
    expect(repaired.rawMessage).toBe('parse binary: invalid wire type 7');
    expect(repaired.metadata.get('x-request-id')).toBe('r1');
  });
});

describe('isClientFault', () => {
  it.each<[string, ConnectError, boolean]>([
    ['InvalidArgument is the caller’s', new ConnectError('x', Code.InvalidArgument), true],
    ['Unauthenticated is the caller’s', new ConnectError('x', Code.Unauthenticated), true],
    ['ResourceExhausted is the caller’s', new ConnectError('x', Code.ResourceExhausted), true],
    [
      'Unimplemented (an unknown compression) is the caller’s',
      new ConnectError('x', Code.Unimplemented),
      true,
    ],
    [
      'the compressed flag without an encoding is the caller’s although Internal',
      new ConnectError('received compressed envelope, but do not know how to decompress', Code.Internal),
      true,
    ],
    ['any other Internal is the server’s', new ConnectError('x', Code.Internal), false],
    ['Unavailable is the server’s', new ConnectError('x', Code.Unavailable), false],
  ])('%s', (_name, err, expected) => {
    expect(isClientFault(err)).toBe(expected);
  });
});

const pgError = (code: string, message: string) =>
  Object.assign(new Error(message), { code, severity: 'ERROR' });
const anOrder = () => create(OrderSchema, { id: 'ord_1', state: OrderState.SHIPPED });
const ctx = { method: 'GetOrder', requestId: 'req-42' };

describe('handlerFailure', () => {
  it.each<[string, unknown, Code, boolean]>([
    ['a missing order is NotFound', new OrderNotFoundError('ord_1'), Code.NotFound, true],
    ['a missing exception is NotFound', new ExceptionNotFoundError('exc_1'), Code.NotFound, true],
    [
      'a reused idempotency key is AlreadyExists',
      new IdempotencyConflictError('k', 'ord_1'),
      Code.AlreadyExists,
      true,
    ],
    [
      'an order in the wrong state is FailedPrecondition',
      new OrderStateError(anOrder(), 'cancelled'),
      Code.FailedPrecondition,
      true,
    ],
    [
      'an exception in the wrong state is FailedPrecondition',
      new ExceptionStateError('resolved'),
      Code.FailedPrecondition,
      true,
    ],
    ['a version conflict is Aborted', new VersionConflictError('ord_1', 3), Code.Aborted, true],
    [
      'a refused database connection is Unavailable',
      Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:5432'), { code: 'ECONNREFUSED' }),
      Code.Unavailable,
      false,
    ],
    [
      'a database restart is Unavailable',
      pgError('57P01', 'terminating connection due to administrator command'),
      Code.Unavailable,
      false,
    ],
    [
      'a serialization failure is Aborted',
      pgError('40001', 'could not serialize access'),
      Code.Aborted,
      false,
    ],
    [
      'a value the database refuses is InvalidArgument',
      pgError('22021', 'invalid byte sequence for encoding "UTF8": 0x00'),
      Code.InvalidArgument,
      false,
    ],
    ['a TypeError is Internal', new TypeError('cannot read properties of undefined'), Code.Internal, false],
    ['a thrown string is Internal', 'boom', Code.Internal, false],
    [
      'a ConnectError keeps its code',
      new ConnectError('bad', Code.InvalidArgument),
      Code.InvalidArgument,
      true,
    ],
    ['an Unknown ConnectError becomes Internal', new ConnectError('?', Code.Unknown), Code.Internal, false],
    [
      'an undecodable streaming request is InvalidArgument',
      new ConnectError('parse binary: premature EOF', Code.Internal),
      Code.InvalidArgument,
      true,
    ],
    [
      'an aborted call is Canceled',
      Object.assign(new Error('aborted'), { name: 'AbortError' }),
      Code.Canceled,
      true,
    ],
  ])('%s', (_name, err, code, expected) => {
    const failure = handlerFailure(err, ctx);
    expect(failure.error.code).toBe(code);
    expect(failure.expected).toBe(expected);
  });

  it.each([
    ['a PostgreSQL error', pgError('22021', 'invalid byte sequence for encoding "UTF8": 0x00')],
    ['a PostgreSQL outage', pgError('57P01', 'terminating connection due to administrator command')],
    ['a defect', new Error('SELECT data FROM orders failed: relation "orders" does not exist')],
  ])('never passes the text of %s to the client', (_name, err) => {
    const { error } = handlerFailure(err, ctx);
    expect(error.rawMessage).not.toContain((err as Error).message);
    expect(error.rawMessage).not.toMatch(/UTF8|administrator|relation/);
  });

  it('gives an unexpected error the request id and nothing else', () => {
    expect(handlerFailure(new Error('secret detail'), ctx).error.rawMessage).toBe(
      'internal error (request id req-42)',
    );
  });

  it('tells a submitter whose order may be stored that the outcome is unknown, and to retry with the same key', () => {
    const { error } = handlerFailure(pgError('57P01', 'terminating'), { ...ctx, method: 'SubmitOrder' });
    expect(error.code).toBe(Code.Unavailable);
    expect(error.rawMessage).toMatch(
      /whether the order was accepted is unknown; retry with the same idempotency key/,
    );
  });

  it('tells a submitter whose order never reached the database that it was not accepted', () => {
    const unreachable = new StoreUnreachableError(
      Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' }),
    );
    const { error } = handlerFailure(unreachable, { ...ctx, method: 'SubmitOrder' });
    expect(error.code).toBe(Code.Unavailable);
    expect(error.rawMessage).toMatch(/the order was not accepted; retry with the same idempotency key/);
  });
});
