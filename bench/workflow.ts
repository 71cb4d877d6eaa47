// make bench-workflow: completed O2C orders/s through every step of examples/distributor/ (validate,
// price, tax, credit, allocate, ERP order, release, await dispatch, invoice, await payment), with the
// simulator connectors in their own process, on PostgreSQL and RabbitMQ; once with 1 and once with 2
// workflow replicas (each its own process, one database, one Workflow, submits spread over their
// APIs); then the Temporal peer (bench/peer/temporal) on the same ten-step saga, in the same run.
// Every run counts from real state (the workflow's database and the simulated ERP): orders accepted,
// completed (PAID), lost, duplicated, and ERP sales orders per order. Prints the figures and writes
// bench/results/workflow.json; exits 1 when an order was lost or duplicated or its ERP sales order is
// missing or doubled.
//   O2C_BENCH_ORDERS (1000)  O2C_BENCH_CONCURRENCY (64)  O2C_BENCH_REPLICAS ("1,2")
//   O2C_BENCH_DEADLINE_S (180: an accepted order not PAID by then is lost)
//   O2C_BENCH_PEER (1; 0 skips the Temporal peer)
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, totalmem } from 'node:os';
import { createInterface } from 'node:readline';
import { Code, ConnectError, createClient } from '@connectrpc/connect';
import { createGrpcTransport } from '@connectrpc/connect-node';
import amqp from 'amqplib';
import pg from 'pg';
import { RetryInfoSchema } from '../runtime/src/api/admission.js';
import type { QueueSpec } from '../runtime/src/bus/topology.js';
import { OrderState } from '../runtime/src/gen/o2c/v1/entities_pb.js';
import { OrderService } from '../runtime/src/gen/o2c/v1/order_service_pb.js';
import { deleteQueues, stackFromManifests } from '../runtime/src/local/stack.js';
import { loadManifests } from '../runtime/src/manifests.js';
import type { SimulatorCounts } from './connectors-process.js';
import { freshPg, PG_ADMIN } from './pg.js';
import { brokenGuarantees, type Counts, tallyRun } from './workflow-counts.js';
import type { ReplicaReady } from './workflow-replica.js';

const BROKER = process.env.O2C_BROKER_URL ?? 'amqp://guest:guest@127.0.0.1:5672';
const ORDERS = Number(process.env.O2C_BENCH_ORDERS ?? 1000);
const CONCURRENCY = Number(process.env.O2C_BENCH_CONCURRENCY ?? 64);
const REPLICAS = (process.env.O2C_BENCH_REPLICAS ?? '1,2').split(',').map(Number);
const DEADLINE_MS = Number(process.env.O2C_BENCH_DEADLINE_S ?? 180) * 1000;
const PEER = process.env.O2C_BENCH_PEER !== '0';
/** Every RESUBMIT_EVERY-th order is submitted a second time with its key, as a client retrying would. */
const RESUBMIT_EVERY = 10;
/** The step whose success completes an order (PAID). */
const LAST_STEP = 'await-payment';
const AIM = { completedOrdersPerSecond: 500 };

const parsed = stackFromManifests(loadManifests(['examples/distributor/']));
const percentile = (sorted: number[], p: number) =>
  sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? 0;
const round = (n: number, digits = 1) => Math.round(n * 10 ** digits) / 10 ** digits;

async function machine() {
  const admin = new pg.Client({ connectionString: PG_ADMIN });
  await admin.connect();
  const setting = async (name: string) =>
    Object.values((await admin.query(`SHOW ${name}`)).rows[0] ?? {})[0] as string | undefined;
  const postgres = `${await setting('server_version')} (synchronous_commit=${await setting('synchronous_commit')}, fsync=${await setting('fsync')})`;
  await admin.end();
  // A broker that accepts the socket but not the handshake (out of file descriptors) would hang here.
  const conn = await Promise.race([
    amqp.connect(BROKER),
    new Promise<never>((_, reject) =>
      setTimeout(
        () => reject(new Error(`RabbitMQ at ${new URL(BROKER).host} did not open a connection in 15 s`)),
        15_000,
      ).unref(),
    ),
  ]);
  const props = (conn as unknown as { connection: { serverProperties?: { version?: string } } }).connection
    .serverProperties;
  await conn.close();
  return {
    cores: cpus().length,
    cpu: cpus()[0]?.model ?? 'unknown cpu',
    memoryGiB: round(totalmem() / 2 ** 30),
    node: process.version,
    postgres,
    rabbitmq: props?.version ?? 'unknown',
    note: 'broker, database, connectors, workflow replicas, the Temporal peer and the client on the same host',
  };
}

