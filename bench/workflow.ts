// make bench-workflow: completed O2C orders/s through every step of examples/distributor/ (validate,
// price, tax, credit, allocate, ERP order, release, await dispatch, invoice, await payment), with
// the simulator connectors in their own process, on PostgreSQL and RabbitMQ. Prints and writes
// bench/results/workflow.json: orders/s and the p50/p99 order cycle time (submitted -> paid).
import { spawn } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { createInterface } from 'node:readline';
import { createClient } from '@connectrpc/connect';
import { createGrpcTransport } from '@connectrpc/connect-node';
import pg from 'pg';
import type { QueueSpec } from '../runtime/src/bus/topology.js';
import { OrderState } from '../runtime/src/gen/o2c/v1/entities_pb.js';
import { OrderService } from '../runtime/src/gen/o2c/v1/order_service_pb.js';
import { deleteQueues, stackFromManifests } from '../runtime/src/local/stack.js';
import { loadManifests } from '../runtime/src/manifests.js';
import { createLogger } from '../runtime/src/observability/logger.js';
import { createRegistry } from '../runtime/src/observability/metrics.js';
import { startWorkflowRole } from '../runtime/src/roles/workflow.js';

const BROKER = process.env.O2C_BROKER_URL ?? 'amqp://guest:guest@127.0.0.1:5672';
const PG_ADMIN = process.env.O2C_BENCH_PG_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
const ORDERS = Number(process.env.O2C_BENCH_ORDERS ?? 1000);
const CONCURRENCY = Number(process.env.O2C_BENCH_CONCURRENCY ?? 64);
const namespace = `bench-wf-${Date.now().toString(36)}`;

async function freshPg(name: string): Promise<string> {
  const admin = new pg.Client({ connectionString: PG_ADMIN });
  await admin.connect();
  await admin.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
  await admin.query(`CREATE DATABASE ${name}`);
  await admin.end();
  const url = new URL(PG_ADMIN);
  url.pathname = `/${name}`;
  return url.toString();
}

const percentile = (sorted: number[], p: number) =>
  sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? 0;

const connectors = spawn(process.execPath, ['--import', 'tsx', 'bench/connectors-process.ts'], {
  env: { ...process.env, O2C_NAMESPACE: namespace },
  stdio: ['ignore', 'pipe', 'inherit'],
});
await new Promise<void>((resolve, reject) => {
  createInterface({ input: connectors.stdout! }).on('line', (l) => l === 'ready' && resolve());
  connectors.once('exit', (code) => reject(new Error(`connector process exited with ${code}`)));
});

const parsed = stackFromManifests(loadManifests(['examples/distributor/']));
const role = await startWorkflowRole({
  storeUrl: await freshPg('o2c_bench_workflow'),
  brokerUrl: BROKER,
  host: '127.0.0.1',
  apiPort: 0,
  source: `o2c/${namespace}/workflow/distributor`,
  workflowGeneration: 1,
  workflow: { namespace, name: 'distributor', spec: parsed.spec, timerPollMs: 500 },
  logger: createLogger('bench', 'warn'),
  registry: createRegistry(false),
});
const client = createClient(
  OrderService,
  createGrpcTransport({ baseUrl: `http://127.0.0.1:${role.api.port}` }),
);

const submittedAt = new Map<string, number>();
const cycle: number[] = [];
let paid = 0;
const allPaid = new Promise<void>((resolve) => {
  role.orders.onAnyChange(({ order }) => {
    if (order.state !== OrderState.PAID) return;
    const t0 = submittedAt.get(order.id);
    if (t0 === undefined) return;
    submittedAt.delete(order.id);
    cycle.push(performance.now() - t0);
    if (++paid === ORDERS) resolve();
  });
});

const machine = `${cpus().length} cores (${cpus()[0]?.model ?? 'unknown cpu'}), Node ${process.version}`;
console.log(
  `bench-workflow: ${ORDERS} orders through 10 steps, submit concurrency ${CONCURRENCY}, on ${machine}`,
);
const started = performance.now();
let next = 0;
await Promise.all(
  Array.from({ length: CONCURRENCY }, async () => {
    while (next < ORDERS) {
      const i = next++;
      const t0 = performance.now();
      const { order } = await client.submitOrder({
        idempotencyKey: `${namespace}-${i}`,
        order: {
          customerId: 'ACME',
          currencyCode: 'USD',
          lines: [
            { sku: 'WIDGET-1', quantity: 1 + (i % 7) },
            { sku: 'GADGET-7', quantity: 1 },
          ],
        },
      });
      submittedAt.set(order!.id, t0);
    }
  }),
);
const submitSeconds = (performance.now() - started) / 1000;
const timeout = setTimeout(() => {
  console.error(`only ${paid} of ${ORDERS} orders paid after 10 minutes`);
  process.exit(1);
}, 600_000);
await allPaid;
clearTimeout(timeout);
const seconds = (performance.now() - started) / 1000;
cycle.sort((a, b) => a - b);
const result = {
  benchmark: 'workflow',
  machine,
  date: new Date().toISOString(),
  orders: ORDERS,
  steps: parsed.spec.steps.length,
  submitConcurrency: CONCURRENCY,
  store: 'postgres',
  submitOrdersPerSecond: Math.round(ORDERS / submitSeconds),
  completedOrdersPerSecond: Math.round((ORDERS / seconds) * 10) / 10,
  cycleTimeP50Ms: Math.round(percentile(cycle, 50)),
  cycleTimeP99Ms: Math.round(percentile(cycle, 99)),
};
console.log(
  `completed ${ORDERS} orders in ${seconds.toFixed(1)} s: ${result.completedOrdersPerSecond} orders/s; cycle time p50 ${result.cycleTimeP50Ms} ms, p99 ${result.cycleTimeP99Ms} ms`,
);
mkdirSync('bench/results', { recursive: true });
writeFileSync('bench/results/workflow.json', `${JSON.stringify(result, null, 2)}\n`);
console.log('wrote bench/results/workflow.json');

const specs: QueueSpec[] = [...(role.engine?.queueSpecs() ?? [])];
await role.stop();
connectors.kill('SIGTERM');
await new Promise((r) => connectors.once('exit', r));
const retry = { maxAttempts: 8, backoff: { initialMs: 1000, maxMs: 300_000, multiplier: 2 } };
for (const c of parsed.connectors)
  specs.push({ name: `o2c.${namespace}.connector.${c.name}.commands`, bindings: [], retry });
await deleteQueues(BROKER, specs);
process.exit(0);
