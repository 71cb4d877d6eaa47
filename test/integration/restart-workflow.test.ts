// The workflow role (order API, engine, outbox relay) and the distributor's connectors, each in a
// process of its own, under steady order load while their PostgreSQL restarts and then while their
// RabbitMQ is stopped for 10 s: no process exits, every accepted order reaches PAID exactly once in
// the store and in the ERP, and every client error either says for sure the order was not stored or
// says the outcome is unknown, and then a retry with the same key returns the stored order. Both
// services are private to this file (support/private-services.ts); the shared ones are not touched.
// The connectors keep their replies and the events they originate (dispatch, payment) in their own
// store's outbox, so a broker outage only delays those too; a simulator event whose outbox write the
// database restart cuts off is found by the await steps' fallback (pollAfter 3 s here), and the
// figures count the orders that needed it.
import { type Client, createClient } from '@connectrpc/connect';
import { createConnectTransport } from '@connectrpc/connect-node';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { OrderState } from '../../runtime/src/gen/o2c/v1/entities_pb.js';
import { OrderService } from '../../runtime/src/gen/o2c/v1/order_service_pb.js';
import { errorKind, type Submission, steadyLoad, submitOnce, waitUntilPaid } from './support/order-load.js';
import {
  type PrivatePostgres,
  type PrivateRabbit,
  startPrivatePostgres,
  startPrivateRabbit,
} from './support/private-services.js';
import { type RoleProcess, startRoleProcess } from './support/role-process.js';

const RATE = Number(process.env.O2C_RESTART_RATE ?? 30);
const LOAD_MS = 20_000;
const NS = 'restart-wf';

let postgres: PrivatePostgres;
let rabbit: PrivateRabbit;
let workflowDb: pg.Pool;
let workflow: RoleProcess;
let connectors: RoleProcess;
let client: Client<typeof OrderService>;
const figures: Record<string, unknown> = {};

beforeAll(async () => {
  [postgres, rabbit] = await Promise.all([startPrivatePostgres('wf'), startPrivateRabbit('wf')]);
  const workflowUrl = await postgres.createDatabase('o2c_restart_workflow');
  const connectorsUrl = await postgres.createDatabase('o2c_restart_connectors');
  const env = { O2C_BROKER_URL: rabbit.url, O2C_NAMESPACE: NS };
  // Connectors first: their command queues exist before the workflow sends commands.
  connectors = await startRoleProcess('connectors', { ...env, O2C_STORE_URL: connectorsUrl });
  workflow = await startRoleProcess('workflow', { ...env, O2C_STORE_URL: workflowUrl });
  workflowDb = new pg.Pool({ connectionString: workflowUrl, max: 2 });
  workflowDb.on('error', () => {}); // this pool sees the restart too
  client = createClient(
    OrderService,
    createConnectTransport({ baseUrl: `http://127.0.0.1:${workflow.ready.apiPort}`, httpVersion: '1.1' }),
  );
}, 120_000);

afterAll(async () => {
  console.log(`restart-workflow figures: ${JSON.stringify(figures, null, 1)}`);
  await workflow?.stop();
  await connectors?.stop();
  await workflowDb?.end();
  await rabbit?.close();
  await postgres?.close();
});

async function query<R extends Record<string, unknown>>(sql: string, params: unknown[] = []): Promise<R[]> {
  // The test's own reads retry over the restart window like any client would.
  for (let attempt = 0; ; attempt++) {
    try {
      return (await workflowDb.query(sql, params)).rows as R[];
    } catch (err) {
      if (attempt > 50) throw err;
      await new Promise((r) => setTimeout(r, 200));
    }
  }
}

async function storedIdOf(key: string): Promise<string | undefined> {
  const rows = await query<{ id: string }>('SELECT id FROM orders WHERE idempotency_key = $1', [key]);
  return rows[0]?.id;
}

/**
 * Every answer is right: an accepted order is stored under its key; a "not stored" refusal left
 * nothing; an "outcome unknown" is resolved by a retry with the same key, which returns the order
 * stored under it. Returns the accepted (key -> order id) and the error counts.
 */
