// `make bench-bus`: RabbitMQ figures for the event backbone with persistent 1 KB protobuf envelopes
// on quorum queues: confirmed publishes/s, consumes/s, and publish -> consume -> inbox dedupe on
// PostgreSQL -> ack with end-to-end latency. Writes bench/results/bus.json. Figures, not pass/fail.
import { randomBytes, randomUUID } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { cpus, loadavg, totalmem } from 'node:os';
import { create, toBinary } from '@bufbuild/protobuf';
import { timestampFromMs } from '@bufbuild/protobuf/wkt';
import pg from 'pg';
import pino from 'pino';
import {
  BusConnection,
  ConfirmPublisher,
  Consumer,
  type Delivery,
  deleteQueueTopology,
  EVENT_LOG_STREAM,
  EVENTS_EXCHANGE,
  handleOnce,
  type QueueSpec,
  queueName,
} from '../runtime/src/bus/index.js';
import { type Envelope, EnvelopeSchema } from '../runtime/src/gen/o2c/v1/events_pb.js';
import { openStore } from '../runtime/src/store/index.js';

const AMQP_URL = process.env.O2C_AMQP_URL ?? 'amqp://guest:guest@127.0.0.1:5672';
const PG_ADMIN = 'postgres://postgres@127.0.0.1:5432/postgres';
const DB = 'o2c_bench_bus';
const N_PUBLISH = Number(process.env.BENCH_BUS_MESSAGES ?? 50_000);
const N_E2E = Number(process.env.BENCH_BUS_E2E_MESSAGES ?? 10_000);
const N_INBOX = Number(process.env.BENCH_BUS_INBOX_MESSAGES ?? 20_000);
/** Offered load of the latency run: below the deduplicated consume capacity, so latency is not queueing. */
const E2E_RATE = Number(process.env.BENCH_BUS_E2E_RATE ?? 1_000);
const RUN = randomBytes(3).toString('hex');
const logger = pino({ level: 'error' });
const PADDING = 'o'.repeat(880); // brings the encoded Envelope to ~1 KB

function anEnvelope(type: string, nowMs = Date.now()): Envelope {
  return create(EnvelopeSchema, {
    id: randomUUID(),
    type,
    source: 'o2c/bench/workflow/distributor',
    subject: 'order-0001',
    time: timestampFromMs(nowMs),
    correlationId: randomUUID(),
    traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01',
    payload: {
      case: 'orderFallout',
      value: { orderId: 'order-0001', step: 'tax', message: PADDING, attempts: 3 },
    },
  });
}

/** Publishes `n` envelopes as fast as confirms allow, or at `ratePerSecond`. */
async function publishAll(
  publisher: ConfirmPublisher,
  n: number,
  type: string,
  onSent?: (env: Envelope) => void,
  ratePerSecond?: number,
) {
  let next = 0;
  const startedAt = performance.now();
  const workers = Array.from({ length: 1_000 }, async () => {
    while (next < n) {
      const index = next++;
      if (ratePerSecond) {
        const wait = startedAt + (index * 1000) / ratePerSecond - performance.now();
        if (wait > 0) await new Promise((r) => setTimeout(r, wait));
      }
      const env = anEnvelope(type);
      onSent?.(env);
      await publisher.publish({
        exchange: EVENTS_EXCHANGE,
        routingKey: type,
        body: toBinary(EnvelopeSchema, env),
        messageId: env.id,
        type,
        correlationId: env.correlationId,
        traceparent: env.traceparent,
      });
    }
  });
  await Promise.all(workers);
}

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? Number.NaN;
}

const round = (x: number, digits = 1) => Math.round(x * 10 ** digits) / 10 ** digits;

