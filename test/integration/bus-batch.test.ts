// The consumer's batch mode against a real RabbitMQ and PostgreSQL: deliveries the channel buffered
// handed over together in queue order, poison parked alone, per-delivery outcomes routed as usual,
// a throwing batch retried whole, and coalesced acks that neither lose nor double-ack a delivery.
import { randomBytes, randomUUID } from 'node:crypto';
import { create, toBinary } from '@bufbuild/protobuf';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type BusConnection,
  type ConfirmPublisher,
  Consumer,
  type Delivery,
  EVENTS_EXCHANGE,
  type HandlerOutcome,
  handleBatchOnce,
  listDlq,
  PermanentError,
  type QueueSpec,
} from '../../runtime/src/bus/index.js';
import { type Envelope, EnvelopeSchema } from '../../runtime/src/gen/o2c/v1/events_pb.js';
import type { Store } from '../../runtime/src/store/index.js';
import { closeBus, eventually, openBus, specMaker } from './support/bus.js';

const DB = 'o2c_test_bus_batch';
const RUN = randomBytes(3).toString('hex');
const NS = `busbatch${RUN}`;

/** Every warning the bus logs in this file; a double ack would show as a channel error here. */
const logLines: string[] = [];
let conn: BusConnection;
let publisher: ConfirmPublisher;
let store: Store;
const specs: QueueSpec[] = [];

const aSpec = specMaker(
  NS,
  'billing',
  { maxAttempts: 3, backoff: { initialMs: 100, maxMs: 400, multiplier: 2 } },
  specs,
);

function anEnvelope(type: string, subject = ''): Envelope {
  return create(EnvelopeSchema, {
    id: randomUUID(),
    type,
    source: `o2c/${NS}/test`,
    subject,
    correlationId: randomUUID(),
    payload: { case: 'orderFallout', value: { orderId: 'o-1', step: 'tax', message: 'x'.repeat(64) } },
  });
}

async function publishEnvelope(env: Envelope): Promise<void> {
  await publisher.publish({
    exchange: EVENTS_EXCHANGE,
    routingKey: env.type,
    body: toBinary(EnvelopeSchema, env),
    messageId: env.id,
    type: env.type,
    correlationId: env.correlationId,
  });
}

/** Publishes one after the other, so the queue holds them in this order. */
async function publishInOrder(envs: Envelope[]): Promise<void> {
  for (const env of envs) await publishEnvelope(env);
}

async function effects(consumer: string): Promise<string[]> {
  return store.transaction(async (tx) =>
    (
      await tx.query<{ message_id: string }>(
        'SELECT message_id FROM bus_effects WHERE consumer = $1 ORDER BY seq',
        [consumer],
      )
    ).map((r) => r.message_id),
  );
}

/** Inbox claims and effect rows of a whole batch in one transaction; the fresh ones get a row. */
async function recordBatch(consumer: string, ds: Delivery[]): Promise<void> {
  await handleBatchOnce(
    store,
    consumer,
    ds.map((d) => d.envelope),
    async (tx, fresh) => {
      const ids = ds.filter((_, i) => fresh[i]).map((d) => d.envelope.id);
      if (ids.length === 0) return;
      const rows = ids.map((_, i) => `($1, $${i + 2})`).join(', ');
      await tx.execute(`INSERT INTO bus_effects (consumer, message_id) VALUES ${rows}`, [consumer, ...ids]);
    },
  );
}

/** Messages ready in the queue (after the consumer stopped: also every one it never acked). */
async function readyIn(queue: string): Promise<number> {
  const ch = await conn.createChannel();
  try {
    return (await ch.checkQueue(queue)).messageCount;
  } finally {
    await ch.close().catch(() => {});
  }
}

beforeAll(async () => {
  ({ store, conn, publisher } = await openBus({
    db: DB,
    name: 'bus-batch-test',
    logger: pino({ level: 'warn' }, { write: (line: string) => void logLines.push(line) }),
    prepare: (s) =>
      s.transaction((tx) =>
        tx.execute(
          'CREATE TABLE bus_effects (seq BIGSERIAL PRIMARY KEY, consumer TEXT NOT NULL, message_id TEXT NOT NULL)',
        ),
      ),
  }));
});

afterAll(async () => {
  await closeBus({ store, conn, publisher }, specs);
});