/** A child process on tsx; resolves with the first IPC message of the given type. */
function child(script: string, env: Record<string, string>): ChildProcess {
  return spawn(process.execPath, ['--import', 'tsx', script], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'inherit', 'ipc'],
  });
}

function message<T extends { type: string }>(p: ChildProcess, type: T['type']): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const onMessage = (m: T) => {
      if (m?.type !== type) return;
      p.off('message', onMessage);
      p.off('exit', onExit);
      resolve(m);
    };
    const onExit = (code: number | null) => reject(new Error(`child process exited with ${code}`));
    p.on('message', onMessage);
    p.once('exit', onExit);
  });
}

async function stopChild(p: ChildProcess): Promise<void> {
  if (p.exitCode !== null || p.signalCode !== null) return;
  const exited = new Promise((r) => p.once('exit', r));
  p.kill('SIGTERM');
  await exited;
}

interface SubmitFigures {
  acceptsPerSecond: number;
  seconds: number;
  p50Ms: number;
  p99Ms: number;
  calls: number;
  resubmits: number;
  unavailableAnswers: number;
  errors: number;
  firstError?: string;
}

interface OurRun {
  replicas: number;
  /** The host's 1, 5 and 15 minute load average as the run started. */
  loadAverageAtStart: number[];
  submit: SubmitFigures;
  /** Completed orders / seconds from the first submit to the last order PAID. */
  completedOrdersPerSecond: number;
  seconds: number;
  cycleTimeP50Ms: number;
  cycleTimeP99Ms: number;
  counts: Counts;
  /** Each guarantee the counts break, in a sentence; empty when all held. */
  brokenGuarantees: string[];
}

/** Submits ORDERS orders over the clients, round robin by order, CONCURRENCY at once. */
async function submitAll(clients: ReturnType<typeof createClient<typeof OrderService>>[], namespace: string) {
  const accepted = new Map<string, string>();
  const latencies: number[] = [];
  let resubmits = 0;
  let unavailableAnswers = 0;
  let errors = 0;
  let resubmitsAnsweredAnotherOrder = 0;
  let firstError: string | undefined;
  // An Unavailable answer (the API's back-pressure, or a store that is away) is retried with the same
  // key after a growing pause, as a client at month-end would; any other error counts and moves on.
  const submit = async (i: number, via: number) => {
    const client = clients[via % clients.length]!;
    const request = {
      idempotencyKey: `${namespace}-${i}`,
      order: {
        customerId: 'ACME',
        currencyCode: 'USD',
        lines: [
          { sku: 'WIDGET-1', quantity: 1 + (i % 7) },
          { sku: 'GADGET-7', quantity: 1 },
        ],
      },
    };
    for (let attempt = 1; ; attempt++) {
      const t0 = performance.now();
      try {
        const { order } = await client.submitOrder(request);
        latencies.push(performance.now() - t0);
        return order!.id;
      } catch (err) {
        latencies.push(performance.now() - t0);
        if (err instanceof ConnectError && err.code === Code.Unavailable && attempt < 30) {
          unavailableAnswers++;
          // The API's back-pressure names its delay (google.rpc.RetryInfo); a store away does not.
          const [info] = err.findDetails(RetryInfoSchema) as {
            retryDelay?: { seconds: bigint; nanos: number };
          }[];
          const delayMs = info?.retryDelay
            ? Number(info.retryDelay.seconds) * 1000 + info.retryDelay.nanos / 1e6
            : Math.min(1000, 25 * 2 ** attempt);
          await new Promise((r) => setTimeout(r, delayMs));
          continue;
        }
        errors++;
        firstError ??= (err as Error).message;
        return undefined;
      }
    }
  };
  const started = performance.now();
  let next = 0;
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (next < ORDERS) {
        const i = next++;
        const id = await submit(i, i);
        if (id === undefined) continue;
        accepted.set(`${namespace}-${i}`, id);
        if (i % RESUBMIT_EVERY === 0) {
          resubmits++;
          // Through the next replica's API, as a retry behind a Service may land.
          const again = await submit(i, i + 1);
          if (again !== undefined && again !== id) resubmitsAnsweredAnotherOrder++;
        }
      }
    }),
  );
  const seconds = (performance.now() - started) / 1000;
  latencies.sort((a, b) => a - b);
  const figures: SubmitFigures = {
    acceptsPerSecond: Math.round(accepted.size / seconds),
    seconds: round(seconds, 2),
    p50Ms: round(percentile(latencies, 50), 2),
    p99Ms: round(percentile(latencies, 99), 2),
    calls: latencies.length,
    resubmits,
    unavailableAnswers,
    errors,
    ...(firstError ? { firstError } : {}),
  };
  return { accepted, figures, resubmitsAnsweredAnotherOrder };
}

