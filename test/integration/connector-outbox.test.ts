// Events a connector originates go through its store's outbox: on real PostgreSQL, a PRIVATE
// RabbitMQ node (its outage touches no one else's broker) and a real Tryton 6.0.
// (a) dispatches the simulator makes while the broker is down reach the bus after it returns, once;
// (b) a Tryton connector stopped while shipments are done and invoices paid resumes its change feed
//     from the watermark in its store: nothing lost, nothing published twice;
// (c) end to end: an order waiting for its payment while the Tryton connector is down and the
//     customer pays in Tryton reaches PAID once the connector is back.
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { create } from '@bufbuild/protobuf';
import amqp from 'amqplib';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BusConnection } from '../../runtime/src/bus/connection.js';
import { COMMANDS_EXCHANGE, EVENTS_EXCHANGE } from '../../runtime/src/bus/topology.js';
import { connectorMigrations } from '../../runtime/src/connectors/bindings.js';
import { systemClock } from '../../runtime/src/connectors/clock.js';
import { commandMessage } from '../../runtime/src/connectors/commands.js';
import type { ConnectorRuntimeConfig } from '../../runtime/src/connectors/config.js';
import { StaticCredentials } from '../../runtime/src/connectors/credentials.js';
import type { CallContext, ConnectorDriver } from '../../runtime/src/connectors/driver.js';
import { createDriver } from '../../runtime/src/connectors/drivers.js';
import { money } from '../../runtime/src/connectors/money.js';
import { type ConnectorRole, startConnectorRole } from '../../runtime/src/connectors/role.js';
import type { SimulatorDriver } from '../../runtime/src/connectors/simulator/driver.js';
import {
  CreateSalesOrderRequestSchema,
  PostInvoiceRequestSchema,
  RecordPaymentRequestSchema,
  ReleaseFulfillmentRequestSchema,
} from '../../runtime/src/gen/o2c/v1/connector_service_pb.js';
import { OrderSchema, OrderState } from '../../runtime/src/gen/o2c/v1/entities_pb.js';
import { stackFromManifests } from '../../runtime/src/local/stack.js';
import { loadManifests } from '../../runtime/src/manifests.js';
import { openStore, registerMigrations, type Store } from '../../runtime/src/store/index.js';
import { startTryton, type TrytonServer } from '../tryton/server.js';
import { type PrivateRabbit, startPrivateRabbit } from './support/private-services.js';
import { BROKER_URL, freshDatabase, until } from './support/services.js';
import { type StackHarness, startStack, waitForState } from './support/stack.js';

const logger = pino({ level: process.env.O2C_TEST_LOG ?? 'warn' });
const RETRY = { maxAttempts: 3, backoff: { initialMs: 100, maxMs: 500, multiplier: 2 } };
registerMigrations(connectorMigrations);

/** A queue collecting the events of `types` on a broker, reconnectable after an outage. */
async function tapOf(url: string, queue: string, types: string[]) {
  const received: amqp.ConsumeMessage[] = [];
  let conn: amqp.ChannelModel | undefined;
  const attach = async () => {
    conn = await amqp.connect(url);
    conn.on('error', () => {});
    const ch = await conn.createChannel();
    ch.on('error', () => {});
    await ch.assertExchange(EVENTS_EXCHANGE, 'topic', { durable: true });
    await ch.assertQueue(queue, { durable: true, arguments: { 'x-queue-type': 'quorum' } });
    // '#.' matches the bare type and any addressed routing key ending in it.
    for (const t of types) await ch.bindQueue(queue, EVENTS_EXCHANGE, `#.${t}`);
    await ch.consume(queue, (m) => {
      if (!m) return;
      received.push(m);
      ch.ack(m);
    });
  };
  await attach();
  return {
    received,
    of: (type: string, orderId: string) =>
      received.filter((m) => m.properties.type === type && m.properties.correlationId === orderId),
    reattach: attach,
    async close(deleteQueue = true) {
      if (deleteQueue && conn) {
        const ch = await conn.createChannel();
        await ch.deleteQueue(queue).catch(() => {});
      }
      await conn?.close().catch(() => {});
    },
  };
}

async function outboxRows(store: Store, type: string) {
  return store.transaction((tx) =>
    tx.query<{ id: string; sent_at: unknown }>('SELECT id, sent_at FROM outbox WHERE type = $1', [type]),
  );
}

