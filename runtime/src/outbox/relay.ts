// Publishes outbox rows to RabbitMQ after their transaction committed. A row is marked sent only
// after the broker confirmed it; messages with the same ordering key go out one after the other, so
// a consumer sees one order's events in the order they were written, even across broker outages.
// One relay per store holds the lease at a time; the others stand by. A store outage or a lost lease
// (the database restarted under it) only pauses it: it takes the lease again once the store answers.
// A reply the broker returns as unroutable (its reply queue went with a deleted Workflow or a
// Pipeline replica's process) is dropped and counted instead: nobody waits for it, and retrying it
// would hold back every row behind it.
import { Counter, Gauge, type Registry } from 'prom-client';
import { type BackoffOptions, backoffDelayMs } from '../backoff.js';
import { isReplyRoutingKey } from '../bus/addressing.js';
import { UnroutableError } from '../bus/errors.js';
import type { Logger } from '../observability/logger.js';
import type { Lease, OutboxRow, Store } from '../store/types.js';

export interface OutboxPublisher {
  publish(message: {
    exchange: string;
    routingKey: string;
    body: Uint8Array;
    messageId: string;
    type: string;
    correlationId: string;
    /** Partitions ordered queues (the consistent-hash header), so one key's rows stay in one partition. */
    orderingKey?: string;
    headers?: Record<string, string>;
  }): Promise<void>;
}

export interface OutboxRelayOptions {
  store: Store;
  publisher: OutboxPublisher;
  logger: Logger;
  registry?: Registry;
  /**
   * Rows read per batch; default 5,000. Rows of one ordering key are published one after the other
   * (each after the previous one's confirm), rows of different keys concurrently: a big batch keeps
   * many keys in flight, so confirms overlap instead of being waited for one key at a time.
   */
  batchSize?: number;
  /** How often to look for rows when nobody woke the relay. */
  pollMs?: number;
  /** Pause after a failed publish before trying again. */
  retryMs?: number;
  /** Pace of lease attempts while the store is unreachable. Default 200 ms doubling up to 2 s. */
  reconnect?: BackoffOptions;
  /** How often a relay without the lease (another one holds it) tries to take it. Default 2 s. */
  standbyMs?: number;
  /** Sent rows older than this are deleted. */
  retentionMs?: number;
}

const DEFAULT_BATCH_SIZE = 5_000;

/** What becomes of a row whose publish failed: a reply nobody can receive is dropped, the rest retried. */
export function afterFailedPublish(row: Pick<OutboxRow, 'routingKey'>, error: unknown): 'drop' | 'retry' {
  return error instanceof UnroutableError && isReplyRoutingKey(row.routingKey) ? 'drop' : 'retry';
}

/** Groups rows by ordering key, keeping write order inside each group. */
export function chainsByKey(rows: OutboxRow[]): OutboxRow[][] {
  const chains = new Map<string, OutboxRow[]>();
  for (const row of rows) {
    const chain = chains.get(row.orderingKey);
    if (chain) chain.push(row);
    else chains.set(row.orderingKey, [row]);
  }
  return [...chains.values()];
}

export class OutboxRelay {
  private running = false;
  private wakeUp: (() => void) | undefined;
  private loop: Promise<void> | undefined;
  private lastPurge = 0;
  private readonly published?: Counter;
  private readonly failures?: Counter;
  private readonly dropped?: Counter;
  private readonly pending?: Gauge;
  connected = false;
  /** Replies dropped as unroutable since start (also `o2c_outbox_unroutable_replies_dropped_total`). */
  droppedReplies = 0;
  private readonly reconnect: BackoffOptions;

  constructor(private readonly options: OutboxRelayOptions) {
    this.reconnect = options.reconnect ?? { initialMs: 200, maxMs: 2_000, multiplier: 2 };
    if (options.registry) {
      this.published = new Counter({
        name: 'o2c_outbox_published_total',
        help: 'Outbox messages confirmed by the broker',
        registers: [options.registry],
      });
      this.failures = new Counter({
        name: 'o2c_outbox_publish_failures_total',
        help: 'Outbox publishes the broker did not confirm (retried)',
        registers: [options.registry],
      });
      this.dropped = new Counter({
        name: 'o2c_outbox_unroutable_replies_dropped_total',
        help: 'Connector replies the broker returned as unroutable (their reply queue is gone), dropped',
        registers: [options.registry],
      });
      this.pending = new Gauge({
        name: 'o2c_outbox_pending',
        help: 'Outbox messages read but not yet confirmed in the last batch',
        registers: [options.registry],
      });
    }
  }

