// Failure recovery of the event backbone against a real RabbitMQ and PostgreSQL: a broker restart
// in the middle of a 10,000-message stream, and a consumer process killed with unacked messages.
// Exactly-once effect = at-least-once delivery + the inbox. The restart happens on a RabbitMQ of this
// file's own (support/private-services.ts), never on the shared one.
import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { create, toBinary } from '@bufbuild/protobuf';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  BusConnection,
  ConfirmPublisher,
  Consumer,
  type Delivery,
  deleteQueueTopology,
  EVENTS_EXCHANGE,
  type HandlerOutcome,
  handleOnce,
  type QueueSpec,
} from '../../runtime/src/bus/index.js';
import { EnvelopeSchema } from '../../runtime/src/gen/o2c/v1/events_pb.js';
import { openStore, type Store } from '../../runtime/src/store/index.js';
import { eventually, specMaker } from './support/bus.js';
import { type PrivateRabbit, startPrivateRabbit } from './support/private-services.js';
import { BROKER_URL, freshDatabase } from './support/services.js';

const DB = 'o2c_test_bus_recovery';
const NS = `busrec${randomBytes(3).toString('hex')}`;
const ROOT = resolve(import.meta.dirname, '../..');
const logger = pino({ level: 'error' });

let store: Store;
/** The fresh database's URL, for the consumer processes too. */
let dbUrl: string;
const specs: QueueSpec[] = [];
const connections: BusConnection[] = [];
const children: ChildProcess[] = [];

const aSpec = specMaker(
  NS,
  'orders',
  { maxAttempts: 5, backoff: { initialMs: 200, maxMs: 2_000, multiplier: 2 } },
  specs,
);

async function aConnection(name: string, url = BROKER_URL): Promise<BusConnection> {
  const conn = new BusConnection({
    url,
    name,
    logger,
    reconnect: { initialMs: 100, maxMs: 1_000 },
  });
  connections.push(conn);
  await conn.start(60_000);
  return conn;
}

function anEnvelope(type: string) {
  return create(EnvelopeSchema, {
    id: randomUUID(),
    type,
    correlationId: randomUUID(),
    payload: { case: 'orderFallout', value: { orderId: 'o-1', step: 'allocate', message: 'y'.repeat(200) } },
  });
}

/** What the outbox relay does: publish until the broker confirms. */
async function publishUntilConfirmed(
  publisher: ConfirmPublisher,
  env: ReturnType<typeof anEnvelope>,
  failures: { n: number },
) {
  for (;;) {
    try {
      await publisher.publish({
        exchange: EVENTS_EXCHANGE,
        routingKey: env.type,
        body: toBinary(EnvelopeSchema, env),
        messageId: env.id,
        type: env.type,
        correlationId: env.correlationId,
      });
      return;
    } catch {
      failures.n++;
      await new Promise((r) => setTimeout(r, 200));
    }
  }
}

async function effectCounts(consumer: string): Promise<{ rows: number; distinct: number }> {
  const [row] = await store.transaction((tx) =>
    tx.query<{ rows: number; distinct: number }>(
      'SELECT count(*)::int AS rows, count(DISTINCT message_id)::int AS distinct FROM bus_effects WHERE consumer = $1',
      [consumer],
    ),
  );
  return row!;
}

beforeAll(async () => {
  dbUrl = await freshDatabase(DB);
  store = await openStore(dbUrl, { poolSize: 30 });
  await store.transaction((tx) =>
    tx.execute('CREATE TABLE bus_effects (consumer TEXT NOT NULL, message_id TEXT NOT NULL)'),
  );
});

afterAll(async () => {
  for (const child of children) if (child.exitCode === null) child.kill('SIGKILL');
  const conn = await aConnection('bus-recovery-cleanup');
  for (const spec of specs) await deleteQueueTopology(conn.model!, spec).catch(() => {});
  for (const c of connections) await c.close();
  await store?.close();
});