const ctx = (key: string): CallContext => ({
  signal: AbortSignal.timeout(60_000),
  idempotencyKey: key,
  correlationId: key,
});

describe('events a connector originates while the broker is down', () => {
  const N = 20;
  const NS = 'it-outbox-a';
  let broker: PrivateRabbit;
  let store: Store;
  let bus: BusConnection;
  let role: ConnectorRole;
  let tap: Awaited<ReturnType<typeof tapOf>>;

  beforeAll(async () => {
    broker = await startPrivateRabbit('connector-outbox');
    store = await openStore(await freshDatabase('o2c_it_connector_outbox_a'));
    bus = new BusConnection({ url: broker.url, name: `o2c/${NS}/connector/wms`, logger });
    await bus.start();
    const config: ConnectorRuntimeConfig = {
      name: 'wms',
      namespace: NS,
      system: 'wms',
      driver: 'simulator',
      owns: ['inventory', 'shipment'],
      limits: { requestsPerSecond: 1000, maxConcurrency: 32 },
      // The dispatches happen inside the warehouse while the broker is away.
      options: { dispatchAfterMs: 1500 },
    };
    role = await startConnectorRole({ config, connection: bus, store, logger, retry: RETRY });
    tap = await tapOf(broker.url, `o2c.test.${NS}.dispatches`, ['o2c.v1.ShipmentDispatched']);
  }, 120_000);

  afterAll(async () => {
    await role?.stop();
    await bus?.close();
    await store?.close();
    await broker?.close();
  });

  it('are delivered, each once, after the broker comes back', async () => {
    const orders = Array.from({ length: N }, (_, i) => `o2c-outbox-a-${Date.now()}-${i}`);
    const conn = await amqp.connect(broker.url);
    const ch = await conn.createConfirmChannel();
    for (const orderId of orders) {
      const m = commandMessage({
        namespace: NS,
        connector: 'wms',
        request: {
          case: 'releaseFulfillment',
          value: create(ReleaseFulfillmentRequestSchema, { orderId }),
        },
        orderId,
        step: 'release',
        replyTo: `o2c.v1.ConnectorReply.${NS}.test`,
        correlationId: orderId,
      });
      ch.publish(COMMANDS_EXCHANGE, m.routingKey, Buffer.from(m.body), {
        messageId: m.id,
        type: m.type,
        correlationId: m.correlationId,
        persistent: true,
      });
    }
    await ch.waitForConfirms();
    await conn.close();
    const wms = role.runtime.driver as SimulatorDriver;
    await until(() => (wms.callCounts.get('releaseFulfillment') ?? 0) >= N, 20_000, 'fulfillments released');

    await broker.stopApp();
    const downAt = Date.now();
    // Dispatched inside the warehouse during the outage: in the outbox, not on the bus.
    await until(
      async () => (await outboxRows(store, 'o2c.v1.ShipmentDispatched')).length === N,
      15_000,
      'dispatches written to the outbox',
    );
    expect((await outboxRows(store, 'o2c.v1.ShipmentDispatched')).every((r) => r.sent_at === null)).toBe(
      true,
    );
    await new Promise((r) => setTimeout(r, Math.max(0, 4000 - (Date.now() - downAt))));

    await broker.startApp();
    const upAt = Date.now();
    await tap.reattach();
    await until(() => tap.received.length >= N, 60_000, `${N} dispatches on the bus`);
    const delayMs = Date.now() - upAt;
    console.log(
      `[figure] ${N} dispatches made during a ${upAt - downAt} ms outage reached the bus ${delayMs} ms after the broker returned`,
    );
    // Give a duplicate the time to show up.
    await new Promise((r) => setTimeout(r, 1500));
    const ids = tap.received.map((m) => String(m.properties.messageId));
    expect(tap.received).toHaveLength(N);
    expect(new Set(ids).size).toBe(N);
    expect(new Set(tap.received.map((m) => m.properties.correlationId))).toEqual(new Set(orders));
    expect((await outboxRows(store, 'o2c.v1.ShipmentDispatched')).every((r) => r.sent_at !== null)).toBe(
      true,
    );
  }, 120_000);
});

