// The order API against real stores (PostgreSQL and embedded SQLite), real RabbitMQ and real HTTP.
import { create, fromBinary } from '@bufbuild/protobuf';
import { timestampFromMs } from '@bufbuild/protobuf/wkt';
import { ViolationsSchema } from '@bufbuild/protovalidate/gen/buf/validate/validate_pb.js';
import { Code } from '@connectrpc/connect';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { eventRoutingKey } from '../../runtime/src/bus/addressing.js';
import { type Order, OrderSchema, OrderState } from '../../runtime/src/gen/o2c/v1/entities_pb.js';
import { EnvelopeSchema } from '../../runtime/src/gen/o2c/v1/events_pb.js';
import type { SubmitOrderRequest } from '../../runtime/src/gen/o2c/v1/order_service_pb.js';
import { EventType } from '../../runtime/src/orders/envelope.js';
import { type ApiHarness, rejection, type StoreKind, startApi } from './support/api.js';
import { eventTap, until } from './support/services.js';

type OrderInit = Parameters<typeof create<typeof OrderSchema>>[1];

function anOrder(overrides: OrderInit = {}): OrderInit {
  return {
    customerId: 'ACME',
    currencyCode: 'USD',
    lines: [{ sku: 'WIDGET-1', quantity: 2, unitPrice: { currencyCode: 'USD', units: 10n } }],
    ...overrides,
  };
}

let keySeq = 0;
const uniqueKey = (prefix = 'po') => `${prefix}-${process.pid}-${Date.now()}-${keySeq++}`;

