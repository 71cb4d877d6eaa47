// PostgreSQL store (production): a pg Pool, transactions on one pooled client, migrations under an
// advisory lock so several replicas can start at once, leases as session advisory locks. A database
// restart must not end the process: every client carries an error listener while it is checked out
// (pg-pool only guards idle ones), a call that cannot reach the database waits for it with backoff
// for a bounded time, and a lease whose session died says so through its `lost` signal.
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import { type BackoffOptions, backoffDelayMs } from '../backoff.js';
import { classifyStoreError, StoreUnreachableError } from './errors.js';
import { applyMigrations } from './migrate.js';
import type { Migration } from './migration.js';
import {
  CLAIM_INBOX_SQL,
  claimOrder,
  headersText,
  OUTBOX_INSERT_COLUMNS,
  PENDING_OUTBOX_SQL,
  toOutboxRow,
} from './sql-common.js';
import type { Lease, OutboxMessage, OutboxRow, SqlParam, Store, Tx } from './types.js';

// BIGINT columns hold epoch milliseconds and counters well inside 2^53.
pg.types.setTypeParser(pg.types.builtins.INT8, (v) => Number(v));

const MIGRATION_LOCK = 7_202_611;

/** One statement for any number of claims: the ids travel as one array parameter. */
const CLAIM_INBOX_MANY_SQL =
  'INSERT INTO inbox (consumer, message_id, processed_at) SELECT $1, id, $3 FROM unnest($2::text[]) AS u(id) ORDER BY id ON CONFLICT DO NOTHING RETURNING message_id';

/** One statement for any number of outbox rows, one array per column; `ORDER BY n` keeps write order in `seq`. */
const ENQUEUE_OUTBOX_SQL = `INSERT INTO outbox (${OUTBOX_INSERT_COLUMNS}) SELECT id, ex, rk, ty, co, ok, h, b, $9 FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::bytea[]) WITH ORDINALITY AS u(id, ex, rk, ty, co, ok, h, b, n) ORDER BY n`;

class PgTx implements Tx {
  readonly dialect = 'postgres' as const;
  constructor(private readonly client: pg.PoolClient) {}

  async query<R extends Record<string, unknown>>(sql: string, params: SqlParam[] = []): Promise<R[]> {
    const res = await this.client.query(sql, params as unknown[]);
    return res.rows as R[];
  }

  async execute(sql: string, params: SqlParam[] = []): Promise<number> {
    const res = await this.client.query(sql, params as unknown[]);
    return res.rowCount ?? 0;
  }

  async claimInbox(consumer: string, messageId: string): Promise<boolean> {
    return (await this.execute(CLAIM_INBOX_SQL, [consumer, messageId, Date.now()])) === 1;
  }

  async claimInboxMany(consumer: string, messageIds: readonly string[]): Promise<Set<string>> {
    if (messageIds.length === 0) return new Set();
    const res = await this.client.query<{ message_id: string }>(CLAIM_INBOX_MANY_SQL, [
      consumer,
      claimOrder(messageIds),
      Date.now(),
    ]);
    return new Set(res.rows.map((r) => r.message_id));
  }

  async enqueueOutbox(messages: OutboxMessage[]): Promise<void> {
    if (messages.length === 0) return;
    await this.client.query(ENQUEUE_OUTBOX_SQL, [
      messages.map((m) => m.id),
      messages.map((m) => m.exchange),
      messages.map((m) => m.routingKey),
      messages.map((m) => m.type),
      messages.map((m) => m.correlationId),
      messages.map((m) => m.orderingKey),
      messages.map(headersText),
      messages.map((m) => m.body),
      Date.now(),
    ]);
  }
}

export interface PostgresStoreOptions {
  url: string;
  migrations: Migration[];
  poolSize?: number;
  /**
   * How long a call waits for the database to accept a connection (a restart, a failover) before it
   * fails with StoreUnreachableError. Default 5 s.
   */
  reachWithinMs?: number;
  /** How long one connection attempt may take. Default 5 s. */
  connectTimeoutMs?: number;
}

/** Retry pace while the database does not accept connections. */
const REACH_BACKOFF: BackoffOptions = { initialMs: 100, maxMs: 1_000, multiplier: 2 };

/**
 * Getting a working connection failed: wait and try again while the database is only unavailable
 * and the reconnect window lasts; else fail, an outage as StoreUnreachableError (nothing was sent).
 */
export function afterFailedCheckout(
  err: unknown,
  at: { attempt: number; now: number; deadline: number; closed: boolean },
  random: () => number = Math.random,
): { retryInMs: number } | { fail: unknown } {
  if (classifyStoreError(err) !== 'unavailable') return { fail: err };
  const retryInMs = backoffDelayMs(REACH_BACKOFF, at.attempt, random);
  if (at.closed || at.now + retryInMs > at.deadline) return { fail: new StoreUnreachableError(err) };
  return { retryInMs };
}

/**
 * Whether a query's failure leaves its client unfit for the pool: an `unavailable` error (the session
 * terminated, 57P01, or its connection lost) often reaches the query before the client's own 'error'
 * event, and a client handed back then fails the next checkout of a caller that never reached the
 * database.
 */
function spentBy(err: unknown): boolean {
  return classifyStoreError(err) === 'unavailable';
}

/** A checked-out client with its own error listener; `broken` once its connection failed. */
interface HeldClient {
  client: pg.PoolClient;
  readonly broken: boolean;
  /** Returns the client to the pool, or destroys it when its connection broke. */
  release(destroy?: boolean): void;
}

