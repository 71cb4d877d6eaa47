// `make bench-bus`: RabbitMQ figures for the event backbone with persistent 1 KB protobuf envelopes
// on quorum queues: confirmed publishes/s of a connector reply (not in the event log), of the same
// reply also appended to the log as before the log took domain events only, and of a domain event
// (appended to the log), each with the broker's CPU per message; consumes/s, deduplicated consumes (inbox on PostgreSQL,
// batched and one by one), the outbox relay, and publish -> consume -> inbox dedupe -> ack with
// end-to-end latency. Writes bench/results/bus.json. Figures with their aims, not pass/fail.
import { randomBytes, randomUUID } from 'node:crypto';
import { readdirSync, readFileSync, readlinkSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, totalmem } from 'node:os';
import { create, toBinary } from '@bufbuild/protobuf';
import { timestampFromMs } from '@bufbuild/protobuf/wkt';
import pg from 'pg';
import pino from 'pino';
import { eventLogTakes, eventRoutingKey, replyRoutingKey } from '../runtime/src/bus/addressing.js';
import {
  BusConnection,
  ConfirmPublisher,
  Consumer,
  type Delivery,
  declareEventLog,
  deleteQueueTopology,
  EVENT_LOG_STREAM,
  EVENTS_EXCHANGE,
  handleBatchOnce,
  handleOnce,
  type QueueSpec,
  queueName,
} from '../runtime/src/bus/index.js';
import { type Envelope, EnvelopeSchema } from '../runtime/src/gen/o2c/v1/events_pb.js';
import { OutboxRelay } from '../runtime/src/outbox/relay.js';
import { openStore, type Store, type Tx } from '../runtime/src/store/index.js';

const AMQP_URL = process.env.O2C_AMQP_URL ?? 'amqp://guest:guest@127.0.0.1:5672';
const PG_ADMIN = 'postgres://postgres@127.0.0.1:5432/postgres';
const DB = 'o2c_bench_bus';
const N_PUBLISH = Number(process.env.BENCH_BUS_MESSAGES ?? 50_000);
const N_E2E = Number(process.env.BENCH_BUS_E2E_MESSAGES ?? 10_000);
const N_INBOX = Number(process.env.BENCH_BUS_INBOX_MESSAGES ?? 20_000);
const N_INBOX_ONE_BY_ONE = Number(process.env.BENCH_BUS_INBOX_ONE_BY_ONE_MESSAGES ?? 5_000);
const N_RELAY = Number(process.env.BENCH_BUS_RELAY_MESSAGES ?? 20_000);
/** Outbox rows per ordering key in the relay run: a ten-step order writes about ten. */
const RELAY_ROWS_PER_KEY = 10;
const MAX_UNCONFIRMED = 2_000;
/** The publish-only shapes run in this many interleaved rounds, N_PUBLISH messages per shape in all. */
const PUBLISH_ROUNDS = Number(process.env.BENCH_BUS_PUBLISH_ROUNDS ?? 5);
const INBOX_PREFETCH = 500;
const INBOX_BATCH = 250;
const AIMS = { confirmedPublishesPerSecond: 20_000, deduplicatedConsumesPerSecond: 5_000 };
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

/** Publishes `n` envelopes as fast as confirms allow, or at `ratePerSecond`; routing key = type unless given. */
async function publishAll(
  publisher: ConfirmPublisher,
  n: number,
  type: string,
  onSent?: (env: Envelope) => void,
  ratePerSecond?: number,
  routingKey = type,
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
        routingKey,
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

/**
 * The broker process: the one listening on the AMQP port (its socket's inode among its descriptors),
 * so private test brokers on the same machine are not counted. Undefined where /proc is not readable.
 */
function brokerPid(port: number): number | undefined {
  try {
    const hexPort = port.toString(16).toUpperCase().padStart(4, '0');
    const inodes = new Set<string>();
    for (const table of ['/proc/net/tcp', '/proc/net/tcp6']) {
      for (const line of readFileSync(table, 'utf8').split('\n').slice(1)) {
        const f = line.trim().split(/\s+/);
        if (f[1]?.endsWith(`:${hexPort}`) && f[3] === '0A' && f[9]) inodes.add(`socket:[${f[9]}]`);
      }
    }
    for (const pid of readdirSync('/proc').filter((d) => /^\d+$/.test(d))) {
      try {
        if (!readFileSync(`/proc/${pid}/comm`, 'utf8').startsWith('beam')) continue;
        for (const fd of readdirSync(`/proc/${pid}/fd`)) {
          if (inodes.has(readlinkSync(`/proc/${pid}/fd/${fd}`))) return Number(pid);
        }
      } catch {
        // a process that ended or is not ours to read
      }
    }
  } catch {
    return undefined;
  }
  return undefined;
}

/** CPU seconds (user + system) the process used so far. */
function cpuSeconds(pid: number | undefined): number | undefined {
  if (pid === undefined) return undefined;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) / 100; // utime, stime in USER_HZ ticks
  } catch {
    return undefined;
  }
}

