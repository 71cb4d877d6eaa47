// Rows of workflow_instances, step_executions and exceptions, read and written inside the caller's
// transaction.
import type { ErrorClass } from '../gen/o2c/v1/common_pb.js';
import { newUlid } from '../orders/ids.js';
import type { Tx } from '../store/types.js';
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

/** Reads an instance and, on PostgreSQL, locks it until the transaction ends. */
export async function lockInstance(tx: Tx, orderId: string): Promise<Instance | undefined> {
  const lock = tx.dialect === 'postgres' ? ' FOR UPDATE' : '';
  const rows = await tx.query(`SELECT * FROM workflow_instances WHERE order_id = $1${lock}`, [orderId]);
  return rows[0] ? toInstance(rows[0]) : undefined;
}

export async function insertInstance(tx: Tx, inst: Instance): Promise<boolean> {
  const n = await tx.execute(
    `INSERT INTO workflow_instances (order_id, workflow, generation, status, step_index, step, attempt, command_id, timer_at, context, started_at, updated_at)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) ON CONFLICT (order_id) DO NOTHING`,
    [
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
    ],
  );
  return n === 1;
}

export async function updateInstance(tx: Tx, inst: Instance): Promise<void> {
  await tx.execute(
    `UPDATE workflow_instances SET status = $2, step_index = $3, step = $4, attempt = $5, command_id = $6, timer_at = $7, context = $8, updated_at = $9
     WHERE order_id = $1`,
    [
      inst.orderId,
      inst.status,
      inst.stepIndex,
      inst.step,
      inst.attempt,
      inst.commandId,
      inst.timerAt,
      JSON.stringify(inst.context),
      inst.updatedAt,
    ],
  );
}

/** Instances whose timer is due, oldest first. PostgreSQL skips rows another replica holds. */
export async function dueInstances(tx: Tx, now: number, limit: number): Promise<Instance[]> {
  const lock = tx.dialect === 'postgres' ? ' FOR UPDATE SKIP LOCKED' : '';
  const rows = await tx.query(
    `SELECT * FROM workflow_instances WHERE timer_at IS NOT NULL AND timer_at <= $1 ORDER BY timer_at LIMIT $2${lock}`,
    [now, limit],
  );
  return rows.map(toInstance);
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

export async function recordStep(tx: Tx, r: StepRecord): Promise<void> {
  await tx.execute(
    'INSERT INTO step_executions (order_id, step, attempt, outcome, error_class, message, started_at, ended_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)',
    [
      r.orderId,
      r.step,
      r.attempt,
      r.outcome,
      r.errorClass ?? 0,
      r.message ?? '',
      r.startedAt,
      r.endedAt ?? null,
    ],
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

export async function openException(
  tx: Tx,
  e: Omit<ExceptionRow, 'id' | 'status' | 'resolvedAt' | 'resolution'>,
): Promise<ExceptionRow> {
  const row: ExceptionRow = {
    ...e,
    id: `exc_${newUlid()}`,
    status: 'open',
    resolvedAt: null,
    resolution: '',
  };
  await tx.execute(
    'INSERT INTO exceptions (id, order_id, step, error_class, message, attempts, payload, status, opened_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)',
    [
      row.id,
      row.orderId,
      row.step,
      row.errorClass,
      row.message,
      row.attempts,
      row.payload,
      row.status,
      row.openedAt,
    ],
  );
  return row;
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

export async function takeEarlyEvent(tx: Tx, orderId: string, type: string): Promise<Uint8Array | undefined> {
  const rows = await tx.query<{ body: Uint8Array }>(
    'SELECT body FROM early_events WHERE order_id = $1 AND type = $2',
    [orderId, type],
  );
  if (!rows[0]) return undefined;
  await tx.execute('DELETE FROM early_events WHERE order_id = $1 AND type = $2', [orderId, type]);
  return rows[0].body;
}

export async function keepEarlyEvent(
  tx: Tx,
  orderId: string,
  type: string,
  body: Uint8Array,
  now: number,
): Promise<void> {
  await tx.execute(
    'INSERT INTO early_events (order_id, type, body, received_at) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING',
    [orderId, type, body, now],
  );
}
