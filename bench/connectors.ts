// Connector figures: the simulator driver's operations/s at the runtime's limit, o2c's overhead per
// call (envelope decode, ownership, governor, reply encode; and the whole path through RabbitMQ),
// and — from the Tryton engineer's bench/connectors-tryton.ts when present — the Tryton figures.
// Writes bench/results/connectors.json. Figures, not pass/fail.
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { create, toBinary } from '@bufbuild/protobuf';
import pino from 'pino';
import { BusConnection } from '../runtime/src/bus/connection.js';
import { ConfirmPublisher } from '../runtime/src/bus/publisher.js';
import { deleteQueueTopology } from '../runtime/src/bus/topology.js';
import { connectorMigrations } from '../runtime/src/connectors/bindings.js';
import {
  buildCommandEnvelope,
  type CommandRequest,
  commandMessage,
} from '../runtime/src/connectors/commands.js';
import type { ConnectorRuntimeConfig } from '../runtime/src/connectors/config.js';
import type { CallContext } from '../runtime/src/connectors/driver.js';
import { money } from '../runtime/src/connectors/money.js';
import { commandQueueSpec, startConnectorRole } from '../runtime/src/connectors/role.js';
import { ConnectorRuntime } from '../runtime/src/connectors/runtime.js';
import { SimulatorDriver } from '../runtime/src/connectors/simulator/driver.js';
import { OrderSchema } from '../runtime/src/gen/o2c/v1/entities_pb.js';
import { EnvelopeSchema } from '../runtime/src/gen/o2c/v1/events_pb.js';
import { openStore, registerMigrations, type Store } from '../runtime/src/store/index.js';
import { freshPg } from './pg.js';

const BROKER_URL = process.env.O2C_BENCH_BROKER_URL ?? 'amqp://guest:guest@127.0.0.1:5672';
const N = Number(process.env.O2C_BENCH_CALLS ?? 20_000);

const priceRequest = (i: number): CommandRequest => ({
  case: 'getPrice',
  value: {
    $typeName: 'o2c.v1.GetPriceRequest',
    customerId: `c-${i % 50}`,
    currencyCode: 'USD',
    orderId: `o-${i}`,
    lines: [
      { $typeName: 'o2c.v1.PriceRequestLine', sku: 'WIDGET', quantity: 3 },
      { $typeName: 'o2c.v1.PriceRequestLine', sku: 'BOLT', quantity: 10 },
    ],
  },
});

const createOrderRequest = (i: number): CommandRequest => ({
  case: 'createSalesOrder',
  value: {
    $typeName: 'o2c.v1.CreateSalesOrderRequest',
    order: create(OrderSchema, {
      id: `bench-o-${i}`,
      customerId: `c-${i % 50}`,
      currencyCode: 'USD',
      total: money('USD', '42.00'),
      lines: [{ sku: 'WIDGET', quantity: 3, unitPrice: money('USD', '14.00') }],
    }),
  },
});

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? 0;
}

/** Driver alone vs driver through ConnectorRuntime (no broker): the in-process overhead per call. */
async function inProcessOverhead() {
  const ctx: CallContext = { signal: new AbortController().signal, idempotencyKey: 'k', correlationId: 'c' };
  const driver = new SimulatorDriver({ seed: 1 });
  const direct = async () => {
    const t0 = performance.now();
    for (let i = 0; i < N; i++) {
      const r = priceRequest(i);
      if (r.case === 'getPrice') await driver.getPrice(r.value, ctx);
    }
    return (performance.now() - t0) / N;
  };
  const runtime = new ConnectorRuntime({
    config: {
      name: 'erp',
      system: 'erp',
      driver: 'simulator',
      owns: ['order'],
      limits: { requestsPerSecond: 10_000_000, maxConcurrency: 64, burst: 10_000_000 },
    },
    driver,
    publisher: { publish: async () => {} },
  });
  const bodies = Array.from({ length: N }, (_, i) =>
    toBinary(
      EnvelopeSchema,
      buildCommandEnvelope({
        connector: 'erp',
        request: priceRequest(i),
        orderId: `o-${i}`,
        step: 'price',
        replyTo: 'bench.reply',
        correlationId: `c-${i}`,
      }),
    ),
  );
  const viaRuntime = async () => {
    const t0 = performance.now();
    for (const body of bodies) await runtime.handleMessage(body);
    return (performance.now() - t0) / N;
  };
  // Warm up both paths, then measure.
  await direct();
  await viaRuntime();
  const directMs = await direct();
  const runtimeMs = await viaRuntime();
  return {
    calls: N,
    driverMsPerCall: directMs,
    runtimeMsPerCall: runtimeMs,
    overheadMsPerCall: runtimeMs - directMs,
  };
}

