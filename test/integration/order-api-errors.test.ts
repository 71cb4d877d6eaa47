// What reaches a client when input breaks the rules (on both stores alike) and when something fails
// inside a handler: a store outage is Unavailable, a defect is Internal with only the request id,
// a lost race is Aborted; never Unknown, never the database's own text.
import { createServer, type Server, type Socket, connect as tcpConnect } from 'node:net';
import { ViolationsSchema } from '@bufbuild/protovalidate/gen/buf/validate/validate_pb.js';
import { Code, ConnectError, createClient } from '@connectrpc/connect';
import { createConnectTransport } from '@connectrpc/connect-node';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { OrderService } from '../../runtime/src/gen/o2c/v1/order_service_pb.js';
import { type ApiHarness, rejection, type StoreKind, startApi } from './support/api.js';
import { type ApiProcess, startApiProcess } from './support/api-process.js';
import { freshDatabase } from './support/services.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const line = (overrides: Record<string, unknown> = {}) => ({
  sku: 'WIDGET-1',
  quantity: 1,
  unitPrice: { currencyCode: 'USD', units: 10n },
  ...overrides,
});
const anOrder = (overrides: Record<string, unknown> = {}) => ({
  customerId: 'ACME',
  currencyCode: 'USD',
  lines: [line()],
  ...overrides,
});

let seq = 0;
const key = (prefix: string) => `${prefix}-${process.pid}-${Date.now()}-${seq++}`;