describe.each<StoreKind>(['postgres', 'sqlite'])('order API on %s', (store) => {
  let api: ApiHarness;

  beforeAll(async () => {
    api = await startApi({ store, name: `o2c_test_api_${store}`, broker: false });
  });
  afterAll(async () => {
    await api?.stop();
  });

  it('accepts the issue example over plain HTTP+JSON', async () => {
    const key = uniqueKey();
    const res = await fetch(`${api.baseUrl}/o2c.v1.OrderService/SubmitOrder`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        idempotency_key: key,
        order: {
          customer_id: 'ACME',
          currency_code: 'USD',
          lines: [{ sku: 'WIDGET-1', quantity: 2, unit_price: { currency_code: 'USD', units: '10' } }],
        },
      }),
    });
    expect(res.status).toBe(200);
    const body = (await res.json()) as { order: { id: string; state: string; idempotencyKey: string } };
    expect(body.order.id).toMatch(/^ord_/);
    expect(body.order.state).toBe('ORDER_STATE_SUBMITTED');
    expect(body.order.idempotencyKey).toBe(key);
  });

  it('serves gRPC over cleartext HTTP/2 on the same port', async () => {
    const { order } = await api.grpc.submitOrder({ idempotencyKey: uniqueKey(), order: anOrder() });
    const got = await api.grpc.getOrder({ id: order!.id });
    expect(got.order?.customerId).toBe('ACME');
  });

  it('returns the original order for a repeat with the same key and content', async () => {
    const key = uniqueKey();
    const first = await api.client.submitOrder({ idempotencyKey: key, order: anOrder() });
    const again = await api.client.submitOrder({ idempotencyKey: key, order: anOrder() });
    expect(again.order?.id).toBe(first.order?.id);
  });

  it('refuses the same key with different content as AlreadyExists', async () => {
    const key = uniqueKey();
    const first = await api.client.submitOrder({ idempotencyKey: key, order: anOrder() });
    const err = await rejection(
      api.client.submitOrder({ idempotencyKey: key, order: anOrder({ customerId: 'OTHER' }) }),
    );
    expect(err.code).toBe(Code.AlreadyExists);
    expect(err.rawMessage).toContain(first.order!.id);
    expect(err.rawMessage).toContain('different content');
  });

  it('takes the idempotency key from the Idempotency-Key header', async () => {
    const key = uniqueKey();
    const headers = new Headers({ 'idempotency-key': key });
    const a = await api.client.submitOrder({ order: anOrder() }, { headers });
    const b = await api.client.submitOrder({ order: anOrder() }, { headers });
    expect(a.order?.idempotencyKey).toBe(key);
    expect(b.order?.id).toBe(a.order?.id);
  });

  it('creates exactly one order and one outbox event for 50 concurrent submits with one key', async () => {
    const key = uniqueKey('burst');
    const results = await Promise.all(
      Array.from({ length: 50 }, () => api.client.submitOrder({ idempotencyKey: key, order: anOrder() })),
    );
    const ids = new Set(results.map((r) => r.order?.id));
    expect(ids.size).toBe(1);
    const [orderId] = [...ids];
    const counts = await api.role.store.transaction(async (tx) => ({
      orders: await tx.query('SELECT id FROM orders WHERE idempotency_key = $1', [key]),
      events: await tx.query('SELECT id FROM outbox WHERE correlation_id = $1', [orderId!]),
    }));
    expect(counts.orders).toHaveLength(1);
    expect(counts.events).toHaveLength(1);
  });

  it.each<[string, (r: SubmitOrderRequest) => void, string]>([
    ['a missing customer reference', (r) => Object.assign(r.order!, { customerId: '' }), 'order.customer_id'],
    ['no lines', (r) => Object.assign(r.order!, { lines: [] }), 'order.lines'],
    [
      'more than 500 lines',
      (r) => Object.assign(r.order!, { lines: Array.from({ length: 501 }, () => r.order!.lines[0]!) }),
      'order.lines',
    ],
    ['a zero quantity', (r) => Object.assign(r.order!.lines[0]!, { quantity: 0 }), 'order.lines[0].quantity'],
    [
      'a quantity above one million',
      (r) => Object.assign(r.order!.lines[0]!, { quantity: 1_000_001 }),
      'order.lines[0].quantity',
    ],
    ['an empty SKU', (r) => Object.assign(r.order!.lines[0]!, { sku: '' }), 'order.lines[0].sku'],
    [
      'an SKU with spaces',
      (r) => Object.assign(r.order!.lines[0]!, { sku: 'WID GET' }),
      'order.lines[0].sku',
    ],
    [
      'an SKU longer than 64 characters',
      (r) => Object.assign(r.order!.lines[0]!, { sku: 'X'.repeat(65) }),
      'order.lines[0].sku',
    ],
    ['an unknown currency', (r) => Object.assign(r.order!, { currencyCode: 'XYZ' }), 'order.currency_code'],
    ['a lower-case currency', (r) => Object.assign(r.order!, { currencyCode: 'usd' }), 'order.currency_code'],
    [
      'a unit price in another currency',
      (r) => Object.assign(r.order!.lines[0]!.unitPrice!, { currencyCode: 'EUR' }),
      'order',
    ],
    [
      'nanos out of range',
      (r) => Object.assign(r.order!.lines[0]!.unitPrice!, { nanos: 1_000_000_000 }),
      'order.lines[0].unit_price.nanos',
    ],
    [
      'units and nanos of different signs',
      (r) => Object.assign(r.order!.lines[0]!.unitPrice!, { nanos: -5 }),
      'order.lines[0].unit_price',
    ],
    [
      'notes longer than 2000 characters',
      (r) => Object.assign(r.order!, { notes: 'n'.repeat(2001) }),
      'order.notes',
    ],
    [
      'an idempotency key longer than 128',
      (r) => Object.assign(r, { idempotencyKey: 'k'.repeat(129) }),
      'idempotency_key',
    ],
  ])('rejects %s with InvalidArgument naming %s', async (_name, mutate, field) => {
    const req = { idempotencyKey: uniqueKey(), order: create(OrderSchema, anOrder()) } as SubmitOrderRequest;
    mutate(req);
    const err = await rejection(api.client.submitOrder(req));
    expect(err.code).toBe(Code.InvalidArgument);
    const violations = err.findDetails(ViolationsSchema)[0]?.violations ?? [];
    const paths = violations.map((v) =>
      (v.field?.elements ?? [])
        .map((e) => `${e.fieldName}${e.subscript.case === 'index' ? `[${e.subscript.value}]` : ''}`)
        .join('.'),
    );
    expect(paths).toContain(field);
    expect(err.rawMessage).toContain(field);
  });

  it('rejects a missing order and a missing idempotency key', async () => {
    const noOrder = await rejection(api.client.submitOrder({ idempotencyKey: uniqueKey() }));
    expect(noOrder.code).toBe(Code.InvalidArgument);
    expect(noOrder.rawMessage).toContain('order');
    const noKey = await rejection(api.client.submitOrder({ order: anOrder() }));
    expect(noKey.code).toBe(Code.InvalidArgument);
    expect(noKey.rawMessage).toContain('idempotency_key');
  });

  it('rejects a float amount in JSON as InvalidArgument', async () => {
    const res = await fetch(`${api.baseUrl}/o2c.v1.OrderService/SubmitOrder`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        idempotency_key: uniqueKey(),
        order: {
          customer_id: 'A',
          currency_code: 'USD',
          lines: [{ sku: 'S', quantity: 1, unit_price: { units: 10.5 } }],
        },
      }),
    });
    expect(res.status).toBe(400);
    const body = (await res.json()) as { code: string; message: string };
    expect(body.code).toBe('invalid_argument');
    expect(body.message).toContain('units');
  });

  it('gets, lists with filters and stable page tokens, and reports NotFound', async () => {
    const customer = `LIST-${store}-${Date.now()}`;
    const created: Order[] = [];
    for (let i = 0; i < 7; i++) {
      created.push(
        (
          await api.client.submitOrder({
            idempotencyKey: uniqueKey('list'),
            order: anOrder({ customerId: customer }),
          })
        ).order!,
      );
    }
    const seen: string[] = [];
    let pageToken = '';
    do {
      const page = await api.client.listOrders({ customerId: customer, pageSize: 3, pageToken });
      expect(page.orders.length).toBeLessThanOrEqual(3);
      seen.push(...page.orders.map((o) => o.id));
      pageToken = page.nextPageToken;
    } while (pageToken);
    expect(seen).toEqual(created.map((o) => o.id).reverse());

    const none = await api.client.listOrders({ customerId: customer, states: [OrderState.PAID] });
    expect(none.orders).toHaveLength(0);
    const future = await api.client.listOrders({
      customerId: customer,
      createdAfter: timestampFromMs(Date.now() + 60_000),
    });
    expect(future.orders).toHaveLength(0);

    const first = await api.client.listOrders({ customerId: customer, pageSize: 2 });
    const wrongFilter = await rejection(
      api.client.listOrders({ customerId: 'SOMEONE-ELSE', pageSize: 2, pageToken: first.nextPageToken }),
    );
    expect(wrongFilter.code).toBe(Code.InvalidArgument);
    expect(wrongFilter.rawMessage).toContain('page_token');

    const missing = await rejection(api.client.getOrder({ id: 'ord_DOESNOTEXIST' }));
    expect(missing.code).toBe(Code.NotFound);
  });

  it('cancels an open order, repeats the cancel harmlessly, and refuses to cancel a shipped one', async () => {
    const { order } = await api.client.submitOrder({ idempotencyKey: uniqueKey('cancel'), order: anOrder() });
    const cancelled = await api.client.cancelOrder({ id: order!.id, reason: 'customer changed their mind' });
    expect(cancelled.order?.state).toBe(OrderState.CANCELLED);
    expect(cancelled.order?.statusReason).toBe('customer changed their mind');
    const again = await api.client.cancelOrder({ id: order!.id });
    expect(again.order?.version).toBe(cancelled.order?.version);

    const shipped = (await api.client.submitOrder({ idempotencyKey: uniqueKey('ship'), order: anOrder() }))
      .order!;
    await api.role.store.transaction(async (tx) => {
      const current = (await api.role.orders.get(shipped.id, tx))!;
      await api.role.orders.save(tx, create(OrderSchema, { ...current, state: OrderState.SHIPPED }), current);
    });
    const err = await rejection(api.client.cancelOrder({ id: shipped.id }));
    expect(err.code).toBe(Code.FailedPrecondition);
    expect(err.rawMessage).toContain('SHIPPED');
  });

  it('streams the current state and then the cancel to a watcher', async () => {
    const { order } = await api.client.submitOrder({ idempotencyKey: uniqueKey('watch'), order: anOrder() });
    const states: OrderState[] = [];
    const watching = (async () => {
      for await (const res of api.client.watchOrder({ id: order!.id })) {
        states.push(res.order!.state);
      }
    })();
    while (states.length === 0) await new Promise((r) => setTimeout(r, 20));
    await api.client.cancelOrder({ id: order!.id, reason: 'watch test' });
    await watching; // the stream ends by itself: CANCELLED is terminal
    expect(states).toEqual([OrderState.SUBMITTED, OrderState.CANCELLED]);
  });
});

