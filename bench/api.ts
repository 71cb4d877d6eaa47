// make bench-api: SubmitOrder throughput and latency through the real HTTP stack, durable commits
// on, for PostgreSQL and SQLite at concurrency 1, 16 and 64. Writes bench/results/api.json.
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { createClient } from '@connectrpc/connect';
import { createGrpcTransport } from '@connectrpc/connect-node';
import pg from 'pg';
import { OrderService } from '../runtime/src/gen/o2c/v1/order_service_pb.js';
import { createLogger } from '../runtime/src/observability/logger.js';
import { createRegistry } from '../runtime/src/observability/metrics.js';
import { startWorkflowRole } from '../runtime/src/roles/workflow.js';

const PG_ADMIN = process.env.O2C_BENCH_PG_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
const DURATION_MS = Number(process.env.O2C_BENCH_SECONDS ?? 8) * 1000;
const CONCURRENCY = [1, 16, 64];

async function freshPg(name: string): Promise<string> {
  const admin = new pg.Client({ connectionString: PG_ADMIN });
  await admin.connect();
  await admin.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
  await admin.query(`CREATE DATABASE ${name}`);
  const sync = await admin.query('SHOW synchronous_commit');
  const fsync = await admin.query('SHOW fsync');
  await admin.end();
  console.log(`postgres: synchronous_commit=${sync.rows[0].synchronous_commit} fsync=${fsync.rows[0].fsync}`);
  const url = new URL(PG_ADMIN);
  url.pathname = `/${name}`;
  return url.toString();
}

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

interface Result {
  store: string;
  concurrency: number;
  orders: number;
  ordersPerSecond: number;
  p50Ms: number;
  p99Ms: number;
  errors: number;
}

async function run(store: 'postgres' | 'sqlite', storeUrl: string): Promise<Result[]> {
  const role = await startWorkflowRole({
    storeUrl,
    host: '127.0.0.1',
    apiPort: 0,
    source: 'o2c/bench/workflow/api',
    logger: createLogger('bench', 'warn'),
    registry: createRegistry(false),
  });
  const client = createClient(
    OrderService,
    createGrpcTransport({ baseUrl: `http://127.0.0.1:${role.api.port}` }),
  );
  const results: Result[] = [];
  try {
    for (const concurrency of CONCURRENCY) {
      // Warm up connections and JIT.
      await Promise.all(
        Array.from({ length: concurrency }, (_, i) =>
          client.submitOrder({
            idempotencyKey: `warm-${store}-${concurrency}-${i}`,
            order: { customerId: 'WARM', currencyCode: 'USD', lines: [{ sku: 'W', quantity: 1 }] },
          }),
        ),
      );
      const latencies: number[] = [];
      let errors = 0;
      let seq = 0;
      const started = performance.now();
      const deadline = started + DURATION_MS;
      await Promise.all(
        Array.from({ length: concurrency }, async (_, worker) => {
          while (performance.now() < deadline) {
            const n = seq++;
            const t0 = performance.now();
            try {
              await client.submitOrder({
                idempotencyKey: `bench-${store}-${concurrency}-${worker}-${n}`,
                order: {
                  customerId: `CUST-${n % 100}`,
                  currencyCode: 'USD',
                  purchaseOrderNumber: `PO-${n}`,
                  lines: [
                    { sku: 'WIDGET-1', quantity: 2, unitPrice: { currencyCode: 'USD', units: 10n } },
                    {
                      sku: 'GADGET-7',
                      quantity: 1,
                      unitPrice: { currencyCode: 'USD', units: 99n, nanos: 500_000_000 },
                    },
                  ],
                },
              });
              latencies.push(performance.now() - t0);
            } catch {
              errors++;
            }
          }
        }),
      );
      const elapsed = (performance.now() - started) / 1000;
      latencies.sort((a, b) => a - b);
      const r: Result = {
        store,
        concurrency,
        orders: latencies.length,
        ordersPerSecond: Math.round(latencies.length / elapsed),
        p50Ms: Math.round(percentile(latencies, 50) * 100) / 100,
        p99Ms: Math.round(percentile(latencies, 99) * 100) / 100,
        errors,
      };
      console.log(
        `${store.padEnd(8)} c=${String(concurrency).padStart(2)}  ${String(r.ordersPerSecond).padStart(6)} orders/s  p50 ${r.p50Ms} ms  p99 ${r.p99Ms} ms  errors ${errors}`,
      );
      results.push(r);
    }
  } finally {
    await role.stop();
  }
  return results;
}

const machine = `${cpus().length} cores (${cpus()[0]?.model ?? 'unknown cpu'}), Node ${process.version}`;
console.log(`SubmitOrder over gRPC (h2c), durable commits, ${DURATION_MS / 1000}s per point, on ${machine}`);
const sqliteDir = mkdtempSync(join(tmpdir(), 'o2c-bench-'));
const results = [
  ...(await run('postgres', await freshPg('o2c_bench_api'))),
  ...(await run('sqlite', `sqlite:${join(sqliteDir, 'bench.sqlite')}`)),
];
mkdirSync('bench/results', { recursive: true });
writeFileSync(
  'bench/results/api.json',
  `${JSON.stringify({ benchmark: 'api', machine, durationSeconds: DURATION_MS / 1000, date: new Date().toISOString(), results }, null, 2)}\n`,
);
console.log('wrote bench/results/api.json');