describe('broker restart', () => {
  let rabbit: PrivateRabbit;
  beforeAll(async () => {
    rabbit = await startPrivateRabbit('bus-recovery');
  });
  afterAll(async () => {
    await rabbit?.close();
  });

  it('handles each of 10,000 messages once in effect across stop_app/start_app, both sides recovering on their own', async () => {
    const spec = aSpec('restart');
    const consumerConn = await aConnection('bus-recovery-consumer', rabbit.url);
    const publisherConn = await aConnection('bus-recovery-publisher', rabbit.url);
    const lifecycle: string[] = [];
    consumerConn.on('disconnected', () => lifecycle.push('consumer-disconnected'));
    consumerConn.on('connected', () => lifecycle.push('consumer-connected'));
    publisherConn.on('disconnected', () => lifecycle.push('publisher-disconnected'));
    publisherConn.on('connected', () => lifecycle.push('publisher-connected'));
    let duplicates = 0;
    const consumer = new Consumer({
      connection: consumerConn,
      spec,
      prefetch: 100,
      handler: async (d: Delivery): Promise<HandlerOutcome> => {
        const r = await handleOnce(store, 'restart', d.envelope, (tx) =>
          tx.execute('INSERT INTO bus_effects (consumer, message_id) VALUES ($1, $2)', [
            'restart',
            d.envelope.id,
          ]),
        );
        if (r.duplicate) duplicates++;
        return 'ack';
      },
    });
    await consumer.start();
    const publisher = new ConfirmPublisher(publisherConn, { maxUnconfirmed: 500 });

    const total = 10_000;
    const envelopes = Array.from({ length: total }, () => anEnvelope(`${NS}.restart.event`));
    const failures = { n: 0 };
    let next = 0;
    let confirmed = 0;
    // Paced at ~1,000 messages/s so that the broker restart lands in the middle of the stream.
    const startedAt = Date.now();
    const publishing = Promise.all(
      Array.from({ length: 200 }, async () => {
        while (next < total) {
          const index = next++;
          const due = startedAt + index;
          if (due > Date.now()) await new Promise((r) => setTimeout(r, due - Date.now()));
          await publishUntilConfirmed(publisher, envelopes[index]!, failures);
          confirmed++;
        }
      }),
    );

    await eventually(async () => (confirmed >= 3_000 ? true : undefined), 60_000);
    await rabbit.restart({ downMs: 1_000 });
    await publishing;
    const counts = await eventually(async () => {
      const c = await effectCounts('restart');
      return c.distinct === total ? c : undefined;
    }, 120_000);
    await new Promise((r) => setTimeout(r, 500)); // late redeliveries would show up as extra rows
    expect(await effectCounts('restart')).toEqual({ rows: total, distinct: total });
    expect(counts.rows).toBe(total);
    expect(failures.n).toBeGreaterThan(0);
    expect(lifecycle).toEqual(
      expect.arrayContaining([
        'consumer-disconnected',
        'consumer-connected',
        'publisher-disconnected',
        'publisher-connected',
      ]),
    );
    // eslint-disable-next-line no-console
    console.info(
      `broker restart: ${failures.n} publish failures retried, ${duplicates} duplicate deliveries absorbed`,
    );
    await consumer.stop();
    await publisher.close();
  }, 240_000);
});

/** A consumer process that commits, then dawdles before acking, so a kill lands between the two. */
const CHILD = `
import { BusConnection, Consumer, handleOnce } from ${JSON.stringify(join(ROOT, 'runtime/src/bus/index.ts'))};
import { openStore } from ${JSON.stringify(join(ROOT, 'runtime/src/store/index.ts'))};
import pino from ${JSON.stringify(join(ROOT, 'node_modules/pino/pino.js'))};
const spec = JSON.parse(process.env.SPEC);
const store = await openStore(process.env.DB_URL, { skipMigrations: true });
const conn = new BusConnection({ url: process.env.AMQP_URL, name: 'bus-recovery-child', logger: pino({ level: 'error' }) });
await conn.start();
const consumer = new Consumer({ connection: conn, spec, prefetch: 20, handler: async (d) => {
  await handleOnce(store, process.env.CONSUMER, d.envelope, (tx) =>
    tx.execute('INSERT INTO bus_effects (consumer, message_id) VALUES ($1, $2)', [process.env.CONSUMER, d.envelope.id]));
  await new Promise((r) => setTimeout(r, 100));
  return 'ack';
} });
await consumer.start();
process.on('SIGTERM', async () => { await consumer.stop(); await conn.close(); await store.close(); process.exit(0); });
console.log('ready');
`;