describe('order API authentication', () => {
  let api: ApiHarness;
  beforeAll(async () => {
    api = await startApi({ store: 'sqlite', name: 'o2c_test_auth', broker: false, token: 'secret-token-1' });
  });
  afterAll(async () => {
    await api?.stop();
  });

  it('refuses calls without a token or with a wrong one as Unauthenticated, and accepts the right one', async () => {
    const anonymous = await fetch(`${api.baseUrl}/o2c.v1.OrderService/ListOrders`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: '{}',
    });
    expect(anonymous.status).toBe(401);
    const wrong = await fetch(`${api.baseUrl}/o2c.v1.OrderService/ListOrders`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: 'Bearer not-the-token' },
      body: '{}',
    });
    expect(wrong.status).toBe(401);
    expect(((await wrong.json()) as { code: string }).code).toBe('unauthenticated');
    const ok = await api.client.listOrders({});
    expect(ok.orders).toBeDefined();
  });

  it('serves health, readiness and per-RPC metrics on the separate port', async () => {
    expect((await fetch(`${api.healthUrl}/healthz`)).status).toBe(200);
    expect((await fetch(`${api.healthUrl}/readyz`)).status).toBe(200);
    const metrics = await (await fetch(`${api.healthUrl}/metrics`)).text();
    expect(metrics).toMatch(/o2c_api_requests_total\{method="ListOrders",code="unauthenticated"\} 2/);
    expect(metrics).toMatch(/o2c_api_requests_total\{method="ListOrders",code="ok"\} 1/);
    expect(metrics).toContain('o2c_api_request_duration_seconds_bucket');
  });
});

