import { describe, expect, it } from 'vitest';
import { backoffDelayMs } from '../backoff.js';
import { asTopologyConflict } from './errors.js';
import { parseStreamStart } from './event-log.js';
import {
  consumedQueues,
  planQueueTopology,
  type QueueSpec,
  queueName,
  retryDelayMs,
  retryTiers,
} from './topology.js';

const aSpec = (overrides: Partial<QueueSpec> = {}): QueueSpec => ({
  name: queueName('default', 'pipeline', 'erp-to-crm', 'sync'),
  bindings: [{ exchange: 'o2c.events', routingKey: 'item.upserted' }],
  retry: { maxAttempts: 8, backoff: { initialMs: 1_000, maxMs: 300_000, multiplier: 2 } },
  ...overrides,
});

describe('retry tiers', () => {
  it('double from the initial delay and stop at the cap', () => {
    const policy = { maxAttempts: 12, backoff: { initialMs: 1_000, maxMs: 60_000, multiplier: 2 } };
    expect([1, 2, 3, 6, 7, 11].map((n) => retryDelayMs(policy, n))).toEqual([
      1_000, 2_000, 4_000, 32_000, 60_000, 60_000,
    ]);
    expect(retryTiers(policy)).toEqual([1_000, 2_000, 4_000, 8_000, 16_000, 32_000, 60_000]);
  });
  it('are absent when a message gets a single attempt', () => {
    expect(retryTiers({ maxAttempts: 1, backoff: { initialMs: 1, maxMs: 1, multiplier: 2 } })).toEqual([]);
  });
});

describe('planned topology', () => {
  it('gives an unordered queue a quorum work queue and a DLQ, and uses the shared delay tiers', () => {
    const plan = planQueueTopology(
      aSpec({ retry: { maxAttempts: 3, backoff: { initialMs: 500, maxMs: 800, multiplier: 2 } } }),
    );
    expect(plan.queues.map((q) => q.name)).toEqual([
      'o2c.default.pipeline.erp-to-crm.sync.dlq',
      'o2c.default.pipeline.erp-to-crm.sync',
      'o2c.retry.500ms',
      'o2c.retry.800ms',
    ]);
    // A tier dead-letters by the message's own routing key (the work queue's name): no fixed key.
    expect(plan.queues[2]!.arguments).toMatchObject({
      'x-queue-type': 'quorum',
      'x-message-ttl': 500,
      'x-dead-letter-exchange': '',
    });
    expect(plan.queues[2]!.arguments['x-dead-letter-routing-key']).toBeUndefined();
    expect(plan.queueBindings).toEqual([
      { queue: 'o2c.retry.500ms', exchange: 'o2c.retry.500ms', routingKey: '' },
      { queue: 'o2c.retry.800ms', exchange: 'o2c.retry.800ms', routingKey: '' },
      { queue: 'o2c.default.pipeline.erp-to-crm.sync', exchange: 'o2c.events', routingKey: 'item.upserted' },
    ]);
  });
  it('spreads an ordered queue over consistent-hash partitions with a single active consumer each', () => {
    const spec = aSpec({ ordering: { partitions: 3 } });
    const plan = planQueueTopology(spec);
    expect(consumedQueues(spec)).toEqual([0, 1, 2].map((i) => `o2c.default.pipeline.erp-to-crm.sync.p${i}`));
    expect(plan.exchanges.at(-1)).toEqual({
      name: 'o2c.default.pipeline.erp-to-crm.sync.ordering',
      type: 'x-consistent-hash',
      arguments: { 'hash-header': 'x-o2c-ordering-key' },
    });
    expect(plan.queues.filter((q) => q.arguments['x-single-active-consumer'])).toHaveLength(3);
    expect(plan.queues.some((q) => q.name.includes('.retry.'))).toBe(false);
    expect(plan.exchangeBindings).toEqual([
      {
        destination: 'o2c.default.pipeline.erp-to-crm.sync.ordering',
        source: 'o2c.events',
        routingKey: 'item.upserted',
      },
    ]);
  });
});

describe('broker answers', () => {
  it('turn a 406 inequivalent argument into a TopologyConflictError naming queue and argument', () => {
    const err = Object.assign(
      new Error(
        `Operation failed: QueueDeclare; 406 (PRECONDITION-FAILED) with message "PRECONDITION_FAILED - inequivalent arg 'x-queue-type' for queue 'o2c.a.b.c' in vhost '/': received 'classic' but current is 'quorum'"`,
      ),
      { code: 406 },
    );
    expect(asTopologyConflict(err)).toMatchObject({
      kind: 'queue',
      entity: 'o2c.a.b.c',
      argument: 'x-queue-type',
    });
  });
});

describe('reconnect backoff', () => {
  it('grows exponentially, never exceeds the cap and keeps at least half of it', () => {
    const b = { initialMs: 100, maxMs: 5_000, multiplier: 2 };
    expect(backoffDelayMs(b, 1, () => 0)).toBe(50);
    expect(backoffDelayMs(b, 3, () => 1)).toBe(400);
    expect(backoffDelayMs(b, 30, () => 1)).toBe(5_000);
    expect(backoffDelayMs(b, 30, () => 0)).toBe(2_500);
  });
});

describe('event log start', () => {
  const now = new Date('2026-01-01T12:00:00Z');
  it.each([
    ['15m', { since: new Date('2026-01-01T11:45:00Z') }],
    ['2h', { since: new Date('2026-01-01T10:00:00Z') }],
    ['2026-01-01T08:00:00Z', { since: new Date('2026-01-01T08:00:00Z') }],
    ['offset:42', { offset: 42 }],
    ['first', 'first'],
  ])('reads %j', (text, expected) => {
    expect(parseStreamStart(text, now)).toEqual(expected);
  });
  it('rejects what it cannot read', () => {
    expect(() => parseStreamStart('yesterday', now)).toThrow(/cannot read/);
  });
});
