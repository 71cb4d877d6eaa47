// Consumes a queue spec: decodes the Envelope by its type, runs the handler, and settles each delivery
// only after the handler resolved (i.e. after its database transaction committed). Poison (a body
// that is no Envelope, an unknown type, a payload that is not its type) is parked in `<queue>.dlq`
// before any handler sees it; retryable failures wait in the delay tiers (republished with confirms,
// then acked), exhausted and permanent ones are parked in the DLQ with reason headers. Ordered specs
// consume their partitions with one active consumer each, run one message per ordering key at a time
// and retry in place so a key never reorders. A batch handler takes every delivery the channel has
// already buffered at once (one transaction for all, say); outcomes stay per delivery. Acks are
// coalesced: one `multiple` ack per turn of the event loop up to the highest contiguous settled tag.
import type { ChannelModel, ConsumeMessage, Message } from 'amqplib';
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import type { Envelope } from '../gen/o2c/v1/events_pb.js';
import type { Store, Tx } from '../store/types.js';
import { AckTracker, afterCollect, type BatchResult, batchOutcomes } from './acks.js';
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
/** Handles deliveries together; answers one outcome per delivery, in the same order. */
export type BatchHandler = (deliveries: Delivery[]) => Promise<HandlerOutcome[]>;

export interface ConsumerOptions {
  connection: BusConnection;
  spec: QueueSpec;
  /** One delivery at a time (up to `prefetch` concurrently). Give this or `batchHandler`. */
  handler?: Handler;
  /**
   * Deliveries in batches: every delivery the channel has already buffered (collected until the next
   * turn of the event loop) or `batchMaxSize`, whichever comes first; batches run concurrently up to
   * the prefetch. Poison is parked before the batch is assembled; each outcome is routed like a
   * single handler's (ack, retry tier, DLQ). A batch handler that throws retries every delivery of
   * the batch. Not for ordered specs (their keys retry in place, one message at a time).
   */
  batchHandler?: BatchHandler;
  /** Deliveries per batch at most. Default the prefetch. */
  batchMaxSize?: number;
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
  acks: AckTracker;
  ackFlushScheduled: boolean;
  /** Deliveries collected for the next batch. */
  collected: { queue: string; msg: ConsumeMessage }[];
  batchFlushScheduled: boolean;
}

/** A decoded delivery on its way through the handler; `attempt` grows with in-place retries. */
interface Prepared {
  queue: string;
  msg: ConsumeMessage;
  headers: Record<string, unknown>;
  envelope: Envelope;
  eventType: string;
  attempt: number;
}

type Decoded =
  | Prepared
  | { poison: Error; queue: string; msg: ConsumeMessage; headers: Record<string, unknown> };

export class Consumer {
  readonly spec: QueueSpec;
  private readonly connection: BusConnection;
  private readonly handler: Handler | undefined;
  private readonly batchHandler: BatchHandler | undefined;
  private readonly batchMaxSize: number;
  private readonly accepts: readonly string[] | undefined;
  private readonly prefetch: number;
  private readonly metrics: BusMetrics;
  /** The per-delivery metrics, their labels bound once. */
  private readonly consumedCounter: { inc(): void };
  private readonly ackedSeconds: { observe(seconds: number): void };
  private readonly logger: Logger;
  private readonly now: () => number;
  private readonly sleep: (ms: number) => Promise<void>;
  private readonly declareTopology: boolean;
  private attachment: Attachment | undefined;
  private removeSetup: (() => void) | undefined;
  private stopping = false;
  private readonly inFlight = new Set<Promise<void>>();
  private handling = 0;
  /** Ordered specs: the tail of each key's chain. */
  private readonly keyChains = new Map<string, Promise<void>>();
  private reattachTimer: NodeJS.Timeout | undefined;