describe('a Tryton connector restart', () => {
  const NS = 'it-outbox-b';
  const TYPES = ['o2c.v1.ShipmentDispatched', 'o2c.v1.InvoicePosted', 'o2c.v1.PaymentReceived'];
  let tryton: TrytonServer;
  let store: Store;
  let bus: BusConnection;
  let tap: Awaited<ReturnType<typeof tapOf>>;
  let config: ConnectorRuntimeConfig;
  let credentials: StaticCredentials;
  /** Acts inside the ERP, as its users do (no store, no feed). */
  let erp: ConnectorDriver;

  beforeAll(async () => {
    tryton = await startTryton();
    store = await openStore(await freshDatabase('o2c_it_connector_outbox_b'));
    bus = new BusConnection({ url: BROKER_URL, name: `o2c/${NS}/connector/erp`, logger });
    await bus.start();
    credentials = new StaticCredentials({
      username: tryton.user,
      password: tryton.password,
      database: tryton.database,
    });
    config = {
      name: 'erp',
      namespace: NS,
      system: 'erp',
      driver: 'tryton',
      endpoint: tryton.baseUrl,
      owns: ['customer', 'item', 'price', 'inventory', 'order', 'shipment', 'invoice', 'payment'],
      limits: { requestsPerSecond: 100, maxConcurrency: 2, timeout: '60s' },
      // A short overlap, so that a feed starting without its watermark would miss what came before.
      options: { pollInterval: '300ms', pollOverlap: '1s' },
    };
    erp = await createDriver({ config, credentials, clock: systemClock });
    tap = await tapOf(BROKER_URL, `o2c.test.${NS}.events`, TYPES);
  }, 300_000);

  afterAll(async () => {
    await tap?.close();
    await erp?.close?.();
    await bus?.close();
    await store?.close();
    await tryton?.dispose();
  });

  const role = () =>
    startConnectorRole({ config, connection: bus, store, credentials, logger, retry: RETRY });

  async function book(orderId: string) {
    await erp.createSalesOrder!(
      create(CreateSalesOrderRequestSchema, {
        order: create(OrderSchema, {
          id: orderId,
          customerId: 'CUST-ACME',
          currencyCode: 'USD',
          lines: [{ sku: 'WIDGET-001', quantity: 1, unitPrice: money('USD', '10.00') }],
        }),
      }),
      ctx(`${orderId}:sales-order`),
    );
  }
  const ship = (orderId: string) =>
    erp.releaseFulfillment!(create(ReleaseFulfillmentRequestSchema, { orderId }), ctx(`${orderId}:release`));
  async function invoiceAndPay(orderId: string) {
    const posted = await erp.postInvoice!(
      create(PostInvoiceRequestSchema, { orderId }),
      ctx(`${orderId}:invoice`),
    );
    await erp.recordPayment!(
      create(RecordPaymentRequestSchema, {
        orderId,
        amount: posted.invoice?.total,
        invoice: posted.invoice?.externalRefs[0],
      }),
      ctx(`${orderId}:payment`),
    );
  }

  it('resumes the change feed from its stored watermark, on two replicas: nothing lost, nothing published twice', async () => {
    const o1 = `o2c-outbox-b-${Date.now()}-1`;
    const o2 = `o2c-outbox-b-${Date.now()}-2`;
    const first = await role();
    await book(o1);
    await ship(o1);
    await until(() => tap.of('o2c.v1.ShipmentDispatched', o1).length === 1, 30_000, 'the first dispatch');
    await first.stop();

    // While the connector is away: the second order ships, the first is invoiced and paid.
    await book(o2);
    await ship(o2);
    await invoiceAndPay(o1);
    await new Promise((r) => setTimeout(r, 2000)); // older than the feed's overlap window

    const restartedAt = Date.now();
    // Back with two replicas on the one store: the feed's lease lets one poll at a time.
    const second = await role();
    const third = await role();
    try {
      await until(
        () =>
          tap.of('o2c.v1.ShipmentDispatched', o2).length > 0 &&
          tap.of('o2c.v1.InvoicePosted', o1).length > 0 &&
          tap.of('o2c.v1.PaymentReceived', o1).length > 0,
        30_000,
        'what happened while the connector was away',
      );
      console.log(`[figure] the restarted feed caught up ${Date.now() - restartedAt} ms after the restart`);
      await new Promise((r) => setTimeout(r, 1500)); // a few more poll rounds: no repeats
      const counts = Object.fromEntries(
        [
          ['ShipmentDispatched', o1],
          ['ShipmentDispatched', o2],
          ['InvoicePosted', o1],
          ['PaymentReceived', o1],
        ].map(([t, o]) => [`${t} ${o === o1 ? 'o1' : 'o2'}`, tap.of(`o2c.v1.${t}`, o!).length]),
      );
      console.log('[figure] events on the bus per fact across the restart:', JSON.stringify(counts));
      expect(counts).toEqual({
        'ShipmentDispatched o1': 1,
        'ShipmentDispatched o2': 1,
        'InvoicePosted o1': 1,
        'PaymentReceived o1': 1,
      });
      const watermark = await store.transaction((tx) =>
        tx.query('SELECT value FROM connector_watermarks WHERE system = $1', ['erp']),
      );
      expect(watermark).toHaveLength(1);
    } finally {
      await second.stop();
      await third.stop();
    }
  }, 300_000);
});

