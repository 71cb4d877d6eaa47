// The event log against a real RabbitMQ (a private node, so its bindings are this test's alone) and
// PostgreSQL: the stream takes the domain events and no connector reply, a broker that carries the
// old `#` binding converges when the new code declares the log, and a reply whose reply queue is
// gone no longer holds the outbox relay back: it is dropped and counted.
import { randomBytes, randomUUID } from 'node:crypto';
import { create, toBinary } from '@bufbuild/protobuf';
import { timestampFromMs } from '@bufbuild/protobuf/wkt';
import amqp from 'amqplib';
import pino from 'pino';
import { Registry } from 'prom-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  EVENT_LOG_BINDING_KEYS,
  eventRoutingKey,
  RETIRED_EVENT_LOG_BINDING_KEYS,
  replyRoutingKey,
  sourceOf,
} from '../../runtime/src/bus/addressing.js';
import {
  type BusConnection,
  type ConfirmPublisher,
  DEFAULT_EVENT_LOG_RETENTION,
  declareEventLog,
  EVENT_LOG_STREAM,
  EVENTS_EXCHANGE,
  readEventLog,
  UnroutableError,
} from '../../runtime/src/bus/index.js';
import { runEvents } from '../../runtime/src/cli/events.js';
import { EnvelopeSchema } from '../../runtime/src/gen/o2c/v1/events_pb.js';
import { OutboxRelay } from '../../runtime/src/outbox/relay.js';
import type { Store } from '../../runtime/src/store/index.js';
import type { OutboxMessage } from '../../runtime/src/store/types.js';
import { closeBus, eventually, openBus } from './support/bus.js';
import { type PrivateRabbit, startPrivateRabbit } from './support/private-services.js';

const DB = 'o2c_test_bus_event_log';
const RUN = randomBytes(3).toString('hex');
const NS = `buslog${RUN}`;
const logger = pino({ level: 'error' });
const workflowSource = sourceOf({ namespace: NS, kind: 'workflow', name: 'distributor' });
const connectorSource = sourceOf({ namespace: NS, kind: 'connector', name: 'erp' });
/** A reply to a Workflow that was deleted: no queue is bound to it. */
const orphanReplyKey = replyRoutingKey({ namespace: NS, kind: 'workflow', name: 'deleted' });

let broker: PrivateRabbit;
let conn: BusConnection;
let publisher: ConfirmPublisher;
let store: Store;

function envelope(type: string, source: string, orderingKey = '') {
  return create(EnvelopeSchema, {
    id: randomUUID(),
    type,
    source,
    time: timestampFromMs(Date.now()),
    correlationId: randomUUID(),
    orderingKey,
    payload: { case: 'orderFallout', value: { orderId: 'o-1', step: 'tax', message: 'x' } },
  });
}

function message(routingKey: string, type: string, source: string, orderingKey: string): OutboxMessage {
  const env = envelope(type, source, orderingKey);
  return {
    id: env.id,
    exchange: EVENTS_EXCHANGE,
    routingKey,
    body: toBinary(EnvelopeSchema, env),
    type,
    correlationId: env.correlationId,
    orderingKey,
  };
}

async function publish(routingKey: string, type: string, source: string): Promise<string> {
  const env = envelope(type, source);
  await publisher.publish({
    exchange: EVENTS_EXCHANGE,
    routingKey,
    body: toBinary(EnvelopeSchema, env),
    messageId: env.id,
    type,
    correlationId: env.correlationId,
  });
  return env.id;
}

/** The event log's bindings on o2c.events, as the broker lists them. */
async function logBindings(): Promise<string[]> {
  const out = await broker.ctl('list_bindings', 'source_name', 'destination_name', 'routing_key');
  return out
    .split('\n')
    .map((line) => line.split('\t'))
    .filter(([source, destination]) => source === EVENTS_EXCHANGE && destination === EVENT_LOG_STREAM)
    .map(([, , key]) => key ?? '')
    .sort();
}