describe.each<StoreKind>(['postgres', 'sqlite'])('input rules on %s', (store) => {
  let api: ApiHarness;
  beforeAll(async () => {
    api = await startApi({ store, name: `o2c_test_rules_${store}`, broker: false });
  });
  afterAll(async () => {
    await api?.stop();
  });

  it.each<[string, Record<string, unknown>, string]>([
    ['a NUL in the customer id', anOrder({ customerId: 'AC\u0000ME' }), 'order.customer_id'],
    ['a newline in the customer id', anOrder({ customerId: 'AC\nME' }), 'order.customer_id'],
    ['a NUL in a SKU', anOrder({ lines: [line({ sku: 'W\u00001' })] }), 'order.lines[0].sku'],
    [
      'a NUL in the purchase order number',
      anOrder({ purchaseOrderNumber: 'PO\u0000' }),
      'order.purchase_order_number',
    ],
    ['a NUL in the notes', anOrder({ notes: 'a\u0000b' }), 'order.notes'],
    ['an escape character in the channel', anOrder({ channel: 'crm\u001b[31m' }), 'order.channel'],
    [
      'a control character in an address line',
      anOrder({ shipTo: { lines: ['1 Main St\u0000'] } }),
      'order.ship_to.lines[0]',
    ],
    [
      'a negative unit price',
      anOrder({ lines: [line({ unitPrice: { currencyCode: 'USD', units: -5n } })] }),
      'order.lines[0].unit_price',
    ],
    [
      'a negative fraction of a unit',
      anOrder({ lines: [line({ unitPrice: { currencyCode: 'USD', units: 0n, nanos: -1 } })] }),
      'order.lines[0].unit_price',
    ],
  ])(
    'refuses %s as InvalidArgument naming the field, over Connect and gRPC, and stores nothing',
    async (_name, order, field) => {
      const before = (await api.client.listOrders({ pageSize: 500 })).orders.length;
      for (const client of [api.client, api.grpc]) {
        const err = await rejection(client.submitOrder({ idempotencyKey: key('rules'), order }));
        expect(err.code).toBe(Code.InvalidArgument);
        const paths = err
          .findDetails(ViolationsSchema)
          .flatMap((v) =>
            v.violations.map((x) =>
              (x.field?.elements ?? [])
                .map((e) =>
                  e.subscript.case === 'index' ? `${e.fieldName}[${e.subscript.value}]` : e.fieldName,
                )
                .join('.'),
            ),
          );
        expect(paths).toContain(field);
        expect(err.rawMessage).not.toMatch(/UTF8|byte sequence|SQLITE|constraint/i);
      }
      expect((await api.client.listOrders({ pageSize: 500 })).orders.length).toBe(before);
    },
  );

  it('refuses a NUL idempotency key', async () => {
    const err = await rejection(api.client.submitOrder({ idempotencyKey: 'k\u0000', order: anOrder() }));
    expect(err.code).toBe(Code.InvalidArgument);
    expect(err.rawMessage).toMatch(/^idempotency_key/);
  });

  it.each([
    ['GetOrder', (c: ApiHarness['client']) => c.getOrder({ id: 'ord_\u0000' }), /^id: /],
    ['CancelOrder', (c: ApiHarness['client']) => c.cancelOrder({ id: 'ord_\u0000' }), /^id: /],
    ['GetOrderHistory', (c: ApiHarness['client']) => c.getOrderHistory({ id: '\u0000' }), /^id: /],
    ['ListOrders', (c: ApiHarness['client']) => c.listOrders({ customerId: 'A\u0000' }), /^customer_id: /],
    ['ListExceptions', (c: ApiHarness['client']) => c.listExceptions({ orderId: '\u0000' }), /^order_id: /],
  ])('refuses a NUL in the %s id as InvalidArgument, not as a store error', async (_m, call, message) => {
    const err = await rejection(call(api.client));
    expect(err.code).toBe(Code.InvalidArgument);
    expect(err.rawMessage).toMatch(message);
  });

  it('refuses a NUL id to WatchOrder', async () => {
    const err = await rejection(
      (async () => {
        for await (const _ of api.client.watchOrder({ id: 'ord_\u0000' })) break;
      })(),
    );
    expect(err.code).toBe(Code.InvalidArgument);
  });

  it('accepts the same unusual but harmless values on both stores and returns them unchanged', async () => {
    const order = anOrder({
      customerId: 'Müller & Söhne GmbH',
      purchaseOrderNumber: 'PO 2026/Ä-1',
      notes: 'deliver\tmornings\r\nring twice 🚚',
      lines: [
        line({ sku: 'ÜBER-1', description: 'Größe: XL' }),
        line({ sku: 'FREE', unitPrice: { currencyCode: 'USD', units: 0n } }),
      ],
    });
    const { order: stored } = await api.client.submitOrder({ idempotencyKey: key('unicode'), order });
    const { order: read } = await api.client.getOrder({ id: stored!.id });
    expect(read?.customerId).toBe('Müller & Söhne GmbH');
    expect(read?.notes).toBe('deliver\tmornings\r\nring twice 🚚');
    expect(read?.lines.map((l) => l.sku)).toEqual(['ÜBER-1', 'FREE']);
    const listed = await api.client.listOrders({ customerId: 'Müller & Söhne GmbH' });
    expect(listed.orders.map((o) => o.id)).toContain(stored!.id);
  });
});

/** A TCP cable between the API and PostgreSQL that a test can cut and mend: a real outage. */
class StoreCable {
  private server?: Server;
  private readonly sockets = new Set<Socket>();
  port = 0;

  async connect(): Promise<void> {
    this.server = createServer((client) => {
      const upstream = tcpConnect(5432, '127.0.0.1');
      for (const s of [client, upstream]) {
        this.sockets.add(s);
        s.on('error', () => {});
        s.on('close', () => this.sockets.delete(s));
      }
      client.pipe(upstream).pipe(client);
      client.on('close', () => upstream.destroy());
      upstream.on('close', () => client.destroy());
    });
    await new Promise<void>((resolve) => this.server!.listen(this.port, '127.0.0.1', resolve));
    this.port = (this.server.address() as { port: number }).port;
  }

  async cut(): Promise<void> {
    const closed = new Promise<void>((resolve) => this.server?.close(() => resolve()));
    for (const s of this.sockets) s.destroy();
    await closed;
  }
}

