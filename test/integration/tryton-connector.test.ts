// The `tryton` connector end to end against a real Tryton 6.0 (test/tryton/server.ts). Most cases run
// commands through the ConnectorRuntime in process (envelope decode, ownership, governor with its
// circuit breaker, createDriver('tryton'), reply encode), retrying retryable failures as the bus
// consumer does; the last suite runs the real connector role on RabbitMQ, which hands the driver's
// change feed its originate function (connectors/origination.ts) and so publishes ShipmentDispatched.
import { createServer, type Server, Socket } from 'node:net';
import { create, fromBinary } from '@bufbuild/protobuf';
import type amqp from 'amqplib';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BusConnection } from '../../runtime/src/bus/connection.js';
import { ConfirmPublisher } from '../../runtime/src/bus/publisher.js';
import { deleteQueueTopology } from '../../runtime/src/bus/topology.js';
import { systemClock } from '../../runtime/src/connectors/clock.js';
import {
  buildCommandEnvelope,
  type CommandRequest,
  commandMessage,
  decodeReply,
} from '../../runtime/src/connectors/commands.js';
import type { ConnectorRuntimeConfig } from '../../runtime/src/connectors/config.js';
import { StaticCredentials } from '../../runtime/src/connectors/credentials.js';
import { type CallContext, ConnectorFailure } from '../../runtime/src/connectors/driver.js';
import { createDriver } from '../../runtime/src/connectors/drivers.js';
import { money } from '../../runtime/src/connectors/money.js';
import {
  type ConnectorRole,
  commandQueueSpec,
  startConnectorRole,
} from '../../runtime/src/connectors/role.js';
import { ConnectorRuntime } from '../../runtime/src/connectors/runtime.js';
import {
  findSalesByReference,
  type TrytonChangeEvent,
  TrytonClient,
  TrytonDriver,
} from '../../runtime/src/connectors/tryton/index.js';
import { ErrorClass } from '../../runtime/src/gen/o2c/v1/common_pb.js';
import {
  type ConnectorReply,
  CreateSalesOrderRequestSchema,
} from '../../runtime/src/gen/o2c/v1/connector_service_pb.js';
import { OrderSchema } from '../../runtime/src/gen/o2c/v1/entities_pb.js';
import { EnvelopeSchema } from '../../runtime/src/gen/o2c/v1/events_pb.js';
import { startTryton, type TrytonServer } from '../tryton/server.js';
import { BROKER_URL, eventTap, until } from './support/services.js';

const RUN = `${Date.now().toString(36)}`;
const PREFIX = 'it-tryton-connector';
const NAME = `${PREFIX}-erp`;
const MAX_ATTEMPTS = 2;
const logger = pino({ level: 'warn' });

let tryton: TrytonServer;
let runtime: ConnectorRuntime;
let erp: TrytonClient;
let config: ConnectorRuntimeConfig;
let credentials: StaticCredentials;
const feed: TrytonChangeEvent[] = [];
let stopFeed: (() => Promise<void>) | undefined;
let seq = 0;

/**
 * Runs one command through the runtime and returns its reply. Retryable failures are retried once
 * after 100 ms and answered on the last attempt, as the bus consumer does with maxAttempts 2.
 */