async function logged(since: Date, ids: string[]): Promise<string[]> {
  const seen: string[] = [];
  for await (const record of readEventLog(conn, { from: { since }, idleMs: 500 })) {
    if (ids.includes(record.messageId)) seen.push(record.messageId);
  }
  return seen;
}

beforeAll(async () => {
  broker = await startPrivateRabbit('bus-event-log');
  ({ store, conn, publisher } = await openBus({
    db: DB,
    name: 'bus-event-log-test',
    logger,
    url: broker.url,
  }));
}, 180_000);

afterAll(async () => {
  await closeBus({ store, conn, publisher });
  await broker?.close();
});

describe('the event log', () => {
  it('on a broker whose log was bound with #, ends with only the domain-event bindings once declared again', async () => {
    // The stream as the previous version declared it: same retention, bound with '#'.
    const raw = await amqp.connect(broker.url);
    const ch = await raw.createChannel();
    await ch.assertExchange(EVENTS_EXCHANGE, 'topic', { durable: true });
    await ch.assertQueue(EVENT_LOG_STREAM, {
      durable: true,
      arguments: {
        'x-queue-type': 'stream',
        'x-max-age': DEFAULT_EVENT_LOG_RETENTION.maxAge,
        'x-max-length-bytes': DEFAULT_EVENT_LOG_RETENTION.maxLengthBytes,
        'x-stream-max-segment-size-bytes': DEFAULT_EVENT_LOG_RETENTION.maxSegmentSizeBytes,
      },
    });
    for (const key of RETIRED_EVENT_LOG_BINDING_KEYS)
      await ch.bindQueue(EVENT_LOG_STREAM, EVENTS_EXCHANGE, key);
    await ch.close();
    await raw.close();
    expect(await logBindings()).toEqual(['#']);
    // The old state: a reply nobody waits for is "routed" into the log and confirmed.
    const since = new Date(Date.now() - 1_000);
    const oldReply = await publish(orphanReplyKey, orphanReplyKey, connectorSource);
    expect(await logged(since, [oldReply])).toEqual([oldReply]);

    await declareEventLog(conn);
    expect(await logBindings()).toEqual([...EVENT_LOG_BINDING_KEYS].sort());
    // Declaring again (every role start) changes nothing.
    await declareEventLog(conn.model!);
    expect(await logBindings()).toEqual([...EVENT_LOG_BINDING_KEYS].sort());

    const after = new Date(Date.now() - 1_000);
    const events = [
      await publish(
        eventRoutingKey(workflowSource, 'o2c.v1.OrderSubmitted'),
        'o2c.v1.OrderSubmitted',
        workflowSource,
      ),
      await publish(
        eventRoutingKey(connectorSource, 'o2c.v1.ShipmentDispatched'),
        'o2c.v1.ShipmentDispatched',
        connectorSource,
      ),
    ];
    // A reply to a queue that is gone reaches nothing now: the broker returns it.
    const err = await publish(orphanReplyKey, orphanReplyKey, connectorSource).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UnroutableError);
    // A reply to a live reply queue reaches it, and not the log.
    const liveKey = replyRoutingKey({ namespace: NS, kind: 'workflow', name: 'live' });
    const tap = await amqp.connect(broker.url);
    const tch = await tap.createChannel();
    const { queue } = await tch.assertQueue('', { exclusive: true });
    await tch.bindQueue(queue, EVENTS_EXCHANGE, liveKey);
    const reply = await publish(liveKey, liveKey, connectorSource);
    expect((await tch.checkQueue(queue)).messageCount).toBe(1);
    await tap.close();
    expect(await logged(after, [...events, reply])).toEqual(events);
  });
});