/** The governor holds the simulator at its configured rate: ops/s should sit at the limit. */
async function atTheLimit(requestsPerSecond: number, seconds: number) {
  const runtime = new ConnectorRuntime({
    config: {
      name: 'erp',
      system: 'erp',
      driver: 'simulator',
      owns: ['order'],
      limits: { requestsPerSecond, maxConcurrency: 8 },
    },
    driver: new SimulatorDriver({ seed: 1, latencyMs: { min: 1, max: 3 } }),
    publisher: { publish: async () => {} },
  });
  const total = requestsPerSecond * seconds;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: total }, (_, i) =>
      runtime.handleMessage(
        toBinary(
          EnvelopeSchema,
          buildCommandEnvelope({
            connector: 'erp',
            request: createOrderRequest(i),
            orderId: `o-${i}`,
            step: 'so',
            replyTo: 'r',
            correlationId: `c-${i}`,
          }),
        ),
      ),
    ),
  );
  const elapsed = (performance.now() - t0) / 1000;
  return { limitRequestsPerSecond: requestsPerSecond, calls: total, opsPerSecond: total / elapsed };
}

/**
 * Commands through RabbitMQ to the connector role and replies back: commands/s of the role and the
 * round-trip latency. Without a store the role publishes each reply with confirms; with PostgreSQL
 * (how the operator deploys it) each reply is written to the outbox with the command's inbox claim
 * and relayed from there.
 */
async function throughBroker(count: number, storeKind: 'none' | 'postgres' = 'none') {
  const logger = pino({ level: 'warn' });
  const bus = new BusConnection({ url: BROKER_URL, name: 'bench-connectors', logger });
  try {
    void bus.start();
    await bus.waitUntilConnected(10_000);
  } catch (err) {
    await bus.close();
    return { skipped: `no broker at ${BROKER_URL}: ${(err as Error).message}` };
  }
  const config: ConnectorRuntimeConfig = {
    name: 'bench-connectors-sim',
    namespace: 'bench',
    system: 'erp',
    driver: 'simulator',
    owns: ['order'],
    limits: { requestsPerSecond: 100_000, maxConcurrency: 64, burst: 1000 },
  };
  const retry = { maxAttempts: 3, backoff: { initialMs: 500, maxMs: 1000, multiplier: 2 } };
  const model = bus.model;
  if (model) await deleteQueueTopology(model, commandQueueSpec(config, retry));
  const driver = new SimulatorDriver({ seed: 1 });
  let store: Store | undefined;
  if (storeKind === 'postgres') {
    registerMigrations(connectorMigrations);
    store = await openStore(await freshPg('o2c_bench_connectors'));
  }
  const role = await startConnectorRole({
    config,
    connection: bus,
    driver,
    store,
    retry,
    logger,
    prefetch: 256,
  });
  const replyQueue = 'o2c.bench.connectors.replies';
  const ch = await bus.createChannel();
  await ch.deleteQueue(replyQueue);
  await ch.assertQueue(replyQueue, { durable: false, autoDelete: true });
  await ch.bindQueue(replyQueue, 'o2c.events', 'bench.connectors.reply');
  const sentAt = new Map<string, number>();
  const latencies: number[] = [];
  let done: () => void = () => {};
  const finished = new Promise<void>((r) => {
    done = r;
  });
  await ch.consume(
    replyQueue,
    (msg) => {
      if (!msg) return;
      const start = sentAt.get(String(msg.properties.correlationId));
      if (start !== undefined) latencies.push(performance.now() - start);
      if (latencies.length === count) done();
    },
    { noAck: true },
  );
  const publisher = new ConfirmPublisher(bus, { maxUnconfirmed: 500 });
  const t0 = performance.now();
  const cpu0 = process.cpuUsage();
  await Promise.all(
    Array.from({ length: count }, async (_, i) => {
      const m = commandMessage({
        namespace: config.namespace,
        connector: config.name,
        request: createOrderRequest(i),
        orderId: `b-${i}`,
        step: 'so',
        replyTo: 'bench.connectors.reply',
        correlationId: `bc-${i}`,
      });
      sentAt.set(m.correlationId, performance.now());
      await publisher.publish({
        exchange: m.exchange,
        routingKey: m.routingKey,
        body: m.body,
        messageId: m.id,
        type: m.type,
        correlationId: m.correlationId,
      });
    }),
  );
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([finished, new Promise((r) => (timer = setTimeout(r, 120_000)))]);
  clearTimeout(timer);
  const elapsed = (performance.now() - t0) / 1000;
  const cpu = process.cpuUsage(cpu0);
  latencies.sort((a, b) => a - b);
  await role.stop();
  await store?.close();
  await publisher.close();
  await ch.close().catch(() => {});
  if (bus.model) await deleteQueueTopology(bus.model, commandQueueSpec(config, retry));
  await bus.close();
  return {
    store: storeKind,
    commands: count,
    replies: latencies.length,
    salesOrdersCreated: driver.salesOrderCount(),
    commandsPerSecond: Math.round(latencies.length / elapsed),
    // This process's CPU (the role, and the bench's own publisher and reply consumer) per command.
    cpuMsPerCommand: Math.round(((cpu.user + cpu.system) / 1000 / count) * 1000) / 1000,
    roundTripMs: {
      p50: percentile(latencies, 50),
      p95: percentile(latencies, 95),
      p99: percentile(latencies, 99),
    },
  };
}