  constructor(options: ConsumerOptions) {
    this.connection = options.connection;
    this.spec = options.spec;
    if (!options.handler === !options.batchHandler) {
      throw new Error(`consumer ${options.spec.name}: give either handler or batchHandler`);
    }
    if (options.batchHandler && options.spec.ordering) {
      throw new Error(`consumer ${options.spec.name}: ordered specs take a handler, not a batchHandler`);
    }
    this.handler = options.handler;
    this.batchHandler = options.batchHandler;
    this.accepts = options.accepts;
    this.prefetch = options.prefetch ?? 32;
    this.batchMaxSize = Math.max(1, options.batchMaxSize ?? this.prefetch);
    this.declareTopology = options.declare ?? true;
    this.metrics = busMetrics(options.registry);
    this.consumedCounter = this.metrics.consumed.labels(options.spec.name);
    this.ackedSeconds = this.metrics.handlerSeconds.labels(options.spec.name, 'ack');
    this.logger = options.connection.logger.child({ queue: options.spec.name });
    this.now = options.now ?? Date.now;
    this.sleep = options.sleep ?? ((ms) => new Promise((r) => setTimeout(r, ms)));
  }

  /** Deliveries being handled right now. */
  get active(): number {
    return this.handling;
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
    if (att) this.flushBatch(att);
    await Promise.race([Promise.allSettled([...this.inFlight]), deadline]);
    if (att) this.flushAcks(att);
    await att?.channel.close();
    this.attachment = undefined;
    for (const queue of consumedQueues(this.spec)) this.metrics.depthProbes.delete(queue);
  }

