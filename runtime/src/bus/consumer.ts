// Consumes a queue spec: decodes the Envelope by its type, runs the handler, and settles each delivery
// only after the handler resolved (i.e. after its database transaction committed). Poison (a body
// that is no Envelope, an unknown type, a payload that is not its type) is parked in `<queue>.dlq`
// before any handler sees it; retryable failures wait in the delay tiers (republished with confirms,
// then acked), exhausted and permanent ones are parked in the DLQ with reason headers. Ordered specs
// consume their partitions with one active consumer each, run one message per ordering key at a time
// and retry in place so a key never reorders.
import type { ChannelModel, ConsumeMessage } from 'amqplib';
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import type { Envelope } from '../gen/o2c/v1/events_pb.js';
import type { Store, Tx } from '../store/types.js';
import { TrackedConfirmChannel } from './confirm-channel.js';
import type { BusConnection } from './connection.js';
import { decodeEnvelope } from './decode-envelope.js';
import {
  copiedProperties,
  type DeadLetterReason,
  deadLetterReasonOf,
  FailureHeader,
  failureHeaders,
  parkInDlq,
} from './dlq.js';
import { PermanentError } from './errors.js';
import { type BusMetrics, busMetrics } from './metrics.js';
import {
  consumedQueues,
  dlqName,
  ORDERING_HEADER,
  type QueueSpec,
  retryDelayMs,
  retryExchangeName,
} from './topology.js';

export { type DeadLetterReason, FailureHeader, failureHeaders } from './dlq.js';
export { PermanentError, PoisonMessageError } from './errors.js';

export interface Delivery {
  envelope: Envelope;
  /** The declared event type, qualifier removed; without `accepts`, only the Envelope's own type ('' if none). */
  eventType: string;
  /** The queue it was consumed from (a partition for ordered specs). */
  queue: string;
  /** 1 for the first delivery; counts handler failures, not broker redeliveries. */
  attempt: number;
  /** The broker delivered it before (a consumer died or a channel closed before the ack). */
  redelivered: boolean;
  orderingKey: string;
  headers: Record<string, unknown>;
  message: ConsumeMessage;
  logger: Logger;
}

export type HandlerOutcome = 'ack' | { retry: Error } | { fail: Error };
export type Handler = (delivery: Delivery) => Promise<HandlerOutcome>;

export interface ConsumerOptions {
  connection: BusConnection;
  spec: QueueSpec;
  handler: Handler;
  /**
   * The event types (message names, e.g. o2c.v1.OrderSubmitted) this queue is for. A delivery of any
   * other type, of an unknown type or with a payload that is not its type is poison: parked in the DLQ
   * before the handler runs. Without it only the Envelope framing is checked (bus tests, tools).
   */
  accepts?: readonly string[];
  /** Unacknowledged deliveries per consumed queue; also the handler concurrency. Default 32. */
  prefetch?: number;
  /** Declare the spec's topology on start and after reconnects (default true). */
  declare?: boolean;
  registry?: Registry;
  /** Injected clock for failure timestamps. */
  now?: () => number;
  /** Sleep used by in-place retries of ordered specs. */
  sleep?: (ms: number) => Promise<void>;
}

interface Attachment {
  channel: TrackedConfirmChannel;
  consumerTags: string[];
}

export class Consumer {
  readonly spec: QueueSpec;
  private readonly connection: BusConnection;
  private readonly handler: Handler;
  private readonly accepts: readonly string[] | undefined;
  private readonly prefetch: number;
  private readonly metrics: BusMetrics;
  private readonly logger: Logger;
  private readonly now: () => number;
  private readonly sleep: (ms: number) => Promise<void>;
  private readonly declareTopology: boolean;
  private attachment: Attachment | undefined;
  private removeSetup: (() => void) | undefined;
  private stopping = false;
  private readonly inFlight = new Set<Promise<void>>();
  /** Ordered specs: the tail of each key's chain. */
  private readonly keyChains = new Map<string, Promise<void>>();
  private reattachTimer: NodeJS.Timeout | undefined;

  constructor(options: ConsumerOptions) {
    this.connection = options.connection;
    this.spec = options.spec;
    this.handler = options.handler;
    this.accepts = options.accepts;
    this.prefetch = options.prefetch ?? 32;
    this.declareTopology = options.declare ?? true;
    this.metrics = busMetrics(options.registry);
    this.logger = options.connection.logger.child({ queue: options.spec.name });
    this.now = options.now ?? Date.now;
    this.sleep = options.sleep ?? ((ms) => new Promise((r) => setTimeout(r, ms)));
  }

  /** Deliveries being handled right now. */
  get active(): number {
    return this.inFlight.size;
  }

  /** Declares the topology (unless disabled) and starts consuming, now and after every reconnect. */
  async start(): Promise<void> {
    this.stopping = false;
    if (this.declareTopology) await this.connection.declare(this.spec);
    for (const queue of consumedQueues(this.spec)) {
      this.metrics.depthProbes.set(queue, () => this.depth(queue));
    }
    let firstAttach: Promise<void> | undefined;
    this.removeSetup = this.connection.addSetup(`consumer:${this.spec.name}`, 'consumer', (model) => {
      const p = this.attach(model);
      firstAttach ??= p;
      return p;
    });
    if (firstAttach) await firstAttach;
  }

