// The event backbone against a real RabbitMQ and PostgreSQL: retry tiers, dead letters and replay,
// poison messages, ordering keys, topology conflicts, unroutable messages and the event log.
import { randomBytes, randomUUID } from 'node:crypto';
import { create, toBinary } from '@bufbuild/protobuf';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { eventRoutingKey, sourceOf } from '../../runtime/src/bus/addressing.js';
import {
  BusConnection,
  COMMANDS_EXCHANGE,
  type ConfirmPublisher,
  Consumer,
  type Delivery,
  declareEventLog,
  declareQueueTopology,
  EVENTS_EXCHANGE,
  type HandlerOutcome,
  handleOnce,
  listDlq,
  PermanentError,
  planQueueTopology,
  type QueueSpec,
  readEventLog,
  replayDlq,
  retryDelayMs,
  showDlq,
  TopologyConflictError,
  UnroutableError,
} from '../../runtime/src/bus/index.js';
import { EnvelopeSchema } from '../../runtime/src/gen/o2c/v1/events_pb.js';
import type { Store } from '../../runtime/src/store/index.js';
import { closeBus, eventually, openBus, specMaker } from './support/bus.js';
import { BROKER_URL } from './support/services.js';

const DB = 'o2c_test_bus_delivery';
const RUN = randomBytes(3).toString('hex');
const NS = `busdlv${RUN}`;

let conn: BusConnection;
let publisher: ConfirmPublisher;
let store: Store;
const specs: QueueSpec[] = [];

const aSpec = specMaker(
  NS,
  'billing',
  { maxAttempts: 3, backoff: { initialMs: 100, maxMs: 1_000, multiplier: 2 } },
  specs,
);

function anEnvelope(type: string, fields: { orderingKey?: string; subject?: string } = {}) {
  return create(EnvelopeSchema, {
    id: randomUUID(),
    type,
    source: `o2c/${NS}/test`,
    subject: fields.subject ?? '',
    correlationId: randomUUID(),
    orderingKey: fields.orderingKey ?? '',
    payload: { case: 'orderFallout', value: { orderId: 'o-1', step: 'tax', message: 'x'.repeat(64) } },
  });
}

async function publishEnvelope(env: ReturnType<typeof anEnvelope>, routingKey = env.type) {
  await publisher.publish({
    exchange: EVENTS_EXCHANGE,
    routingKey,
    body: toBinary(EnvelopeSchema, env),
    messageId: env.id,
    type: env.type,
    correlationId: env.correlationId,
    orderingKey: env.orderingKey,
    traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01',
  });
}

async function effects(consumer: string): Promise<string[]> {
  return store.transaction(async (tx) =>
    (
      await tx.query<{ message_id: string }>('SELECT message_id FROM bus_effects WHERE consumer = $1', [
        consumer,
      ])
    ).map((r) => r.message_id),
  );
}

/** The handler of a consumer with an effect: an inbox claim and a row, in one transaction. */
function recordOnce(consumer: string) {
  return async (d: Delivery): Promise<HandlerOutcome> => {
    await handleOnce(store, consumer, d.envelope, (tx) =>
      tx.execute('INSERT INTO bus_effects (consumer, message_id) VALUES ($1, $2)', [consumer, d.envelope.id]),
    );
    return 'ack';
  };
}

beforeAll(async () => {
  ({ store, conn, publisher } = await openBus({
    db: DB,
    name: 'bus-delivery-test',
    logger: pino({ level: 'error' }),
    prepare: (s) =>
      s.transaction((tx) =>
        tx.execute('CREATE TABLE bus_effects (consumer TEXT NOT NULL, message_id TEXT NOT NULL)'),
      ),
  }));
  await declareEventLog(conn);
});

afterAll(async () => {
  await closeBus({ store, conn, publisher }, specs);
});

