// Scale-out: three workflow roles, each an OS process of its own, share one Workflow's orders on one
// PostgreSQL database — competing consumers on the Workflow's queues, each transition under a row
// lock on the order's workflow instance, the inbox for redeliveries and one outbox relay at a time
// under its lease. A burst of orders spread over the three APIs: every order PAID exactly once, one
// ERP sales order each, and no order handled by two replicas at once — each order's step records
// form one sequential history (no attempt started twice, none overlapping another), each order step
// got one command, the simulated systems (with latency, so calls overlap if they could) never saw
// two calls for one order step at once, and no dispatch or payment event that raced its step's
// reply (two replicas holding one order's deliveries at once) was lost. Then one replica is killed
// with SIGKILL in the middle of a second burst, and the survivors finish every accepted order
// exactly once. Last, the embedded SQLite store keeps a Workflow to one process: a second one on
// the same file is refused.
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fromBinary } from '@bufbuild/protobuf';
import { type Client, Code, createClient } from '@connectrpc/connect';
import { createConnectTransport } from '@connectrpc/connect-node';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { queueName } from '../../runtime/src/bus/topology.js';
import { COMMAND_TYPE } from '../../runtime/src/connectors/commands.js';
import { OrderState } from '../../runtime/src/gen/o2c/v1/entities_pb.js';
import { EnvelopeSchema } from '../../runtime/src/gen/o2c/v1/events_pb.js';
import { OrderService } from '../../runtime/src/gen/o2c/v1/order_service_pb.js';
import { deleteQueues } from '../../runtime/src/local/stack.js';
import { EventType } from '../../runtime/src/orders/envelope.js';
import { type Submission, submitOnce, waitUntilPaid } from './support/order-load.js';
import { type RoleProcess, startRoleProcess } from './support/role-process.js';
import { BROKER_URL, freshDatabase } from './support/services.js';

const NS = 'wf-replicas';
const REPLICAS = 3;
const BURST = Number(process.env.O2C_REPLICAS_BURST ?? 240);
const CONCURRENCY = 24;

type OrderClient = Client<typeof OrderService>;

interface Replica {
  process: RoleProcess;
  client: OrderClient;
  killed: boolean;
}

let workflowUrl: string;
let db: pg.Pool;
let connectors: RoleProcess;
const replicas: Replica[] = [];
const figures: Record<string, unknown> = {};

async function startReplica(): Promise<Replica> {
  const process = await startRoleProcess('workflow', {
    O2C_BROKER_URL: BROKER_URL,
    O2C_NAMESPACE: NS,
    O2C_STORE_URL: workflowUrl,
  });
  const client = createClient(
    OrderService,
    createConnectTransport({ baseUrl: `http://127.0.0.1:${process.ready.apiPort}`, httpVersion: '1.1' }),
  );
  return { process, client, killed: false };
}

beforeAll(async () => {
  workflowUrl = await freshDatabase('o2c_test_wf_replicas');
  const connectorsUrl = await freshDatabase('o2c_test_wf_replicas_connectors');
  // The simulated systems take 2-8 ms a call, so two calls for one order step would overlap; the
  // dispatch and the payment happen at once, so their events race the replies of the release and
  // invoice steps and two replicas hold deliveries for one order at the same time.
  connectors = await startRoleProcess('connectors', {
    O2C_BROKER_URL: BROKER_URL,
    O2C_NAMESPACE: NS,
    O2C_STORE_URL: connectorsUrl,
    O2C_SIM_LATENCY_MS: '2-8',
    O2C_SIM_EVENTS_AFTER_MS: '0',
  });
  // The first replica migrates the schema; the others start together against it.
  replicas.push(await startReplica());
  replicas.push(...(await Promise.all(Array.from({ length: REPLICAS - 1 }, () => startReplica()))));
  // The test's one connection, opened now and kept: a shared server near its connection limit
  // refuses new ones.
  db = new pg.Pool({ connectionString: workflowUrl, max: 1, idleTimeoutMillis: 0 });
  await db.query('SELECT 1');
}, 120_000);

afterAll(async () => {
  console.log(`workflow-replicas figures: ${JSON.stringify(figures, null, 1)}`);
  for (const r of replicas) if (!r.killed) await r.process.stop();
  await connectors?.stop();
  await db?.end();
  const retry = { maxAttempts: 1, backoff: { initialMs: 1, maxMs: 1, multiplier: 1 } };
  await deleteQueues(BROKER_URL, [
    ...['orders', 'replies', 'events'].map((p) => ({
      name: queueName(NS, 'workflow', 'distributor', p),
      bindings: [],
      retry,
    })),
    ...['erp', 'crm', 'wms', 'tax', 'payment'].map((c) => ({
      name: queueName(NS, 'connector', c, 'commands'),
      bindings: [],
      retry,
    })),
  ]);
});

