// Confirmed publishing: every publish resolves only when the broker confirmed it, rejects when the
// broker nacks, returns it as unroutable or the connection drops, so the caller (the outbox relay)
// marks a row sent only after a confirm and retries otherwise. The number of unconfirmed messages is
// bounded, socket back-pressure (`drain`) and broker flow control (`blocked`) are honoured.
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import { TrackedConfirmChannel } from './confirm-channel.js';
import type { BusConnection } from './connection.js';
import { ConnectionLostError, UnroutableError } from './errors.js';
import { type BusMetrics, busMetrics } from './metrics.js';
import { ORDERING_HEADER } from './topology.js';

export const CONTENT_TYPE = 'application/x-protobuf';

export type HeaderValue = string | number | boolean;

export interface PublishRequest {
  exchange: string;
  routingKey: string;
  /** Protobuf-encoded Envelope. */
  body: Uint8Array;
  /** The Envelope id; AMQP message_id. */
  messageId: string;
  /** The Envelope type; AMQP type. */
  type: string;
  correlationId: string;
  headers?: Record<string, HeaderValue>;
  /** W3C trace context, carried as the `traceparent` / `tracestate` headers. */
  traceparent?: string;
  tracestate?: string;
  /** Partitions ordered queues (consistent hash on the `x-o2c-ordering-key` header). */
  orderingKey?: string;
  /** Milliseconds since the epoch; defaults to now. Drives `o2c events replay --since`. */
  timestampMs?: number;
  /** Default true: an unroutable message rejects with UnroutableError. */
  mandatory?: boolean;
}

export interface ConfirmPublisherOptions {
  /** Unconfirmed messages in flight at most; further publishes wait. Default 1,000. */
  maxUnconfirmed?: number;
  /** How long a publish waits for a (re)connection before it fails. Default 10 s. */
  connectTimeoutMs?: number;
  registry?: Registry;
}

interface ExchangeCounters {
  published: { inc(): void };
  confirmed: { inc(): void };
  returned: { inc(): void };
  nacked: { inc(): void };
}

export class ConfirmPublisher {
  private readonly maxUnconfirmed: number;
  private readonly connectTimeoutMs: number;
  private readonly metrics: BusMetrics;
  private readonly logger: Logger;
  private channel: TrackedConfirmChannel | undefined;
  private opening: Promise<TrackedConfirmChannel> | undefined;
  private inFlight = 0;
  private slotWaiters: (() => void)[] = [];
  private closed = false;
  private readonly counters = new Map<string, ExchangeCounters>();

  constructor(
    private readonly connection: BusConnection,
    options: ConfirmPublisherOptions = {},
  ) {
    this.maxUnconfirmed = options.maxUnconfirmed ?? 1_000;
    this.connectTimeoutMs = options.connectTimeoutMs ?? 10_000;
    this.metrics = busMetrics(options.registry);
    this.logger = connection.logger.child({ component: 'publisher' });
  }

  /** Messages handed to the broker and not yet confirmed. */
  get unconfirmed(): number {
    return this.inFlight;
  }

  async publish(req: PublishRequest): Promise<void> {
    if (this.closed) throw new Error('publisher is closed');
    while (this.inFlight >= this.maxUnconfirmed) await new Promise<void>((r) => this.slotWaiters.push(r));
    this.inFlight++;
    try {
      if (this.connection.blocked) await this.connection.waitUntilUnblocked();
      // The open channel is taken without a turn of the event loop: publishes of one tick leave in one write.
      const open = this.channel;
      const channel = open && !open.isClosed ? open : await this.ensureChannel();
      if (channel.saturated) await channel.waitForDrain();
      const counters = this.countersFor(req.exchange);
      counters.published.inc();
      try {
        await channel.publish(req.exchange, req.routingKey, toBuffer(req.body), publishOptions(req));
      } catch (err) {
        if (err instanceof UnroutableError) counters.returned.inc();
        else counters.nacked.inc();
        throw err;
      }
      counters.confirmed.inc();
    } finally {
      this.inFlight--;
      this.slotWaiters.shift()?.();
    }
  }

  /** The exchange's counters, looked up once (a labelled inc hashes its labels on every call). */
  private countersFor(exchange: string): ExchangeCounters {
    let c = this.counters.get(exchange);
    if (!c) {
      c = {
        published: this.metrics.published.labels(exchange),
        confirmed: this.metrics.confirmed.labels(exchange),
        returned: this.metrics.returned.labels(exchange),
        nacked: this.metrics.nacked.labels(exchange),
      };
      this.counters.set(exchange, c);
    }
    return c;
  }

  /** Waits for the messages in flight, then closes the channel. */
  async close(): Promise<void> {
    this.closed = true;
    while (this.inFlight > 0) await new Promise<void>((r) => this.slotWaiters.push(r));
    await this.channel?.close();
    this.channel = undefined;
  }

  private async ensureChannel(): Promise<TrackedConfirmChannel> {
    if (this.channel && !this.channel.isClosed) return this.channel;
    this.opening ??= this.openChannel().finally(() => {
      this.opening = undefined;
    });
    return this.opening;
  }

  private async openChannel(): Promise<TrackedConfirmChannel> {
    const deadline = Date.now() + this.connectTimeoutMs;
    for (;;) {
      try {
        await this.connection.waitUntilConnected(Math.max(0, deadline - Date.now()));
      } catch (err) {
        throw new ConnectionLostError((err as Error).message);
      }
      try {
        const tracked = new TrackedConfirmChannel(await this.connection.createConfirmChannel());
        tracked.channel.on('close', () => {
          if (this.channel === tracked) this.channel = undefined;
        });
        this.channel = tracked;
        return tracked;
      } catch (err) {
        // the connection dropped between the wait and the channel open: wait for the next one
        if (Date.now() >= deadline) throw new ConnectionLostError((err as Error).message);
        this.logger.debug({ err }, 'opening publish channel failed; retrying');
        await new Promise((r) => setTimeout(r, 50));
      }
    }
  }
}

function toBuffer(body: Uint8Array): Buffer {
  return Buffer.isBuffer(body) ? body : Buffer.from(body.buffer, body.byteOffset, body.byteLength);
}

function publishOptions(req: PublishRequest) {
  const headers: Record<string, HeaderValue> = { ...req.headers };
  if (req.traceparent) headers.traceparent = req.traceparent;
  if (req.tracestate) headers.tracestate = req.tracestate;
  // Always set, so ordered queues spread keyless messages by id instead of piling them in one partition.
  headers[ORDERING_HEADER] = req.orderingKey || req.messageId;
  return {
    persistent: true,
    mandatory: req.mandatory ?? true,
    contentType: CONTENT_TYPE,
    messageId: req.messageId,
    type: req.type,
    correlationId: req.correlationId,
    timestamp: Math.floor((req.timestampMs ?? Date.now()) / 1000),
    headers,
  };
}