describe('an order on the real Tryton ERP whose connector is down when the customer pays', () => {
  let tryton: TrytonServer;
  let h: StackHarness;
  let erpConfig: ConnectorRuntimeConfig;
  let credentials: StaticCredentials;

  beforeAll(async () => {
    tryton = await startTryton();
    credentials = new StaticCredentials({
      username: tryton.user,
      password: tryton.password,
      database: tryton.database,
    });
    const dir = mkdtempSync(join(tmpdir(), 'o2c-it-tryton-credentials-'));
    writeFileSync(join(dir, 'username'), tryton.user);
    writeFileSync(join(dir, 'password'), tryton.password);
    writeFileSync(join(dir, 'database'), tryton.database);
    const parsed = stackFromManifests(loadManifests(['examples/distributor-tryton/']));
    const connectors = structuredClone(parsed.connectors).map((c) =>
      c.name === 'erp'
        ? {
            ...c,
            endpoint: tryton.baseUrl,
            credentialsDir: dir,
            options: { ...c.options, pollInterval: '300ms', pollOverlap: '1s' },
          }
        : c,
    );
    erpConfig = { ...connectors.find((c) => c.name === 'erp')!, namespace: 'it-outbox-c' };
    h = await startStack({ name: 'it-outbox-c', spec: parsed.spec, connectors, connectorStore: true });
  }, 300_000);

  afterAll(async () => {
    await h?.stop();
    await tryton?.dispose();
  });

  const erpRole = () =>
    startConnectorRole({
      config: erpConfig,
      connection: h.stack.connectorBus,
      store: h.stack.connectorStore,
      logger,
      retry: RETRY,
    });

  it('reaches PAID from the change feed once the connector is back', async () => {
    const { order } = await h.client.submitOrder({
      idempotencyKey: `outbox-c-${Date.now()}`,
      order: { customerId: 'CUST-ACME', currencyCode: 'USD', lines: [{ sku: 'WIDGET-001', quantity: 2 }] },
    });
    const invoiced = await waitForState(
      h.client,
      order!.id,
      [OrderState.INVOICED, OrderState.ON_HOLD],
      120_000,
    );
    expect(invoiced.state).toBe(OrderState.INVOICED);

    await h.stack.connectors.get('erp')!.stop();
    // The customer pays in the ERP while the connector is away.
    const erp = await createDriver({ config: erpConfig, credentials, clock: systemClock });
    try {
      await erp.recordPayment!(
        create(RecordPaymentRequestSchema, { orderId: order!.id, amount: invoiced.total }),
        ctx(`${order!.id}:paid-in-erp`),
      );
    } finally {
      await erp.close?.();
    }
    await new Promise((r) => setTimeout(r, 2000)); // older than the feed's overlap window
    expect((await h.client.getOrder({ id: order!.id })).order?.state).toBe(OrderState.INVOICED);

    const restartedAt = Date.now();
    h.stack.connectors.set('erp', await erpRole());
    await waitForState(h.client, order!.id, [OrderState.PAID], 30_000);
    console.log(`[figure] PAID ${Date.now() - restartedAt} ms after the Tryton connector came back`);
    // By the event from the feed, not by the fallback (its quiet period is 10 minutes here).
    const { steps } = await h.client.getOrderHistory({ id: order!.id });
    expect(steps.filter((s) => s.step === 'poll:await-payment')).toEqual([]);
    expect(steps.some((s) => s.step === 'await-payment' && s.outcome === 'succeeded')).toBe(true);
  }, 300_000);
});