async function query<R extends Record<string, unknown>>(sql: string, params: unknown[] = []): Promise<R[]> {
  return (await db.query(sql, params)).rows as R[];
}

/**
 * Submits `keys` over the live replicas' APIs in turn, CONCURRENCY at a time; `afterEach` runs after
 * every answer (a test kills a replica from it). A submit whose replica died under it is asked again
 * with the same key on a survivor, as a client is told to, so every key ends accepted once.
 */
async function burst(keys: string[], afterEach: (accepted: number) => void = () => {}) {
  const answers: Submission[] = [];
  const retried: string[] = [];
  let next = 0;
  let turn = 0;
  const live = () => replicas.filter((r) => !r.killed);
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (next < keys.length) {
        const key = keys[next++]!;
        for (let attempt = 0; ; attempt++) {
          const targets = live();
          const replica = targets[turn++ % targets.length]!;
          const answer = await submitOnce(replica.client, key);
          if (answer.orderId) {
            answers.push(answer);
            afterEach(answers.length);
            break;
          }
          // A replica that died under the submit, or one that sheds load (Unavailable: ask again
          // later), is asked again with the same key; anything else is a failure.
          const shed =
            answer.error?.code === Code.Unavailable || answer.error?.code === Code.ResourceExhausted;
          if (!(replica.killed || shed) || attempt > 20)
            throw new Error(`${key} refused: ${answer.error?.code} ${answer.error?.message}`);
          if (replica.killed) retried.push(key);
          else await new Promise((r) => setTimeout(r, 100));
        }
      }
    }),
  );
  return { accepted: new Map(answers.map((a) => [a.key, a.orderId!])), retried };
}

type StepRow = {
  order_id: string;
  step: string;
  attempt: number;
  outcome: string;
  started_at: string;
  ended_at: string | null;
};

/**
 * What is wrong with one order's step records (in insert order) as a single sequential history: an
 * attempt started while another was open, started or ended twice, an end earlier than the end
 * before it, or a called step's span (from its command to its reply) that began before the step
 * before it ended. An await step has no start record of its own: only its end is checked. The
 * fallback questions of an await step (`poll:` records) are answers inside the waiting step's span
 * and are only checked for repeats.
 */
function historyProblems(rows: StepRow[]): string[] {
  const problems: string[] = [];
  const started = new Map<string, number>();
  const ended = new Set<string>();
  let open: string | undefined;
  let lastEnd = Number.NEGATIVE_INFINITY;
  for (const r of rows) {
    const key = `${r.step}#${r.attempt}`;
    if (r.step.startsWith('poll:')) {
      if (ended.has(key)) problems.push(`${key} answered twice`);
      ended.add(key);
      continue;
    }
    const start = Number(r.started_at);
    if (r.outcome === 'started') {
      if (open) problems.push(`${key} started while ${open} was open`);
      if (started.has(key)) problems.push(`${key} started twice`);
      if (start < lastEnd)
        problems.push(`${key} started at ${start}, before the step before it ended at ${lastEnd}`);
      started.set(key, start);
      open = key;
      continue;
    }
    if (open && open !== key) problems.push(`${key} ended while ${open} was open`);
    if (open === key && started.get(key) !== start) problems.push(`${key} ended a span it did not start`);
    open = undefined;
    if (ended.has(key)) problems.push(`${key} ended twice`);
    ended.add(key);
    const end = Number(r.ended_at ?? r.started_at);
    if (end < lastEnd) problems.push(`${key} ended at ${end}, before the step before it ended at ${lastEnd}`);
    if (end < start) problems.push(`${key} ended before it began`);
    lastEnd = Math.max(lastEnd, end);
  }
  if (open) problems.push(`${open} never ended`);
  return problems;
}

