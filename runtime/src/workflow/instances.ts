// Rows of workflow_instances, step_executions and exceptions, read and written inside the caller's
// transaction.
import type { ErrorClass } from '../gen/o2c/v1/common_pb.js';
import type { SqlParam, Tx } from '../store/types.js';
import type { StepContext } from './steps.js';

export type InstanceStatus =
  | 'running' // a command is out, waiting for its reply
  | 'retrying' // waiting for the retry timer
  | 'waiting' // an await step waits for its event
  | 'held' // fallout: a person has to act
  | 'compensating'
  | 'completed'
  | 'failed'
  | 'cancelled';

export const ACTIVE_STATUSES: ReadonlySet<InstanceStatus> = new Set([
  'running',
  'retrying',
  'waiting',
  'held',
]);

export interface Instance {
  orderId: string;
  workflow: string;
  generation: number;
  status: InstanceStatus;
  stepIndex: number;
  step: string;
  attempt: number;
  commandId: string | null;
  timerAt: number | null;
  context: StepContext;
  startedAt: number;
  updatedAt: number;
}

function toInstance(r: Record<string, unknown>): Instance {
  return {
    orderId: String(r.order_id),
    workflow: String(r.workflow),
    generation: Number(r.generation),
    status: r.status as InstanceStatus,
    stepIndex: Number(r.step_index),
    step: String(r.step),
    attempt: Number(r.attempt),
    commandId: (r.command_id as string | null) ?? null,
    timerAt: r.timer_at === null || r.timer_at === undefined ? null : Number(r.timer_at),
    context: JSON.parse(String(r.context)) as StepContext,
    startedAt: Number(r.started_at),
    updatedAt: Number(r.updated_at),
  };
}

const INSTANCE_COLUMNS =
  'order_id, workflow, generation, status, step_index, step, attempt, command_id, timer_at, context, started_at, updated_at';

/** `($1, $2, ...), ($n, ...)`: the placeholders of a multi-row VALUES list. */
function valuesList(rows: number, columns: number): string {
  return Array.from(
    { length: rows },
    (_, r) => `(${Array.from({ length: columns }, (_, c) => `$${r * columns + c + 1}`).join(', ')})`,
  ).join(', ');
}

/** Rows per multi-row statement: well under both drivers' parameter limits. */
const ROWS_PER_STATEMENT = 200;

async function insertRows(
  tx: Tx,
  head: string,
  columns: number,
  rows: SqlParam[][],
  tail = '',
): Promise<void> {
  for (let start = 0; start < rows.length; start += ROWS_PER_STATEMENT) {
    const chunk = rows.slice(start, start + ROWS_PER_STATEMENT);
    await tx.execute(`${head} VALUES ${valuesList(chunk.length, columns)}${tail}`, chunk.flat());
  }
}

/**
 * Reads this workflow's instances of the given orders and, on PostgreSQL, locks them until the
 * transaction ends. The rows are locked in order-id order, so two replicas whose batches share
 * orders wait for each other instead of deadlocking.
 */
export async function lockInstances(
  tx: Tx,
  workflow: string,
  orderIds: readonly string[],
): Promise<Map<string, Instance>> {
  const ids = [...new Set(orderIds)].sort();
  const found = new Map<string, Instance>();
  if (ids.length === 0) return found;
  const rows =
    tx.dialect === 'postgres'
      ? await tx.query(
          'SELECT * FROM workflow_instances WHERE workflow = $1 AND order_id = ANY($2::text[]) ORDER BY order_id FOR UPDATE',
          [workflow, ids as unknown as SqlParam],
        )
      : await tx.query(
          `SELECT * FROM workflow_instances WHERE workflow = $1 AND order_id IN (${ids.map((_, i) => `$${i + 2}`).join(', ')})`,
          [workflow, ...ids],
        );
  for (const r of rows) {
    const inst = toInstance(r);
    found.set(inst.orderId, inst);
  }
  return found;
}

