// Poison on every queue the runtime consumes, on the real broker and PostgreSQL: undecodable bytes,
// an unknown event type, a payload that is not its type, an empty payload and an event the queue is
// not for are parked in `<queue>.dlq` with reason `poison`, a class and a message naming what was
// wrong; none is claimed in the inbox, and the good message behind each is handled. Unknown fields
// in a known message are read normally (protobuf forward compatibility). Poison is published straight
// to each queue through the default exchange, so no other test's queue on the broker sees it.
import { create, type DescMessage, fromBinary, type MessageInitShape, toBinary } from '@bufbuild/protobuf';
import { BinaryWriter, WireType } from '@bufbuild/protobuf/wire';
import amqp from 'amqplib';
import pino from 'pino';
import { Registry } from 'prom-client';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { BusConnection } from '../../runtime/src/bus/connection.js';
import { type DlqEntry, listDlq } from '../../runtime/src/bus/dlq.js';
import {
  deleteQueueTopology,
  dlqName,
  ORDERING_HEADER,
  type QueueSpec,
} from '../../runtime/src/bus/topology.js';
import { runDlq } from '../../runtime/src/cli/dlq.js';
import { connectorMigrations } from '../../runtime/src/connectors/bindings.js';
import {
  COMMAND_TYPE,
  type CommandRequest,
  commandMessage,
  decodeReply,
} from '../../runtime/src/connectors/commands.js';
import type { ConnectorRuntimeConfig } from '../../runtime/src/connectors/config.js';
import {
  type ConnectorRole,
  commandQueueSpec,
  startConnectorRole,
} from '../../runtime/src/connectors/role.js';
import { SimulatorDriver } from '../../runtime/src/connectors/simulator/driver.js';
import type { UpsertItemRequest } from '../../runtime/src/gen/o2c/v1/connector_service_pb.js';
import { OrderSchema, OrderState } from '../../runtime/src/gen/o2c/v1/entities_pb.js';
import { type Envelope, EnvelopeSchema } from '../../runtime/src/gen/o2c/v1/events_pb.js';
import type { PipelineSpec } from '../../runtime/src/pipeline/spec.js';
import { type PipelineRole, startPipelineRole } from '../../runtime/src/roles/pipeline.js';
import { openStore, registerMigrations } from '../../runtime/src/store/index.js';
import type { Store } from '../../runtime/src/store/types.js';
import type { WorkflowEngine } from '../../runtime/src/workflow/engine.js';
import { storeUrlFor } from './support/api.js';
import { BROKER_URL, eventTap, until } from './support/services.js';
import { distributor, type StackHarness, startStack, waitForState } from './support/stack.js';

registerMigrations(connectorMigrations);

const RUN = `${process.pid}-${Date.now()}`;
let seq = 0;
const nextId = (what: string) => `${what}-${RUN}-${seq++}`;
const logger = pino({ level: process.env.O2C_TEST_LOG ?? 'error' });

type Payload = MessageInitShape<typeof EnvelopeSchema>['payload'];

function anEnvelope(type: string, payload: Payload, init: { id?: string; subject?: string } = {}): Envelope {
  const id = init.id ?? nextId('evt');
  return create(EnvelopeSchema, {
    id,
    type,
    source: 'o2c/it-poison/test',
    subject: init.subject ?? '',
    correlationId: id,
    payload,
  });
}

const unknownField = (fieldNo: number) => new BinaryWriter().tag(fieldNo, WireType.Varint).uint32(7).finish();

/**
 * The envelope as a newer producer would send it: an unknown field in the Envelope and one in its
 * payload message, which no o2c.v1 message declares.
 */