/** The checks of "every order PAID exactly once, by one replica at a time" over the given orders. */
async function expectExactlyOnce(ids: string[], options: { strictCalls: boolean }) {
  const idSet = new Set(ids);
  const dupKeys = await query(
    'SELECT idempotency_key FROM orders GROUP BY idempotency_key HAVING count(*) > 1',
  );
  expect(dupKeys, 'one order per idempotency key').toEqual([]);

  // PAID exactly once: one OrderStateChanged into PAID per order in the Workflow's outbox.
  const changes = await query<{ body: Uint8Array }>('SELECT body FROM outbox WHERE type = $1', [
    EventType.OrderStateChanged,
  ]);
  const paidEvents = new Map<string, number>();
  for (const { body } of changes) {
    const env = fromBinary(EnvelopeSchema, body);
    if (env.payload.case !== 'orderStateChanged') continue;
    const order = env.payload.value.order;
    if (order?.state === OrderState.PAID && idSet.has(order.id))
      paidEvents.set(order.id, (paidEvents.get(order.id) ?? 0) + 1);
  }
  expect(
    ids.filter((id) => paidEvents.get(id) !== 1).map((id) => `${id}: ${paidEvents.get(id) ?? 0}`),
    'orders that did not become PAID exactly once',
  ).toEqual([]);

  // One sequential history per order.
  const rows = await query<StepRow>(
    'SELECT order_id, step, attempt, outcome, started_at, ended_at FROM step_executions WHERE order_id = ANY($1::text[]) ORDER BY id',
    [ids],
  );
  const byOrder = new Map<string, StepRow[]>();
  for (const r of rows) byOrder.set(r.order_id, [...(byOrder.get(r.order_id) ?? []), r]);
  const problems = ids.flatMap((id) => historyProblems(byOrder.get(id) ?? []).map((p) => `${id}: ${p}`));
  expect(problems, 'step histories that are not one sequential history').toEqual([]);
  expect(byOrder.size).toBe(ids.length);

  // One command per order step attempt that was started.
  const commands = await query<{ body: Uint8Array }>('SELECT body FROM outbox WHERE type = $1', [
    COMMAND_TYPE,
  ]);
  const commandsPerKey = new Map<string, number>();
  for (const { body } of commands) {
    const env = fromBinary(EnvelopeSchema, body);
    if (!idSet.has(env.subject)) continue;
    commandsPerKey.set(env.idempotencyKey, (commandsPerKey.get(env.idempotencyKey) ?? 0) + 1);
  }
  const startsPerKey = new Map<string, number>();
  for (const r of rows)
    if (r.outcome === 'started') {
      const key = `${r.order_id}:${r.step}`;
      startsPerKey.set(key, (startsPerKey.get(key) ?? 0) + 1);
    }
  const extra = [...startsPerKey]
    .filter(([key, starts]) => (commandsPerKey.get(key) ?? 0) !== starts)
    .map(([key, starts]) => `${key}: ${commandsPerKey.get(key) ?? 0} commands for ${starts} attempts`);
  expect(extra, 'order steps whose commands do not match their attempts').toEqual([]);

  // The systems' side: one ERP sales order per order; no two calls for one order step at once.
  const stats = await connectors.stats();
  const [{ n: total } = { n: 0 }] = await query<{ n: number }>('SELECT count(*)::int AS n FROM orders');
  expect(stats.salesOrders, 'one ERP sales order per order').toBe(total);
  expect(stats.calls?.['erp.createSalesOrder'], 'CreateSalesOrder calls').toBeGreaterThanOrEqual(total);
  if (options.strictCalls) {
    expect(stats.overlappingKeys, 'order steps called twice at once').toEqual([]);
    expect(stats.repeatedKeys, 'order steps the systems were asked twice').toEqual({});
    expect(stats.calls?.['erp.createSalesOrder'], 'CreateSalesOrder calls').toBe(total);
  }
  return { commands: commands.length, stepRecords: rows.length, stats };
}

/** Deliveries each live replica's engine consumed so far. */
async function consumedPerReplica(): Promise<number[]> {
  return Promise.all(
    replicas
      .filter((r) => !r.killed)
      .map(async (r) => Object.values((await r.process.stats()).consumed ?? {}).reduce((a, b) => a + b, 0)),
  );
}