  start(): void {
    if (this.running) return;
    this.running = true;
    this.loop = this.run();
  }

  /** Tells the relay a transaction just committed outbox rows. */
  wake(): void {
    this.wakeUp?.();
  }

  async stop(): Promise<void> {
    this.running = false;
    this.wake();
    await this.loop;
  }

  private sleep(ms: number): Promise<void> {
    return new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, ms);
      this.wakeUp = () => {
        clearTimeout(timer);
        resolve();
      };
    }).finally(() => {
      this.wakeUp = undefined;
    });
  }

  private async run(): Promise<void> {
    const { store, logger } = this.options;
    let unreachable = 0;
    while (this.running) {
      let lease: Lease | undefined;
      try {
        lease = await store.tryAcquireLease('o2c.outbox-relay');
        unreachable = 0;
      } catch (err) {
        unreachable++;
        if (unreachable === 1 || unreachable % 10 === 0)
          logger.warn({ err, attempt: unreachable }, 'outbox relay could not reach the store; retrying');
        await this.sleep(backoffDelayMs(this.reconnect, unreachable));
        continue;
      }
      if (!lease) {
        await this.sleep(this.options.standbyMs ?? 2000);
        continue;
      }
      // The session holding the lock died (database restart): another relay may hold it now.
      const onLost = () => this.wake();
      lease.lost.addEventListener('abort', onLost);
      try {
        while (this.running && !lease.lost.aborted) {
          const sent = await this.relayBatch();
          if (lease.lost.aborted) break;
          if (sent === 0) await this.sleep(this.options.pollMs ?? 200);
          else if (sent < 0) await this.sleep(this.options.retryMs ?? 1000);
        }
        if (lease.lost.aborted)
          logger.warn({ err: lease.lost.reason }, 'outbox relay lost its store lease; taking it again');
      } catch (err) {
        logger.warn({ err }, 'outbox relay lost the store; retrying');
        await this.sleep(backoffDelayMs(this.reconnect, 1));
      } finally {
        lease.lost.removeEventListener('abort', onLost);
        await lease.release().catch(() => {});
      }
    }
  }

  /** Publishes one batch; returns how many rows were confirmed or dropped, or -1 when some failed. */
  async relayBatch(): Promise<number> {
    const { store, publisher, logger } = this.options;
    const rows = await store.pendingOutbox(this.options.batchSize ?? DEFAULT_BATCH_SIZE);
    if (rows.length === 0) {
      await this.purgeOld();
      return 0;
    }
    this.pending?.set(rows.length);
    const confirmed: number[] = [];
    let failed = false;
    let dropped = 0;
    await Promise.all(
      chainsByKey(rows).map(async (chain) => {
        for (const row of chain) {
          try {
            await publisher.publish({
              exchange: row.exchange,
              routingKey: row.routingKey,
              body: row.body,
              messageId: row.id,
              type: row.type,
              correlationId: row.correlationId,
              orderingKey: row.orderingKey,
              headers: row.headers,
            });
            confirmed.push(row.seq);
          } catch (err) {
            if (afterFailedPublish(row, err) === 'drop') {
              dropped++;
              if (dropped === 1)
                logger.info(
                  { messageId: row.id, routingKey: row.routingKey },
                  'reply has no reply queue (its sender is gone); dropped',
                );
              confirmed.push(row.seq);
              continue;
            }
            if (!failed) logger.warn({ err, messageId: row.id }, 'outbox publish not confirmed; will retry');
            failed = true;
            this.failures?.inc();
            return; // The rest of this key waits, so its order holds.
          }
        }
      }),
    );
    await store.markOutboxSent(confirmed);
    this.published?.inc(confirmed.length - dropped);
    this.dropped?.inc(dropped);
    this.droppedReplies += dropped;
    this.connected = !failed;
    this.pending?.set(0);
    return failed ? -1 : confirmed.length;
  }

  private async purgeOld(): Promise<void> {
    const now = Date.now();
    if (now - this.lastPurge < 60_000) return;
    this.lastPurge = now;
    const cutoff = now - (this.options.retentionMs ?? 3_600_000);
    await this.options.store.transaction((tx) =>
      tx.execute('DELETE FROM outbox WHERE sent_at IS NOT NULL AND sent_at < $1', [cutoff]),
    );
  }
}