function withUnknownFields(envelope: Envelope): Uint8Array {
  const field = EnvelopeSchema.fields.find((f) => f.localName === envelope.payload.case);
  if (field?.fieldKind !== 'message' || !envelope.payload.value) throw new Error('no payload');
  const payloadBytes = new Uint8Array([
    ...toBinary(field.message as DescMessage, envelope.payload.value as never),
    ...unknownField(999),
  ]);
  const head = toBinary(EnvelopeSchema, { ...envelope, payload: { case: undefined } });
  const payload = new BinaryWriter().tag(field.number, WireType.LengthDelimited).bytes(payloadBytes).finish();
  return new Uint8Array([...head, ...unknownField(500), ...payload]);
}

// ---- the broker side of the test: publish straight to a queue, find a parked message -------------

let amqpConnection: amqp.ChannelModel;
let publishChannel: amqp.ConfirmChannel;
let bus: BusConnection;

interface Published {
  id: string;
  body: Uint8Array;
  type: string;
  headers?: Record<string, string>;
}

async function publishTo(queue: string, m: Published): Promise<void> {
  publishChannel.publish('', queue, Buffer.from(m.body), {
    persistent: true,
    mandatory: true,
    messageId: m.id,
    type: m.type,
    contentType: 'application/x-protobuf',
    headers: m.headers,
  });
  await publishChannel.waitForConfirms();
}

async function parked(dlq: string, messageId: string): Promise<DlqEntry> {
  let entry: DlqEntry | undefined;
  await until(
    async () => {
      [entry] = await listDlq(bus, dlq, { messageId, limit: 1 });
      return entry !== undefined;
    },
    20_000,
    `message ${messageId} in ${dlq}`,
  );
  return entry as DlqEntry;
}

async function inInbox(store: Store, consumer: string, messageId: string): Promise<boolean> {
  const rows = await store.transaction((tx) =>
    tx.query('SELECT 1 AS seen FROM inbox WHERE consumer = $1 AND message_id = $2', [consumer, messageId]),
  );
  return rows.length > 0;
}

// ---- the poison, for a queue that takes `type` with `payload` -----------------------------------

interface Poison extends Published {
  poisonClass: string;
  error: RegExp;
}

type PoisonCase = (type: string, payload: Payload, wrong: Payload) => Poison;

const poisonCases: [string, PoisonCase][] = [
  [
    'undecodable bytes',
    (type) => ({
      id: nextId('garbage'),
      type,
      body: Buffer.from('ffffffffffffffffffffffff0102030405', 'hex'),
      poisonClass: 'UndecodableEnvelope',
      error: /^body \(17 bytes\) is not an o2c.v1.Envelope: /,
    }),
  ],
  [
    'an unknown event type',
    (_type, payload) => {
      const env = anEnvelope('o2c.v1.ShipmentTeleported', payload);
      return {
        id: env.id,
        type: env.type,
        body: toBinary(EnvelopeSchema, env),
        poisonClass: 'UnknownEventType',
        error: /type "o2c.v1.ShipmentTeleported" is not an event type of the o2c.v1 contract/,
      };
    },
  ],
  [
    'a payload of another type than the one it declares',
    (type, _payload, wrong) => {
      const env = anEnvelope(type, wrong);
      return {
        id: env.id,
        type,
        body: toBinary(EnvelopeSchema, env),
        poisonClass: 'PayloadTypeMismatch',
        error: /declares o2c.v1.\w+ but the payload is o2c.v1.\w+/,
      };
    },
  ],
  [
    'an empty payload',
    (type) => {
      const env = anEnvelope(type, { case: undefined });
      return {
        id: env.id,
        type,
        body: toBinary(EnvelopeSchema, env),
        poisonClass: 'PayloadTypeMismatch',
        error: /but the envelope carries no payload/,
      };
    },
  ],
  [
    'an event the queue is not for',
    () => {
      const env = anEnvelope('o2c.v1.OrderFallout', {
        case: 'orderFallout',
        value: { orderId: 'o-poison', step: 'tax', message: 'not for you' },
      });
      return {
        id: env.id,
        type: env.type,
        body: toBinary(EnvelopeSchema, env),
        poisonClass: 'UnexpectedEventType',
        error: /^o2c.v1.OrderFallout is not for this queue, which takes /,
      };
    },
  ],
];