describe(`${REPLICAS} workflow replicas on one PostgreSQL Workflow`, () => {
  const allIds: string[] = [];

  it('share a burst of orders: every order PAID exactly once, by one replica at a time', async () => {
    const keys = Array.from({ length: BURST }, (_, i) => `replicas-a-${i}`);
    const started = Date.now();
    const { accepted } = await burst(keys);
    expect(accepted.size).toBe(BURST);
    const ids = [...accepted.values()];
    await waitUntilPaid(query, ids, 180_000, 250);
    const seconds = (Date.now() - started) / 1000;
    for (const r of replicas) expect(r.process.exited(), 'a replica exited').toBeUndefined();
    const consumed = await consumedPerReplica();
    // Competing consumers: every replica took a share of the deliveries.
    for (const n of consumed) expect(n, 'deliveries a replica consumed').toBeGreaterThan(BURST / 10);
    const checked = await expectExactlyOnce(ids, { strictCalls: true });
    allIds.push(...ids);
    // A dispatch or payment event races the reply of the step before its await: two replicas hold
    // deliveries for one order at once. Under the instance's row lock the second waits and sees what
    // the first committed, so no event is lost to the race and no order has to ask the system after
    // the quiet period (without the lock, most orders of this burst do).
    const [{ n: polled } = { n: 0 }] = await query<{ n: number }>(
      "SELECT count(DISTINCT order_id)::int AS n FROM step_executions WHERE step LIKE 'poll:%'",
    );
    expect(polled, 'orders whose awaited event was lost between two replicas').toBe(0);
    figures.burst = {
      orders: BURST,
      ordersThatAskedAfterAMissedEvent: polled,
      seconds,
      ordersPerSecond: Math.round((BURST / seconds) * 10) / 10,
      consumedPerReplica: consumed,
      commands: checked.commands,
      stepRecords: checked.stepRecords,
    };
  }, 300_000);

  it('lose one replica to SIGKILL mid-burst: the survivors finish every accepted order exactly once', async () => {
    const victim = replicas[0]!;
    const keys = Array.from({ length: BURST }, (_, i) => `replicas-b-${i}`);
    let killedAt = 0;
    const { accepted, retried } = await burst(keys, (n) => {
      if (n === Math.floor(BURST / 3) && !victim.killed) {
        victim.killed = true;
        killedAt = Date.now();
        victim.process.child.kill('SIGKILL');
      }
    });
    expect(victim.killed).toBe(true);
    expect(accepted.size).toBe(BURST);
    const ids = [...accepted.values()];
    // Some of the orders were mid-flight in the victim when it died.
    const [{ n: unfinished } = { n: 0 }] = await query<{ n: number }>(
      'SELECT count(*)::int AS n FROM orders WHERE id = ANY($1::text[]) AND state <> $2',
      [ids, OrderState.PAID],
    );
    await waitUntilPaid(query, ids, 180_000, 250);
    const recoverySeconds = (Date.now() - killedAt) / 1000;
    for (const r of replicas.filter((x) => !x.killed))
      expect(r.process.exited(), 'a survivor exited').toBeUndefined();
    const checked = await expectExactlyOnce([...allIds, ...ids], { strictCalls: false });
    figures.kill = {
      orders: BURST,
      killedAfterAccepted: Math.floor(BURST / 3),
      resubmittedToSurvivors: retried.length,
      notPaidWhenBurstEnded: unfinished,
      secondsFromKillToAllPaid: recoverySeconds,
      repeatedSystemCalls: Object.keys(checked.stats.repeatedKeys ?? {}).length,
    };
  }, 300_000);
});

describe('a Workflow on the embedded SQLite store', () => {
  it('runs in one process only: a second workflow process on the same file is refused', async () => {
    const file = join(mkdtempSync(join(tmpdir(), 'o2c-replicas-')), 'workflow.sqlite');
    const env = {
      O2C_BROKER_URL: BROKER_URL,
      O2C_NAMESPACE: `${NS}-sqlite`,
      O2C_STORE_URL: `sqlite:${file}`,
    };
    const first = await startRoleProcess('workflow', env);
    try {
      await expect(startRoleProcess('workflow', env)).rejects.toThrow(/exited with 1 before it was ready/);
      const client = createClient(
        OrderService,
        createConnectTransport({ baseUrl: `http://127.0.0.1:${first.ready.apiPort}`, httpVersion: '1.1' }),
      );
      const answer = await submitOnce(client, 'sqlite-0');
      expect(answer.error, 'the first process still takes orders').toBeUndefined();
      expect(first.exited()).toBeUndefined();
    } finally {
      await first.stop();
      const retry = { maxAttempts: 1, backoff: { initialMs: 1, maxMs: 1, multiplier: 1 } };
      await deleteQueues(
        BROKER_URL,
        ['orders', 'replies', 'events'].map((p) => ({
          name: queueName(`${NS}-sqlite`, 'workflow', 'distributor', p),
          bindings: [],
          retry,
        })),
      );
    }
  }, 120_000);
});
