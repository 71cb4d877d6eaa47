// RabbitMQ topology of o2c: the two exchanges, and per consumer purpose a quorum work queue, retry
// delay tiers (TTL + dead-letter back to the work queue), a parking DLQ and, when an ordering key is
// configured, consistent-hash partitions with a single active consumer each. `planQueueTopology` is
// pure; `declareQueueTopology` applies a plan idempotently.
import type { Channel, ChannelModel } from 'amqplib';
import { backoffDelayMs } from '../backoff.js';
import { COMMANDS_EXCHANGE, dlqName, EVENTS_EXCHANGE } from './addressing.js';
import { asTopologyConflict, isNotFound } from './errors.js';

// Names live in addressing.ts; re-exported for the bus modules that use them with the topology.
export { COMMANDS_EXCHANGE, dlqName, EVENTS_EXCHANGE, queueName } from './addressing.js';
/** Header the consistent-hash exchange hashes on; the publisher sets it from the ordering key. */
export const ORDERING_HEADER = 'x-o2c-ordering-key';
/** Redeliveries (consumer crashes, channel losses) after which the broker parks a message itself. */
export const DEFAULT_DELIVERY_LIMIT = 20;

export interface RetryPolicy {
  /** Attempts in total, the first delivery included; 1 means no retry. */
  maxAttempts: number;
  backoff: { initialMs: number; maxMs: number; multiplier: number };
}

export const DEFAULT_RETRY_POLICY: RetryPolicy = {
  maxAttempts: 8,
  backoff: { initialMs: 1_000, maxMs: 300_000, multiplier: 2 },
};

export interface QueueBinding {
  exchange: string;
  routingKey: string;
}

export interface QueueSpec {
  /** `queueName(namespace, kind, resource, purpose)` (addressing.ts). */
  name: string;
  bindings: QueueBinding[];
  retry: RetryPolicy;
  /** Messages with the same ordering key are handled in order, spread over `partitions` queues. */
  ordering?: { partitions: number };
  /** Redeliveries before the broker dead-letters to the DLQ; default DEFAULT_DELIVERY_LIMIT. */
  deliveryLimit?: number;
}

/**
 * Delay tiers are shared by every queue on the broker: one fanout exchange and one quorum queue per
 * delay. A retried message is published to the tier's exchange with its work queue's name as the
 * routing key; when its TTL runs out the tier dead-letters it through the default exchange, which
 * routes by that same key, back to the work queue. Per-queue tiers would multiply the broker's
 * quorum queues by the number of delays, which a small broker does not survive.
 */
export const retryQueueName = (delayMs: number): string => `o2c.retry.${delayMs}ms`;
export const retryExchangeName = (delayMs: number): string => `o2c.retry.${delayMs}ms`;
export const partitionQueueName = (queue: string, index: number): string => `${queue}.p${index}`;
export const orderingExchangeName = (queue: string): string => `${queue}.ordering`;

/**
 * The wait after failed attempt `attempt` (1-based): the runtime's backoff at the top of its jitter
 * range (initial × multiplier^(attempt-1), capped). No jitter: each delay is a declared tier queue.
 */
export function retryDelayMs(policy: RetryPolicy, attempt: number): number {
  return backoffDelayMs(policy.backoff, attempt, TOP_OF_JITTER);
}

const TOP_OF_JITTER = (): number => 1;

/** The distinct delays a policy uses, one delay queue each; capped delays collapse into one tier. */
export function retryTiers(policy: RetryPolicy): number[] {
  const tiers = new Set<number>();
  for (let attempt = 1; attempt < policy.maxAttempts; attempt++) tiers.add(retryDelayMs(policy, attempt));
  return [...tiers].sort((a, b) => a - b);
}

/** The queues a consumer of `spec` reads: the work queue, or one per ordering partition. */
export function consumedQueues(spec: QueueSpec): string[] {
  if (!spec.ordering) return [spec.name];
  return Array.from({ length: spec.ordering.partitions }, (_, i) => partitionQueueName(spec.name, i));
}

export type QueueArguments = Record<string, string | number | boolean>;

export interface TopologyPlan {
  exchanges: { name: string; type: string; arguments?: QueueArguments }[];
  queues: { name: string; arguments: QueueArguments }[];
  queueBindings: { queue: string; exchange: string; routingKey: string }[];
  exchangeBindings: { destination: string; source: string; routingKey: string }[];
}

export function coreExchanges(): TopologyPlan['exchanges'] {
  return [
    { name: EVENTS_EXCHANGE, type: 'topic' },
    { name: COMMANDS_EXCHANGE, type: 'direct' },
  ];
}

/**
 * What `spec` needs on the broker. Retries of unordered queues wait in `<queue>.retry.<ms>ms`
 * (quorum, message TTL, dead-lettered at-least-once back to the work queue). Ordered queues retry in
 * place instead (a delay queue would let later messages of the same key overtake), so they get no
 * tiers. Messages that exceed the broker's delivery limit (a consumer that keeps crashing on them)
 * are dead-lettered to the DLQ by the broker.
 */
