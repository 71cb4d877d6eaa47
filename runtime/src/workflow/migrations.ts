// Workflow state: one instance per order (where it is, what it waits for, its durable timer), the
// step history, fallout exceptions, events that arrived before the order reached its await step,
// and every Workflow generation that orders still run on.
import type { Migration } from '../store/migration.js';

const tables = (blob: string, big: string, serial: string) => `
  CREATE TABLE workflow_specs (
    workflow TEXT NOT NULL,
    generation ${big} NOT NULL,
    spec TEXT NOT NULL,
    created_at ${big} NOT NULL,
    PRIMARY KEY (workflow, generation)
  );
  CREATE TABLE workflow_instances (
    order_id TEXT PRIMARY KEY,
    workflow TEXT NOT NULL,
    generation ${big} NOT NULL,
    status TEXT NOT NULL,
    step_index INTEGER NOT NULL,
    step TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    command_id TEXT,
    timer_at ${big},
    context TEXT NOT NULL,
    started_at ${big} NOT NULL,
    updated_at ${big} NOT NULL
  );
  CREATE INDEX workflow_instances_timer ON workflow_instances (timer_at) WHERE timer_at IS NOT NULL;
  CREATE TABLE step_executions (
    id ${serial},
    order_id TEXT NOT NULL,
    step TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    outcome TEXT NOT NULL,
    error_class INTEGER NOT NULL DEFAULT 0,
    message TEXT NOT NULL DEFAULT '',
    started_at ${big} NOT NULL,
    ended_at ${big}
  );
  CREATE INDEX step_executions_order ON step_executions (order_id, id);
  CREATE TABLE exceptions (
    id TEXT PRIMARY KEY,
    order_id TEXT NOT NULL,
    step TEXT NOT NULL,
    error_class INTEGER NOT NULL,
    message TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    payload TEXT NOT NULL,
    status TEXT NOT NULL,
    opened_at ${big} NOT NULL,
    resolved_at ${big},
    resolution TEXT NOT NULL DEFAULT ''
  );
  CREATE INDEX exceptions_status ON exceptions (status, opened_at);
  CREATE INDEX exceptions_order ON exceptions (order_id);
  CREATE TABLE early_events (
    order_id TEXT NOT NULL,
    type TEXT NOT NULL,
    body ${blob} NOT NULL,
    received_at ${big} NOT NULL,
    PRIMARY KEY (order_id, type)
  );`;

export const workflowMigrations: Migration[] = [
  {
    version: 200,
    name: 'workflow instances, step history, exceptions',
    postgres: tables('BYTEA', 'BIGINT', 'BIGSERIAL PRIMARY KEY'),
    sqlite: tables('BLOB', 'INTEGER', 'INTEGER PRIMARY KEY AUTOINCREMENT'),
  },
];