describe('failures inside handlers (PostgreSQL, own process)', () => {
  const cable = new StoreCable();
  let api: ApiProcess;
  let adminUrl: string;

  beforeAll(async () => {
    adminUrl = await freshDatabase('o2c_test_handler_errors');
    await cable.connect();
    const viaCable = new URL(adminUrl);
    viaCable.port = String(cable.port);
    api = await startApiProcess({ O2C_STORE_URL: viaCable.toString() });
  });
  afterAll(async () => {
    await api?.stop();
    await cable.cut();
  });

  const client = () =>
    createClient(OrderService, createConnectTransport({ baseUrl: api.baseUrl, httpVersion: '1.1' }));

  it('answers a store outage with Unavailable, logs it at error with the request id, and serves again when the store is back', async () => {
    const c = client();
    const submitKey = key('outage');
    await c.submitOrder({ idempotencyKey: key('before-outage'), order: anOrder() });
    await cable.cut();
    try {
      const err = await rejection(
        c.submitOrder(
          { idempotencyKey: submitKey, order: anOrder() },
          { headers: { 'x-request-id': 'outage-submit' } },
        ),
      );
      expect(err.code).toBe(Code.Unavailable);
      // Either the store proves nothing was written, or it cannot know: both say how to retry safely.
      expect(err.rawMessage).toMatch(
        /(the order was not accepted|whether the order was accepted is unknown); retry with the same idempotency key/,
      );
      expect(err.rawMessage).not.toMatch(/ECONN|terminat|5432|postgres/i);
      const get = await rejection(c.getOrder({ id: 'ord_x' }, { headers: { 'x-request-id': 'outage-get' } }));
      expect(get.code).toBe(Code.Unavailable);
      await sleep(100);
      for (const requestId of ['outage-submit', 'outage-get'])
        expect(api.logs.find((l) => l.requestId === requestId)).toMatchObject({
          level: 50,
          code: 'unavailable',
        });
      expect((await fetch(`http://127.0.0.1:${api.healthPort}/readyz`)).status).toBe(503);
    } finally {
      await cable.connect();
    }
    const { order } = await c.submitOrder({ idempotencyKey: submitKey, order: anOrder() });
    expect(order?.id).toMatch(/^ord_/);
    expect((await c.getOrder({ id: order!.id })).order?.idempotencyKey).toBe(submitKey);
  });

  it('answers a defect with Internal and only the request id, never the database text', async () => {
    const c = client();
    const admin = new pg.Client({ connectionString: adminUrl });
    await admin.connect();
    await admin.query('ALTER TABLE orders RENAME TO orders_hidden');
    try {
      const err = await rejection(c.getOrder({ id: 'ord_x' }, { headers: { 'x-request-id': 'defect-1' } }));
      expect(err.code).toBe(Code.Internal);
      expect(err.rawMessage).toBe('internal error (request id defect-1)');
      await sleep(100);
      const logged = api.logs.find((l) => l.requestId === 'defect-1') as {
        level: number;
        err?: { message?: string };
      };
      expect(logged.level).toBe(50);
      expect(logged.err?.message).toMatch(/orders/);
    } finally {
      await admin.query('ALTER TABLE orders_hidden RENAME TO orders');
      await admin.end();
    }
  });

  it('answers twenty concurrent cancels of one order with OK or Aborted only', async () => {
    const c = client();
    const { order } = await c.submitOrder({ idempotencyKey: key('race'), order: anOrder() });
    const results = await Promise.all(
      Array.from({ length: 20 }, () =>
        c.cancelOrder({ id: order!.id, reason: 'race' }).then(
          () => 'ok',
          (e: unknown) => Code[ConnectError.from(e).code],
        ),
      ),
    );
    for (const r of results) expect(['ok', 'Aborted']).toContain(r);
    expect((await c.getOrder({ id: order!.id })).order?.state).toBe(10);
  });
});