describe('batch consumer', () => {
  it('hands a filled queue over in batches of at most batchMaxSize, in queue order, each delivery once', async () => {
    const spec = aSpec('order');
    await conn.declare(spec);
    const envs = Array.from({ length: 400 }, () => anEnvelope(`${NS}.order.placed`));
    await publishInOrder(envs);
    const batches: string[][] = [];
    const consumer = new Consumer({
      connection: conn,
      spec,
      prefetch: 100,
      batchMaxSize: 40,
      batchHandler: async (ds) => {
        batches.push(ds.map((d) => d.envelope.id));
        await recordBatch('order', ds);
        return ds.map(() => 'ack' as const);
      },
    });
    await consumer.start();
    await eventually(async () => ((await effects('order')).length === envs.length ? true : undefined));
    await consumer.stop();
    expect(batches.flat()).toEqual(envs.map((e) => e.id));
    expect(Math.max(...batches.map((b) => b.length))).toBeLessThanOrEqual(40);
    expect(batches.length).toBeLessThan(envs.length / 4);
    // Batches commit concurrently, so effects land in any order, but each exactly once.
    expect([...(await effects('order'))].sort()).toEqual(envs.map((e) => e.id).sort());
    expect(await readyIn(spec.name)).toBe(0);
  });

  it('parks a poison message of a batch in the DLQ alone; the rest of the batch is handled', async () => {
    const spec = aSpec('poison');
    await conn.declare(spec);
    const before = Array.from({ length: 5 }, () => anEnvelope(`${NS}.poison.good`));
    const after = Array.from({ length: 5 }, () => anEnvelope(`${NS}.poison.good`));
    await publishInOrder(before);
    await publisher.publish({
      exchange: EVENTS_EXCHANGE,
      routingKey: `${NS}.poison.garbage`,
      body: Buffer.alloc(12, 0xff),
      messageId: `garbage-${RUN}`,
      type: 'garbage',
      correlationId: 'c',
    });
    await publishInOrder(after);
    const seen: string[][] = [];
    const consumer = new Consumer({
      connection: conn,
      spec,
      prefetch: 50,
      batchHandler: async (ds) => {
        seen.push(ds.map((d) => d.envelope.id));
        await recordBatch('poison', ds);
        return ds.map(() => 'ack' as const);
      },
    });
    await consumer.start();
    const good = [...before, ...after].map((e) => e.id);
    await eventually(async () => ((await effects('poison')).length === good.length ? true : undefined));
    const parked = await eventually(async () => {
      const list = await listDlq(conn, spec.name);
      return list.length > 0 ? list : undefined;
    });
    await consumer.stop();
    expect(parked.map((e) => [e.messageId, e.reason, e.errorClass])).toEqual([
      [`garbage-${RUN}`, 'poison', 'UndecodableEnvelope'],
    ]);
    expect(seen.flat()).toEqual(good);
    expect([...(await effects('poison'))].sort()).toEqual([...good].sort());
    expect(await readyIn(spec.name)).toBe(0);
  });

  it('retries every delivery of a batch whose handler threw, and none of its effects survive', async () => {
    const spec = aSpec('throws');
    await conn.declare(spec);
    const envs = Array.from({ length: 20 }, () => anEnvelope(`${NS}.throws.placed`));
    await publishInOrder(envs);
    const calls: { ids: string[]; attempts: number[] }[] = [];
    const consumer = new Consumer({
      connection: conn,
      spec,
      prefetch: 50,
      batchHandler: async (ds) => {
        calls.push({ ids: ds.map((d) => d.envelope.id), attempts: ds.map((d) => d.attempt) });
        const throwing = calls.length === 1; // decided now: batches run concurrently
        await handleBatchOnce(
          store,
          'throws',
          ds.map((d) => d.envelope),
          async (tx, fresh) => {
            for (const [i, d] of ds.entries()) {
              if (fresh[i])
                await tx.execute('INSERT INTO bus_effects (consumer, message_id) VALUES ($1, $2)', [
                  'throws',
                  d.envelope.id,
                ]);
            }
            if (throwing) throw new Error('the database connection broke mid-batch');
          },
        );
        return ds.map(() => 'ack' as const);
      },
    });
    await consumer.start();
    await eventually(async () => ((await effects('throws')).length === envs.length ? true : undefined));
    await new Promise((r) => setTimeout(r, 300));
    await consumer.stop();
    const first = calls[0]!;
    expect(first.attempts.every((a) => a === 1)).toBe(true);
    // Each delivery of the failed batch came back once, as its second attempt; the others once.
    const later = calls.slice(1).flatMap((c) => c.ids.map((id, i) => [id, c.attempts[i]] as const));
    expect(later.filter(([id]) => first.ids.includes(id)).map(([, a]) => a)).toEqual(first.ids.map(() => 2));
    expect(new Set(later.map(([id]) => id))).toEqual(new Set(envs.map((e) => e.id)));
    expect([...(await effects('throws'))].sort()).toEqual(envs.map((e) => e.id).sort());
    expect(await listDlq(conn, spec.name)).toEqual([]);
    expect(await readyIn(spec.name)).toBe(0);
  });

  it('routes each outcome of a batch on its own: ack, retry through the delay tier, fail to the DLQ', async () => {
    const spec = aSpec('outcomes');
    await conn.declare(spec);
    const subjects = ['ack', 'retry', 'fail', 'ack', 'retry', 'ack', 'fail', 'ack'];
    const envs = subjects.map((s) => anEnvelope(`${NS}.outcomes.placed`, s));
    await publishInOrder(envs);
    const attemptsOf = new Map<string, number[]>();
    const consumer = new Consumer({
      connection: conn,
      spec,
      prefetch: 50,
      batchHandler: async (ds) => {
        for (const d of ds)
          attemptsOf.set(d.envelope.id, [...(attemptsOf.get(d.envelope.id) ?? []), d.attempt]);
        const outcomes = ds.map((d): HandlerOutcome => {
          if (d.envelope.subject === 'fail') return { fail: new PermanentError('unknown customer') };
          if (d.envelope.subject === 'retry' && d.attempt === 1) return { retry: new Error('ERP busy') };
          return 'ack';
        });
        await recordBatch(
          'outcomes',
          ds.filter((_, i) => outcomes[i] === 'ack'),
        );
        return outcomes;
      },
    });
    await consumer.start();
    const acked = envs.filter((e) => e.subject !== 'fail').map((e) => e.id);
    await eventually(async () => ((await effects('outcomes')).length === acked.length ? true : undefined));
    const parked = await eventually(async () => {
      const list = await listDlq(conn, spec.name);
      return list.length === 2 ? list : undefined;
    });
    await consumer.stop();
    const byId = (a: unknown[], b: unknown[]) => String(a[0]).localeCompare(String(b[0]));
    expect(parked.map((e) => [e.messageId, e.reason, e.attempts]).sort(byId)).toEqual(
      envs
        .filter((e) => e.subject === 'fail')
        .map((e) => [e.id, 'permanent', 1])
        .sort(byId),
    );
    expect(envs.map((e) => attemptsOf.get(e.id))).toEqual(
      subjects.map((s) => (s === 'retry' ? [1, 2] : [1])),
    );
    expect([...(await effects('outcomes'))].sort()).toEqual([...acked].sort());
    expect(await readyIn(spec.name)).toBe(0);
  });

  it('loses no message and acks none twice with many concurrent batches, retries and duplicates', async () => {
    const spec = aSpec('load');
    await conn.declare(spec);
    const envs = Array.from({ length: 3_000 }, (_, i) =>
      anEnvelope(`${NS}.load.placed`, i % 10 === 3 ? 'flaky' : ''),
    );
    // Every 50th envelope is published twice (a publisher retry): the inbox keeps one effect.
    const published = envs.flatMap((e, i) => (i % 50 === 0 ? [e, e] : [e]));
    await Promise.all(published.map(publishEnvelope));
    const linesBefore = logLines.length;
    let batches = 0;
    const consumer = new Consumer({
      connection: conn,
      spec,
      prefetch: 300,
      batchMaxSize: 64,
      batchHandler: async (ds) => {
        batches++;
        const outcomes = ds.map(
          (d): HandlerOutcome =>
            d.envelope.subject === 'flaky' && d.attempt === 1 ? { retry: new Error('lock timeout') } : 'ack',
        );
        await recordBatch(
          'load',
          ds.filter((_, i) => outcomes[i] === 'ack'),
        );
        return outcomes;
      },
    });
    await consumer.start();
    await eventually(async () => ((await effects('load')).length === envs.length ? true : undefined), 60_000);
    // Everything delivered was settled: a stopped consumer's unacked deliveries return to the queue.
    await eventually(async () => (consumer.active === 0 ? true : undefined));
    await new Promise((r) => setTimeout(r, 300));
    await consumer.stop();
    const recorded = await effects('load');
    expect(recorded).toHaveLength(envs.length);
    expect(new Set(recorded)).toEqual(new Set(envs.map((e) => e.id)));
    expect(await readyIn(spec.name)).toBe(0);
    expect(await listDlq(conn, spec.name)).toEqual([]);
    expect(batches).toBeLessThan(published.length / 2);
    // An ack of a tag already acked would have closed the channel with PRECONDITION_FAILED.
    expect(logLines.slice(linesBefore).filter((l) => /channel error|PRECONDITION/.test(l))).toEqual([]);
  });

  it("corks the connection's socket writes per turn (the amqplib internals it relies on are there)", () => {
    expect(conn.writesCoalesced).toBe(true);
  });

  it('refuses a batch handler on an ordered spec, and a consumer with neither or both handlers', () => {
    const ordered = { ...aSpec('ordered'), ordering: { partitions: 2 } };
    const batchHandler = async (ds: Delivery[]) => ds.map(() => 'ack' as const);
    expect(() => new Consumer({ connection: conn, spec: ordered, batchHandler })).toThrow(/ordered specs/);
    expect(() => new Consumer({ connection: conn, spec: aSpec('neither') })).toThrow(
      /either handler or batchHandler/,
    );
    expect(
      () => new Consumer({ connection: conn, spec: aSpec('both'), batchHandler, handler: async () => 'ack' }),
    ).toThrow(/either handler or batchHandler/);
  });
});
