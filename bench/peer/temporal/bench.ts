// The Temporal peer of make bench-workflow: a Temporal dev server (`temporal server start-dev`,
// on its durable SQLite file or in memory) with a TypeScript SDK worker and client in this process
// runs the ten-step saga of workflows.ts, activities returning at once, for a burst of N orders
// started at once. Prints one JSON line (the figures) as the last line on stdout.
//   O2C_PEER_TEMPORAL_BIN   the temporal binary (bench/peer/temporal/install.sh prints it)
//   O2C_PEER_STORE          sqlite (default) | memory
//   O2C_BENCH_ORDERS        the burst (default 1000)
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Client, Connection } from '@temporalio/client';
import { bundleWorkflowCode, NativeConnection, Runtime, Worker } from '@temporalio/worker';
import * as activities from './activities.js';

const bin = process.env.O2C_PEER_TEMPORAL_BIN;
if (!bin) throw new Error('O2C_PEER_TEMPORAL_BIN is not set: run bench/peer/temporal/install.sh');
const store = process.env.O2C_PEER_STORE === 'memory' ? 'memory' : 'sqlite';
const orders = Number(process.env.O2C_BENCH_ORDERS ?? 1000);
const taskQueue = 'o2c-peer';
/** The durable file as a database would keep it: write-ahead log, synced at every commit. */
const PRAGMAS = ['journal_mode=wal', 'synchronous=full'];
const here = fileURLToPath(new URL('.', import.meta.url));

const freePort = () =>
  new Promise<number>((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
  });

Runtime.install({ logger: { log() {}, trace() {}, debug() {}, info() {}, warn() {}, error: console.error } });

const versionLine = execFileSync(bin, ['--version'], { encoding: 'utf8' }).trim();
const sdkVersion = (
  JSON.parse(readFileSync(join(here, 'node_modules/@temporalio/worker/package.json'), 'utf8')) as {
    version: string;
  }
).version;
const [port, httpPort, metricsPort] = [await freePort(), await freePort(), await freePort()];
const dir = mkdtempSync(join(tmpdir(), 'o2c-peer-temporal-'));
const args = [
  'server',
  'start-dev',
  '--headless',
  '--ip',
  '127.0.0.1',
  '--port',
  String(port),
  '--http-port',
  String(httpPort),
  '--metrics-port',
  String(metricsPort),
  '--log-level',
  'error',
  ...(store === 'sqlite'
    ? ['--db-filename', join(dir, 'temporal.db'), ...PRAGMAS.flatMap((p) => ['--sqlite-pragma', p])]
    : []),
];
const server: ChildProcess = spawn(bin, args, { stdio: ['ignore', 'ignore', 'inherit'] });
let serverExited = false;
const exited = new Promise<void>((resolve) =>
  server.once('exit', () => {
    serverExited = true;
    resolve();
  }),
);
/** Stops the server and only then removes its SQLite file. */
const cleanup = async () => {
  if (!serverExited) server.kill('SIGTERM');
  await exited;
  rmSync(dir, { recursive: true, force: true });
};

try {
  const address = `127.0.0.1:${port}`;
  // The dev server answers once its frontend is up and the default namespace is registered.
  let connection: Connection | undefined;
  for (let i = 0; !connection; i++) {
    if (serverExited) throw new Error(`temporal server start-dev exited (${args.join(' ')})`);
    try {
      const c = await Connection.connect({ address, connectTimeout: 1000 });
      await c.workflowService.describeNamespace({ namespace: 'default' });
      connection = c;
    } catch (err) {
      if (i > 120) throw err;
      await new Promise((r) => setTimeout(r, 500));
    }
  }
  const client = new Client({ connection, namespace: 'default' });
  const workflowBundle = await bundleWorkflowCode({
    workflowsPath: join(here, 'workflows.ts'),
    logger: { log() {}, trace() {}, debug() {}, info() {}, warn() {}, error: console.error },
  });
  const worker = await Worker.create({
    connection: await NativeConnection.connect({ address }),
    namespace: 'default',
    taskQueue,
    workflowBundle,
    activities,
  });
  const running = worker.run();

  const prefix = `order-${Date.now().toString(36)}`;
  const started = performance.now();
  const handles = await Promise.all(
    Array.from({ length: orders }, (_, i) =>
      client.workflow.start('orderToCash', {
        taskQueue,
        workflowId: `${prefix}-${i}`,
        args: [`${prefix}-${i}`],
      }),
    ),
  );
  const startSeconds = (performance.now() - started) / 1000;
  const results = await Promise.all(handles.map((h) => h.result() as Promise<string>));
  const seconds = (performance.now() - started) / 1000;
  const completed = results.filter((r) => r === 'PAID').length;
  worker.shutdown();
  await running;
  await connection.close();
  console.log(
    JSON.stringify({
      engine: 'temporal',
      server: versionLine,
      sdk: `TypeScript SDK ${sdkVersion}`,
      store: store === 'sqlite' ? `sqlite file (${PRAGMAS.join(', ')})` : 'memory',
      orders,
      steps: 10,
      completed,
      startSeconds: Math.round(startSeconds * 100) / 100,
      seconds: Math.round(seconds * 100) / 100,
      startedPerSecond: Math.round((orders / startSeconds) * 10) / 10,
      completedOrdersPerSecond: Math.round((completed / seconds) * 10) / 10,
    }),
  );
} finally {
  await cleanup();
}
process.exit(0);