export function planQueueTopology(spec: QueueSpec): TopologyPlan {
  if (spec.retry.maxAttempts < 1) throw new Error(`queue ${spec.name}: retry.maxAttempts must be >= 1`);
  const dlq = dlqName(spec.name);
  const workArgs = (): QueueArguments => ({
    'x-queue-type': 'quorum',
    'x-delivery-limit': spec.deliveryLimit ?? DEFAULT_DELIVERY_LIMIT,
    'x-dead-letter-exchange': '',
    'x-dead-letter-routing-key': dlq,
    'x-dead-letter-strategy': 'at-least-once',
    'x-overflow': 'reject-publish',
  });
  const plan: TopologyPlan = {
    exchanges: coreExchanges(),
    queues: [{ name: dlq, arguments: { 'x-queue-type': 'quorum' } }],
    queueBindings: [],
    exchangeBindings: [],
  };
  if (spec.ordering) {
    const { partitions } = spec.ordering;
    if (!Number.isInteger(partitions) || partitions < 1) {
      throw new Error(`queue ${spec.name}: ordering.partitions must be a positive integer`);
    }
    const hashExchange = orderingExchangeName(spec.name);
    plan.exchanges.push({
      name: hashExchange,
      type: 'x-consistent-hash',
      arguments: { 'hash-header': ORDERING_HEADER },
    });
    for (const b of spec.bindings) {
      plan.exchangeBindings.push({ destination: hashExchange, source: b.exchange, routingKey: b.routingKey });
    }
    for (const queue of consumedQueues(spec)) {
      plan.queues.push({ name: queue, arguments: { ...workArgs(), 'x-single-active-consumer': true } });
      // The binding key of a consistent-hash exchange is the partition's weight.
      plan.queueBindings.push({ queue, exchange: hashExchange, routingKey: '1' });
    }
    return plan;
  }
  plan.queues.push({ name: spec.name, arguments: workArgs() });
  for (const delay of retryTiers(spec.retry)) {
    plan.exchanges.push({ name: retryExchangeName(delay), type: 'fanout' });
    plan.queues.push({
      name: retryQueueName(delay),
      arguments: {
        'x-queue-type': 'quorum',
        'x-message-ttl': delay,
        'x-dead-letter-exchange': '',
        'x-dead-letter-strategy': 'at-least-once',
        'x-overflow': 'reject-publish',
      },
    });
    plan.queueBindings.push({
      queue: retryQueueName(delay),
      exchange: retryExchangeName(delay),
      routingKey: '',
    });
  }
  for (const b of spec.bindings) plan.queueBindings.push({ queue: spec.name, ...b });
  return plan;
}

type Target = Channel | ChannelModel;

function isChannelModel(t: Target): t is ChannelModel {
  return typeof (t as ChannelModel).createChannel === 'function';
}

/** Runs `fn` on `target` if it is a channel, else on a fresh channel closed afterwards. */
export async function withChannel<T>(target: Target, fn: (ch: Channel) => Promise<T>): Promise<T> {
  if (!isChannelModel(target)) return fn(target);
  const ch = await target.createChannel();
  ch.on('error', () => {}); // a 404/406 closes the channel; the rejected RPC carries the error
  try {
    return await fn(ch);
  } finally {
    await ch.close().catch(() => {});
  }
}

/** Declares a plan; idempotent. A differing existing declaration becomes a TopologyConflictError. */
export async function declareTopology(target: Target, plan: TopologyPlan): Promise<void> {
  await withChannel(target, async (ch) => {
    try {
      for (const e of plan.exchanges) {
        await ch.assertExchange(e.name, e.type, { durable: true, arguments: e.arguments });
      }
      for (const q of plan.queues) await ch.assertQueue(q.name, { durable: true, arguments: q.arguments });
      for (const b of plan.exchangeBindings) await ch.bindExchange(b.destination, b.source, b.routingKey);
      for (const b of plan.queueBindings) await ch.bindQueue(b.queue, b.exchange, b.routingKey);
    } catch (err) {
      throw asTopologyConflict(err) ?? err;
    }
  });
}

export async function declareQueueTopology(target: Target, spec: QueueSpec): Promise<TopologyPlan> {
  const plan = planQueueTopology(spec);
  await declareTopology(target, plan);
  return plan;
}

/**
 * Deletes what `declareQueueTopology` created for `spec` (queues with their messages, the ordering
 * exchange); the shared exchanges stay. Absent entities count as deleted.
 */
export async function deleteQueueTopology(target: Target, spec: QueueSpec): Promise<void> {
  const plan = planQueueTopology(spec);
  // Shared delay tiers stay: other queues use them.
  const shared = (name: string) =>
    name === EVENTS_EXCHANGE || name === COMMANDS_EXCHANGE || name.startsWith('o2c.retry.');
  const own = plan.exchanges.filter((e) => !shared(e.name));
  plan.queues = plan.queues.filter((q) => !shared(q.name));
  // One channel per operation when given a connection: a 404 closes the channel it happened on.
  const each = async (op: (ch: Channel) => Promise<unknown>) => {
    try {
      await withChannel(target, op);
    } catch (err) {
      if (!isNotFound(err)) throw err;
    }
  };
  for (const q of plan.queues) await each((ch) => ch.deleteQueue(q.name));
  for (const e of own) await each((ch) => ch.deleteExchange(e.name));
}