describe('the outbox relay and a reply whose reply queue is gone', () => {
  it('drops and counts the reply, and publishes the rows behind it at once', async () => {
    await declareEventLog(conn);
    const registry = new Registry();
    // Long enough that a relay sleeping after a failed batch would miss the deadline below.
    const relay = new OutboxRelay({ store, publisher, logger, registry, pollMs: 20, retryMs: 60_000 });
    const order = `order-${RUN}`;
    const eventKey = eventRoutingKey(workflowSource, 'o2c.v1.OrderSubmitted');
    const first = [
      message(orphanReplyKey, orphanReplyKey, connectorSource, order),
      // Behind the reply in its ordering key: it waited on the reply's confirm before.
      message(eventKey, 'o2c.v1.OrderSubmitted', workflowSource, order),
      message(eventKey, 'o2c.v1.OrderSubmitted', workflowSource, `other-${RUN}`),
    ];
    const since = new Date(Date.now() - 1_000);
    await store.transaction((tx) => tx.enqueueOutbox(first));
    const unsent = async () =>
      Number(
        (
          await store.transaction((tx) =>
            tx.query<{ n: number }>('SELECT count(*)::int AS n FROM outbox WHERE sent_at IS NULL'),
          )
        )[0]?.n,
      );
    relay.start();
    try {
      await eventually(async () => (await unsent()) === 0, 5_000);
      // Rows written after that batch go out promptly too: the relay did not pause as after a failure.
      const second = [message(eventKey, 'o2c.v1.OrderSubmitted', workflowSource, order)];
      await store.transaction((tx) => tx.enqueueOutbox(second));
      relay.wake();
      await eventually(async () => (await unsent()) === 0, 5_000);
      expect(relay.droppedReplies).toBe(1);
      const metric = await registry.getSingleMetric('o2c_outbox_unroutable_replies_dropped_total')?.get();
      expect(metric?.values[0]?.value).toBe(1);
      const published = await registry.getSingleMetric('o2c_outbox_published_total')?.get();
      expect(published?.values[0]?.value).toBe(3);
      const events = [first[1]!.id, first[2]!.id, second[0]!.id];
      expect((await logged(since, [...events, first[0]!.id])).sort()).toEqual([...events].sort());
    } finally {
      await relay.stop();
    }
  });
});

describe('o2c events replay', () => {
  it('re-delivers every domain event of a Workflow, a Connector and a Pipeline, and no reply', async () => {
    await declareEventLog(conn);
    const since = new Date();
    const pipelineSource = sourceOf({ namespace: NS, kind: 'pipeline', name: 'feed' });
    const sent = [
      await publish(
        eventRoutingKey(workflowSource, 'o2c.v1.OrderSubmitted'),
        'o2c.v1.OrderSubmitted',
        workflowSource,
      ),
      await publish(
        eventRoutingKey(connectorSource, 'o2c.v1.PaymentReceived'),
        'o2c.v1.PaymentReceived',
        connectorSource,
      ),
      await publish(
        eventRoutingKey(pipelineSource, 'o2c.v1.DeliveryFailed'),
        'o2c.v1.DeliveryFailed',
        pipelineSource,
      ),
    ];
    // A reply its Workflow is waiting for: it reaches the reply queue, and replay has nothing to rebuild from it.
    const liveKey = replyRoutingKey({ namespace: NS, kind: 'workflow', name: 'distributor' });
    const raw = await amqp.connect(broker.url);
    const ch = await raw.createChannel();
    const { queue: replies } = await ch.assertQueue('', { exclusive: true });
    await ch.bindQueue(replies, EVENTS_EXCHANGE, liveKey);
    await publish(liveKey, liveKey, connectorSource);
    const target = `o2c.test.${NS}.rebuild`;
    await ch.assertQueue(target, { durable: false, autoDelete: false });
    try {
      const rc = await runEvents([
        'replay',
        '--since',
        since.toISOString(),
        '--to-queue',
        target,
        '--url',
        broker.url,
      ]);
      expect(rc).toBe(0);
      const replayed: string[] = [];
      for (;;) {
        const msg = await ch.get(target, { noAck: true });
        if (!msg) break;
        replayed.push(String(msg.properties.messageId));
      }
      expect(replayed).toEqual(sent);
    } finally {
      await ch.deleteQueue(target).catch(() => {});
      await raw.close();
    }
  });
});