/** The effect rows of a batch's fresh deliveries, one statement. */
async function insertEffects(tx: Tx, ids: string[]): Promise<void> {
  if (ids.length === 0) return;
  const rows = ids.map((_, i) => `($${i + 1})`).join(', ');
  await tx.execute(`INSERT INTO bench_effects (message_id) VALUES ${rows}`, ids);
}

async function unsentOutboxRows(store: Store): Promise<number> {
  const [row] = await store.transaction((tx) =>
    tx.query<{ n: number }>('SELECT count(*)::int AS n FROM outbox WHERE sent_at IS NULL'),
  );
  return Number(row?.n ?? 0);
}

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? Number.NaN;
}

const round = (x: number, digits = 1) => Math.round(x * 10 ** digits) / 10 ** digits;

async function main(): Promise<void> {
  const loadAtStart = loadavg().map((x) => round(x, 2));
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
  const publisher = new ConfirmPublisher(conn, { maxUnconfirmed: MAX_UNCONFIRMED });
  const specs: QueueSpec[] = [];
  const aSpec = (purpose: string, routingKey = `bench.${RUN}.${purpose}`): QueueSpec => {
    const spec: QueueSpec = {
      name: queueName(`bench${RUN}`, 'workflow', 'bus', purpose),
      bindings: [{ exchange: EVENTS_EXCHANGE, routingKey }],
      retry: { maxAttempts: 5, backoff: { initialMs: 1_000, maxMs: 30_000, multiplier: 2 } },
    };
    specs.push(spec);
    return spec;
  };

  try {
    // 1. publish-only, three shapes in the same minute, each into its own quorum queue: a connector
    // reply (not in the event log), the same reply with the log also bound to its key (what every
    // reply cost while the log was bound with '#'), and a domain event (in the log).
    await declareEventLog(conn);
    const size = toBinary(EnvelopeSchema, anEnvelope('x')).length;
    const benchNs = `bench${RUN}`;
    const replyKey = replyRoutingKey({ namespace: benchNs, kind: 'workflow', name: 'bus' });
    const eventType = 'o2c.v1.BenchEvent';
    const eventKey = eventRoutingKey(`o2c/${benchNs}/connector/bus`, eventType);
    const shapes = [
      {
        name: 'replyLoggedAsBefore',
        label: 'reply, also in the event log (before)',
        key: replyKey,
        logAlso: true,
      },
      { name: 'reply', label: 'reply, not in the event log (after)', key: replyKey, logAlso: false },
      { name: 'domainEvent', label: 'domain event, in the event log', key: eventKey, logAlso: false },
    ] as const;
    const pid = brokerPid(Number(new URL(AMQP_URL).port || 5672));
    const publishFigures: Record<
      string,
      {
        routingKey: string;
        inEventLog: boolean;
        messages: number;
        seconds: number;
        msgsPerSecond: number;
        brokerCpuMicrosPerMessage?: number;
        aim: number;
      }
    > = {};
    let throughput!: QueueSpec;
    // Rounds interleave the shapes, so load that comes and goes on a shared machine hits each alike.
    const specsByShape = new Map<string, QueueSpec>();
    for (const shape of shapes) {
      const spec = aSpec(`publish-${shape.name.toLowerCase()}`, shape.key);
      if (shape.name === 'reply') throughput = spec;
      await conn.declare(spec);
      specsByShape.set(shape.name, spec);
    }
    const totals = new Map(
      shapes.map((s) => [s.name, { messages: 0, seconds: 0, cpu: 0 as number | undefined }]),
    );
    for (let round = 0; round < PUBLISH_ROUNDS; round++) {
      const n = Math.floor(N_PUBLISH / PUBLISH_ROUNDS) + (round < N_PUBLISH % PUBLISH_ROUNDS ? 1 : 0);
      for (const shape of shapes) {
        const ch = await conn.createChannel();
        if (shape.logAlso) await ch.bindQueue(EVENT_LOG_STREAM, EVENTS_EXCHANGE, shape.key);
        const cpu0 = cpuSeconds(pid);
        const started = performance.now();
        try {
          await publishAll(publisher, n, shape.key, undefined, undefined, shape.key);
        } finally {
          if (shape.logAlso) await ch.unbindQueue(EVENT_LOG_STREAM, EVENTS_EXCHANGE, shape.key);
          await ch.close().catch(() => {});
        }
        const seconds = (performance.now() - started) / 1000;
        const cpu1 = cpuSeconds(pid);
        const total = totals.get(shape.name)!;
        total.messages += n;
        total.seconds += seconds;
        total.cpu =
          cpu0 !== undefined && cpu1 !== undefined && total.cpu !== undefined
            ? total.cpu + cpu1 - cpu0
            : undefined;
        console.log(`publish-only round ${round + 1}, ${shape.label}: ${n} in ${seconds.toFixed(2)} s`);
      }
    }
    for (const shape of shapes) {
      const total = totals.get(shape.name)!;
      const cpuPerMessage = total.cpu === undefined ? undefined : round((total.cpu * 1e6) / total.messages);
      publishFigures[shape.name] = {
        routingKey: shape.key,
        inEventLog: shape.logAlso || eventLogTakes(shape.key),
        messages: total.messages,
        seconds: round(total.seconds, 2),
        msgsPerSecond: Math.round(total.messages / total.seconds),
        brokerCpuMicrosPerMessage: cpuPerMessage,
        aim: AIMS.confirmedPublishesPerSecond,
      };
    }
    // The reply queue is drained below; the other two go with the bench's queues at the end.
    let t0 = performance.now();

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

    // 3. deduplicated consume: drain a pre-filled queue through the inbox on PostgreSQL, a batch of
    // deliveries per transaction (claimInboxMany + one effect insert), acks coalesced.
    const inbox = aSpec('inbox');
    await conn.declare(inbox);
    await publishAll(publisher, N_INBOX, `bench.${RUN}.inbox`);
    let deduped = 0;
    let batches = 0;
    let dedupedAll!: () => void;
    const dedupeDone = new Promise<void>((r) => {
      dedupedAll = r;
    });
    const inboxConsumer = new Consumer({
      connection: conn,
      spec: inbox,
      prefetch: INBOX_PREFETCH,
      batchMaxSize: INBOX_BATCH,
      declare: false,
      batchHandler: async (ds: Delivery[]) => {
        batches++;
        await handleBatchOnce(
          store,
          'bench-inbox',
          ds.map((d) => d.envelope),
          (tx, fresh) =>
            insertEffects(
              tx,
              ds.filter((_, i) => fresh[i]).map((d) => d.envelope.id),
            ),
        );
        deduped += ds.length;
        if (deduped === N_INBOX) dedupedAll();
        return ds.map(() => 'ack' as const);
      },
    });
    t0 = performance.now();
    await inboxConsumer.start();
    await dedupeDone;
    const inboxSeconds = (performance.now() - t0) / 1000;
    await inboxConsumer.stop();
    console.log(
      `consume with inbox, batched: ${N_INBOX} in ${inboxSeconds.toFixed(2)} s (${batches} batches)`,
    );

    // 3b. the same one delivery per transaction (handleOnce), for comparison.
    const single = aSpec('inbox1');
    await conn.declare(single);
    await publishAll(publisher, N_INBOX_ONE_BY_ONE, `bench.${RUN}.inbox1`);
    let singles = 0;
    let singlesAll!: () => void;
    const singlesDone = new Promise<void>((r) => {
      singlesAll = r;
    });
    const singleConsumer = new Consumer({
      connection: conn,
      spec: single,
      prefetch: 200,
      declare: false,
      handler: async (d: Delivery) => {
        await handleOnce(store, 'bench-inbox1', d.envelope, (tx) => insertEffects(tx, [d.envelope.id]));
        if (++singles === N_INBOX_ONE_BY_ONE) singlesAll();
        return 'ack';
      },
    });
    t0 = performance.now();
    await singleConsumer.start();
    await singlesDone;
    const singleSeconds = (performance.now() - t0) / 1000;
    await singleConsumer.stop();
    console.log(`consume with inbox, one by one: ${N_INBOX_ONE_BY_ONE} in ${singleSeconds.toFixed(2)} s`);

    // 3c. the outbox relay: rows committed to the outbox, published with confirms, marked sent.
    const relaySpec = aSpec('relay');
    await conn.declare(relaySpec);
    const relayKey = `bench.${RUN}.relay`;
    const relayIds: string[] = [];
    for (let start = 0; start < N_RELAY; start += 1_000) {
      await store.transaction((tx) =>
        tx.enqueueOutbox(
          Array.from({ length: Math.min(1_000, N_RELAY - start) }, (_, i) => {
            const env = anEnvelope(relayKey);
            relayIds.push(env.id);
            return {
              id: env.id,
              exchange: EVENTS_EXCHANGE,
              routingKey: relayKey,
              body: toBinary(EnvelopeSchema, env),
              type: relayKey,
              correlationId: env.correlationId,
              orderingKey: `order-${Math.floor((start + i) / RELAY_ROWS_PER_KEY)}`,
              headers: { traceparent: env.traceparent },
            };
          }),
        ),
      );
    }
    const relay = new OutboxRelay({ store, publisher, logger, pollMs: 20 });
    t0 = performance.now();
    relay.start();
    while ((await unsentOutboxRows(store)) > 0) await new Promise((r) => setTimeout(r, 20));
    const relaySeconds = (performance.now() - t0) / 1000;
    await relay.stop();
    const relayed = await conn.createChannel().then(async (ch) => {
      const n = (await ch.checkQueue(relaySpec.name)).messageCount;
      await ch.close().catch(() => {});
      return n;
    });
    console.log(`outbox relay: ${N_RELAY} in ${relaySeconds.toFixed(2)} s (${relayed} in the queue)`);

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
      prefetch: INBOX_PREFETCH,
      batchMaxSize: INBOX_BATCH,
      batchHandler: async (ds: Delivery[]) => {
        await handleBatchOnce(
          store,
          'bench',
          ds.map((d) => d.envelope),
          (tx, fresh) =>
            insertEffects(
              tx,
              ds.filter((_, i) => fresh[i]).map((d) => d.envelope.id),
            ),
        );
        const now = performance.now();
        for (const d of ds) {
          const start = sentAt.get(d.envelope.id);
          if (start !== undefined) latencies.push(now - start);
        }
        handled += ds.length;
        if (handled === N_E2E) finished();
        return ds.map(() => 'ack' as const);
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

    const dedupeRate = Math.round(N_INBOX / inboxSeconds);
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
        loadAverageAtStart: loadAtStart,
      },
      aims: AIMS,
      message: {
        encodedEnvelopeBytes: size,
        persistent: true,
        queueType: 'quorum',
        eventLogStreamDeclared: logBound,
        note: 'publish-only shapes each into one quorum queue; the other phases use bench keys the event log does not take',
      },
      publishOnly: {
        // The headline is the domain event, the shape that still costs the log's copy.
        ...publishFigures.domainEvent!,
        headlineShape: 'domainEvent',
        maxUnconfirmed: MAX_UNCONFIRMED,
        brokerPid: pid,
        rounds: PUBLISH_ROUNDS,
        shapes: publishFigures,
        note: 'same minute, in interleaved rounds of: reply with the log bound to its key (as under the old # binding), reply without, domain event; broker CPU from /proc utime+stime of the broker process, which also serves everything else running on the machine',
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
        msgsPerSecond: dedupeRate,
        prefetch: INBOX_PREFETCH,
        batchMaxSize: INBOX_BATCH,
        batches,
        postgresPool: 16,
        aim: AIMS.deduplicatedConsumesPerSecond,
        note: 'pre-filled queue; a batch of deliveries per transaction (batchHandler + handleBatchOnce: one claimInboxMany, one effect insert); coalesced acks after commit',
      },
      consumeWithInboxOnPostgresOneByOne: {
        messages: N_INBOX_ONE_BY_ONE,
        seconds: round(singleSeconds, 2),
        msgsPerSecond: Math.round(N_INBOX_ONE_BY_ONE / singleSeconds),
        prefetch: 200,
        postgresPool: 16,
        note: 'pre-filled queue; one transaction per message (handler + handleOnce): inbox claim + effect row; ack after commit',
      },
      outboxRelay: {
        messages: N_RELAY,
        rowsPerOrderingKey: RELAY_ROWS_PER_KEY,
        seconds: round(relaySeconds, 2),
        msgsPerSecond: Math.round(N_RELAY / relaySeconds),
        confirmedInQueue: relayed,
        note: 'committed outbox rows -> confirmed publishes (per-key order kept) -> marked sent',
      },
      publishConsumeInboxAck: {
        messages: N_E2E,
        offeredRatePerSecond: E2E_RATE,
        seconds: round(e2eSeconds, 2),
        msgsPerSecond: Math.round(N_E2E / e2eSeconds),
        latencyMs: { p50: round(percentile(latencies, 50)), p99: round(percentile(latencies, 99)) },
        prefetch: INBOX_PREFETCH,
        batchMaxSize: INBOX_BATCH,
        postgresPool: 16,
        note: 'paced publishing; batch handler; latency from publish call to commit of the handler transaction (before the ack)',
      },
      loadAverageAtEnd: loadavg().map((x) => round(x, 2)),
    };
    writeFileSync(new URL('./results/bus.json', import.meta.url), `${JSON.stringify(result, null, 2)}\n`);
    console.log(JSON.stringify(result, null, 2));
    const machine = `${result.machine.cores} cores (${result.machine.cpu}), RabbitMQ ${brokerVersion} and PostgreSQL ${pgVersion} on the same host, load ${loadAtStart.join(' ')} at start`;
    const line = (label: string, value: number, aim?: number) =>
      console.log(
        `${label.padEnd(62)} ${String(value).padStart(7)}/s${aim ? `   aim >= ${aim.toLocaleString('en')}/s ${value >= aim ? 'met' : 'not met'}` : ''}`,
      );
    console.log(`\nbus figures on ${machine}; ~${size} B persistent envelopes on quorum queues`);
    for (const shape of shapes) {
      const f = publishFigures[shape.name]!;
      line(`confirmed publishes, ${shape.label}`, f.msgsPerSecond, AIMS.confirmedPublishesPerSecond);
      if (f.brokerCpuMicrosPerMessage !== undefined)
        console.log(`${''.padEnd(62)} broker CPU ${f.brokerCpuMicrosPerMessage} us/msg`);
    }
    line('consumes (ack only)', result.consumeOnly.msgsPerSecond);
    line('deduplicated consumes (batched inbox)', dedupeRate, AIMS.deduplicatedConsumesPerSecond);
    line('deduplicated consumes (one by one)', result.consumeWithInboxOnPostgresOneByOne.msgsPerSecond);
    line('outbox relay', result.outboxRelay.msgsPerSecond);
    console.log(
      `${'publish -> dedupe -> commit latency'.padEnd(62)} p50 ${result.publishConsumeInboxAck.latencyMs.p50} ms, p99 ${result.publishConsumeInboxAck.latencyMs.p99} ms at ${E2E_RATE}/s offered`,
    );
  } finally {
    for (const spec of specs) await deleteQueueTopology(conn.model!, spec).catch(() => {});
    await publisher.close();
    await conn.close();
    await store.close();
  }
}

await main();
