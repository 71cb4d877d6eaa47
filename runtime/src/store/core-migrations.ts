// Core schema: orders, the transactional outbox and the consumer inbox.
import type { Migration } from './migration.js';

export const coreMigrations: Migration[] = [
  {
    version: 1,
    name: 'orders, outbox, inbox',
    postgres: `
      CREATE TABLE orders (
        id TEXT PRIMARY KEY,
        idempotency_key TEXT NOT NULL UNIQUE,
        request_hash TEXT NOT NULL,
        customer_id TEXT NOT NULL,
        state INTEGER NOT NULL,
        version BIGINT NOT NULL,
        workflow_generation BIGINT NOT NULL DEFAULT 0,
        created_at BIGINT NOT NULL,
        updated_at BIGINT NOT NULL,
        data BYTEA NOT NULL
      );
      CREATE INDEX orders_created ON orders (created_at, id);
      CREATE INDEX orders_customer_created ON orders (customer_id, created_at, id);
      CREATE INDEX orders_state_created ON orders (state, created_at, id);
      CREATE TABLE outbox (
        seq BIGSERIAL PRIMARY KEY,
        id TEXT NOT NULL,
        exchange TEXT NOT NULL,
        routing_key TEXT NOT NULL,
        type TEXT NOT NULL,
        correlation_id TEXT NOT NULL,
        ordering_key TEXT NOT NULL,
        headers TEXT,
        body BYTEA NOT NULL,
        created_at BIGINT NOT NULL,
        sent_at BIGINT
      );
      CREATE INDEX outbox_pending ON outbox (seq) WHERE sent_at IS NULL;
      CREATE TABLE inbox (
        consumer TEXT NOT NULL,
        message_id TEXT NOT NULL,
        processed_at BIGINT NOT NULL,
        PRIMARY KEY (consumer, message_id)
      );`,
    sqlite: `
      CREATE TABLE orders (
        id TEXT PRIMARY KEY,
        idempotency_key TEXT NOT NULL UNIQUE,
        request_hash TEXT NOT NULL,
        customer_id TEXT NOT NULL,
        state INTEGER NOT NULL,
        version INTEGER NOT NULL,
        workflow_generation INTEGER NOT NULL DEFAULT 0,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL,
        data BLOB NOT NULL
      );
      CREATE INDEX orders_created ON orders (created_at, id);
      CREATE INDEX orders_customer_created ON orders (customer_id, created_at, id);
      CREATE INDEX orders_state_created ON orders (state, created_at, id);
      CREATE TABLE outbox (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        id TEXT NOT NULL,
        exchange TEXT NOT NULL,
        routing_key TEXT NOT NULL,
        type TEXT NOT NULL,
        correlation_id TEXT NOT NULL,
        ordering_key TEXT NOT NULL,
        headers TEXT,
        body BLOB NOT NULL,
        created_at INTEGER NOT NULL,
        sent_at INTEGER
      );
      CREATE INDEX outbox_pending ON outbox (seq) WHERE sent_at IS NULL;
      CREATE TABLE inbox (
        consumer TEXT NOT NULL,
        message_id TEXT NOT NULL,
        processed_at INTEGER NOT NULL,
        PRIMARY KEY (consumer, message_id)
      );`,
  },
];