describe('OrderSubmitted events on RabbitMQ', () => {
  let api: ApiHarness;
  let tap: Awaited<ReturnType<typeof eventTap>>;
  beforeAll(async () => {
    // Only this test's own source: other suites on the shared broker publish OrderSubmitted too.
    tap = await eventTap(
      `o2c.test.api-events.${process.pid}`,
      eventRoutingKey('o2c/test/workflow/o2c-test-api-events', EventType.OrderSubmitted),
    );
    api = await startApi({ store: 'postgres', name: 'o2c_test_api_events' });
  });
  afterAll(async () => {
    await api?.stop();
    await tap?.close();
  });

  it('publishes the Envelope with the order inside, with AMQP properties set', async () => {
    const key = uniqueKey('evt');
    const { order } = await api.client.submitOrder({ idempotencyKey: key, order: anOrder() });
    await until(() => tap.received.some((m) => m.properties.correlationId === order!.id));
    const msg = tap.received.find((m) => m.properties.correlationId === order!.id)!;
    expect(msg).toBeDefined();
    expect(msg.properties.contentType).toBe('application/x-protobuf');
    expect(msg.properties.type).toBe('o2c.v1.OrderSubmitted');
    expect(msg.properties.deliveryMode).toBe(2);
    const envelope = fromBinary(EnvelopeSchema, msg.content);
    expect(envelope.id).toBe(msg.properties.messageId);
    expect(envelope.idempotencyKey).toBe(key);
    expect(envelope.payload.case).toBe('orderSubmitted');
    if (envelope.payload.case === 'orderSubmitted') {
      expect(envelope.payload.value.order?.id).toBe(order!.id);
      expect(envelope.payload.value.order?.lines[0]?.sku).toBe('WIDGET-1');
    }
    const sent = await api.role.store.transaction((tx) =>
      tx.query<{ sent_at: number | null }>('SELECT sent_at FROM outbox WHERE correlation_id = $1', [
        order!.id,
      ]),
    );
    expect(sent[0]?.sent_at).not.toBeNull();
  });
});