async function runOurs(replicas: number): Promise<OurRun> {
  const loadAverageAtStart = loadavg().map((l) => round(l, 2));
  const namespace = `bench-wf-${replicas}r-${Date.now().toString(36)}`;
  const storeUrl = await freshPg(`o2c_bench_workflow_${replicas}r`);
  const connectors = child('bench/connectors-process.ts', { O2C_NAMESPACE: namespace });
  const processes: ChildProcess[] = [connectors];
  const queues: QueueSpec[] = [];
  const db = new pg.Client({ connectionString: storeUrl });
  try {
    await new Promise<void>((resolve, reject) => {
      createInterface({ input: connectors.stdout! }).on('line', (l) => l === 'ready' && resolve());
      connectors.once('exit', (code) => reject(new Error(`connector process exited with ${code}`)));
    });
    // One after the other: the first migrates the database, the others find it migrated.
    const ports: number[] = [];
    for (let r = 0; r < replicas; r++) {
      const p = child('bench/workflow-replica.ts', {
        O2C_NAMESPACE: namespace,
        O2C_BENCH_STORE_URL: storeUrl,
      });
      processes.push(p);
      const ready = await message<ReplicaReady>(p, 'ready');
      ports.push(ready.port);
      if (r === 0) queues.push(...ready.queues);
    }
    const clients = ports.map((port) =>
      createClient(OrderService, createGrpcTransport({ baseUrl: `http://127.0.0.1:${port}` })),
    );
    await db.connect();
    console.log(
      `  ${replicas} replica(s): submitting ${ORDERS} orders over ${ports.length} API(s), load average ${loadAverageAtStart.join(' ')}...`,
    );

    const startedWall = Date.now();
    const startedAt = performance.now();
    const { accepted, figures, resubmitsAnsweredAnotherOrder } = await submitAll(clients, namespace);
    const deadline = startedAt + DEADLINE_MS;
    let paid = 0;
    while (performance.now() < deadline) {
      const { rows } = await db.query<{ n: string }>('SELECT count(*) AS n FROM orders WHERE state = $1', [
        OrderState.PAID,
      ]);
      paid = Number(rows[0]!.n);
      if (paid >= accepted.size) break;
      await new Promise((r) => setTimeout(r, 100));
    }

    // ---- counts from real state: the workflow's database and the simulated ERP -----------------
    const orders = await db.query<{
      id: string;
      key: string;
      state: number;
      created: string;
      updated: string;
    }>('SELECT id, idempotency_key AS key, state, created_at AS created, updated_at AS updated FROM orders');
    const successes = await db.query<{ order_id: string; n: string }>(
      `SELECT order_id, count(*) AS n FROM step_executions WHERE step = $1 AND outcome = 'succeeded' GROUP BY 1`,
      [LAST_STEP],
    );
    connectors.send({ type: 'counts' });
    const sim = await message<SimulatorCounts>(connectors, 'counts');
    const { counts, cycleTimesMs, seconds } = tallyRun({
      acceptedIds: new Set(accepted.values()),
      orders: orders.rows.map((o) => ({
        id: o.id,
        idempotencyKey: o.key,
        state: o.state,
        createdAt: Number(o.created),
        updatedAt: Number(o.updated),
      })),
      lastStepSuccesses: new Map(successes.rows.map((r) => [r.order_id, Number(r.n)])),
      salesOrdersCreated: sim.salesOrdersCreated,
      createSalesOrderCalls: sim.createSalesOrderCalls,
      resubmitsAnsweredAnotherOrder,
      startedAtMs: startedWall,
    });
    return {
      replicas,
      loadAverageAtStart,
      submit: figures,
      completedOrdersPerSecond: round(counts.completed / seconds),
      seconds: round(seconds, 2),
      cycleTimeP50Ms: Math.round(percentile(cycleTimesMs, 50)),
      cycleTimeP99Ms: Math.round(percentile(cycleTimesMs, 99)),
      counts,
      brokenGuarantees: brokenGuarantees(counts),
    };
  } finally {
    await db.end().catch(() => undefined);
    for (const p of processes.slice(1)) await stopChild(p);
    await stopChild(connectors);
    const retry = { maxAttempts: 8, backoff: { initialMs: 1000, maxMs: 300_000, multiplier: 2 } };
    for (const c of parsed.connectors)
      queues.push({ name: `o2c.${namespace}.connector.${c.name}.commands`, bindings: [], retry });
    await deleteQueues(BROKER, queues).catch((err) => console.error(`deleting queues: ${err.message}`));
  }
}

