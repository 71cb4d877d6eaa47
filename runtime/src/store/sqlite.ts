// Embedded store on node:sqlite (no native addon): one connection in WAL mode with synchronous=FULL
// so a commit is durable; transactions are serialised in process because the driver is synchronous
// and a transaction may await between statements.
import { DatabaseSync, type SQLInputValue } from 'node:sqlite';
import { ownFile } from './file-owner.js';
import { applyMigrations } from './migrate.js';
import type { Migration } from './migration.js';
import {
  CLAIM_INBOX_SQL,
  claimOrder,
  OUTBOX_INSERT_COLUMNS,
  outboxValuesBeforeBody,
  PENDING_OUTBOX_SQL,
  toOutboxRow,
} from './sql-common.js';
import type { Lease, OutboxMessage, OutboxRow, SqlParam, Store, Tx } from './types.js';

/** `$1` placeholders become SQLite's numbered `?1`; booleans become 0/1. */
export function toSqlite(sql: string): string {
  return sql.replace(/\$(\d+)/g, '?$1');
}

function bind(params: SqlParam[]): SQLInputValue[] {
  return params.map((p) => (typeof p === 'boolean' ? (p ? 1 : 0) : p));
}

/** One statement for any number of claims: the ids travel as one JSON array. */
const CLAIM_INBOX_MANY_SQL =
  'INSERT INTO inbox (consumer, message_id, processed_at) SELECT ?1, value, ?3 FROM json_each(?2) ORDER BY key ON CONFLICT DO NOTHING RETURNING message_id';

/** One statement for any number of outbox rows, as a JSON array of rows (bodies hex-encoded), in write order. */
const ENQUEUE_OUTBOX_SQL = `INSERT INTO outbox (${OUTBOX_INSERT_COLUMNS}) SELECT value->>0, value->>1, value->>2, value->>3, value->>4, value->>5, value->>6, unhex(value->>7), ?2 FROM json_each(?1) ORDER BY key`;

class SqliteTx implements Tx {
  readonly dialect = 'sqlite' as const;
  constructor(private readonly db: DatabaseSync) {}

  async query<R extends Record<string, unknown>>(sql: string, params: SqlParam[] = []): Promise<R[]> {
    return this.db.prepare(toSqlite(sql)).all(...bind(params)) as R[];
  }

  async execute(sql: string, params: SqlParam[] = []): Promise<number> {
    return Number(this.db.prepare(toSqlite(sql)).run(...bind(params)).changes);
  }

  async claimInbox(consumer: string, messageId: string): Promise<boolean> {
    return (await this.execute(CLAIM_INBOX_SQL, [consumer, messageId, Date.now()])) === 1;
  }

  async claimInboxMany(consumer: string, messageIds: readonly string[]): Promise<Set<string>> {
    if (messageIds.length === 0) return new Set();
    const rows = this.db
      .prepare(CLAIM_INBOX_MANY_SQL)
      .all(consumer, JSON.stringify(claimOrder(messageIds)), Date.now()) as { message_id: string }[];
    return new Set(rows.map((r) => r.message_id));
  }

  async enqueueOutbox(messages: OutboxMessage[]): Promise<void> {
    if (messages.length === 0) return;
    const rows = messages.map((m) => [
      ...outboxValuesBeforeBody(m),
      Buffer.from(m.body.buffer, m.body.byteOffset, m.body.byteLength).toString('hex'),
    ]);
    this.db.prepare(ENQUEUE_OUTBOX_SQL).run(JSON.stringify(rows), Date.now());
  }
}

export interface SqliteStoreOptions {
  /** A file path, or ':memory:'. */
  path: string;
  migrations: Migration[];
}

export class SqliteStore implements Store {
  readonly dialect = 'sqlite' as const;
  private readonly db: DatabaseSync;
  private readonly tx: SqliteTx;
  private tail: Promise<unknown> = Promise.resolve();
  private readonly leases = new Set<string>();

  /** Gives up this process's ownership of the file (none for ':memory:'). */
  private readonly disown: () => void;

  constructor(private readonly options: SqliteStoreOptions) {
    this.disown = options.path === ':memory:' ? () => {} : ownFile(options.path);
    try {
      this.db = new DatabaseSync(options.path);
    } catch (err) {
      this.disown();
      throw err;
    }
    this.db.exec('PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA busy_timeout = 5000;');
    this.tx = new SqliteTx(this.db);
  }

  migrate(): Promise<void> {
    return this.transaction(async (tx) => {
      await applyMigrations(
        {
          dialect: 'sqlite',
          exec: async (sql) => this.db.exec(sql),
          query: (sql, params) => tx.query(sql, params),
        },
        this.options.migrations,
      );
    });
  }

  transaction<T>(fn: (tx: Tx) => Promise<T>): Promise<T> {
    const run = async (): Promise<T> => {
      this.db.exec('BEGIN IMMEDIATE');
      try {
        const value = await fn(this.tx);
        this.db.exec('COMMIT');
        return value;
      } catch (err) {
        if (this.db.isTransaction) this.db.exec('ROLLBACK');
        throw err;
      }
    };
    const result = this.tail.then(run, run);
    this.tail = result.catch(() => {});
    return result;
  }

  async pendingOutbox(limit: number): Promise<OutboxRow[]> {
    return this.transaction(async (tx) => (await tx.query(PENDING_OUTBOX_SQL, [limit])).map(toOutboxRow));
  }

  async markOutboxSent(seqs: number[]): Promise<void> {
    if (seqs.length === 0) return;
    await this.transaction((tx) =>
      tx.execute('UPDATE outbox SET sent_at = $1 WHERE seq IN (SELECT value FROM json_each($2))', [
        Date.now(),
        JSON.stringify(seqs),
      ]),
    );
  }

  async tryAcquireLease(name: string): Promise<Lease | undefined> {
    if (this.leases.has(name)) return undefined;
    this.leases.add(name);
    // One process owns the file: the lease ends only with release().
    return { lost: new AbortController().signal, release: async () => void this.leases.delete(name) };
  }

  async close(): Promise<void> {
    await this.tail;
    this.db.close();
    this.disown();
  }
}