describe('retries and dead letters', () => {
  it('waits the configured backoff between attempts, then parks the message in the DLQ; replay handles it once', async () => {
    const spec = aSpec('tiers', {
      retry: { maxAttempts: 4, backoff: { initialMs: 200, maxMs: 500, multiplier: 2 } },
    });
    const attempts: { at: number; attempt: number }[] = [];
    let failing = true;
    class CarrierTimeout extends Error {
      override name = 'CarrierTimeout';
    }
    const handled = recordOnce('tiers');
    const consumer = new Consumer({
      connection: conn,
      spec,
      prefetch: 4,
      handler: async (d) => {
        if (!failing) return handled(d);
        attempts.push({ at: Date.now(), attempt: d.attempt });
        return { retry: new CarrierTimeout('carrier did not answer') };
      },
    });
    await consumer.start();
    const env = anEnvelope(`${NS}.tiers.failed`);
    await publishEnvelope(env);

    const [parked] = await eventually(async () => {
      const list = await listDlq(conn, spec.name);
      return list.length === 1 ? list : undefined;
    });
    expect(attempts.map((a) => a.attempt)).toEqual([1, 2, 3, 4]);
    const expectedDelays = [1, 2, 3].map((n) => retryDelayMs(spec.retry, n));
    expect(expectedDelays).toEqual([200, 400, 500]);
    attempts.slice(1).forEach((a, i) => {
      const waited = a.at - attempts[i]!.at;
      expect(waited).toBeGreaterThanOrEqual(expectedDelays[i]! - 5);
      expect(waited).toBeLessThan(expectedDelays[i]! + 400);
    });
    expect(parked).toMatchObject({
      messageId: env.id,
      type: env.type,
      reason: 'max-attempts',
      errorClass: 'CarrierTimeout',
      error: 'carrier did not answer',
      attempts: 4,
      originalQueue: spec.name,
    });
    expect(Date.parse(parked!.firstFailure)).toBeLessThanOrEqual(Date.parse(parked!.lastFailure));
    expect(Date.parse(parked!.lastFailure) - Date.parse(parked!.firstFailure)).toBeGreaterThanOrEqual(1_000);
    expect(parked!.headers.traceparent).toBe('00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01');

    const shown = await showDlq(conn, spec.name, env.id);
    expect(shown?.envelope).toMatchObject({ id: env.id, type: env.type, orderFallout: { step: 'tax' } });

    failing = false;
    const replayed = await replayDlq(conn, spec.name, { type: env.type });
    expect(replayed.map((e) => e.messageId)).toEqual([env.id]);
    await eventually(async () => ((await effects('tiers')).length === 1 ? true : undefined));
    // The same event again (a publisher retry, a second replay): the inbox absorbs it.
    await publishEnvelope(env);
    await new Promise((r) => setTimeout(r, 500));
    expect(await effects('tiers')).toEqual([env.id]);
    expect(await listDlq(conn, spec.name)).toEqual([]);
    expect(attempts).toHaveLength(4);
    await consumer.stop();
  });

  it('does not let a poison message hold back the messages behind it', async () => {
    const spec = aSpec('poison');
    const consumer = new Consumer({
      connection: conn,
      spec,
      prefetch: 1,
      handler: async (d) => {
        if (d.envelope.subject === 'poison') throw new PermanentError('order references an unknown customer');
        return recordOnce('poison')(d);
      },
    });
    await consumer.start();
    const chaff = Buffer.from([0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]);
    await publisher.publish({
      exchange: EVENTS_EXCHANGE,
      routingKey: `${NS}.poison.garbage`,
      body: chaff,
      messageId: 'garbage-1',
      type: 'garbage',
      correlationId: 'c',
    });
    const poison = anEnvelope(`${NS}.poison.bad`, { subject: 'poison' });
    await publishEnvelope(poison);
    const good = Array.from({ length: 50 }, () => anEnvelope(`${NS}.poison.good`));
    for (const env of good) await publishEnvelope(env);

    await eventually(async () => ((await effects('poison')).length === 50 ? true : undefined));
    const parked = await eventually(async () => {
      const list = await listDlq(conn, spec.name);
      return list.length === 2 ? list : undefined;
    });
    expect(parked.map((e) => [e.messageId, e.reason, e.attempts])).toEqual([
      ['garbage-1', 'poison', 1],
      [poison.id, 'permanent', 1],
    ]);
    expect(parked[0]!.errorClass).toBe('UndecodableEnvelope');
    expect(parked[1]!.errorClass).toBe('PermanentError');
    expect((await showDlq(conn, spec.name, 'garbage-1'))?.decodeError).toBeTruthy();
    await consumer.stop();
  });
});