/** A queue under test: what it takes, and a good message whose handling is visible. */
interface QueueUnderTest {
  queue: () => string;
  dlq: () => string;
  type: () => string;
  payload: () => Payload;
  wrongPayload: Payload;
  /** Publishes a good message to the queue; resolves with a probe that turns true once it was handled. */
  sendGood: () => Promise<() => Promise<boolean>>;
  inbox?: { store: () => Store; consumer: string };
  /** Headers of the poison, e.g. the ordering key the good message has too. */
  headers?: Record<string, string>;
}

/** The table of poison cases on one queue: each parked with its reason, the next message handled. */
function itParksEveryPoison(q: QueueUnderTest): void {
  it.each(poisonCases)(
    'parks %s in the DLQ with the reason and handles the next message',
    async (_name, make) => {
      const poison = make(q.type(), q.payload(), q.wrongPayload);
      await publishTo(q.queue(), { ...poison, headers: q.headers });
      const handled = await q.sendGood();
      await until(handled, 20_000, 'the good message behind the poison handled');
      const entry = await parked(q.dlq(), poison.id);
      expect(entry).toMatchObject({
        reason: 'poison',
        errorClass: poison.poisonClass,
        attempts: 1,
        originalQueue: q.queue(),
        type: poison.type,
      });
      expect(entry.error).toMatch(poison.error);
      if (q.inbox) expect(await inInbox(q.inbox.store(), q.inbox.consumer, poison.id)).toBe(false);
    },
  );
}

beforeAll(async () => {
  amqpConnection = await amqp.connect(BROKER_URL);
  publishChannel = await amqpConnection.createConfirmChannel();
  bus = new BusConnection({ url: BROKER_URL, name: 'it-poison-test', logger });
  await bus.start(10_000);
});

afterAll(async () => {
  await publishChannel?.close().catch(() => {});
  await amqpConnection?.close().catch(() => {});
  await bus?.close();
});

// ---- the workflow ---------------------------------------------------------------------------------