function spawnConsumer(spec: QueueSpec, consumerName: string): Promise<ChildProcess> {
  const dir = mkdtempSync(join(tmpdir(), 'o2c-bus-'));
  const file = join(dir, 'consumer.mts');
  writeFileSync(file, CHILD);
  // node itself with tsx as a loader: the tsx CLI would put a wrapper process in between, and a
  // SIGKILL to the wrapper would leave the consumer running.
  const child = spawn(process.execPath, ['--import', 'tsx', file], {
    cwd: ROOT,
    env: {
      ...process.env,
      SPEC: JSON.stringify(spec),
      DB_URL: dbUrl,
      AMQP_URL: BROKER_URL,
      CONSUMER: consumerName,
    },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  children.push(child);
  return new Promise((resolveReady, reject) => {
    const timer = setTimeout(() => reject(new Error('consumer child not ready within 60 s')), 60_000);
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`consumer child exited early (${code})`));
    });
    child.stdout!.on('data', (chunk: Buffer) => {
      if (chunk.toString().includes('ready')) {
        clearTimeout(timer);
        resolveReady(child);
      }
    });
  });
}

describe('consumer process failure', () => {
  it('redelivers what a killed consumer left unacked and handles each message once', async () => {
    const spec = aSpec('killed');
    const conn = await aConnection('bus-recovery-killed');
    await conn.declare(spec);
    const publisher = new ConfirmPublisher(conn);
    const total = 300;
    const failures = { n: 0 };
    await Promise.all(
      Array.from({ length: total }, () =>
        publishUntilConfirmed(publisher, anEnvelope(`${NS}.killed.event`), failures),
      ),
    );

    const child = await spawnConsumer(spec, 'killed');
    await eventually(async () => ((await effectCounts('killed')).distinct >= 60 ? true : undefined), 60_000);
    const exited = new Promise((r) => child.once('exit', r));
    child.kill('SIGKILL');
    await exited;
    const handledByChild = (await effectCounts('killed')).distinct;
    expect(handledByChild).toBeLessThan(total);

    let redelivered = 0;
    let duplicates = 0;
    const survivor = new Consumer({
      connection: conn,
      spec,
      prefetch: 50,
      handler: async (d) => {
        if (d.redelivered) redelivered++;
        const r = await handleOnce(store, 'killed', d.envelope, (tx) =>
          tx.execute('INSERT INTO bus_effects (consumer, message_id) VALUES ($1, $2)', [
            'killed',
            d.envelope.id,
          ]),
        );
        if (r.duplicate) duplicates++;
        return 'ack';
      },
    });
    await survivor.start();
    await eventually(
      async () => ((await effectCounts('killed')).distinct === total ? true : undefined),
      60_000,
    );
    await new Promise((r) => setTimeout(r, 300));
    expect(await effectCounts('killed')).toEqual({ rows: total, distinct: total });
    expect(redelivered).toBeGreaterThan(0);
    // Committed by the child but never acked: redelivered, recognised by the inbox, not handled again.
    expect(duplicates).toBeGreaterThan(0);
    await survivor.stop();
    await publisher.close();
  }, 120_000);

  it('on SIGTERM finishes and acks the in-flight messages before exiting', async () => {
    const spec = aSpec('sigterm');
    const conn = await aConnection('bus-recovery-sigterm');
    await conn.declare(spec);
    const publisher = new ConfirmPublisher(conn);
    const failures = { n: 0 };
    await Promise.all(
      Array.from({ length: 100 }, () =>
        publishUntilConfirmed(publisher, anEnvelope(`${NS}.sigterm.event`), failures),
      ),
    );
    const child = await spawnConsumer(spec, 'sigterm');
    await eventually(async () => ((await effectCounts('sigterm')).rows >= 30 ? true : undefined), 60_000);
    const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
    child.kill('SIGTERM');
    expect(await exited).toBe(0);
    let redelivered = 0;
    const survivor = new Consumer({
      connection: conn,
      spec,
      prefetch: 50,
      handler: async (d) => {
        if (d.redelivered) redelivered++;
        await handleOnce(store, 'sigterm', d.envelope, (tx) =>
          tx.execute('INSERT INTO bus_effects (consumer, message_id) VALUES ($1, $2)', [
            'sigterm',
            d.envelope.id,
          ]),
        );
        return 'ack';
      },
    });
    await survivor.start();
    await eventually(async () => ((await effectCounts('sigterm')).rows === 100 ? true : undefined), 60_000);
    await new Promise((r) => setTimeout(r, 300));
    expect(await effectCounts('sigterm')).toEqual({ rows: 100, distinct: 100 });
    expect(redelivered).toBe(0); // nothing was left unacked by the graceful stop
    await survivor.stop();
    await publisher.close();
  }, 120_000);
});