describe('ordering keys', () => {
  it('handles messages with the same key in publish order across partitions and competing consumers', async () => {
    const spec = aSpec('ordered', {
      ordering: { partitions: 4 },
      retry: { maxAttempts: 3, backoff: { initialMs: 20, maxMs: 50, multiplier: 2 } },
    });
    const seen = new Map<string, number[]>();
    const failedOnce = new Set<string>();
    const second = new BusConnection({
      url: BROKER_URL,
      name: 'bus-delivery-test-2',
      logger: pino({ level: 'error' }),
    });
    await second.start();
    const handler = async (d: Delivery): Promise<HandlerOutcome> => {
      await new Promise((r) => setTimeout(r, Math.random() * 3));
      const seq = Number(d.envelope.subject);
      // Every 7th message fails once: retrying must not let the next one of its key overtake it.
      if (seq % 7 === 3 && !failedOnce.has(d.envelope.id)) {
        failedOnce.add(d.envelope.id);
        return { retry: new Error('transient') };
      }
      const list = seen.get(d.orderingKey) ?? [];
      list.push(seq);
      seen.set(d.orderingKey, list);
      return 'ack';
    };
    const consumers = [
      new Consumer({ connection: conn, spec, prefetch: 16, handler }),
      new Consumer({ connection: second, spec, prefetch: 16, handler }),
    ];
    for (const c of consumers) await c.start();
    const keys = Array.from({ length: 6 }, (_, i) => `customer-${i}`);
    const perKey = 60;
    const publishes: Promise<void>[] = [];
    for (let seq = 0; seq < perKey; seq++) {
      for (const key of keys) {
        publishes.push(
          publishEnvelope(anEnvelope(`${NS}.ordered.changed`, { orderingKey: key, subject: String(seq) })),
        );
      }
    }
    await Promise.all(publishes);
    await eventually(() => ([...seen.values()].flat().length === keys.length * perKey ? true : undefined));
    for (const key of keys) expect(seen.get(key)).toEqual(Array.from({ length: perKey }, (_, i) => i));
    expect(failedOnce.size).toBeGreaterThan(0);
    for (const c of consumers) await c.stop();
    await second.close();
  });
});

describe('topology and publishing', () => {
  it('declares idempotently and reports a conflicting existing queue by name and argument', async () => {
    const spec = aSpec('conflict');
    await declareQueueTopology(conn.model!, spec);
    await declareQueueTopology(conn.model!, spec);
    const clash = aSpec('clash');
    const ch = await conn.createChannel();
    // The same queue declared earlier by someone else with another delivery limit.
    const declared = planQueueTopology(clash).queues.find((q) => q.name === clash.name)!;
    await ch.assertQueue(clash.name, {
      durable: true,
      arguments: { ...declared.arguments, 'x-delivery-limit': 5 },
    });
    await ch.close();
    const err = await declareQueueTopology(conn.model!, clash).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(TopologyConflictError);
    expect(err).toMatchObject({ kind: 'queue', entity: clash.name, argument: 'x-delivery-limit' });
    expect((err as Error).message).toContain(clash.name);
  });

  it('rejects an unroutable command instead of dropping it', async () => {
    const err = await publisher
      .publish({
        exchange: COMMANDS_EXCHANGE,
        routingKey: `${NS}-no-such-connector`,
        body: toBinary(EnvelopeSchema, anEnvelope('connector.command')),
        messageId: randomUUID(),
        type: 'connector.command',
        correlationId: 'c',
      })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UnroutableError);
    expect((err as Error).message).toContain(`${NS}-no-such-connector`);
  });

  it('appends every domain event to o2c.events.log, readable again from a point in time', async () => {
    const since = new Date(Date.now() - 1_000);
    const type = `${NS}.log.appended`;
    const sent = [anEnvelope(type), anEnvelope(type), anEnvelope(type)];
    const key = eventRoutingKey(sourceOf({ namespace: NS, kind: 'workflow', name: 'log' }), type);
    for (const env of sent) await publishEnvelope(env, key);
    const read: string[] = [];
    for await (const record of readEventLog(conn, { from: { since }, types: [type], idleMs: 500 })) {
      read.push(record.envelope!.id);
    }
    expect(read).toEqual(sent.map((e) => e.id));
  });
});
