import { describe, expect, it } from 'vitest';
import { StoreUnreachableError } from './errors.js';
import { afterFailedCheckout } from './postgres.js';

const refused = Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:5432'), { code: 'ECONNREFUSED' });
const startingUp = Object.assign(new Error('the database system is starting up'), { code: '57P03' });
const syntax = Object.assign(new Error('syntax error'), { code: '42601' });
const half = () => 0.5;

describe('afterFailedCheckout', () => {
  it.each<[string, unknown, { attempt: number; now: number; deadline: number; closed: boolean }, string]>([
    [
      'a refused connection early in the window waits and tries again',
      refused,
      { attempt: 1, now: 0, deadline: 5_000, closed: false },
      'retry 75',
    ],
    [
      'a database starting up waits longer on later attempts',
      startingUp,
      { attempt: 4, now: 1_000, deadline: 5_000, closed: false },
      'retry 600',
    ],
    [
      'the wait never exceeds the cap',
      refused,
      { attempt: 30, now: 0, deadline: 5_000, closed: false },
      'retry 750',
    ],
    [
      'a wait that would end past the window fails as unreachable',
      refused,
      { attempt: 3, now: 4_900, deadline: 5_000, closed: false },
      'unreachable',
    ],
    [
      'a closed store does not wait',
      refused,
      { attempt: 1, now: 0, deadline: 5_000, closed: true },
      'unreachable',
    ],
    [
      'an error that is no outage is thrown as it is',
      syntax,
      { attempt: 1, now: 0, deadline: 5_000, closed: false },
      'as is',
    ],
  ])('%s', (_name, err, at, expected) => {
    const next = afterFailedCheckout(err, at, half);
    const seen =
      'retryInMs' in next
        ? `retry ${next.retryInMs}`
        : next.fail instanceof StoreUnreachableError
          ? 'unreachable'
          : next.fail === err
            ? 'as is'
            : 'other';
    expect(seen).toBe(expected);
  });
});