async function main(): Promise<void> {
  const admin = new pg.Client({ connectionString: PG_ADMIN });
  await admin.connect();
  await admin.query(`DROP DATABASE IF EXISTS ${DB} WITH (FORCE)`);
  await admin.query(`CREATE DATABASE ${DB}`);
  const pgVersion = (await admin.query<{ server_version: string }>('SHOW server_version')).rows[0]!
    .server_version;
  await admin.end();
  const store = await openStore(`postgres://postgres@127.0.0.1:5432/${DB}`, { poolSize: 16 });
  await store.transaction((tx) => tx.execute('CREATE TABLE bench_effects (message_id TEXT NOT NULL)'));

  const conn = new BusConnection({ url: AMQP_URL, name: 'bench-bus', logger });
  await conn.start();
  const brokerVersion = String(conn.model?.connection.serverProperties.version ?? 'unknown');
  const logBound = await conn
    .createChannel()
    .then(async (ch) => {
      const ok = await ch.checkQueue(EVENT_LOG_STREAM).then(
        () => true,
        () => false,
      );
      await ch.close().catch(() => {});
      return ok;
    })
    .catch(() => false);
  const publisher = new ConfirmPublisher(conn, { maxUnconfirmed: 2_000 });
  const specs: QueueSpec[] = [];
  const aSpec = (purpose: string): QueueSpec => {
    const spec: QueueSpec = {
      name: queueName(`bench${RUN}`, 'workflow', 'bus', purpose),
      bindings: [{ exchange: EVENTS_EXCHANGE, routingKey: `bench.${RUN}.${purpose}` }],
      retry: { maxAttempts: 5, backoff: { initialMs: 1_000, maxMs: 30_000, multiplier: 2 } },
    };
    specs.push(spec);
    return spec;
  };

  try {
    // 1. publish-only: confirmed publishes into one quorum queue (plus the event log stream).
    const throughput = aSpec('throughput');
    await conn.declare(throughput);
    const size = toBinary(EnvelopeSchema, anEnvelope('x')).length;
    let t0 = performance.now();
    await publishAll(publisher, N_PUBLISH, `bench.${RUN}.throughput`);
    const publishSeconds = (performance.now() - t0) / 1000;
    console.log(`publish-only: ${N_PUBLISH} in ${publishSeconds.toFixed(2)} s`);

    // 2. consume-only: drain the queue filled above, ack each.
    let consumed = 0;
    let drained!: () => void;
    const done = new Promise<void>((r) => {
      drained = r;
    });
    const drain = new Consumer({
      connection: conn,
      spec: throughput,
      prefetch: 500,
      declare: false,
      handler: async () => {
        if (++consumed === N_PUBLISH) drained();
        return 'ack';
      },
    });
    t0 = performance.now();
    await drain.start();
    await done;
    const consumeSeconds = (performance.now() - t0) / 1000;
    await drain.stop();
    console.log(`consume-only: ${N_PUBLISH} in ${consumeSeconds.toFixed(2)} s`);

    // 3. deduplicated consume: drain a pre-filled queue through the inbox on PostgreSQL.
    const inbox = aSpec('inbox');
    await conn.declare(inbox);
    await publishAll(publisher, N_INBOX, `bench.${RUN}.inbox`);
    let deduped = 0;
    let dedupedAll!: () => void;
    const dedupeDone = new Promise<void>((r) => {
      dedupedAll = r;
    });
    const inboxConsumer = new Consumer({
      connection: conn,
      spec: inbox,
      prefetch: 200,
      declare: false,
      handler: async (d: Delivery) => {
        await handleOnce(store, 'bench-inbox', d.envelope, (tx) =>
          tx.execute('INSERT INTO bench_effects (message_id) VALUES ($1)', [d.envelope.id]),
        );
        if (++deduped === N_INBOX) dedupedAll();
        return 'ack';
      },
    });
    t0 = performance.now();
    await inboxConsumer.start();
    await dedupeDone;
    const inboxSeconds = (performance.now() - t0) / 1000;
    await inboxConsumer.stop();
    console.log(`consume with inbox: ${N_INBOX} in ${inboxSeconds.toFixed(2)} s`);

    // 4. publish -> consume -> inbox claim + effect row in one PostgreSQL transaction -> ack.
    const e2e = aSpec('e2e');
    const sentAt = new Map<string, number>();
    const latencies: number[] = [];
    let handled = 0;
    let finished!: () => void;
    const allHandled = new Promise<void>((r) => {
      finished = r;
    });
    const consumer = new Consumer({
      connection: conn,
      spec: e2e,
      prefetch: 200,
      handler: async (d: Delivery) => {
        await handleOnce(store, 'bench', d.envelope, (tx) =>
          tx.execute('INSERT INTO bench_effects (message_id) VALUES ($1)', [d.envelope.id]),
        );
        const start = sentAt.get(d.envelope.id);
        if (start !== undefined) latencies.push(performance.now() - start);
        if (++handled === N_E2E) finished();
        return 'ack';
      },
    });
    await consumer.start();
    t0 = performance.now();
    await publishAll(
      publisher,
      N_E2E,
      `bench.${RUN}.e2e`,
      (env) => sentAt.set(env.id, performance.now()),
      E2E_RATE,
    );
    await allHandled;
    const e2eSeconds = (performance.now() - t0) / 1000;
    await consumer.stop();
    latencies.sort((a, b) => a - b);

    const result = {
      benchmark: 'bus',
      date: new Date().toISOString(),
      machine: {
        cores: cpus().length,
        cpu: cpus()[0]?.model ?? 'unknown',
        memoryGiB: round(totalmem() / 1024 ** 3),
        node: process.version,
        rabbitmq: brokerVersion,
        postgres: pgVersion,
        note: 'broker, database and client on the same 2-core machine',
      },
      message: {
        encodedEnvelopeBytes: size,
        persistent: true,
        queueType: 'quorum',
        alsoAppendedToEventLogStream: logBound,
      },
      publishOnly: {
        messages: N_PUBLISH,
        seconds: round(publishSeconds, 2),
        msgsPerSecond: Math.round(N_PUBLISH / publishSeconds),
        maxUnconfirmed: 2_000,
      },
      consumeOnly: {
        messages: N_PUBLISH,
        seconds: round(consumeSeconds, 2),
        msgsPerSecond: Math.round(N_PUBLISH / consumeSeconds),
        prefetch: 500,
      },
      consumeWithInboxOnPostgres: {
        messages: N_INBOX,
        seconds: round(inboxSeconds, 2),
        msgsPerSecond: Math.round(N_INBOX / inboxSeconds),
        prefetch: 200,
        postgresPool: 16,
        note: 'pre-filled queue; one transaction per message: inbox claim + effect row; ack after commit',
      },
      publishConsumeInboxAck: {
        messages: N_E2E,
        offeredRatePerSecond: E2E_RATE,
        seconds: round(e2eSeconds, 2),
        msgsPerSecond: Math.round(N_E2E / e2eSeconds),
        latencyMs: { p50: round(percentile(latencies, 50)), p99: round(percentile(latencies, 99)) },
        prefetch: 200,
        postgresPool: 16,
        note: 'paced publishing; latency from publish call to commit of the handler transaction (before the ack)',
      },
      loadAverageAtEnd: loadavg().map((x) => round(x, 2)),
    };
    writeFileSync(new URL('./results/bus.json', import.meta.url), `${JSON.stringify(result, null, 2)}\n`);
    console.log(JSON.stringify(result, null, 2));
  } finally {
    for (const spec of specs) await deleteQueueTopology(conn.model!, spec).catch(() => {});
    await publisher.close();
    await conn.close();
    await store.close();
  }
}

await main();
