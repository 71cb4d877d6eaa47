// The outbox relay against a real RabbitMQ and PostgreSQL: committed rows are published with
// confirms and marked sent in one statement per batch; rows of one ordering key reach an ordered
// (partitioned) queue in write order and all in the same partition.
import { randomBytes, randomUUID } from 'node:crypto';
import { create, toBinary } from '@bufbuild/protobuf';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type BusConnection,
  type ConfirmPublisher,
  Consumer,
  EVENTS_EXCHANGE,
  type QueueSpec,
  queueName,
} from '../../runtime/src/bus/index.js';
import { EnvelopeSchema } from '../../runtime/src/gen/o2c/v1/events_pb.js';
import { OutboxRelay } from '../../runtime/src/outbox/relay.js';
import type { Store } from '../../runtime/src/store/index.js';
import { closeBus, eventually, openBus } from './support/bus.js';

const DB = 'o2c_test_bus_relay';
const RUN = randomBytes(3).toString('hex');
const NS = `busrelay${RUN}`;
const logger = pino({ level: 'error' });

let conn: BusConnection;
let publisher: ConfirmPublisher;
let store: Store;
const specs: QueueSpec[] = [];

beforeAll(async () => {
  ({ store, conn, publisher } = await openBus({ db: DB, name: 'bus-relay-test', logger }));
});

afterAll(async () => {
  await closeBus({ store, conn, publisher }, specs);
});

describe('outbox relay', () => {
  it("publishes every committed row once, each key's rows in write order into one partition, and marks them sent", async () => {
    const routingKey = `${NS}.order.step`;
    const spec: QueueSpec = {
      name: queueName(NS, 'workflow', 'billing', 'relay'),
      bindings: [{ exchange: EVENTS_EXCHANGE, routingKey }],
      retry: { maxAttempts: 3, backoff: { initialMs: 100, maxMs: 400, multiplier: 2 } },
      ordering: { partitions: 4 },
    };
    specs.push(spec);
    await conn.declare(spec);
    const keys = Array.from({ length: 30 }, (_, i) => `order-${RUN}-${i}`);
    // Interleaved writes: key 0 step 0, key 1 step 0, ..., key 0 step 1, ...
    const written: { id: string; key: string; step: number }[] = [];
    for (let step = 0; step < 12; step++)
      for (const key of keys) written.push({ id: randomUUID(), key, step });
    for (let start = 0; start < written.length; start += 90) {
      await store.transaction((tx) =>
        tx.enqueueOutbox(
          written.slice(start, start + 90).map((w) => {
            const env = create(EnvelopeSchema, {
              id: w.id,
              type: routingKey,
              source: `o2c/${NS}/test`,
              subject: w.key,
              correlationId: w.key,
              orderingKey: w.key,
              payload: {
                case: 'orderFallout',
                value: { orderId: w.key, step: String(w.step), message: 'x' },
              },
            });
            return {
              id: w.id,
              exchange: EVENTS_EXCHANGE,
              routingKey,
              body: toBinary(EnvelopeSchema, env),
              type: routingKey,
              correlationId: w.key,
              orderingKey: w.key,
            };
          }),
        ),
      );
    }
    const seen = new Map<string, { step: number; queue: string }[]>();
    let received = 0;
    const consumer = new Consumer({
      connection: conn,
      spec,
      prefetch: 50,
      handler: async (d) => {
        const key = d.envelope.orderingKey;
        const step = Number(d.envelope.payload.case === 'orderFallout' ? d.envelope.payload.value.step : -1);
        seen.set(key, [...(seen.get(key) ?? []), { step, queue: d.queue }]);
        received++;
        return 'ack';
      },
    });
    await consumer.start();
    // Small batches, so one key's rows span several batches of the relay.
    const relay = new OutboxRelay({ store, publisher, logger, batchSize: 100, pollMs: 20 });
    relay.start();
    await eventually(() => (received >= written.length ? true : undefined));
    await eventually(async () => ((await store.pendingOutbox(10)).length === 0 ? true : undefined));
    await relay.stop();
    await new Promise((r) => setTimeout(r, 300)); // a duplicate would show up as an extra delivery
    await consumer.stop();
    expect(received).toBe(written.length);
    for (const key of keys) {
      const deliveries = seen.get(key) ?? [];
      expect(deliveries.map((d) => d.step)).toEqual(Array.from({ length: 12 }, (_, i) => i));
      expect(new Set(deliveries.map((d) => d.queue)).size).toBe(1);
    }
    // The keys spread over the partitions rather than piling into one.
    expect(new Set([...seen.values()].map((ds) => ds[0]!.queue)).size).toBeGreaterThan(1);
  });
});
