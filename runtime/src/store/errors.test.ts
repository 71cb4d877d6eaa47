import { describe, expect, it } from 'vitest';
import { classifyStoreError, nothingWritten, type StoreFailure, StoreUnreachableError } from './errors.js';

const pgError = (code: string, message = 'db text') =>
  Object.assign(new Error(message), { code, severity: 'ERROR' });
const sqliteError = (errcode: number, message = 'sqlite text') =>
  Object.assign(new Error(message), { code: 'ERR_SQLITE_ERROR', errcode, errstr: 'x' });
const socketError = (code: string) => Object.assign(new Error(`connect ${code} 127.0.0.1:5432`), { code });

describe('classifyStoreError', () => {
  it.each<[string, unknown, StoreFailure | undefined]>([
    ['a refused connection is unavailable', socketError('ECONNREFUSED'), 'unavailable'],
    ['a reset connection is unavailable', socketError('ECONNRESET'), 'unavailable'],
    [
      'every address refusing (AggregateError) is unavailable',
      Object.assign(new AggregateError([socketError('ECONNREFUSED'), socketError('ECONNREFUSED')]), {
        code: 'ECONNREFUSED',
      }),
      'unavailable',
    ],
    ['pg: terminating connection due to administrator command (57P01)', pgError('57P01'), 'unavailable'],
    ['pg: the database system is starting up (57P03)', pgError('57P03'), 'unavailable'],
    ['pg: too many connections (53300)', pgError('53300'), 'unavailable'],
    ['pg: a connection exception (08006)', pgError('08006'), 'unavailable'],
    ['pg: a statement timeout (57014)', pgError('57014'), 'unavailable'],
    [
      'pg: Connection terminated unexpectedly',
      new Error('Connection terminated unexpectedly'),
      'unavailable',
    ],
    ['pg: the pool timed out', new Error('timeout exceeded when trying to connect'), 'unavailable'],
    ['pg: the pool was ended', new Error('Cannot use a pool after calling end on the pool'), 'unavailable'],
    ['pg: a serialization failure (40001) is a conflict', pgError('40001'), 'conflict'],
    ['pg: a deadlock (40P01) is a conflict', pgError('40P01'), 'conflict'],
    ['pg: a unique violation (23505) is a conflict', pgError('23505'), 'conflict'],
    ['pg: a NUL byte (22021) is invalid input', pgError('22021'), 'invalid-input'],
    ['pg: a value too long (22001) is invalid input', pgError('22001'), 'invalid-input'],
    ['pg: a syntax error (42601) is a defect', pgError('42601'), undefined],
    ['pg: an undefined table (42P01) is a defect', pgError('42P01'), undefined],
    ['sqlite: SQLITE_BUSY is unavailable', sqliteError(5), 'unavailable'],
    ['sqlite: SQLITE_IOERR_WRITE (778) is unavailable', sqliteError(778), 'unavailable'],
    ['sqlite: SQLITE_FULL is unavailable', sqliteError(13), 'unavailable'],
    ['sqlite: SQLITE_CONSTRAINT_UNIQUE (2067) is a conflict', sqliteError(2067), 'conflict'],
    ['sqlite: SQLITE_TOOBIG is invalid input', sqliteError(18), 'invalid-input'],
    ['sqlite: a plain SQL error (1) is a defect', sqliteError(1), undefined],
    [
      'sqlite: a closed database is unavailable',
      Object.assign(new Error('database is not open'), { code: 'ERR_INVALID_STATE' }),
      'unavailable',
    ],
    [
      'the database never reached (StoreUnreachableError) is unavailable',
      new StoreUnreachableError(socketError('ECONNREFUSED')),
      'unavailable',
    ],
    ['a TypeError is a defect', new TypeError('x is undefined'), undefined],
    ['a thrown string is a defect', 'boom', undefined],
    ['null is a defect', null, undefined],
  ])('%s', (_name, err, expected) => {
    expect(classifyStoreError(err)).toBe(expected);
  });
});

describe('nothingWritten', () => {
  it.each<[string, unknown, boolean]>([
    ['a database never reached wrote nothing', new StoreUnreachableError(socketError('ECONNREFUSED')), true],
    [
      'a connection lost during a statement may have written (outcome unknown)',
      pgError('57P01', 'terminating connection due to administrator command'),
      false,
    ],
    ['a broken connection may have written', new Error('Connection terminated unexpectedly'), false],
    ['a defect proves nothing', new TypeError('x is undefined'), false],
  ])('%s', (_name, err, expected) => {
    expect(nothingWritten(err)).toBe(expected);
  });
});