/** O2C_BENCH_ROLE_ONLY=1: only the role's commands/s through RabbitMQ, printed, no results file. */
async function roleOnly() {
  const commands = Number(process.env.O2C_BENCH_BROKER_COMMANDS ?? 5000);
  for (const kind of ['none', 'postgres'] as const)
    console.log(`role, store ${kind}`, await throughBroker(commands, kind));
}

async function main() {
  const results: Record<string, unknown> = {
    when: new Date().toISOString(),
    machine: `${cpus().length} cores (${cpus()[0]?.model ?? 'unknown cpu'}), Node ${process.version}`,
    loadAverageAtStart: loadavg().map((l) => Math.round(l * 10) / 10),
    node: process.version,
  };
  results.simulatorInProcess = await inProcessOverhead();
  console.log('in process', results.simulatorInProcess);
  results.simulatorAtLimit = await atTheLimit(500, 4);
  console.log('at the limit', results.simulatorAtLimit);
  const commands = Number(process.env.O2C_BENCH_BROKER_COMMANDS ?? 5000);
  results.simulatorThroughBroker = await throughBroker(commands);
  console.log('role through RabbitMQ, replies published with confirms', results.simulatorThroughBroker);
  results.simulatorThroughBrokerPostgres = await throughBroker(commands, 'postgres');
  console.log(
    'role through RabbitMQ, replies through a PostgreSQL outbox',
    results.simulatorThroughBrokerPostgres,
  );
  // Hook for the Tryton figures (1 and 4 workers, time per operation, 1,000-order burst): the Tryton
  // engineer's bench/connectors-tryton.ts exports `runTrytonBench(): Promise<Record<string, unknown>>`.
  const trytonModule = new URL('./connectors-tryton.ts', import.meta.url);
  const resultsFile = new URL('./results/connectors.json', import.meta.url);
  if (process.env.O2C_BENCH_SKIP_TRYTON) {
    // Keep the last Tryton figures rather than overwrite them with nothing.
    const previous = existsSync(resultsFile)
      ? (JSON.parse(readFileSync(resultsFile, 'utf8')) as { tryton?: unknown })
      : {};
    results.tryton = previous.tryton ?? { skipped: 'O2C_BENCH_SKIP_TRYTON set' };
  } else if (existsSync(trytonModule)) {
    const { runTrytonBench } = (await import(trytonModule.href)) as {
      runTrytonBench: () => Promise<Record<string, unknown>>;
    };
    results.tryton = await runTrytonBench();
    console.log('tryton', results.tryton);
  } else {
    results.tryton = { skipped: 'bench/connectors-tryton.ts not present' };
  }
  mkdirSync(new URL('./results/', import.meta.url), { recursive: true });
  writeFileSync(
    new URL('./results/connectors.json', import.meta.url),
    `${JSON.stringify(results, null, 2)}\n`,
  );
  console.log('wrote bench/results/connectors.json');
}

if (process.env.O2C_BENCH_ROLE_ONLY) await roleOnly();
else await main();