describe("the workflow's queues", () => {
  let h: StackHarness;
  let engine: WorkflowEngine;
  const queueOf = (purpose: 'orders' | 'replies' | 'events') => {
    const name = engine.queueSpecs().find((s) => s.name.endsWith(`.${purpose}`))?.name;
    if (!name) throw new Error(`the engine has no ${purpose} queue`);
    return name;
  };
  const store = () => h.stack.workflow.store;
  const ghost = () => nextId('ghost-order');

  beforeAll(async () => {
    // Shipments are never dispatched by the WMS simulator here: orders wait at await-dispatch until
    // the test sends the event.
    const { spec, connectors } = distributor((_spec, cs) => {
      const wms = cs.find((c) => c.name === 'wms');
      if (wms?.options) wms.options.dispatchAfterMs = 3_600_000;
    });
    h = await startStack({ name: 'it-poison-wf', spec, connectors });
    engine = h.stack.workflow.engine as WorkflowEngine;
  });
  afterAll(async () => {
    await h?.stop();
  });

  /** Publishes `env` to `queue`; the probe is its inbox claim under `consumer`. */
  const sendClaimed = (queue: () => string, consumer: string, env: () => Envelope) => async () => {
    const e = env();
    await publishTo(queue(), { id: e.id, type: e.type, body: toBinary(EnvelopeSchema, e) });
    return () => inInbox(store(), consumer, e.id);
  };

  describe('orders', () => {
    itParksEveryPoison({
      queue: () => queueOf('orders'),
      dlq: () => dlqName(queueOf('orders')),
      type: () => 'o2c.v1.OrderCancelled',
      payload: () => ({ case: 'orderCancelled', value: { orderId: ghost() } }),
      wrongPayload: { case: 'shipmentDispatched', value: { orderId: 'o-poison' } },
      sendGood: sendClaimed(
        () => queueOf('orders'),
        'distributor.orders',
        () => anEnvelope('o2c.v1.OrderCancelled', { case: 'orderCancelled', value: { orderId: ghost() } }),
      ),
      inbox: { store, consumer: 'distributor.orders' },
    });

    it('parks an OrderSubmitted without its order as an invalid payload, not as handled', async () => {
      const env = anEnvelope('o2c.v1.OrderSubmitted', { case: 'orderSubmitted', value: {} });
      await publishTo(queueOf('orders'), { id: env.id, type: env.type, body: toBinary(EnvelopeSchema, env) });
      const entry = await parked(dlqName(queueOf('orders')), env.id);
      expect(entry).toMatchObject({ reason: 'poison', errorClass: 'InvalidPayload' });
      expect(entry.error).toBe('o2c.v1.OrderSubmitted carries no order id');
      expect(await inInbox(store(), 'distributor.orders', env.id)).toBe(false);
    });

    it('reads an OrderCancelled with fields it does not know and cancels the order', async () => {
      const { order } = await h.client.submitOrder({
        idempotencyKey: nextId('cancel'),
        order: { customerId: 'ACME', currencyCode: 'USD', lines: [{ sku: 'WIDGET-1', quantity: 1 }] },
      });
      await until(
        async () => (await instanceStatus(order!.id)) === 'waiting',
        20_000,
        'the order waiting for its shipment',
      );
      const env = anEnvelope('o2c.v1.OrderCancelled', {
        case: 'orderCancelled',
        value: { orderId: order!.id, reason: 'from a newer producer' },
      });
      await publishTo(queueOf('orders'), { id: env.id, type: env.type, body: withUnknownFields(env) });
      await until(
        async () => (await instanceStatus(order!.id)) === 'cancelled',
        20_000,
        'the order cancelled',
      );
      expect(await inInbox(store(), 'distributor.orders', env.id)).toBe(true);
    });
  });

  async function instanceStatus(orderId: string): Promise<string | undefined> {
    const rows = await store().transaction((tx) =>
      tx.query<{ status: string }>('SELECT status FROM workflow_instances WHERE order_id = $1', [orderId]),
    );
    return rows[0]?.status;
  }

  describe('events', () => {
    itParksEveryPoison({
      queue: () => queueOf('events'),
      dlq: () => dlqName(queueOf('events')),
      type: () => 'o2c.v1.ShipmentDispatched',
      payload: () => ({ case: 'shipmentDispatched', value: { orderId: ghost() } }),
      wrongPayload: { case: 'paymentReceived', value: { orderId: 'o-poison' } },
      sendGood: sendClaimed(
        () => queueOf('events'),
        'distributor.events',
        () =>
          anEnvelope('o2c.v1.ShipmentDispatched', {
            case: 'shipmentDispatched',
            value: { orderId: ghost() },
          }),
      ),
      inbox: { store, consumer: 'distributor.events' },
    });

    it('parks a dispatch that names no order as an invalid payload, not as handled', async () => {
      const env = anEnvelope('o2c.v1.ShipmentDispatched', { case: 'shipmentDispatched', value: {} });
      await publishTo(queueOf('events'), { id: env.id, type: env.type, body: toBinary(EnvelopeSchema, env) });
      const entry = await parked(dlqName(queueOf('events')), env.id);
      expect(entry).toMatchObject({ reason: 'poison', errorClass: 'InvalidPayload' });
      expect(entry.error).toMatch(/names no order/);
      expect(await inInbox(store(), 'distributor.events', env.id)).toBe(false);
    });

    it('reads a ShipmentDispatched with fields it does not know and takes the order on to PAID', async () => {
      const { order } = await h.client.submitOrder({
        idempotencyKey: nextId('dispatch'),
        order: { customerId: 'ACME', currencyCode: 'USD', lines: [{ sku: 'WIDGET-1', quantity: 1 }] },
      });
      await until(
        async () => (await instanceStatus(order!.id)) === 'waiting',
        20_000,
        'the order waiting for its shipment',
      );
      const env = anEnvelope(
        'o2c.v1.ShipmentDispatched',
        { case: 'shipmentDispatched', value: { orderId: order!.id, shipment: { id: `shp-${order!.id}` } } },
        { subject: order!.id },
      );
      await publishTo(queueOf('events'), { id: env.id, type: env.type, body: withUnknownFields(env) });
      const paid = await waitForState(h.client, order!.id, [OrderState.PAID]);
      expect(paid.state).toBe(OrderState.PAID);
      expect(await inInbox(store(), 'distributor.events', env.id)).toBe(true);
    });
  });

  describe('replies', () => {
    const reply = (orderId: string) =>
      anEnvelope(engine.replyKey, {
        case: 'connectorReply',
        value: { orderId, step: 'tax', operation: 'CalculateTax', connector: 'tax' },
      });
    itParksEveryPoison({
      queue: () => queueOf('replies'),
      dlq: () => dlqName(queueOf('replies')),
      type: () => engine.replyKey,
      payload: () => reply(ghost()).payload,
      wrongPayload: { case: 'connectorCommand', value: { orderId: 'o-poison', operation: 'CalculateTax' } },
      sendGood: sendClaimed(
        () => queueOf('replies'),
        'distributor.replies',
        () => reply(ghost()),
      ),
      inbox: { store, consumer: 'distributor.replies' },
    });

    it('reads a reply with fields it does not know as handled, not as poison', async () => {
      const env = reply(ghost());
      await publishTo(queueOf('replies'), { id: env.id, type: env.type, body: withUnknownFields(env) });
      await until(() => inInbox(store(), 'distributor.replies', env.id), 20_000, 'the reply handled');
      expect(await listDlq(bus, queueOf('replies'), { messageId: env.id })).toEqual([]);
    });
  });

  it('o2c dlq show names the reason, the class and what was wrong', async () => {
    const env = anEnvelope('o2c.v1.ShipmentTeleported', {
      case: 'shipmentDispatched',
      value: { orderId: ghost() },
    });
    await publishTo(queueOf('events'), { id: env.id, type: env.type, body: toBinary(EnvelopeSchema, env) });
    await parked(dlqName(queueOf('events')), env.id);
    const out: string[] = [];
    const log = vi.spyOn(console, 'log').mockImplementation((line: unknown) => void out.push(String(line)));
    try {
      expect(await runDlq(['show', queueOf('events'), env.id, '--url', BROKER_URL])).toBe(0);
    } finally {
      log.mockRestore();
    }
    const text = out.join('\n');
    expect(text).toMatch(/^reason +poison \(UnknownEventType\)$/m);
    expect(text).toMatch(
      /^error +type "o2c.v1.ShipmentTeleported" is not an event type of the o2c.v1 contract$/m,
    );
    expect(text).toMatch(new RegExp(`^queue +${queueOf('events').replaceAll('.', '\\.')}$`, 'm'));
  });
});

