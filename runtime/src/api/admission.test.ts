import { fromBinary } from '@bufbuild/protobuf';
import type { Duration } from '@bufbuild/protobuf/wkt';
import { Code } from '@connectrpc/connect';
import { describe, expect, it } from 'vitest';
import {
  AdmissionConfigError,
  type AdmissionDecision,
  admit,
  DEFAULT_MAX_BACKLOG,
  MAX_BACKLOG_ENV,
  maxBacklogFromEnv,
  RetryInfoSchema,
  saturated,
} from './admission.js';

describe('admit', () => {
  const noJitter = () => 0;
  it.each<
    [
      string,
      { backlog: number; bound: number; drainPerSecond?: number; random?: () => number },
      AdmissionDecision,
    ]
  >([
    ['an idle engine admits', { backlog: 0, bound: 100 }, { accept: true }],
    ['a backlog just under the bound admits', { backlog: 99, bound: 100 }, { accept: true }],
    [
      'a backlog at the bound refuses, asking to wait one second per multiple of the bound when no drain rate is known',
      { backlog: 100, bound: 100, random: noJitter },
      { accept: false, retryAfterMs: 1_000 },
    ],
    [
      'three times the bound asks for three seconds',
      { backlog: 300, bound: 100, random: noJitter },
      { accept: false, retryAfterMs: 3_000 },
    ],
    [
      'with a drain rate the wait is the time to work the excess off',
      { backlog: 1_499, bound: 1_000, drainPerSecond: 250, random: noJitter },
      { accept: false, retryAfterMs: 2_000 },
    ],
    [
      'a fast drain still asks for at least the minimum wait',
      { backlog: 1_000, bound: 1_000, drainPerSecond: 100_000, random: noJitter },
      { accept: false, retryAfterMs: 250 },
    ],
    [
      'a huge backlog asks for at most thirty seconds',
      { backlog: 10_000_000, bound: 100, random: noJitter },
      { accept: false, retryAfterMs: 30_000 },
    ],
    [
      'the wait is spread by up to a fifth so refused clients do not return at once',
      { backlog: 100, bound: 100, random: () => 0.5 },
      { accept: false, retryAfterMs: 1_100 },
    ],
    [
      'the spread never passes the maximum',
      { backlog: 10_000_000, bound: 100, random: () => 0.99 },
      { accept: false, retryAfterMs: 30_000 },
    ],
    [
      'a backlog that is not a number (no figure yet) admits',
      { backlog: Number.NaN, bound: 100 },
      { accept: true },
    ],
  ])('%s', (_sentence, input, decision) => {
    expect(admit(input)).toEqual(decision);
  });
});

describe('maxBacklogFromEnv', () => {
  it.each<[string, Record<string, string>, number | 'refused']>([
    ['unset gives the default', {}, DEFAULT_MAX_BACKLOG],
    ['a positive integer is the bound', { [MAX_BACKLOG_ENV]: ' 250 ' }, 250],
    ['zero is refused', { [MAX_BACKLOG_ENV]: '0' }, 'refused'],
    ['a word is refused, not ignored', { [MAX_BACKLOG_ENV]: 'lots' }, 'refused'],
  ])('%s', (_sentence, env, expected) => {
    if (expected === 'refused') expect(() => maxBacklogFromEnv(env)).toThrow(AdmissionConfigError);
    else expect(maxBacklogFromEnv(env)).toBe(expected);
  });
});

describe('saturated', () => {
  it('is Unavailable with retry-after in whole seconds and google.rpc.RetryInfo carrying the exact delay', () => {
    const err = saturated(7_000, 5_000, 1_250);
    expect(err.code).toBe(Code.Unavailable);
    expect(err.rawMessage).toMatch(/not accepted.*retry after 1250 ms with the same idempotency key/);
    expect(err.metadata.get('retry-after')).toBe('2');
    const [info] = err.findDetails(RetryInfoSchema) as { retryDelay?: Duration }[];
    expect(info?.retryDelay).toMatchObject({ seconds: 1n, nanos: 250_000_000 });
  });

  it('describes RetryInfo as google.rpc.RetryInfo with a Duration in field 1, as gRPC clients decode it', () => {
    expect(RetryInfoSchema.typeName).toBe('google.rpc.RetryInfo');
    // Field 1, length-delimited, holding Duration{seconds: 3}: what google.rpc.RetryInfo encodes to.
    const wire = new Uint8Array([0x0a, 0x02, 0x08, 0x03]);
    const decoded = fromBinary(RetryInfoSchema, wire) as unknown as { retryDelay?: Duration };
    expect(decoded.retryDelay?.seconds).toBe(3n);
  });
});
