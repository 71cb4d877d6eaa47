import { describe, expect, it } from 'vitest';
import { type AckFrame, AckTracker, afterCollect, type BatchStep, batchOutcomes } from './acks.js';
import { freshClaims, type HandlerOutcome } from './consumer.js';
import { PermanentError } from './errors.js';

type Step = ['deliver' | 'settle' | 'release', number[]] | ['take', AckFrame | undefined];

describe('coalesced acks', () => {
  it.each<[string, Step[]]>([
    [
      'three settled deliveries in a row are acked by one multiple ack of the last tag',
      [
        ['deliver', [1, 2, 3]],
        ['settle', [3, 1, 2]],
        ['take', { deliveryTag: 3, multiple: true }],
      ],
    ],
    [
      'a lone settled delivery is acked on its own',
      [
        ['deliver', [1]],
        ['settle', [1]],
        ['take', { deliveryTag: 1, multiple: false }],
      ],
    ],
    [
      'nothing is acked while the oldest delivery is still being handled',
      [
        ['deliver', [1, 2, 3]],
        ['settle', [2, 3]],
        ['take', undefined],
      ],
    ],
    [
      'the ack stops before the first open delivery, and the rest follows once it settles',
      [
        ['deliver', [1, 2, 3, 4]],
        ['settle', [1, 2, 4]],
        ['take', { deliveryTag: 2, multiple: true }],
        ['take', undefined],
        ['settle', [3]],
        ['take', { deliveryTag: 4, multiple: true }],
      ],
    ],
    [
      'a settled run is never acked twice',
      [
        ['deliver', [1, 2]],
        ['settle', [1, 2]],
        ['take', { deliveryTag: 2, multiple: true }],
        ['take', undefined],
      ],
    ],
    [
      'a released (requeued) delivery no longer holds later acks back and is not acked itself',
      [
        ['deliver', [1, 2, 3]],
        ['release', [1]],
        ['settle', [2, 3]],
        ['take', { deliveryTag: 3, multiple: true }],
      ],
    ],
    [
      'a released delivery at the end of the run is left out of the ack tag',
      [
        ['deliver', [5, 6, 7]],
        ['settle', [5, 6]],
        ['release', [7]],
        ['take', { deliveryTag: 6, multiple: true }],
      ],
    ],
    [
      'a run of released deliveries sends no ack at all',
      [
        ['deliver', [1, 2]],
        ['release', [1, 2]],
        ['take', undefined],
      ],
    ],
  ])('%s', (_, steps) => {
    const acks = new AckTracker();
    for (const step of steps) {
      if (step[0] === 'take') expect(acks.take()).toEqual(step[1]);
      else if (step[0] === 'deliver') for (const tag of step[1]) acks.delivered(tag);
      else if (step[0] === 'settle') for (const tag of step[1]) acks.settled(tag);
      else for (const tag of step[1]) acks.released(tag);
    }
  });

  it('acks every one of many thousand deliveries settled out of order exactly once', () => {
    const acks = new AckTracker();
    const n = 10_000;
    for (let tag = 1; tag <= n; tag++) acks.delivered(tag);
    const order = Array.from({ length: n }, (_, i) => i + 1).sort(
      (a, b) => ((a * 7919) % n) - ((b * 7919) % n),
    );
    let ackedUpTo = 0;
    for (const tag of order) {
      acks.settled(tag);
      const frame = acks.take();
      if (frame) {
        expect(frame.deliveryTag).toBeGreaterThan(ackedUpTo);
        ackedUpTo = frame.deliveryTag;
      }
    }
    expect(ackedUpTo).toBe(n);
    expect(acks.outstanding).toBe(0);
  });
});

describe('batch assembly', () => {
  it.each<[string, number, number, boolean, BatchStep]>([
    ['the first delivery of a batch schedules a flush for the next turn', 1, 200, false, 'flush-next-turn'],
    ['a delivery joining a batch whose flush is scheduled waits for it', 5, 200, true, 'wait'],
    ['a delivery that fills the batch flushes it at once', 200, 200, true, 'flush-now'],
    ['a batch of at most one delivery is flushed with every delivery', 1, 1, false, 'flush-now'],
  ])('%s', (_, collected, max, scheduled, expected) => {
    expect(afterCollect(collected, max, scheduled)).toBe(expected);
  });
});

describe('batch outcomes', () => {
  const boom = new Error('database went away');
  const retryAll = (n: number, message: string | RegExp) =>
    Array.from({ length: n }, () => ({
      retry: expect.objectContaining({ message: expect.stringMatching(message) }),
    }));
  it.each<[string, Parameters<typeof batchOutcomes>[0], number, unknown[]]>([
    [
      "a batch handler's outcomes are kept per delivery, in order",
      { outcomes: ['ack', { retry: boom }, { fail: new PermanentError('bad') }] },
      3,
      ['ack', { retry: boom }, { fail: new PermanentError('bad') }],
    ],
    [
      'a batch handler that throws retries every delivery of the batch',
      { threw: boom },
      3,
      retryAll(3, 'database went away'),
    ],
    [
      'a batch handler that throws a permanent error still retries every delivery (nothing was committed)',
      { threw: new PermanentError('one bad order') },
      2,
      retryAll(2, 'one bad order'),
    ],
    ['a thrown non-error is retried as an error', { threw: 'nope' }, 1, retryAll(1, 'nope')],
    [
      'a batch handler answering too few outcomes retries every delivery',
      { outcomes: ['ack'] as HandlerOutcome[] },
      2,
      retryAll(2, 'returned 1 outcomes for 2 deliveries'),
    ],
  ])('%s', (_, result, size, expected) => {
    expect(batchOutcomes(result, size)).toEqual(expected);
  });
});

describe('fresh claims of a batch', () => {
  it.each<[string, string[], string[], boolean[]]>([
    ['envelopes claimed now are fresh', ['a', 'b'], ['a', 'b'], [true, true]],
    ['an envelope handled before is not fresh', ['a', 'b'], ['b'], [false, true]],
    [
      'a repeat of an id within the batch is fresh only the first time',
      ['a', 'a', 'b'],
      ['a', 'b'],
      [true, false, true],
    ],
    ['a repeat of an id handled before is never fresh', ['a', 'a'], [], [false, false]],
  ])('%s', (_, ids, claimed, expected) => {
    expect(
      freshClaims(
        ids.map((id) => ({ id })),
        new Set(claimed),
      ),
    ).toEqual(expected);
  });
});
