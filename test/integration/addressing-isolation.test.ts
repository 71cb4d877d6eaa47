// Tenants on one broker: two Workflows named distributor in two namespaces, and in the first
// namespace a Pipeline named distributor too, all running on the real RabbitMQ. No order, reply or
// event crosses from one to another, and deleting the Pipeline's topology (the operator's own
// deletion path) removes its queues, its replies DLQ included, and nothing of the Workflow's.
import { create, fromBinary, toBinary } from '@bufbuild/protobuf';
import { timestampFromMs } from '@bufbuild/protobuf/wkt';
import amqp from 'amqplib';
import pino from 'pino';
import { Registry } from 'prom-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AmqpResourceBroker } from '../../operator/src/broker.js';
import { connectorHandler } from '../../operator/src/reconcile/connector.js';
import { pipelineHandler } from '../../operator/src/reconcile/pipeline.js';
import { workflowHandler } from '../../operator/src/reconcile/workflow.js';
import type { Pipeline, Workflow } from '../../operator/src/resources.js';
import { EVENTS_EXCHANGE, eventRoutingKey, queueName, sourceOf } from '../../runtime/src/bus/addressing.js';
import { BusConnection } from '../../runtime/src/bus/connection.js';
import { ConfirmPublisher } from '../../runtime/src/bus/publisher.js';
import { deleteQueueTopology } from '../../runtime/src/bus/topology.js';
import type { SimulatorDriver } from '../../runtime/src/connectors/simulator/driver.js';
import type { UpsertItemRequest } from '../../runtime/src/gen/o2c/v1/connector_service_pb.js';
import { ItemSchema, OrderState } from '../../runtime/src/gen/o2c/v1/entities_pb.js';
import { type Envelope, EnvelopeSchema } from '../../runtime/src/gen/o2c/v1/events_pb.js';
import type { PipelineSpec } from '../../runtime/src/pipeline/spec.js';
import { type PipelineRole, startPipelineRole } from '../../runtime/src/roles/pipeline.js';
import { BROKER_URL, until } from './support/services.js';
import { distributor, type StackHarness, startStack, waitForState } from './support/stack.js';

// startStack derives the namespace from the name; the Workflow is always `distributor`.
const A = 'iso-a';
const B = 'iso-b';
const NAME = 'distributor';
const ORDERS_EACH = 3;
const logger = pino({ level: 'warn' });

const pipelineSpec: PipelineSpec = {
  // The CRM's item changes into the ERP (which owns items).
  source: { connector: 'crm', events: ['o2c.v1.ItemUpserted'] },
  transform: { name: 'event.item.name' },
  sink: { connector: 'erp', operation: 'UpsertItem' },
  delivery: { maxAttempts: 2, backoff: { initial: '100ms', max: '200ms' }, deadLetter: true },
};

interface Tap {
  queue: string;
  seen: { key: string; type: string; envelope: Envelope }[];
}