interface PeerRun {
  engine: string;
  server: string;
  sdk: string;
  store: string;
  orders: number;
  completed: number;
  seconds: number;
  completedOrdersPerSecond: number;
  loadAverageAtStart?: number[];
}

/** The Temporal peer on one store, in a process of its own; its figures or why it could not run. */
async function runPeer(
  bin: string,
  store: 'sqlite' | 'memory',
): Promise<PeerRun | { store: string; error: string }> {
  const loadAverageAtStart = loadavg().map((l) => round(l, 2));
  const p = spawn(process.execPath, ['--import', 'tsx', 'bench/peer/temporal/bench.ts'], {
    env: {
      ...process.env,
      O2C_PEER_TEMPORAL_BIN: bin,
      O2C_PEER_STORE: store,
      O2C_BENCH_ORDERS: String(ORDERS),
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  p.stdout!.on('data', (c: Buffer) => {
    out += c.toString();
  });
  p.stderr!.on('data', (c: Buffer) => {
    err += c.toString();
  });
  const code = await new Promise<number | null>((r) => p.once('exit', r));
  const last = out.trim().split('\n').at(-1) ?? '';
  if (code === 0 && last.startsWith('{')) return { ...(JSON.parse(last) as PeerRun), loadAverageAtStart };
  return { store, error: `exit ${code}: ${(err.trim() || out.trim()).split('\n').slice(-5).join(' | ')}` };
}

function peerBinary(): string {
  return execFileSync('bash', ['bench/peer/temporal/install.sh'], {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'inherit'],
  }).trim();
}

// ---- the run ------------------------------------------------------------------------------------
const host = await machine();
console.log(
  `bench-workflow: ${ORDERS} orders through ${parsed.spec.steps.length} steps, submit concurrency ${CONCURRENCY}, replicas ${REPLICAS.join(' and ')}; ${host.cores} cores (${host.cpu}), Node ${host.node}, PostgreSQL ${host.postgres}, RabbitMQ ${host.rabbitmq}; load average ${loadavg()
    .map((l) => l.toFixed(1))
    .join(' ')}`,
);
const runs: OurRun[] = [];
for (const replicas of REPLICAS) {
  const run = await runOurs(replicas);
  runs.push(run);
  const c = run.counts;
  console.log(
    `  ${replicas} replica(s): ${run.completedOrdersPerSecond} completed orders/s (${c.completed} in ${run.seconds} s), cycle p50 ${run.cycleTimeP50Ms} ms p99 ${run.cycleTimeP99Ms} ms; submit ${run.submit.acceptsPerSecond} accepts/s, p50 ${run.submit.p50Ms} ms p99 ${run.submit.p99Ms} ms (${run.submit.calls} calls, ${run.submit.resubmits} resubmits, ${run.submit.unavailableAnswers} Unavailable, ${run.submit.errors} errors${run.submit.firstError ? `: ${run.submit.firstError}` : ''})`,
  );
  console.log(
    `    accepted ${c.accepted} (stored ${c.stored}), completed ${c.completed}, lost ${c.lost}, duplicated: ${c.duplicated.keysWithTwoOrders} keys with two orders, ${c.duplicated.resubmitsAnsweredAnotherOrder} resubmits answered another order, ${c.duplicated.completedTwice} completed twice (${c.paidWithoutLastStepRecord} PAID without ${LAST_STEP} in the history); ERP sales orders per order: exactly one ${c.erpSalesOrders.exactlyOne}, zero ${c.erpSalesOrders.zero}, more than one ${c.erpSalesOrders.moreThanOne}, for no accepted order ${c.erpSalesOrders.forNoAcceptedOrder} (${c.erpSalesOrders.createSalesOrderCalls} CreateSalesOrder calls)`,
  );
}

const one = runs.find((r) => r.replicas === 1) ?? runs[0]!;
const two = runs.find((r) => r.replicas === 2);
const factor = (a: number, b: number) => (a > 0 ? round(b / a, 2) : 0);
const scaling = two
  ? {
      completedOrdersPerSecond: {
        one: one.completedOrdersPerSecond,
        two: two.completedOrdersPerSecond,
        factor: factor(one.completedOrdersPerSecond, two.completedOrdersPerSecond),
      },
      submitAcceptsPerSecond: {
        one: one.submit.acceptsPerSecond,
        two: two.submit.acceptsPerSecond,
        factor: factor(one.submit.acceptsPerSecond, two.submit.acceptsPerSecond),
      },
      submitP99Ms: { one: one.submit.p99Ms, two: two.submit.p99Ms },
    }
  : undefined;
if (scaling)
  console.log(
    `  1 -> 2 replicas: completed ${scaling.completedOrdersPerSecond.one} -> ${scaling.completedOrdersPerSecond.two} orders/s (x${scaling.completedOrdersPerSecond.factor}); submit ${scaling.submitAcceptsPerSecond.one} -> ${scaling.submitAcceptsPerSecond.two} accepts/s (x${scaling.submitAcceptsPerSecond.factor}), p99 ${scaling.submitP99Ms.one} -> ${scaling.submitP99Ms.two} ms`,
  );

let peer: Record<string, unknown> | undefined;
if (PEER) {
  console.log(`  Temporal peer: the same ten-step saga, a burst of ${ORDERS}...`);
  let bin: string | undefined;
  let installError: string | undefined;
  try {
    bin = peerBinary();
  } catch (err) {
    installError = `bench/peer/temporal/install.sh failed: ${(err as Error).message}`;
  }
  const temporal: Record<string, PeerRun | { store: string; error: string }> = {};
  for (const store of ['sqlite', 'memory'] as const) {
    const r = bin ? await runPeer(bin, store) : { store, error: installError! };
    temporal[store] = r;
    if ('error' in r) console.log(`    Temporal ${store}: could not run: ${r.error}`);
    else
      console.log(
        `    Temporal ${r.store} (${r.server}, ${r.sdk}): ${r.completedOrdersPerSecond} completed orders/s (${r.completed} in ${r.seconds} s); ours/Temporal ${round(one.completedOrdersPerSecond / r.completedOrdersPerSecond, 2)}`,
      );
  }
  const ratio = Object.fromEntries(
    Object.entries(temporal).flatMap(([k, r]) =>
      'error' in r ? [] : [[k, round(one.completedOrdersPerSecond / r.completedOrdersPerSecond, 2)]],
    ),
  );
  peer = { temporal, oursOverTemporal: ratio };
}

const broken = runs.filter((r) => r.brokenGuarantees.length > 0);
const result = {
  benchmark: 'workflow',
  date: new Date().toISOString(),
  machine: { ...host, loadAverageAtEnd: loadavg().map((l) => round(l, 2)) },
  orders: ORDERS,
  steps: parsed.spec.steps.length,
  submitConcurrency: CONCURRENCY,
  store: 'postgres',
  deadlineSeconds: DEADLINE_MS / 1000,
  // The single-replica figures, as before runs were per replica count.
  submitOrdersPerSecond: one.submit.acceptsPerSecond,
  completedOrdersPerSecond: one.completedOrdersPerSecond,
  cycleTimeP50Ms: one.cycleTimeP50Ms,
  cycleTimeP99Ms: one.cycleTimeP99Ms,
  guaranteesHeld: broken.length === 0,
  runs,
  ...(scaling ? { scaling } : {}),
  ...(peer ? { peer } : {}),
  aim: AIM,
};
mkdirSync('bench/results', { recursive: true });
writeFileSync('bench/results/workflow.json', `${JSON.stringify(result, null, 2)}\n`);
console.log(
  `completed ${one.completedOrdersPerSecond} orders/s (aim >= ${AIM.completedOrdersPerSecond}); wrote bench/results/workflow.json`,
);
if (broken.length) {
  for (const r of broken)
    console.error(`guarantees broken with ${r.replicas} replica(s): ${r.brokenGuarantees.join('; ')}`);
  process.exit(1);
}
process.exit(0);