/**
 * Guards a checked-out client: without a listener of its own, a connection error while checked out
 * (the server terminating sessions on restart) is an unhandled 'error' event, which ends the process.
 */
function hold(client: pg.PoolClient, onLost?: (err: Error) => void): HeldClient {
  let lostWith: Error | undefined;
  const onError = (err: Error) => {
    lostWith ??= err;
    onLost?.(err);
  };
  client.on('error', onError);
  let released = false;
  return {
    client,
    get broken() {
      return lostWith !== undefined;
    },
    release(destroy = false) {
      if (released) return;
      released = true;
      client.removeListener('error', onError);
      client.release(lostWith ?? destroy);
    },
  };
}

export class PostgresStore implements Store {
  readonly dialect = 'postgres' as const;
  readonly pool: pg.Pool;
  private readonly reachWithinMs: number;
  private closed = false;

  constructor(private readonly options: PostgresStoreOptions) {
    this.reachWithinMs = options.reachWithinMs ?? 5_000;
    this.pool = new pg.Pool({
      connectionString: options.url,
      max: options.poolSize ?? 20,
      // A connect to a host that stopped answering must fail, not wait for ever.
      connectionTimeoutMillis: options.connectTimeoutMs ?? 5_000,
      // A peer that vanished without closing (failover, partition) shows up as a broken socket.
      keepAlive: true,
    });
    // An idle client losing its connection (database restart): pg-pool has already removed it.
    this.pool.on('error', () => {});
  }

  /**
   * A client whose connection works (`begin` also opens a transaction on it), waiting for the
   * database with backoff up to reachWithinMs. Fails with StoreUnreachableError: nothing was sent.
   */
  private async checkout(begin: boolean, onLost?: (err: Error) => void): Promise<HeldClient> {
    const deadline = Date.now() + this.reachWithinMs;
    for (let attempt = 1; ; attempt++) {
      let held: HeldClient | undefined;
      try {
        held = hold(await this.pool.connect(), onLost);
        if (begin) await held.client.query('BEGIN');
        return held;
      } catch (err) {
        held?.release(true);
        const next = afterFailedCheckout(err, { attempt, now: Date.now(), deadline, closed: this.closed });
        if ('fail' in next) throw next.fail;
        await sleep(next.retryInMs);
      }
    }
  }

  async migrate(): Promise<void> {
    const held = await this.checkout(true);
    const { client } = held;
    try {
      await client.query('SELECT pg_advisory_xact_lock($1)', [MIGRATION_LOCK]);
      await applyMigrations(
        {
          dialect: 'postgres',
          exec: async (sql) => {
            await client.query(sql);
          },
          query: async (sql, params) => (await client.query(sql, params as unknown[])).rows,
        },
        this.options.migrations,
      );
      await client.query('COMMIT');
    } catch (err) {
      if (spentBy(err)) held.release(true);
      else await client.query('ROLLBACK').catch(() => held.release(true));
      throw err;
    } finally {
      held.release();
    }
  }

  async transaction<T>(fn: (tx: Tx) => Promise<T>): Promise<T> {
    const held = await this.checkout(true);
    try {
      const value = await fn(new PgTx(held.client));
      await held.client.query('COMMIT');
      return value;
    } catch (err) {
      if (spentBy(err)) held.release(true);
      else await held.client.query('ROLLBACK').catch(() => held.release(true));
      throw err;
    } finally {
      held.release();
    }
  }

  /** One statement in its own implicit transaction: one round trip. */
  async statement<R extends Record<string, unknown>>(sql: string, params: SqlParam[] = []): Promise<R[]> {
    return this.run<R>(sql, params);
  }

  async pendingOutbox(limit: number): Promise<OutboxRow[]> {
    return (await this.run(PENDING_OUTBOX_SQL, [limit])).map(toOutboxRow);
  }

  async markOutboxSent(seqs: number[]): Promise<void> {
    if (seqs.length === 0) return;
    await this.run('UPDATE outbox SET sent_at = $1 WHERE seq = ANY($2::bigint[])', [Date.now(), seqs]);
  }

  private async run<R extends Record<string, unknown>>(sql: string, params: unknown[]): Promise<R[]> {
    const held = await this.checkout(false);
    try {
      const res = await held.client.query(sql, params);
      return res.rows as R[];
    } catch (err) {
      held.release(spentBy(err));
      throw err;
    } finally {
      held.release();
    }
  }

  async tryAcquireLease(name: string): Promise<Lease | undefined> {
    const lost = new AbortController();
    // The lock lives as long as this session: its connection breaking ends the lease.
    const held = await this.checkout(false, (err) => lost.abort(err));
    try {
      const res = await held.client.query('SELECT pg_try_advisory_lock(hashtext($1)) AS held', [name]);
      if (!res.rows[0]?.held) {
        held.release();
        return undefined;
      }
    } catch (err) {
      held.release(true);
      throw err;
    }
    let released = false;
    return {
      lost: lost.signal,
      release: async () => {
        if (released) return;
        released = true;
        if (held.broken) return held.release(true);
        try {
          await held.client.query('SELECT pg_advisory_unlock(hashtext($1))', [name]);
          held.release();
        } catch {
          held.release(true);
        }
      },
    };
  }

  async close(): Promise<void> {
    this.closed = true;
    await this.pool.end();
  }
}