async function call(
  request: CommandRequest,
  orderId: string,
  step: string,
  rt: ConnectorRuntime = runtime,
): Promise<ConnectorReply> {
  const correlationId = `${RUN}-${++seq}`;
  const envelope = buildCommandEnvelope({
    namespace: 'it',
    connector: NAME,
    request,
    orderId,
    step,
    replyTo: 'it.reply',
    correlationId,
    idempotencyKey: `${orderId}:${step}`,
  });
  for (let attempt = 1; ; attempt++) {
    try {
      const reply = await rt.execute(envelope.payload.value as never, envelope, {
        attempt,
        finalAttempt: attempt >= MAX_ATTEMPTS,
      });
      return reply;
    } catch (err) {
      if (!(err instanceof ConnectorFailure) || !err.retryable || attempt >= MAX_ATTEMPTS) throw err;
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}

function ok<C extends ConnectorReply['result']['case']>(reply: ConnectorReply, c: C) {
  if (reply.result.case === 'error') {
    throw new Error(
      `${c} failed: ${reply.result.value.message} (${ErrorClass[reply.result.value.errorClass]})`,
    );
  }
  expect(reply.result.case).toBe(c);
  return reply.result.value as Extract<ConnectorReply['result'], { case: C }>['value'];
}

function err(reply: ConnectorReply) {
  if (reply.result.case !== 'error') throw new Error(`expected an error reply, got ${reply.result.case}`);
  return reply.result.value;
}

function salesOrderRequest(orderId: string, customerId: string, lines: [string, number, string?][]) {
  return create(CreateSalesOrderRequestSchema, {
    order: create(OrderSchema, {
      id: orderId,
      customerId,
      currencyCode: 'USD',
      lines: lines.map(([sku, quantity, price]) => ({
        sku,
        quantity,
        unitPrice: price ? money('USD', price) : undefined,
      })),
    }),
  });
}

beforeAll(async () => {
  tryton = await startTryton();
  erp = new TrytonClient({ url: tryton.url, username: tryton.user, password: tryton.password });
  // The endpoint is the server root; the database name comes with the credentials.
  credentials = new StaticCredentials({
    username: tryton.user,
    password: tryton.password,
    database: tryton.database,
  });
  config = {
    name: NAME,
    namespace: 'it',
    system: 'erp',
    driver: 'tryton',
    endpoint: tryton.baseUrl,
    owns: ['customer', 'item', 'price', 'inventory', 'order', 'shipment', 'invoice', 'payment'],
    limits: { requestsPerSecond: 100, maxConcurrency: 2, timeout: '60s' },
    circuitBreaker: { consecutiveFailures: 3, openFor: '3s' },
    options: { pollInterval: '500ms' },
  };
  const driver = await createDriver({ config, credentials, clock: systemClock });
  runtime = new ConnectorRuntime({ config, driver, publisher: { publish: async () => {} }, logger });
  stopFeed = (driver as TrytonDriver).startChangeFeed(async (events) => {
    feed.push(...(events as TrytonChangeEvent[]));
  });
});

afterAll(async () => {
  await stopFeed?.();
  await runtime?.driver.close?.();
  await tryton?.dispose();
});

describe('tryton connector through the connector runtime (governor, ownership, reply encoding)', () => {
  it('is built by createDriver from driver: tryton', () => {
    expect(runtime.driver.driverName).toBe('tryton');
  });

  it('takes an order from customer validation to a paid invoice, and publishes dispatch and payment', async () => {
    const orderId = `o2c-conn-full-${RUN}`;
    const v = ok(
      await call(
        {
          case: 'validateCustomer',
          value: { $typeName: 'o2c.v1.ValidateCustomerRequest', customerId: 'CUST-ACME', orderId },
        },
        orderId,
        'validate-customer',
      ),
      'validateCustomer',
    );
    expect(v.valid).toBe(true);
    expect(v.customer?.externalRefs[0]).toMatchObject({ system: NAME, displayId: 'CUST-ACME' });
    expect(v.customer?.creditLimit).toMatchObject({ currencyCode: 'USD', units: 1_000_000n, nanos: 0 });

    const credit = ok(
      await call(
        {
          case: 'checkCredit',
          value: {
            $typeName: 'o2c.v1.CheckCreditRequest',
            customerId: 'CUST-ACME',
            orderId,
            amount: money('USD', '81.00'),
          },
        },
        orderId,
        'credit-check',
      ),
      'checkCredit',
    );
    expect(credit.approved).toBe(true);

    const price = ok(
      await call(
        {
          case: 'getPrice',
          value: {
            $typeName: 'o2c.v1.GetPriceRequest',
            customerId: 'CUST-ACME',
            currencyCode: 'USD',
            orderId,
            lines: [
              { $typeName: 'o2c.v1.PriceRequestLine', sku: 'WIDGET-001', quantity: 3 },
              { $typeName: 'o2c.v1.PriceRequestLine', sku: 'GADGET-002', quantity: 2 },
            ],
          },
        },
        orderId,
        'price',
      ),
      'getPrice',
    );
    expect(price.lines[0]?.unitPrice).toMatchObject({ currencyCode: 'USD', units: 10n, nanos: 0 });
    expect(price.lines[1]?.lineTotal).toMatchObject({ units: 51n, nanos: 0 });
    expect(price.subtotal).toMatchObject({ currencyCode: 'USD', units: 81n, nanos: 0 });

    const so = ok(
      await call(
        {
          case: 'createSalesOrder',
          value: salesOrderRequest(orderId, 'CUST-ACME', [
            ['WIDGET-001', 3, '10.00'],
            ['GADGET-002', 2, '25.50'],
          ]),
        },
        orderId,
        'sales-order',
      ),
      'createSalesOrder',
    );
    expect(so.existed).toBe(false);
    expect(so.state).toBe('processing');
    expect(so.salesOrder).toMatchObject({ system: NAME });
    expect(so.salesOrder?.displayId).not.toBe('');
    const salesOrder = so.salesOrder;

    const alloc = ok(
      await call(
        {
          case: 'allocateInventory',
          value: { $typeName: 'o2c.v1.AllocateInventoryRequest', orderId, lines: [], salesOrder },
        },
        orderId,
        'allocate',
      ),
      'allocateInventory',
    );
    expect(alloc.fullyAllocated).toBe(true);
    expect(alloc.lines.map((l) => [l.sku, l.requested, l.allocated, l.backordered]).sort()).toEqual([
      ['GADGET-002', 2, 2, 0],
      ['WIDGET-001', 3, 3, 0],
    ]);

    const released = ok(
      await call(
        {
          case: 'releaseFulfillment',
          value: { $typeName: 'o2c.v1.ReleaseFulfillmentRequest', orderId, salesOrder },
        },
        orderId,
        'release',
      ),
      'releaseFulfillment',
    );
    expect(released.shipments).toHaveLength(1);
    expect(released.shipments[0]?.dispatchTime).toBeDefined();
    const shipment = ok(
      await call(
        { case: 'getShipment', value: { $typeName: 'o2c.v1.GetShipmentRequest', orderId, salesOrder } },
        orderId,
        'await-dispatch',
      ),
      'getShipment',
    );
    expect(shipment.dispatched).toBe(true);

    const posted = ok(
      await call(
        {
          case: 'postInvoice',
          value: {
            $typeName: 'o2c.v1.PostInvoiceRequest',
            orderId,
            salesOrder,
            expectedTotal: money('USD', '89.10'),
          },
        },
        orderId,
        'invoice',
      ),
      'postInvoice',
    );
    // 81.00 + 10% tax, as integer units and nanos.
    expect(posted.invoice?.total).toMatchObject({ currencyCode: 'USD', units: 89n, nanos: 100_000_000 });
    expect(posted.invoice?.number).not.toBe('');

    const payment = ok(
      await call(
        {
          case: 'recordPayment',
          value: {
            $typeName: 'o2c.v1.RecordPaymentRequest',
            orderId,
            amount: money('USD', '89.10'),
            method: '',
            invoice: posted.invoice?.externalRefs[0],
          },
        },
        orderId,
        'payment',
      ),
      'recordPayment',
    );
    expect(payment.payment).toMatchObject({
      id: `${orderId}:payment`,
      amount: { units: 89n, nanos: 100_000_000 },
    });

    const status = ok(
      await call(
        { case: 'getPaymentStatus', value: { $typeName: 'o2c.v1.GetPaymentStatusRequest', orderId } },
        orderId,
        'await-payment',
      ),
      'getPaymentStatus',
    );
    expect(status.paid).toBe(true);
    expect(status.amountDue).toMatchObject({ units: 0n, nanos: 0 });
    expect(status.amountPaid).toMatchObject({ units: 89n, nanos: 100_000_000 });

    // The change feed saw the shipment done, the invoice posted and the invoice paid.
    const fed = (type: string) => feed.filter((e) => e.subject === orderId && e.type === type);
    await until(
      () =>
        fed('o2c.v1.ShipmentDispatched').length > 0 &&
        fed('o2c.v1.InvoicePosted').length > 0 &&
        fed('o2c.v1.PaymentReceived').length > 0,
      30_000,
      'change feed events',
    );
    const ev = fed('o2c.v1.ShipmentDispatched')[0];
    expect(ev?.payload.case).toBe('shipmentDispatched');
    if (ev?.payload.case === 'shipmentDispatched') expect(ev.payload.value.shipment?.lines).toHaveLength(2);
    const pay = fed('o2c.v1.PaymentReceived')[0];
    if (pay?.payload.case === 'paymentReceived') {
      expect(pay.payload.value.payment?.amount).toMatchObject({ units: 89n, nanos: 100_000_000 });
    }
    expect(fed('o2c.v1.PaymentReceived')).toHaveLength(1);
    expect(await findSalesByReference(erp, orderId)).toHaveLength(1);
  });

  it('holds credit for CUST-TIGHT: CheckCredit refuses, CreateSalesOrder fails as CREDIT', async () => {
    const orderId = `o2c-conn-tight-${RUN}`;
    const credit = ok(
      await call(
        {
          case: 'checkCredit',
          value: {
            $typeName: 'o2c.v1.CheckCreditRequest',
            customerId: 'CUST-TIGHT',
            orderId,
            amount: money('USD', '100.00'),
          },
        },
        orderId,
        'credit-check',
      ),
      'checkCredit',
    );
    expect(credit.approved).toBe(false);
    expect(credit.creditLimit).toMatchObject({ units: 50n, nanos: 0 });
    expect(credit.reason).toContain('exceeded');

    const reply = await call(
      {
        case: 'createSalesOrder',
        value: salesOrderRequest(orderId, 'CUST-TIGHT', [['WIDGET-001', 10]]),
      },
      orderId,
      'sales-order',
    );
    const e = err(reply);
    expect(e.errorClass).toBe(ErrorClass.CREDIT);
    expect(e.retryable).toBe(false);
    expect(e.message).toMatch(/credit limit/i);
  });

  it('creates one sale for a CreateSalesOrder sent twice at once and again later', async () => {
    const orderId = `o2c-conn-twice-${RUN}`;
    const request: CommandRequest = {
      case: 'createSalesOrder',
      value: salesOrderRequest(orderId, 'CUST-ACME', [['WIDGET-001', 1]]),
    };
    const [a, b] = await Promise.all([
      call(request, orderId, 'sales-order'),
      call(request, orderId, 'sales-order'),
    ]);
    const c = await call(request, orderId, 'sales-order');
    const refs = [a, b, c].map((r) => ok(r, 'createSalesOrder'));
    expect(new Set(refs.map((r) => r.salesOrder?.externalId)).size).toBe(1);
    expect(refs.filter((r) => !r.existed)).toHaveLength(1);
    expect(await findSalesByReference(erp, orderId)).toHaveLength(1);
  });

  it('backorders what Tryton cannot reserve when the stock warning is accepted (driver called directly)', async () => {
    const strict = new TrytonDriver({
      config: { ...config, options: {} },
      credentials: new StaticCredentials({
        username: tryton.user,
        password: tryton.password,
        database: tryton.database,
      }),
    });
    const lenient = new TrytonDriver({
      config: { ...config, options: { acceptWarnings: ['stock'] } },
      credentials: new StaticCredentials({
        username: tryton.user,
        password: tryton.password,
        database: tryton.database,
      }),
    });
    const ctx = (key: string): CallContext => ({
      signal: new AbortController().signal,
      idempotencyKey: key,
      correlationId: key,
    });
    const orderId = `o2c-conn-scarce-${RUN}`;
    const order = salesOrderRequest(orderId, 'CUST-ACME', [['SCARCE-003', 8]]);
    await expect(strict.createSalesOrder(order, ctx('s1'))).rejects.toMatchObject({
      errorClass: ErrorClass.STOCK,
      retryable: false,
    });
    const so = await lenient.createSalesOrder(order, ctx('s2'));
    expect(so.state).toBe('processing');
    const alloc = await lenient.allocateInventory(
      { $typeName: 'o2c.v1.AllocateInventoryRequest', orderId, lines: [], salesOrder: so.salesOrder },
      ctx('s3'),
    );
    expect(alloc.fullyAllocated).toBe(false);
    expect(alloc.lines).toEqual([
      expect.objectContaining({ sku: 'SCARCE-003', requested: 8, allocated: 5, backordered: 3 }),
    ]);
    await expect(
      lenient.releaseFulfillment({ $typeName: 'o2c.v1.ReleaseFulfillmentRequest', orderId }, ctx('s4')),
    ).rejects.toMatchObject({ errorClass: ErrorClass.STOCK });
    await strict.close();
    await lenient.close();
  });

  it('makes one sale when the CreateSalesOrder reply is lost and the runtime retries it', async () => {
    const proxy = await cuttingProxy(tryton.port);
    const viaProxy = await createDriver({
      config: { ...config, name: NAME, endpoint: proxy.url },
      credentials: new StaticCredentials({ username: tryton.user, password: tryton.password }),
      clock: systemClock,
    });
    const rt = new ConnectorRuntime({ config, driver: viaProxy, publisher: { publish: async () => {} } });
    try {
      const orderId = `o2c-conn-lost-${RUN}`;
      proxy.cutAfter('"model.sale.sale.create"');
      const reply = await call(
        { case: 'createSalesOrder', value: salesOrderRequest(orderId, 'CUST-ACME', [['GADGET-002', 1]]) },
        orderId,
        'sales-order',
        rt,
      );
      expect(proxy.cuts).toBe(1);
      const so = ok(reply, 'createSalesOrder');
      expect(so).toMatchObject({ existed: true, state: 'processing' });
      expect(await findSalesByReference(erp, orderId)).toEqual([Number(so.salesOrder?.externalId)]);
      expect(rt.governor.stats().failures).toBe(1);
    } finally {
      await proxy.close();
    }
  });

  it('opens the circuit while Tryton is down (fail fast, retryable UNAVAILABLE) and closes it after', async () => {
    const orderId = `o2c-conn-outage-${RUN}`;
    const validate: CommandRequest = {
      case: 'validateCustomer',
      value: { $typeName: 'o2c.v1.ValidateCustomerRequest', customerId: 'CUST-ACME', orderId },
    };
    await tryton.stop();
    try {
      // Each command is tried twice (retry.maxAttempts); the last attempt answers with the failure.
      const first = err(await call(validate, orderId, 'v1'));
      expect(first.errorClass).toBe(ErrorClass.UNAVAILABLE);
      expect(first.retryable).toBe(true);
      await call(validate, orderId, 'v2');
      expect(runtime.governor.circuit).toBe('open');
      const started = Date.now();
      const fast = err(await call(validate, orderId, 'v3'));
      expect(fast).toMatchObject({
        errorClass: ErrorClass.UNAVAILABLE,
        retryable: true,
        code: 'CIRCUIT_OPEN',
      });
      expect(Date.now() - started).toBeLessThan(2_000);
      expect(runtime.governor.stats().rejectedOpen).toBeGreaterThan(0);
    } finally {
      await tryton.start();
    }
    await until(() => runtime.governor.circuit !== 'open', 10_000, 'circuit half-open');
    const back = ok(await call(validate, orderId, 'v4'), 'validateCustomer');
    expect(back.valid).toBe(true);
    expect(runtime.governor.circuit).toBe('closed');
  });
});

describe('tryton connector role on RabbitMQ', () => {
  const name = `${PREFIX}-bus`;
  const replyTo = `${PREFIX}.reply.${RUN}`;
  const retry = { maxAttempts: 2, backoff: { initialMs: 100, maxMs: 200, multiplier: 2 } };
  let bus: BusConnection;
  let publisher: ConfirmPublisher;
  let role: ConnectorRole;
  let replies: Awaited<ReturnType<typeof eventTap>>;
  let dispatched: Awaited<ReturnType<typeof eventTap>>;
  let roleConfig: ConnectorRuntimeConfig;

  beforeAll(async () => {
    roleConfig = { ...config, name };
    bus = new BusConnection({ url: BROKER_URL, name, logger });
    await bus.start();
    await deleteQueueTopology(bus.model as never, commandQueueSpec(roleConfig, retry));
    publisher = new ConfirmPublisher(bus);
    replies = await eventTap(`${PREFIX}.replies.${RUN}`, replyTo);
    dispatched = await eventTap(`${PREFIX}.dispatched.${RUN}`, '#.o2c.v1.ShipmentDispatched');
    role = await startConnectorRole({ config: roleConfig, connection: bus, credentials, retry, logger });
  });

  afterAll(async () => {
    await role?.stop();
    await replies?.close();
    await dispatched?.close();
    if (bus?.model) await deleteQueueTopology(bus.model, commandQueueSpec(roleConfig, retry));
    await publisher?.close();
    await bus?.close();
  });

  async function send(request: CommandRequest, orderId: string, step: string): Promise<ConnectorReply> {
    const correlationId = `${RUN}-bus-${++seq}`;
    const m = commandMessage({
      namespace: 'it',
      connector: name,
      request,
      orderId,
      step,
      replyTo,
      correlationId,
    });
    await publisher.publish({
      exchange: m.exchange,
      routingKey: m.routingKey,
      body: m.body,
      messageId: m.id,
      type: m.type,
      correlationId: m.correlationId,
    });
    let found: amqp.ConsumeMessage | undefined;
    await until(
      () => {
        found = replies.received.find((r) => r.properties.correlationId === correlationId);
        return found !== undefined;
      },
      90_000,
      `reply to ${request.case} ${orderId}`,
    );
    const reply = decodeReply(new Uint8Array(found?.content ?? []))?.reply;
    if (!reply) throw new Error('undecodable reply');
    return reply;
  }

  it('books a sale once for a command delivered twice and publishes its dispatch from the change feed', async () => {
    expect(role.runtime.driver.driverName).toBe('tryton');
    const orderId = `o2c-conn-bus-${RUN}`;
    const request: CommandRequest = {
      case: 'createSalesOrder',
      value: salesOrderRequest(orderId, 'CUST-ACME', [['WIDGET-001', 2, '10.00']]),
    };
    const [a, b] = await Promise.all([
      send(request, orderId, 'sales-order'),
      send(request, orderId, 'sales-order'),
    ]);
    const refs = [ok(a, 'createSalesOrder'), ok(b, 'createSalesOrder')];
    expect(refs[0]?.salesOrder?.externalId).toBe(refs[1]?.salesOrder?.externalId);
    expect(await findSalesByReference(erp, orderId)).toHaveLength(1);
    ok(
      await send(
        { case: 'releaseFulfillment', value: { $typeName: 'o2c.v1.ReleaseFulfillmentRequest', orderId } },
        orderId,
        'release',
      ),
      'releaseFulfillment',
    );
    // role.ts hooks driver.onChange: the poller's shipment_done becomes o2c.v1.ShipmentDispatched.
    await until(
      () =>
        dispatched.received.some(
          (m) => fromBinary(EnvelopeSchema, new Uint8Array(m.content)).subject === orderId,
        ),
      30_000,
      'ShipmentDispatched on o2c.events',
    );
  });
});

/** A TCP proxy to Tryton that drops the reply of one request after forwarding it (as tryton-erp.test.ts). */
async function cuttingProxy(port: number) {
  let marker: string | undefined;
  const sockets = new Set<Socket>();
  const state = { cuts: 0 };
  const server: Server = createServer((down) => {
    const up = new Socket();
    sockets.add(down);
    sockets.add(up);
    up.connect(port, '127.0.0.1');
    let cutting = false;
    down.on('data', (chunk: Buffer) => {
      if (marker && chunk.toString('utf8').includes(marker)) {
        marker = undefined;
        cutting = true;
      }
      up.write(chunk);
    });
    up.on('data', (chunk: Buffer) => {
      if (cutting) {
        state.cuts++;
        down.destroy();
        up.destroy();
        return;
      }
      down.write(chunk);
    });
    const end = () => {
      down.destroy();
      up.destroy();
    };
    for (const sock of [down, up]) {
      sock.on('close', end);
      sock.on('error', end);
    }
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const addr = server.address();
  const proxyPort = typeof addr === 'object' && addr ? addr.port : 0;
  return {
    url: `http://127.0.0.1:${proxyPort}/${tryton.database}/`,
    get cuts() {
      return state.cuts;
    },
    cutAfter(m: string) {
      marker = m;
    },
    close: () =>
      new Promise<void>((r) => {
        for (const sock of sockets) sock.destroy();
        server.close(() => r());
      }),
  };
}