  /**
   * Graceful stop (SIGTERM): stop taking deliveries, let the in-flight handlers finish and settle
   * their deliveries, then close the channel. Deliveries still unsettled after `timeoutMs` are
   * returned to the queue by the channel close.
   */
  async stop(timeoutMs = 30_000): Promise<void> {
    this.stopping = true;
    this.removeSetup?.();
    if (this.reattachTimer) clearTimeout(this.reattachTimer);
    const att = this.attachment;
    if (att && !att.channel.isClosed) {
      for (const tag of att.consumerTags) await att.channel.channel.cancel(tag).catch(() => {});
    }
    const deadline = new Promise<void>((r) => setTimeout(r, timeoutMs).unref());
    await Promise.race([Promise.allSettled([...this.inFlight]), deadline]);
    await att?.channel.close();
    this.attachment = undefined;
    for (const queue of consumedQueues(this.spec)) this.metrics.depthProbes.delete(queue);
  }

  private async attach(model: ChannelModel): Promise<void> {
    if (this.stopping) return;
    const raw = await model.createConfirmChannel();
    raw.on('error', (err: Error) => this.logger.warn({ err }, 'consumer channel error'));
    const channel = new TrackedConfirmChannel(raw);
    const att: Attachment = { channel, consumerTags: [] };
    this.attachment = att;
    raw.on('close', () => {
      // A channel that dies while the connection lives (queue deleted, 406...) is re-opened here; a
      // connection loss is healed by the connection's setup rerun.
      if (this.attachment !== att || this.stopping) return;
      this.attachment = undefined;
      this.scheduleReattach(model);
    });
    await raw.prefetch(this.prefetch);
    const exclusiveKeys = this.spec.ordering !== undefined;
    for (const queue of consumedQueues(this.spec)) {
      const { consumerTag } = await raw.consume(
        queue,
        (msg) => {
          if (msg === null) {
            // the broker cancelled us (queue deleted or moved): start over on a fresh channel
            if (this.attachment === att && !this.stopping) void channel.close();
            return;
          }
          this.track(exclusiveKeys ? this.handleOrdered(att, queue, msg) : this.handle(att, queue, msg));
        },
        { noAck: false },
      );
      att.consumerTags.push(consumerTag);
    }
    this.logger.info({ queues: consumedQueues(this.spec), prefetch: this.prefetch }, 'consuming');
  }

  private scheduleReattach(model: ChannelModel): void {
    if (this.reattachTimer) return;
    this.reattachTimer = setTimeout(() => {
      this.reattachTimer = undefined;
      if (this.stopping || this.connection.model !== model) return;
      this.attach(model).catch((err) => {
        this.logger.warn({ err }, 're-attaching consumer failed; retrying');
        this.scheduleReattach(model);
      });
    }, 1_000);
    this.reattachTimer.unref();
  }

  private track(p: Promise<void>): void {
    this.inFlight.add(p);
    void p.finally(() => this.inFlight.delete(p));
  }

  private handleOrdered(att: Attachment, queue: string, msg: ConsumeMessage): Promise<void> {
    const key = String(msg.properties.headers?.[ORDERING_HEADER] ?? '');
    const previous = this.keyChains.get(key) ?? Promise.resolve();
    const next = previous.then(() => this.handle(att, queue, msg));
    this.keyChains.set(key, next);
    void next.finally(() => {
      if (this.keyChains.get(key) === next) this.keyChains.delete(key);
    });
    return next;
  }

  private async handle(att: Attachment, queue: string, msg: ConsumeMessage): Promise<void> {
    try {
      await this.process(att, queue, msg);
    } catch (err) {
      // Settling failed (channel lost mid-republish): the unacked message returns to the queue.
      this.logger.warn(
        { err, messageId: msg.properties.messageId },
        'could not settle delivery; it will be redelivered',
      );
    }
  }