/** Inserts new instances and updates changed ones, in one statement per 200. */
export async function writeInstances(tx: Tx, instances: readonly Instance[]): Promise<void> {
  await insertRows(
    tx,
    `INSERT INTO workflow_instances (${INSTANCE_COLUMNS})`,
    12,
    instances.map((inst) => [
      inst.orderId,
      inst.workflow,
      inst.generation,
      inst.status,
      inst.stepIndex,
      inst.step,
      inst.attempt,
      inst.commandId,
      inst.timerAt,
      JSON.stringify(inst.context),
      inst.startedAt,
      inst.updatedAt,
    ]),
    ` ON CONFLICT (order_id) DO UPDATE SET status = excluded.status, step_index = excluded.step_index,
      step = excluded.step, attempt = excluded.attempt, command_id = excluded.command_id,
      timer_at = excluded.timer_at, context = excluded.context, updated_at = excluded.updated_at`,
  );
}

/**
 * This workflow's instances whose timer is due, oldest first, locked. PostgreSQL skips rows another
 * replica holds (it is firing them, or handling a delivery for the order), so no timer fires twice.
 */
export async function dueInstances(
  tx: Tx,
  workflow: string,
  now: number,
  limit: number,
): Promise<Instance[]> {
  const lock = tx.dialect === 'postgres' ? ' FOR UPDATE SKIP LOCKED' : '';
  const rows = await tx.query(
    `SELECT * FROM workflow_instances WHERE workflow = $1 AND timer_at IS NOT NULL AND timer_at <= $2 ORDER BY timer_at LIMIT $3${lock}`,
    [workflow, now, limit],
  );
  return rows.map(toInstance);
}

/** How many of this workflow's timers are due and not fired yet. */
export async function countDueTimers(tx: Tx, workflow: string, now: number): Promise<number> {
  const rows = await tx.query<{ n: number | string }>(
    'SELECT count(*) AS n FROM workflow_instances WHERE workflow = $1 AND timer_at IS NOT NULL AND timer_at <= $2',
    [workflow, now],
  );
  return Number(rows[0]?.n ?? 0);
}

export interface StepRecord {
  orderId: string;
  step: string;
  attempt: number;
  outcome: 'started' | 'succeeded' | 'failed' | 'retrying' | 'compensated' | 'skipped' | 'timed_out' | 'held';
  errorClass?: ErrorClass;
  message?: string;
  startedAt: number;
  endedAt?: number;
}

export async function recordSteps(tx: Tx, records: readonly StepRecord[]): Promise<void> {
  await insertRows(
    tx,
    'INSERT INTO step_executions (order_id, step, attempt, outcome, error_class, message, started_at, ended_at)',
    8,
    records.map((r) => [
      r.orderId,
      r.step,
      r.attempt,
      r.outcome,
      r.errorClass ?? 0,
      r.message ?? '',
      r.startedAt,
      r.endedAt ?? null,
    ]),
  );
}

export async function stepHistory(tx: Tx, orderId: string): Promise<StepRecord[]> {
  const rows = await tx.query('SELECT * FROM step_executions WHERE order_id = $1 ORDER BY id', [orderId]);
  return rows.map((r) => ({
    orderId: String(r.order_id),
    step: String(r.step),
    attempt: Number(r.attempt),
    outcome: r.outcome as StepRecord['outcome'],
    errorClass: Number(r.error_class) as ErrorClass,
    message: String(r.message),
    startedAt: Number(r.started_at),
    endedAt: r.ended_at === null ? undefined : Number(r.ended_at),
  }));
}

export interface ExceptionRow {
  id: string;
  orderId: string;
  step: string;
  errorClass: ErrorClass;
  message: string;
  attempts: number;
  payload: string;
  status: 'open' | 'resolved';
  openedAt: number;
  resolvedAt: number | null;
  resolution: string;
}

function toException(r: Record<string, unknown>): ExceptionRow {
  return {
    id: String(r.id),
    orderId: String(r.order_id),
    step: String(r.step),
    errorClass: Number(r.error_class) as ErrorClass,
    message: String(r.message),
    attempts: Number(r.attempts),
    payload: String(r.payload),
    status: r.status as ExceptionRow['status'],
    openedAt: Number(r.opened_at),
    resolvedAt: r.resolved_at === null ? null : Number(r.resolved_at),
    resolution: String(r.resolution),
  };
}