async function settle(submissions: Submission[]) {
  const accepted = new Map<string, string>();
  const errors = { outcomeUnknown: 0, notStored: 0, other: [] as string[] };
  for (const s of submissions) {
    if (s.orderId) {
      expect(await storedIdOf(s.key), `the order accepted for ${s.key}`).toBe(s.orderId);
      accepted.set(s.key, s.orderId);
      continue;
    }
    const kind = errorKind(s.error!);
    if (kind === 'other') {
      errors.other.push(`${s.key}: ${s.error!.code} ${s.error!.message}`);
      continue;
    }
    if (kind === 'not-stored') {
      errors.notStored++;
      expect(await storedIdOf(s.key), `${s.key} was refused as not stored`).toBeUndefined();
    } else {
      errors.outcomeUnknown++;
    }
    const before = await storedIdOf(s.key);
    const retry = await submitOnce(client, s.key);
    expect(retry.error, `the retry of ${s.key}`).toBeUndefined();
    if (before) expect(retry.orderId, `the retry of ${s.key} returns the stored order`).toBe(before);
    expect(await storedIdOf(s.key)).toBe(retry.orderId);
    accepted.set(s.key, retry.orderId!);
  }
  return { accepted, errors };
}

/** Milliseconds from `upAt` to the first order that became PAID after it. */
/** Orders whose awaited event never came, so the engine asked the system (await fallback). */
async function askedByFallback(): Promise<number> {
  const [row] = await query<{ n: number }>(
    "SELECT count(DISTINCT order_id)::int AS n FROM step_executions WHERE step LIKE 'poll:%'",
  );
  return row?.n ?? 0;
}

async function firstPaidAfter(upAt: number): Promise<number | undefined> {
  const [row] = await query<{ at: number | null }>(
    'SELECT min(updated_at) AS at FROM orders WHERE state = $1 AND updated_at >= $2',
    [OrderState.PAID, upAt],
  );
  return row?.at ? Number(row.at) - upAt : undefined;
}

function firstAcceptedAfter(submissions: Submission[], downAt: number, upAt: number): number | undefined {
  const times = submissions.filter((s) => s.orderId && s.sentAt >= downAt).map((s) => s.answeredAt);
  return times.length > 0 ? Math.max(0, Math.min(...times) - upAt) : undefined;
}

function expectAlive(): void {
  expect(workflow.exited(), 'the workflow process').toBeUndefined();
  expect(connectors.exited(), 'the connectors process').toBeUndefined();
}

/** One order per key in the store, every accepted one among them, one ERP sales order per order. */
async function expectNoDuplicates(accepted: Map<string, string>): Promise<void> {
  const dup = await query('SELECT idempotency_key FROM orders GROUP BY idempotency_key HAVING count(*) > 1');
  expect(dup).toEqual([]);
  const rows = await query<{ id: string }>('SELECT id FROM orders');
  const stored = new Set(rows.map((r) => r.id));
  expect(
    [...accepted.values()].filter((id) => !stored.has(id)),
    'accepted orders missing',
  ).toEqual([]);
  const stats = await connectors.stats();
  expect(stats.salesOrders, 'one ERP sales order per order').toBe(stored.size);
}