  private async attach(model: ChannelModel): Promise<void> {
    if (this.stopping) return;
    const raw = await model.createConfirmChannel();
    raw.on('error', (err: Error) => this.logger.warn({ err }, 'consumer channel error'));
    const channel = new TrackedConfirmChannel(raw);
    const att: Attachment = {
      channel,
      consumerTags: [],
      acks: new AckTracker(),
      ackFlushScheduled: false,
      collected: [],
      batchFlushScheduled: false,
    };
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
          att.acks.delivered(msg.fields.deliveryTag);
          if (this.batchHandler) this.collect(att, queue, msg);
          else this.track(exclusiveKeys ? this.handleOrdered(att, queue, msg) : this.handle(att, queue, msg));
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

  private collect(att: Attachment, queue: string, msg: ConsumeMessage): void {
    att.collected.push({ queue, msg });
    const step = afterCollect(att.collected.length, this.batchMaxSize, att.batchFlushScheduled);
    if (step === 'flush-now') this.flushBatch(att);
    else if (step === 'flush-next-turn') {
      att.batchFlushScheduled = true;
      setImmediate(() => this.flushBatch(att));
    }
  }

  private flushBatch(att: Attachment): void {
    att.batchFlushScheduled = false;
    if (att.collected.length === 0) return;
    const items = att.collected.splice(0);
    // Deliveries of a channel that closed meanwhile are redelivered elsewhere: not handled twice here.
    if (att.channel.isClosed) return;
    this.track(this.handleBatch(att, items));
  }

  private async handle(att: Attachment, queue: string, msg: ConsumeMessage): Promise<void> {
    this.handling++;
    try {
      await this.process(att, this.decode(queue, msg));
    } catch (err) {
      this.couldNotSettle(err, att, msg);
    } finally {
      this.handling--;
    }
  }

  /**
   * Settling failed (the broker did not confirm the retry or DLQ copy, the channel was lost): the
   * message goes back to its queue, by the channel close or, on a live channel, by a requeueing nack
   * (so it holds neither a prefetch slot nor the coalesced acks of later deliveries).
   */
  private couldNotSettle(err: unknown, att: Attachment, msg: ConsumeMessage): void {
    this.logger.warn(
      { err, messageId: msg.properties.messageId },
      'could not settle delivery; it will be redelivered',
    );
    if (att.channel.isClosed) return;
    att.acks.released(msg.fields.deliveryTag);
    att.channel.channel.nack(msg, false, true);
    this.scheduleAckFlush(att);
  }

  private decode(queue: string, msg: ConsumeMessage): Decoded {
    this.consumedCounter.inc();
    const headers = { ...(msg.properties.headers ?? {}) };
    const decoded = decodeEnvelope(
      { body: msg.content, messageId: msg.properties.messageId, type: msg.properties.type },
      this.accepts,
    );
    if ('poison' in decoded) return { poison: decoded.poison, queue, msg, headers };
    const { envelope, eventType } = decoded;
    return { queue, msg, headers, envelope, eventType, attempt: attemptsSoFar(headers) + 1 };
  }

  private async parkPoison(att: Attachment, d: Extract<Decoded, { poison: Error }>): Promise<void> {
    const { msg, poison } = d;
    this.logger.warn(
      { messageId: msg.properties.messageId, errorClass: poison.name, err: poison },
      'poison message; parking in the DLQ',
    );
    await this.deadLetter(att, d.queue, msg, 'poison', poison, attemptsSoFar(d.headers) + 1);
  }

  private delivery(p: Prepared): Delivery {
    const { envelope, attempt } = p;
    let logger: Logger | undefined;
    const parent = this.logger;
    return {
      envelope,
      eventType: p.eventType,
      queue: p.queue,
      attempt,
      redelivered: p.msg.fields.redelivered,
      orderingKey: envelope.orderingKey || String(p.headers[ORDERING_HEADER] ?? ''),
      headers: p.headers,
      message: p.msg,
      // A child logger per delivery costs more than the rest of the delivery: made when first used.
      get logger() {
        logger ??= parent.child({ messageId: envelope.id, correlationId: envelope.correlationId, attempt });
        return logger;
      },
    };
  }

  private async process(att: Attachment, d: Decoded): Promise<void> {
    if ('poison' in d) return this.parkPoison(att, d);
    for (;;) {
      const delivery = this.delivery(d);
      const started = performance.now();
      const outcome = await this.runHandler(delivery);
      this.observe(outcome, started);
      const next = await this.route(att, d, delivery, outcome);
      if (next === 'settled') return;
      // Ordered: wait in place, holding this key (and only this key) back.
      await this.sleep(next.waitMs);
      if (att.channel.isClosed) return; // redelivered to whoever holds the partition now
      d.attempt++;
    }
  }

  private async handleBatch(att: Attachment, items: { queue: string; msg: ConsumeMessage }[]): Promise<void> {
    const batchHandler = this.batchHandler as BatchHandler;
    this.handling += items.length;
    const ready: Prepared[] = [];
    const settling: Promise<void>[] = [];
    for (const { queue, msg } of items) {
      const d = this.decode(queue, msg);
      if ('poison' in d) settling.push(this.settleSafely(att, msg, this.parkPoison(att, d)));
      else ready.push(d);
    }
    if (ready.length > 0) {
      const deliveries = ready.map((p) => this.delivery(p));
      const started = performance.now();
      let result: BatchResult;
      try {
        result = { outcomes: await batchHandler(deliveries) };
      } catch (threw) {
        result = { threw };
      }
      const outcomes = batchOutcomes(result, ready.length);
      ready.forEach((p, i) => {
        const outcome = outcomes[i] as HandlerOutcome;
        this.observe(outcome, started);
        settling.push(this.settleSafely(att, p.msg, this.route(att, p, deliveries[i] as Delivery, outcome)));
      });
    }
    try {
      await Promise.all(settling);
    } finally {
      this.handling -= items.length;
    }
  }

  private async settleSafely(
    att: Attachment,
    msg: ConsumeMessage,
    settling: Promise<unknown>,
  ): Promise<void> {
    try {
      await settling;
    } catch (err) {
      this.couldNotSettle(err, att, msg);
    }
  }

  private observe(outcome: HandlerOutcome, started: number): void {
    const seconds = (performance.now() - started) / 1000;
    if (outcome === 'ack') this.ackedSeconds.observe(seconds);
    else
      this.metrics.handlerSeconds.observe(
        { queue: this.spec.name, outcome: 'retry' in outcome ? 'retry' : 'fail' },
        seconds,
      );
  }

  /**
   * Settles a delivery by its outcome: ack, park in the DLQ, or republish to its retry tier; an
   * ordered spec's retry instead waits in place (`waitMs`), with the failure recorded in its headers.
   */
  private async route(
    att: Attachment,
    p: Prepared,
    delivery: Delivery,
    outcome: HandlerOutcome,
  ): Promise<'settled' | { waitMs: number }> {
    const { queue, msg, headers, attempt } = p;
    if (outcome === 'ack') {
      this.ack(att, msg);
      return 'settled';
    }
    if ('fail' in outcome) {
      const reason = deadLetterReasonOf(outcome.fail);
      delivery.logger.warn({ err: outcome.fail, reason }, 'permanent failure; parking in the DLQ');
      await this.deadLetter(att, queue, msg, reason, outcome.fail, attempt, headers);
      return 'settled';
    }
    if (attempt >= this.spec.retry.maxAttempts) {
      delivery.logger.warn({ err: outcome.retry }, 'attempts exhausted; parking in the DLQ');
      await this.deadLetter(att, queue, msg, 'max-attempts', outcome.retry, attempt, headers);
      return 'settled';
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
      return 'settled';
    }
    Object.assign(headers, failureHeaders(headers, queue, outcome.retry, attempt, this.now()));
    return { waitMs: delayMs };
  }

  private async runHandler(delivery: Delivery): Promise<HandlerOutcome> {
    try {
      return await (this.handler as Handler)(delivery);
    } catch (err) {
      const e = err instanceof Error ? err : new Error(String(err));
      return e instanceof PermanentError ? { fail: e } : { retry: e };
    }
  }

  /**
   * Marks the delivery settled; the ack goes out on the next turn, one `multiple` ack for every
   * delivery settled by then below which nothing is open. A delivery tag is only valid on the
   * channel it came from; after a reconnect the broker redelivers and the inbox recognises the
   * duplicate.
   */
  private ack(att: Attachment, msg: ConsumeMessage): void {
    if (att.channel.isClosed) return;
    att.acks.settled(msg.fields.deliveryTag);
    this.scheduleAckFlush(att);
  }

  private scheduleAckFlush(att: Attachment): void {
    if (att.ackFlushScheduled) return;
    att.ackFlushScheduled = true;
    setImmediate(() => this.flushAcks(att));
  }

  private flushAcks(att: Attachment): void {
    att.ackFlushScheduled = false;
    if (att.channel.isClosed) return;
    const frame = att.acks.take();
    if (!frame) return;
    // amqplib reads only the delivery tag of the message it acks.
    att.channel.channel.ack({ fields: { deliveryTag: frame.deliveryTag } } as Message, frame.multiple);
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
  return handleBatchOnce(store, consumerName, [envelope], async (tx, [fresh]) =>
    fresh ? { duplicate: false, value: await fn(tx) } : { duplicate: true },
  );
}

/**
 * One store transaction for a batch: claims every envelope id for `consumerName` in the inbox in
 * one statement, then runs `fn` with `fresh[i]` true for the envelopes this transaction claimed
 * (false for those handled before, and for repeats of an id earlier in the batch). `fn` skips the
 * effects of the others; when it throws nothing is claimed. Ack after this resolves.
 */
export async function handleBatchOnce<T>(
  store: Store,
  consumerName: string,
  envelopes: readonly Pick<Envelope, 'id'>[],
  fn: (tx: Tx, fresh: boolean[]) => Promise<T>,
): Promise<T> {
  return store.transaction(async (tx) => {
    const claimed = await tx.claimInboxMany(
      consumerName,
      envelopes.map((e) => e.id),
    );
    return fn(tx, freshClaims(envelopes, claimed));
  });
}

/** Which envelopes of a batch are new: claimed now, and the first of the batch with that id. */
export function freshClaims(
  envelopes: readonly Pick<Envelope, 'id'>[],
  claimed: ReadonlySet<string>,
): boolean[] {
  const seen = new Set<string>();
  return envelopes.map((e) => {
    if (seen.has(e.id)) return false;
    seen.add(e.id);
    return claimed.has(e.id);
  });
}