export async function openExceptions(tx: Tx, rows: readonly ExceptionRow[]): Promise<void> {
  await insertRows(
    tx,
    'INSERT INTO exceptions (id, order_id, step, error_class, message, attempts, payload, status, opened_at, resolved_at, resolution)',
    11,
    rows.map((row) => [
      row.id,
      row.orderId,
      row.step,
      row.errorClass,
      row.message,
      row.attempts,
      row.payload,
      row.status,
      row.openedAt,
      row.resolvedAt,
      row.resolution,
    ]),
  );
}

export async function getException(tx: Tx, id: string): Promise<ExceptionRow | undefined> {
  const rows = await tx.query('SELECT * FROM exceptions WHERE id = $1', [id]);
  return rows[0] ? toException(rows[0]) : undefined;
}

export async function resolveException(tx: Tx, id: string, resolution: string, now: number): Promise<void> {
  await tx.execute(
    "UPDATE exceptions SET status = 'resolved', resolved_at = $2, resolution = $3 WHERE id = $1",
    [id, now, resolution],
  );
}

export async function resolveOpenExceptions(
  tx: Tx,
  orderId: string,
  resolution: string,
  now: number,
): Promise<void> {
  await tx.execute(
    "UPDATE exceptions SET status = 'resolved', resolved_at = $2, resolution = $3 WHERE order_id = $1 AND status = 'open'",
    [orderId, now, resolution],
  );
}

export async function listExceptions(
  tx: Tx,
  filter: { status?: string; orderId?: string; step?: string; limit: number },
): Promise<ExceptionRow[]> {
  const where: string[] = [];
  const params: (string | number)[] = [];
  const p = (v: string | number) => {
    params.push(v);
    return `$${params.length}`;
  };
  const status = filter.status || 'open';
  if (status !== 'all') where.push(`status = ${p(status)}`);
  if (filter.orderId) where.push(`order_id = ${p(filter.orderId)}`);
  if (filter.step) where.push(`step = ${p(filter.step)}`);
  const rows = await tx.query(
    `SELECT * FROM exceptions ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY opened_at DESC, id DESC LIMIT ${p(filter.limit)}`,
    params,
  );
  return rows.map(toException);
}

/** Events kept for these orders until they reach their await step, by order id and event type. */
export async function earlyEvents(
  tx: Tx,
  orderIds: readonly string[],
): Promise<Map<string, Map<string, Uint8Array>>> {
  const ids = [...new Set(orderIds)];
  const found = new Map<string, Map<string, Uint8Array>>();
  if (ids.length === 0) return found;
  const rows =
    tx.dialect === 'postgres'
      ? await tx.query<{ order_id: string; type: string; body: Uint8Array }>(
          'SELECT order_id, type, body FROM early_events WHERE order_id = ANY($1::text[])',
          [ids as unknown as SqlParam],
        )
      : await tx.query<{ order_id: string; type: string; body: Uint8Array }>(
          `SELECT order_id, type, body FROM early_events WHERE order_id IN (${ids.map((_, i) => `$${i + 1}`).join(', ')})`,
          ids,
        );
  for (const r of rows) {
    const byType = found.get(r.order_id) ?? new Map<string, Uint8Array>();
    byType.set(r.type, r.body);
    found.set(r.order_id, byType);
  }
  return found;
}

export async function keepEarlyEvents(
  tx: Tx,
  events: readonly { orderId: string; type: string; body: Uint8Array }[],
  now: number,
): Promise<void> {
  await insertRows(
    tx,
    'INSERT INTO early_events (order_id, type, body, received_at)',
    4,
    events.map((e) => [e.orderId, e.type, e.body, now]),
    ' ON CONFLICT DO NOTHING',
  );
}

export async function dropEarlyEvent(tx: Tx, orderId: string, type: string): Promise<void> {
  await tx.execute('DELETE FROM early_events WHERE order_id = $1 AND type = $2', [orderId, type]);
}