describe('the workflow role under 30 orders/s', () => {
  const allAccepted = new Map<string, string>();

  it('survives a PostgreSQL restart: no exit, every order PAID once, no client told a stored order failed', async () => {
    const { submissions, during } = await steadyLoad({
      client,
      prefix: 'pg',
      ratePerSecond: RATE,
      durationMs: LOAD_MS,
      during: async () => {
        await new Promise((r) => setTimeout(r, 7_000));
        return postgres.restart({ downMs: 2_000 });
      },
    });
    expectAlive();
    const { accepted, errors } = await settle(submissions);
    expect(errors.other, 'client errors that are neither "not stored" nor "outcome unknown"').toEqual([]);
    for (const [k, v] of accepted) allAccepted.set(k, v);
    await waitUntilPaid(query, [...accepted.values()], 90_000, 500);
    expectAlive();
    await expectNoDuplicates(allAccepted);
    // The relay saw its lease's session die (or its own query fail) and carried on.
    const relayNoticed = workflow.logs.filter((l) =>
      /outbox relay lost (its store lease|the store)/.test(String(l.msg)),
    ).length;
    expect(relayNoticed).toBeGreaterThan(0);
    figures.postgres = {
      relayNoticed,
      orders: accepted.size,
      outcomeUnknown: errors.outcomeUnknown,
      notStored: errors.notStored,
      downMs: during.upAt - during.downAt,
      firstAcceptedSubmitAfterUpMs: firstAcceptedAfter(submissions, during.downAt, during.upAt),
      firstPaidOrderAfterUpMs: await firstPaidAfter(during.upAt),
      ordersAskedByFallbackSoFar: await askedByFallback(),
    };
  }, 180_000);

  it('answers submits whose session the database terminates "outcome unknown" and submits past the reconnect window of a 9 s outage "not accepted", and a retry with the same key settles both', async () => {
    // Submits held inside the database by a table lock have their sessions terminated (57P01, what a
    // restart does to them): their outcome is unknown. Submits sent while the database is then down
    // for 9 s wait for it (5 s) and fail without having reached it.
    const locker = new pg.Client({ connectionString: postgres.url('o2c_restart_workflow') });
    locker.on('error', () => {}); // the restart ends this session too
    await locker.connect();
    await locker.query('BEGIN');
    await locker.query('LOCK TABLE orders IN SHARE ROW EXCLUSIVE MODE');
    let downAt = 0;
    let upAt = 0;
    let terminated = 0;
    const cutOff = Array.from({ length: 5 }, (_, i) => submitOnce(client, `cut-${i}`));
    let waiting: Promise<Submission>[] = [];
    try {
      // Sessions of this database waiting for the lock: the submits (the engine is idle now). A
      // statement can wait while still being parsed, when pg_stat_activity shows the previous text.
      const blocked = `SELECT pid FROM pg_stat_activity WHERE datname = current_database()
        AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()`;
      const deadline = Date.now() + 10_000;
      while ((await locker.query(blocked)).rowCount! < 5 && Date.now() < deadline)
        await new Promise((r) => setTimeout(r, 100));
      // What a restart does to a session in the middle of a statement, to exactly these.
      terminated = (await locker.query(`SELECT pg_terminate_backend(pid) FROM (${blocked}) b`)).rowCount!;
      expect(terminated, 'submits that reached the database').toBeGreaterThan(0);
      await postgres.stop();
      downAt = Date.now();
      waiting = Array.from({ length: 5 }, (_, i) => submitOnce(client, `down-${i}`));
      await new Promise((r) => setTimeout(r, 9_000));
    } finally {
      if (!downAt) await locker.query('ROLLBACK').catch(() => {});
      else await postgres.start();
      upAt = Date.now();
      await locker.end().catch(() => {});
    }
    const cut = await Promise.all(cutOff);
    const down = await Promise.all(waiting);
    expectAlive();
    const answers = [...cut, ...down].map((s) => `${s.key}: ${s.error?.message ?? 'accepted'}`).join('; ');
    // Cut off inside the database (57P01): they may have been written, so the outcome is unknown.
    // Any that had not reached the database yet are answered like the ones below, or accepted.
    const unknown = cut.filter((s) => s.error && errorKind(s.error) === 'outcome-unknown');
    expect(unknown.length, answers).toBeGreaterThan(0);
    // Never got a connection: not written, and the answer says so.
    for (const s of down) expect(s.error && errorKind(s.error), answers).toBe('not-stored');
    const { accepted, errors } = await settle([...cut, ...down]);
    expect(errors.other).toEqual([]);
    for (const [k, v] of accepted) allAccepted.set(k, v);
    await waitUntilPaid(query, [...accepted.values()], 60_000, 500);
    await expectNoDuplicates(allAccepted);
    figures.postgresCutOff = {
      outcomeUnknown: errors.outcomeUnknown,
      notStored: errors.notStored,
      downMs: upAt - downAt,
      firstPaidOrderAfterUpMs: await firstPaidAfter(upAt),
    };
  }, 120_000);

  it('survives RabbitMQ stopped for 10 s: no exit, orders accepted throughout, every order PAID once', async () => {
    const { submissions, during } = await steadyLoad({
      client,
      prefix: 'mq',
      ratePerSecond: RATE,
      durationMs: LOAD_MS,
      during: async () => {
        await new Promise((r) => setTimeout(r, 4_000));
        return rabbit.restart({ downMs: 10_000 });
      },
    });
    expectAlive();
    // The API needs only the store: nothing is refused while the broker is away.
    expect(submissions.filter((s) => s.error).map((s) => `${s.key}: ${s.error!.message}`)).toEqual([]);
    const { accepted } = await settle(submissions);
    for (const [k, v] of accepted) allAccepted.set(k, v);
    await waitUntilPaid(query, [...accepted.values()], 120_000, 500);
    expectAlive();
    await expectNoDuplicates(allAccepted);
    figures.rabbitmq = {
      orders: accepted.size,
      downMs: during.upAt - during.downAt,
      firstPaidOrderAfterUpMs: await firstPaidAfter(during.upAt),
      ordersAskedByFallbackSoFar: await askedByFallback(),
    };
  }, 240_000);
});
