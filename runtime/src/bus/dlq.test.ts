import { describe, expect, it } from 'vitest';
import { deadLetterHeaders, deadLetterReasonOf, FailureHeader } from './dlq.js';
import { PermanentError, PoisonMessageError } from './errors.js';

describe('deadLetterReasonOf', () => {
  it.each([
    ['a poison message is parked as poison', new PoisonMessageError('UnknownEventType', 'x'), 'poison'],
    [
      'an invalid payload found by a handler is poison too',
      new PoisonMessageError('InvalidPayload', 'x'),
      'poison',
    ],
    ['a handler that gives up for good is permanent', new PermanentError('unknown customer'), 'permanent'],
    ['any other failure the handler calls final is permanent', new Error('boom'), 'permanent'],
  ])('%s', (_name, error, reason) => {
    expect(deadLetterReasonOf(error)).toBe(reason);
  });
});

describe('deadLetterHeaders', () => {
  const now = Date.parse('2026-03-01T10:00:00Z');
  it.each([
    [
      'a poison message names its reason, class, message and queue',
      {},
      new PoisonMessageError('PayloadTypeMismatch', 'type says A, payload is B'),
      {
        [FailureHeader.reason]: 'poison',
        [FailureHeader.errorClass]: 'PayloadTypeMismatch',
        [FailureHeader.error]: 'type says A, payload is B',
        [FailureHeader.attempts]: 1,
        [FailureHeader.originalQueue]: 'o2c.ns.wf.events',
        [FailureHeader.firstFailure]: '2026-03-01T10:00:00.000Z',
      },
    ],
    [
      'a retried message keeps its first failure and its own headers, not the broker death history',
      {
        traceparent: '00-abc-def-01',
        [FailureHeader.firstFailure]: '2026-02-28T00:00:00.000Z',
        'x-death': [{ count: 1 }],
        'x-first-death-queue': 'o2c.retry.200ms',
      },
      new PoisonMessageError('InvalidPayload', 'no order'),
      {
        traceparent: '00-abc-def-01',
        [FailureHeader.firstFailure]: '2026-02-28T00:00:00.000Z',
        [FailureHeader.lastFailure]: '2026-03-01T10:00:00.000Z',
      },
    ],
  ])('%s', (_name, previous, error, expected) => {
    const headers = deadLetterHeaders(previous, 'o2c.ns.wf.events', deadLetterReasonOf(error), error, 1, now);
    expect(headers).toMatchObject(expected);
    expect(
      Object.keys(headers).filter((k) => k.startsWith('x-death') || k.startsWith('x-first-death')),
    ).toEqual([]);
  });

  it('bounds a long error message', () => {
    const headers = deadLetterHeaders(
      {},
      'q',
      'poison',
      new PoisonMessageError('UnknownEventType', 'x'.repeat(5000)),
      1,
      now,
    );
    expect(String(headers[FailureHeader.error])).toHaveLength(1000);
  });
});
