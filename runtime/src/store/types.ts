// The store interface shared by the PostgreSQL and embedded SQLite implementations: orders, the
// transactional outbox, the inbox that makes consumers idempotent, and the transaction primitive the
// other modules (workflow, connectors, bus) build on.

/** A SQL statement with `$1`-style placeholders; the SQLite store rewrites them. */
export type SqlParam = string | number | bigint | boolean | null | Uint8Array;

export interface Tx {
  /** Runs a query and returns its rows. Placeholders are `$1`, `$2`, ... in both dialects. */
  query<R extends Record<string, unknown> = Record<string, unknown>>(
    sql: string,
    params?: SqlParam[],
  ): Promise<R[]>;
  /** Runs a statement and returns how many rows it touched. */
  execute(sql: string, params?: SqlParam[]): Promise<number>;
  /** Records that `consumer` handled message `messageId`; false when it already had (a duplicate). */
  claimInbox(consumer: string, messageId: string): Promise<boolean>;
  /**
   * Claims many messages for `consumer` in one statement; resolves with the ids this call newly
   * claimed (an id already claimed, by an earlier transaction or twice in `messageIds`, counts once).
   */
  claimInboxMany(consumer: string, messageIds: readonly string[]): Promise<Set<string>>;
  /**
   * Appends messages to the outbox in one statement, in write order; the relay publishes them after
   * this transaction commits.
   */
  enqueueOutbox(messages: OutboxMessage[]): Promise<void>;
  readonly dialect: Dialect;
}

export type Dialect = 'postgres' | 'sqlite';

/** A message waiting in the outbox for the relay. */
export interface OutboxMessage {
  /** The Envelope id; AMQP message_id. */
  id: string;
  exchange: string;
  routingKey: string;
  /** Protobuf-encoded Envelope. */
  body: Uint8Array;
  /** Envelope type, AMQP `type`. */
  type: string;
  correlationId: string;
  /** Messages with the same key are published in the order they were written. */
  orderingKey: string;
  headers?: Record<string, string>;
}

/** An outbox row read by the relay. */
export interface OutboxRow extends OutboxMessage {
  seq: number;
  createdAt: number;
}

export interface Store {
  readonly dialect: Dialect;
  /** Applies pending schema migrations; safe to call from several processes at once. */
  migrate(): Promise<void>;
  /** Runs `fn` in one transaction; commits when it resolves, rolls back when it throws. */
  transaction<T>(fn: (tx: Tx) => Promise<T>): Promise<T>;
  /** Unsent outbox rows in write order, at most `limit`. */
  pendingOutbox(limit: number): Promise<OutboxRow[]>;
  /** Marks outbox rows as published (after the broker confirmed them). */
  markOutboxSent(seqs: number[]): Promise<void>;
  /**
   * Takes the named lease when no other process holds it (PostgreSQL: a session advisory lock on a
   * dedicated connection; SQLite: the embedded store serves one process). Used so that one outbox
   * relay or change poller per store runs at a time, which keeps per-key order.
   */
  tryAcquireLease(name: string): Promise<Lease | undefined>;
  close(): Promise<void>;
}

export interface Lease {
  /**
   * Aborted when the lease is gone without `release()` (PostgreSQL: the session holding the lock
   * ended, e.g. a database restart), so another holder may already have it: stop working under it.
   */
  readonly lost: AbortSignal;
  release(): Promise<void>;
}