describe('addressing isolates tenants and kinds on one broker', () => {
  const stacks = new Map<string, StackHarness>();
  const sinkUpserts = new Map<string, UpsertItemRequest[]>();
  const taps = new Map<string, Tap>();
  const orders = new Map<string, string[]>();
  let conn: amqp.ChannelModel;
  let ch: amqp.Channel;
  let bus: BusConnection;
  let publisher: ConfirmPublisher;
  let pipeline: PipelineRole | undefined;

  /** A queue of the test's own with exactly the bindings of `queue`: what the broker routes there. */
  async function tapOf(label: string, queue: string, bindings: { exchange: string; routingKey: string }[]) {
    const tap: Tap = { queue: `o2c.test.isolation.${process.pid}.${label}`, seen: [] };
    await ch.assertQueue(tap.queue, { exclusive: true, autoDelete: true });
    for (const b of bindings) await ch.bindQueue(tap.queue, b.exchange, b.routingKey);
    await ch.consume(tap.queue, (msg) => {
      if (!msg) return;
      tap.seen.push({
        key: msg.fields.routingKey,
        type: String(msg.properties.type),
        envelope: fromBinary(EnvelopeSchema, msg.content),
      });
      ch.ack(msg);
    });
    taps.set(label, tap);
    expect(queue).toMatch(/^o2c\./);
  }

  /** A passive declare on a channel of its own: a 404 closes the channel it happens on. */
  async function exists(queue: string): Promise<amqp.Replies.AssertQueue | undefined> {
    const probe = await conn.createChannel();
    probe.on('error', () => {});
    try {
      return await probe.checkQueue(queue);
    } catch {
      return undefined;
    } finally {
      await probe.close().catch(() => {});
    }
  }

  async function itemUpserted(namespace: string, sku: string): Promise<void> {
    const source = sourceOf({ namespace, kind: 'connector', name: 'crm' });
    const envelope = create(EnvelopeSchema, {
      id: `${namespace}-${sku}-${process.pid}`,
      type: 'o2c.v1.ItemUpserted',
      source,
      subject: sku,
      time: timestampFromMs(Date.now()),
      correlationId: sku,
      payload: {
        case: 'itemUpserted',
        value: {
          $typeName: 'o2c.v1.ItemUpserted',
          item: create(ItemSchema, { sku, name: sku, active: true }),
        },
      },
    });
    await publisher.publish({
      exchange: EVENTS_EXCHANGE,
      routingKey: eventRoutingKey(source, envelope.type),
      body: toBinary(EnvelopeSchema, envelope),
      messageId: envelope.id,
      type: envelope.type,
      correlationId: sku,
    });
  }

  beforeAll(async () => {
    conn = await amqp.connect(BROKER_URL);
    ch = await conn.createChannel();
    bus = new BusConnection({ url: BROKER_URL, name: 'it-isolation', logger });
    await bus.start(10_000);
    publisher = new ConfirmPublisher(bus);
    // What an earlier, interrupted run left behind, removed the way the operator deletes resources.
    const broker = new AmqpResourceBroker(BROKER_URL);
    try {
      for (const ns of [A, B]) {
        await broker.deleteResourceTopology(ns, 'Workflow', NAME, workflowHandler.allPurposes);
        await broker.deleteResourceTopology(ns, 'Pipeline', NAME, pipelineHandler.allPurposes);
        for (const c of distributor().connectors) {
          await broker.deleteResourceTopology(ns, 'Connector', c.name, connectorHandler.allPurposes);
        }
      }
    } finally {
      await broker.close();
    }
    for (const ns of [A, B]) {
      const { spec, connectors } = distributor();
      const h = await startStack({ name: ns, spec, connectors });
      stacks.set(ns, h);
      const erp = h.stack.connectors.get('erp')!.runtime.driver as SimulatorDriver;
      const upserts: UpsertItemRequest[] = [];
      const upsertItem = erp.upsertItem.bind(erp);
      erp.upsertItem = (req, ctx) => {
        upserts.push(req);
        return upsertItem(req, ctx);
      };
      sinkUpserts.set(ns, upserts);
      for (const q of h.stack.workflow.engine!.queueSpecs()) {
        await tapOf(`${ns}.${q.name.split('.').at(-1)}`, q.name, q.bindings);
      }
    }
    pipeline = await startPipelineRole({
      namespace: A,
      name: NAME,
      spec: pipelineSpec,
      connection: bus,
      logger,
      registry: new Registry(),
      replyTimeoutMs: 5_000,
    });
    const { events } = pipeline.worker.queues;
    await tapOf(`${A}.pipeline.events`, events.name, events.bindings);
  }, 90_000);

  afterAll(async () => {
    await pipeline?.stop();
    const model = bus?.model as amqp.ChannelModel | undefined;
    if (model) {
      for (const p of ['events', 'replies']) {
        await deleteQueueTopology(model, {
          name: queueName(A, 'pipeline', NAME, p),
          bindings: [],
          retry: { maxAttempts: 1, backoff: { initialMs: 0, maxMs: 0, multiplier: 1 } },
        });
      }
    }
    for (const h of stacks.values()) await h.stop();
    await publisher?.close();
    await bus?.close();
    await conn?.close().catch(() => {});
  });

  it('gives a Pipeline and a Workflow of one name, and two namespaces, queues of their own', () => {
    const names = [...taps.values()].map((t) => t.queue);
    expect(new Set(names).size).toBe(names.length);
    const workflowA = stacks
      .get(A)!
      .stack.workflow.engine!.queueSpecs()
      .map((q) => q.name);
    const workflowB = stacks
      .get(B)!
      .stack.workflow.engine!.queueSpecs()
      .map((q) => q.name);
    const pipelineA = [pipeline!.worker.queues.events.name];
    expect(workflowA.sort()).toEqual(
      ['events', 'orders', 'replies'].map((p) => `o2c.${A}.workflow.${NAME}.${p}`),
    );
    expect(workflowB.sort()).toEqual(
      ['events', 'orders', 'replies'].map((p) => `o2c.${B}.workflow.${NAME}.${p}`),
    );
    expect(pipelineA).toEqual([`o2c.${A}.pipeline.${NAME}.events`]);
  });

  it('takes every order to PAID on its own Workflow, and no order, reply or event reaches the other', async () => {
    for (const ns of [A, B]) {
      const h = stacks.get(ns)!;
      const ids: string[] = [];
      for (let i = 0; i < ORDERS_EACH; i++) {
        const { order } = await h.client.submitOrder({
          idempotencyKey: `${ns}-${process.pid}-${i}`,
          order: { customerId: 'ACME', currencyCode: 'USD', lines: [{ sku: 'WIDGET-1', quantity: 1 }] },
        });
        ids.push(order!.id);
      }
      orders.set(ns, ids);
    }
    for (const ns of [A, B]) {
      const h = stacks.get(ns)!;
      for (const id of orders.get(ns)!) await waitForState(h.client, id, [OrderState.PAID], 60_000);
      // The other Workflow's store never heard of these orders.
      const other = stacks.get(ns === A ? B : A)!;
      for (const id of orders.get(ns)!) {
        await expect(other.client.getOrder({ id })).rejects.toThrow(/not.found/i);
      }
    }
    // Let stragglers (CRM status replies, the last events) arrive before looking at the taps.
    await new Promise((r) => setTimeout(r, 1_000));

    const orderOf = (e: Envelope) =>
      e.payload.case === 'orderSubmitted'
        ? (e.payload.value.order?.id ?? '')
        : e.payload.case === 'connectorReply'
          ? e.payload.value.orderId
          : e.subject;
    for (const ns of [A, B]) {
      const own = new Set(orders.get(ns)!);
      for (const purpose of ['orders', 'replies', 'events']) {
        const tap = taps.get(`${ns}.${purpose}`)!;
        expect(tap.seen.length, `${ns} ${purpose} saw messages`).toBeGreaterThan(0);
        const foreign = tap.seen.filter((s) => !own.has(orderOf(s.envelope)));
        expect(
          foreign.map((s) => `${s.key} ${orderOf(s.envelope)}`),
          `${ns} ${purpose}`,
        ).toEqual([]);
        // Every event keeps its bare type in the AMQP type property.
        if (purpose !== 'replies') expect(tap.seen.every((s) => s.type === s.envelope.type)).toBe(true);
      }
      expect(new Set(taps.get(`${ns}.orders`)!.seen.map((s) => orderOf(s.envelope)))).toEqual(own);
      const events = taps.get(`${ns}.events`)!.seen;
      for (const type of ['o2c.v1.ShipmentDispatched', 'o2c.v1.PaymentReceived']) {
        expect(new Set(events.filter((s) => s.type === type).map((s) => s.envelope.subject))).toEqual(own);
      }
      // The Workflow's engine parked nothing: no foreign order arrived as poison.
      for (const purpose of ['orders', 'replies', 'events']) {
        const dlq = await exists(`${queueName(ns, 'workflow', NAME, purpose)}.dlq`);
        expect(dlq?.messageCount, `${ns} ${purpose}.dlq`).toBe(0);
      }
    }
    // The same-named Pipeline saw none of the Workflow's traffic.
    expect(taps.get(`${A}.pipeline.events`)!.seen.filter((s) => s.type !== 'o2c.v1.ItemUpserted')).toEqual(
      [],
    );
  }, 120_000);

  it("delivers a Connector's event only to the Pipeline of its namespace that names it", async () => {
    await itemUpserted(A, 'ISO-A-1');
    await itemUpserted(B, 'ISO-B-1');
    await until(
      () => sinkUpserts.get(A)!.some((u) => u.item?.sku === 'ISO-A-1'),
      15_000,
      'the Pipeline upsert',
    );
    await new Promise((r) => setTimeout(r, 500));
    const skus = (ns: string) => sinkUpserts.get(ns)!.map((u) => u.item?.sku);
    expect(skus(A)).toEqual(['ISO-A-1']);
    expect(skus(B)).toEqual([]);
    expect(taps.get(`${A}.pipeline.events`)!.seen.map((s) => s.key)).toEqual([
      `${A}.connector.crm.o2c.v1.ItemUpserted`,
    ]);
    // Nor does a master-data event reach either Workflow.
    for (const ns of [A, B]) {
      for (const purpose of ['orders', 'replies', 'events']) {
        expect(taps.get(`${ns}.${purpose}`)!.seen.some((s) => s.type === 'o2c.v1.ItemUpserted')).toBe(false);
      }
    }
  }, 30_000);

  it("deletes the Pipeline's queues and replies DLQ, and leaves the same-named Workflow's running", async () => {
    // A poison reply to the Pipeline: its replica parks it in the replies DLQ, which it declares.
    const repliesDlq = `${queueName(A, 'pipeline', NAME, 'replies')}.dlq`;
    await publisher.publish({
      exchange: EVENTS_EXCHANGE,
      routingKey: pipeline!.worker.replies.routingKey,
      body: new Uint8Array([0xff, 0x00, 0x13]),
      messageId: `poison-reply-${process.pid}`,
      type: 'o2c.v1.ConnectorReply',
      correlationId: 'poison',
    });
    await until(
      async () => ((await exists(repliesDlq))?.messageCount ?? 0) >= 1,
      10_000,
      'the poison reply parked',
    );
    await pipeline!.stop();
    pipeline = undefined;

    const broker = new AmqpResourceBroker(BROKER_URL);
    try {
      const asPipeline = {
        kind: 'Pipeline',
        metadata: { namespace: A, name: NAME },
        spec: pipelineSpec,
      } as unknown as Pipeline;
      const asWorkflow = {
        kind: 'Workflow',
        metadata: { namespace: A, name: NAME },
        spec: distributor().spec,
      } as unknown as Workflow;
      // What the operator declares for each (idempotent against what the pods declared).
      const declaredWorkflow = await broker.declareResourceTopology(
        A,
        'Workflow',
        NAME,
        workflowHandler.purposes(asWorkflow),
      );
      const declaredPipeline = await broker.declareResourceTopology(
        A,
        'Pipeline',
        NAME,
        pipelineHandler.purposes(asPipeline),
      );
      expect(declaredPipeline).toEqual([`o2c.${A}.pipeline.${NAME}.events`]);
      await broker.deleteResourceTopology(A, 'Pipeline', NAME, pipelineHandler.allPurposes);

      for (const q of [...declaredPipeline, `${declaredPipeline[0]}.dlq`, repliesDlq]) {
        expect(await exists(q), `${q} deleted`).toBeUndefined();
      }
      for (const q of declaredWorkflow) {
        const left = await exists(q);
        expect(left, `${q} kept`).toBeDefined();
        expect(left!.consumerCount, `${q} still consumed`).toBeGreaterThanOrEqual(1);
        expect(await exists(`${q}.dlq`), `${q}.dlq kept`).toBeDefined();
      }
    } finally {
      await broker.close();
    }
    // The Workflow still takes orders after its namesake went.
    const h = stacks.get(A)!;
    const { order } = await h.client.submitOrder({
      idempotencyKey: `${A}-after-delete-${process.pid}`,
      order: { customerId: 'ACME', currencyCode: 'USD', lines: [{ sku: 'WIDGET-1', quantity: 1 }] },
    });
    await waitForState(h.client, order!.id, [OrderState.PAID], 60_000);
  }, 120_000);
});
