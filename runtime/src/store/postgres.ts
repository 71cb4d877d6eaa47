// PostgreSQL store (production): a pg Pool, transactions on one pooled client, migrations under an
// advisory lock so several replicas can start at once, leases as session advisory locks.
import pg from 'pg';
import { applyMigrations } from './migrate.js';
import type { Migration } from './migration.js';
import { CLAIM_INBOX_SQL, enqueueAll, PENDING_OUTBOX_SQL, toOutboxRow } from './sql-common.js';
import type { Lease, OutboxMessage, OutboxRow, SqlParam, Store, Tx } from './types.js';

// BIGINT columns hold epoch milliseconds and counters well inside 2^53.
pg.types.setTypeParser(pg.types.builtins.INT8, (v) => Number(v));

const MIGRATION_LOCK = 7_202_611;

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

  enqueueOutbox(messages: OutboxMessage[]): Promise<void> {
    return enqueueAll(this, messages, Date.now());
  }
}

export interface PostgresStoreOptions {
  url: string;
  migrations: Migration[];
  poolSize?: number;
}

export class PostgresStore implements Store {
  readonly dialect = 'postgres' as const;
  readonly pool: pg.Pool;

  constructor(private readonly options: PostgresStoreOptions) {
    this.pool = new pg.Pool({ connectionString: options.url, max: options.poolSize ?? 20 });
    // An idle client losing its connection (database restart) must not crash the process.
    this.pool.on('error', () => {});
  }

  async migrate(): Promise<void> {
    const client = await this.pool.connect();
    try {
      await client.query('BEGIN');
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
      await client.query('ROLLBACK').catch(() => {});
      throw err;
    } finally {
      client.release();
    }
  }

  async transaction<T>(fn: (tx: Tx) => Promise<T>): Promise<T> {
    const client = await this.pool.connect();
    let broken = false;
    try {
      await client.query('BEGIN');
      const value = await fn(new PgTx(client));
      await client.query('COMMIT');
      return value;
    } catch (err) {
      await client.query('ROLLBACK').catch(() => {
        broken = true;
      });
      throw err;
    } finally {
      client.release(broken);
    }
  }

  /** One statement in its own implicit transaction: one round trip. */
  async statement<R extends Record<string, unknown>>(sql: string, params: SqlParam[] = []): Promise<R[]> {
    const res = await this.pool.query(sql, params as unknown[]);
    return res.rows as R[];
  }

  async pendingOutbox(limit: number): Promise<OutboxRow[]> {
    const res = await this.pool.query(PENDING_OUTBOX_SQL, [limit]);
    return res.rows.map(toOutboxRow);
  }

  async markOutboxSent(seqs: number[]): Promise<void> {
    if (seqs.length === 0) return;
    await this.pool.query('UPDATE outbox SET sent_at = $1 WHERE seq = ANY($2::bigint[])', [Date.now(), seqs]);
  }

  async tryAcquireLease(name: string): Promise<Lease | undefined> {
    const client = await this.pool.connect();
    try {
      const res = await client.query('SELECT pg_try_advisory_lock(hashtext($1)) AS held', [name]);
      if (!res.rows[0]?.held) {
        client.release();
        return undefined;
      }
    } catch (err) {
      client.release(true);
      throw err;
    }
    let released = false;
    return {
      release: async () => {
        if (released) return;
        released = true;
        try {
          await client.query('SELECT pg_advisory_unlock(hashtext($1))', [name]);
          client.release();
        } catch {
          client.release(true);
        }
      },
    };
  }

  async close(): Promise<void> {
    await this.pool.end();
  }
}