  private async process(att: Attachment, queue: string, msg: ConsumeMessage): Promise<void> {
    this.metrics.consumed.inc({ queue: this.spec.name });
    const headers = { ...(msg.properties.headers ?? {}) };
    const decoded = decodeEnvelope(
      { body: msg.content, messageId: msg.properties.messageId, type: msg.properties.type },
      this.accepts,
    );
    if ('poison' in decoded) {
      this.logger.warn(
        { messageId: msg.properties.messageId, errorClass: decoded.poison.name, err: decoded.poison },
        'poison message; parking in the DLQ',
      );
      await this.deadLetter(att, queue, msg, 'poison', decoded.poison, attemptsSoFar(headers) + 1);
      return;
    }
    const { envelope, eventType } = decoded;
    let attempt = attemptsSoFar(headers) + 1;
    for (;;) {
      const delivery: Delivery = {
        envelope,
        eventType,
        queue,
        attempt,
        redelivered: msg.fields.redelivered,
        orderingKey: envelope.orderingKey || String(headers[ORDERING_HEADER] ?? ''),
        headers,
        message: msg,
        logger: this.logger.child({ messageId: envelope.id, correlationId: envelope.correlationId, attempt }),
      };
      const started = performance.now();
      const outcome = await this.runHandler(delivery);
      const label = outcome === 'ack' ? 'ack' : 'retry' in outcome ? 'retry' : 'fail';
      this.metrics.handlerSeconds.observe(
        { queue: this.spec.name, outcome: label },
        (performance.now() - started) / 1000,
      );
      if (outcome === 'ack') {
        this.ack(att, msg);
        return;
      }
      if ('fail' in outcome) {
        const reason = deadLetterReasonOf(outcome.fail);
        delivery.logger.warn({ err: outcome.fail, reason }, 'permanent failure; parking in the DLQ');
        await this.deadLetter(att, queue, msg, reason, outcome.fail, attempt, headers);
        return;
      }
      if (attempt >= this.spec.retry.maxAttempts) {
        delivery.logger.warn({ err: outcome.retry }, 'attempts exhausted; parking in the DLQ');
        await this.deadLetter(att, queue, msg, 'max-attempts', outcome.retry, attempt, headers);
        return;
      }
      const delayMs = retryDelayMs(this.spec.retry, attempt);
      this.metrics.retried.inc({ queue: this.spec.name });
      delivery.logger.info({ err: outcome.retry, delayMs }, 'handler failed; retrying');
      if (!this.spec.ordering) {
        await this.republish(
          att,
          msg,
          retryExchangeName(delayMs),
          this.spec.name,
          failureHeaders(headers, queue, outcome.retry, attempt, this.now()),
        );
        return;
      }
      // Ordered: wait in place, holding this key (and only this key) back.
      Object.assign(headers, failureHeaders(headers, queue, outcome.retry, attempt, this.now()));
      await this.sleep(delayMs);
      if (att.channel.isClosed) return; // redelivered to whoever holds the partition now
      attempt++;
    }
  }

  private async runHandler(delivery: Delivery): Promise<HandlerOutcome> {
    try {
      return await this.handler(delivery);
    } catch (err) {
      const e = err instanceof Error ? err : new Error(String(err));
      return e instanceof PermanentError ? { fail: e } : { retry: e };
    }
  }

  private ack(att: Attachment, msg: ConsumeMessage): void {
    // A delivery tag is only valid on the channel it came from; after a reconnect the broker
    // redelivers and the inbox recognises the duplicate.
    if (att.channel.isClosed) return;
    att.channel.channel.ack(msg);
  }

  private async deadLetter(
    att: Attachment,
    queue: string,
    msg: ConsumeMessage,
    reason: DeadLetterReason,
    error: Error,
    attempts: number,
    current: Record<string, unknown> = msg.properties.headers ?? {},
  ): Promise<void> {
    await parkInDlq(att.channel, msg, {
      queue,
      dlq: dlqName(this.spec.name),
      reason,
      error,
      attempts,
      headers: current,
      nowMs: this.now(),
    });
    this.ack(att, msg);
    this.metrics.deadLettered.inc({ queue: this.spec.name, reason });
  }

  /** Copies the message to `target` (default exchange), waits for the confirm, then acks. */
  private async republish(
    att: Attachment,
    msg: ConsumeMessage,
    exchange: string,
    target: string,
    headers: Record<string, unknown>,
  ): Promise<void> {
    const fallbackId = `${target}:${msg.fields.deliveryTag}:${this.now()}`;
    await att.channel.publish(exchange, target, msg.content, copiedProperties(msg, headers, fallbackId));
    this.ack(att, msg);
  }

  private async depth(queue: string): Promise<number> {
    const ch = await this.connection.createChannel();
    try {
      return (await ch.checkQueue(queue)).messageCount;
    } finally {
      await ch.close().catch(() => {});
    }
  }
}

function attemptsSoFar(headers: Record<string, unknown>): number {
  const n = Number(headers[FailureHeader.attempts] ?? 0);
  return Number.isFinite(n) && n > 0 ? n : 0;
}

export type HandleOnceResult<T> = { duplicate: true } | { duplicate: false; value: T };

/**
 * Runs `fn` in one store transaction after claiming `envelope.id` for `consumerName` in the inbox;
 * a message already claimed (a redelivery, a replay, a publisher retry) skips `fn`. Return 'ack'
 * from the handler after this resolves: the ack then follows the commit.
 */
export async function handleOnce<T>(
  store: Store,
  consumerName: string,
  envelope: Pick<Envelope, 'id'>,
  fn: (tx: Tx) => Promise<T>,
): Promise<HandleOnceResult<T>> {
  return store.transaction(async (tx): Promise<HandleOnceResult<T>> => {
    if (!(await tx.claimInbox(consumerName, envelope.id))) return { duplicate: true };
    return { duplicate: false, value: await fn(tx) };
  });
}