// ---- a connector and two pipelines ---------------------------------------------------------------

describe("a connector's commands and the pipelines' queues", () => {
  const NS = 'it-poison-bus';
  const connectorRetry = { maxAttempts: 2, backoff: { initialMs: 100, maxMs: 200, multiplier: 2 } };
  const crmConfig: ConnectorRuntimeConfig = {
    name: 'crm',
    namespace: NS,
    system: 'crm',
    driver: 'simulator',
    owns: ['item', 'order'],
    limits: { requestsPerSecond: 1000, maxConcurrency: 8 },
  };
  const pipelineSpec = (ordered: boolean): PipelineSpec => ({
    source: { connector: 'erp', events: ['o2c.v1.ItemUpserted'] },
    transform: { name: 'event.item.name.upperAscii()' },
    sink: { connector: 'crm', operation: 'UpsertItem' },
    delivery: {
      maxAttempts: 2,
      backoff: { initial: '100ms', max: '200ms' },
      deadLetter: true,
      ...(ordered ? { orderingKey: 'event.item.sku' } : {}),
    },
    concurrency: 4,
  });
  const replyKey = `o2c.v1.ConnectorReply.${NS}.tap`;
  let store: Store;
  let crm: ConnectorRole;
  let unordered: PipelineRole;
  let ordered: PipelineRole;
  let tap: Awaited<ReturnType<typeof eventTap>>;
  const upserts: UpsertItemRequest[] = [];
  let queues: QueueSpec[] = [];

  beforeAll(async () => {
    store = await openStore(await storeUrlFor('postgres', 'it_poison_bus'));
    const driver = new SimulatorDriver({ seed: 11 }, undefined, { system: 'crm' });
    const upsertItem = driver.upsertItem;
    driver.upsertItem = (req, ctx) => {
      upserts.push(req);
      return upsertItem(req, ctx);
    };
    crm = await startConnectorRole({
      config: crmConfig,
      connection: bus,
      store,
      driver,
      logger,
      retry: connectorRetry,
    });
    tap = await eventTap(`o2c.${NS}.test.tap`, replyKey);
    const start = (name: string, isOrdered: boolean) =>
      startPipelineRole({
        namespace: NS,
        name,
        spec: pipelineSpec(isOrdered),
        connection: bus,
        store,
        logger,
        registry: new Registry(),
        partitions: 2,
        replyTimeoutMs: 5_000,
      });
    unordered = await start('items-unordered', false);
    ordered = await start('items-ordered', true);
    queues = [
      commandQueueSpec(crmConfig, connectorRetry),
      unordered.worker.queues.events,
      ordered.worker.queues.events,
      ordered.worker.queues.deliveries as QueueSpec,
    ];
  });

  afterAll(async () => {
    await unordered?.stop();
    await ordered?.stop();
    await crm?.stop();
    await tap?.close();
    if (bus.model) {
      for (const q of queues) await deleteQueueTopology(bus.model, q);
      const ch = await bus.model.createChannel();
      for (const p of [unordered, ordered]) if (p) await ch.deleteQueue(p.worker.replies.deadLetterQueue);
      await ch.close();
    }
    await store?.close();
  });

  // -- the connector's command queue

  const aCommand = (orderId: string) => {
    const request: CommandRequest = {
      case: 'createSalesOrder',
      value: {
        $typeName: 'o2c.v1.CreateSalesOrderRequest',
        order: create(OrderSchema, { id: orderId, customerId: 'ACME' }),
      },
    };
    return commandMessage({
      namespace: NS,
      connector: 'crm',
      request,
      orderId,
      step: 'sales-order',
      replyTo: replyKey,
      correlationId: `corr-${orderId}`,
    });
  };
  const replyTo = (commandId: string) => () =>
    tap.received.some((m) => decodeReply(new Uint8Array(m.content))?.envelope.causationId === commandId);

  describe('commands', () => {
    itParksEveryPoison({
      queue: () => crm.queue,
      dlq: () => dlqName(crm.queue),
      type: () => COMMAND_TYPE,
      payload: () => ({
        case: 'connectorCommand',
        value: { operation: 'CreateSalesOrder', orderId: 'o-poison' },
      }),
      wrongPayload: { case: 'connectorReply', value: { orderId: 'o-poison', step: 'sales-order' } },
      sendGood: async () => {
        const m = aCommand(nextId('so'));
        await publishTo(crm.queue, { id: m.id, type: m.type, body: m.body });
        return async () => replyTo(m.id)();
      },
      inbox: { store: () => store, consumer: `connector.${crmConfig.name}` },
    });

    it('reads a command with fields it does not know and answers it', async () => {
      const m = aCommand(nextId('so-newer'));
      const env = fromBinary(EnvelopeSchema, m.body);
      await publishTo(crm.queue, { id: m.id, type: m.type, body: withUnknownFields(env) });
      await until(replyTo(m.id), 20_000, 'the reply to the command');
      const answer = tap.received
        .map((r) => decodeReply(new Uint8Array(r.content)))
        .find((r) => r?.envelope.causationId === m.id);
      expect(answer?.reply.result.case).toBe('createSalesOrder');
    });
  });

  // -- the pipelines' event queues and ordered partitions

  const itemUpserted = (sku: string) =>
    anEnvelope(
      'o2c.v1.ItemUpserted',
      { case: 'itemUpserted', value: { item: { sku, name: `item ${sku}`, uom: 'ea', active: true } } },
      { subject: sku },
    );
  const fromErp = (env: Envelope) => {
    env.source = `o2c/${NS}/connector/erp`;
    return env;
  };
  const upserted = (sku: string) => async () => upserts.some((u) => u.item?.sku === sku);
  const sendItem = (queue: () => string, headers?: (sku: string) => Record<string, string>) => async () => {
    const sku = nextId('SKU');
    const env = fromErp(itemUpserted(sku));
    await publishTo(queue(), {
      id: env.id,
      type: env.type,
      body: toBinary(EnvelopeSchema, env),
      headers: headers?.(sku),
    });
    return upserted(sku);
  };
  const itemQueue = (
    queue: () => string,
    inboxConsumer: string,
    headers?: (sku: string) => Record<string, string>,
  ) => ({
    queue,
    dlq: () => dlqName(queue().replace(/\.p\d+$/, '')),
    type: () => 'o2c.v1.ItemUpserted',
    payload: () => fromErp(itemUpserted(nextId('SKU'))).payload,
    wrongPayload: { case: 'priceChanged', value: {} } as Payload,
    sendGood: sendItem(queue, headers),
    inbox: { store: () => store, consumer: inboxConsumer },
  });

  describe("an unordered pipeline's events", () => {
    itParksEveryPoison(
      itemQueue(() => unordered.worker.queues.events.name, `pipeline.${NS}.items-unordered`),
    );

    it('reads an ItemUpserted with fields it does not know and delivers it', async () => {
      const sku = nextId('SKU-NEWER');
      const env = fromErp(itemUpserted(sku));
      await publishTo(unordered.worker.queues.events.name, {
        id: env.id,
        type: env.type,
        body: withUnknownFields(env),
      });
      await until(upserted(sku), 20_000, 'the CRM upsert');
      expect(upserts.find((u) => u.item?.sku === sku)?.item?.name).toBe(`ITEM ${sku.toUpperCase()}`);
    });
  });

  describe("an ordered pipeline's intake", () => {
    itParksEveryPoison(itemQueue(() => ordered.worker.queues.events.name, `pipeline.${NS}.items-ordered`));
  });

  describe("an ordered pipeline's delivery partition", () => {
    const partition = () => `${ordered.worker.queues.deliveries?.name}.p0`;
    // Poison and the good message share one ordering key: the poison must not hold the key back.
    const sameKey = { [ORDERING_HEADER]: 'one-key' };
    itParksEveryPoison({
      ...itemQueue(partition, `pipeline.${NS}.items-ordered`, () => sameKey),
      headers: sameKey,
    });

    it('reads an ItemUpserted with fields it does not know and delivers it', async () => {
      const sku = nextId('SKU-NEWER');
      const env = fromErp(itemUpserted(sku));
      await publishTo(partition(), {
        id: env.id,
        type: env.type,
        body: withUnknownFields(env),
        headers: { [ORDERING_HEADER]: sku },
      });
      await until(upserted(sku), 20_000, 'the CRM upsert');
    });
  });

  describe("a pipeline's replies", () => {
    itParksEveryPoison({
      queue: () => unordered.worker.replies.queue,
      dlq: () => unordered.worker.replies.deadLetterQueue,
      type: () => unordered.worker.replies.routingKey,
      payload: () => ({ case: 'connectorReply', value: { step: 'pipeline/items-unordered' } }),
      wrongPayload: { case: 'connectorCommand', value: { operation: 'UpsertItem' } },
      // The next reply on the same queue: the one to the command of a good event.
      sendGood: sendItem(() => unordered.worker.queues.events.name),
    });
  });
});
