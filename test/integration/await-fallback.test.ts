// The fallback for a missed event, on simulator connectors, real RabbitMQ and real PostgreSQL: the
// engine's events queue is unbound from the awaited events, so the dispatch and payment events the
// connectors publish never reach it; after the quiet period the engine asks the owning systems
// (GetShipment, GetPaymentStatus) and the order proceeds to PAID on their answers. Then the dropped
// dispatch event itself is delivered late, and changes nothing.
import { timestampMs } from '@bufbuild/protobuf/wkt';
import amqp from 'amqplib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EVENTS_EXCHANGE } from '../../runtime/src/bus/topology.js';
import type { SimulatorDriver } from '../../runtime/src/connectors/simulator/driver.js';
import { OrderState } from '../../runtime/src/gen/o2c/v1/entities_pb.js';
import { BROKER_URL } from './support/services.js';
import { distributor, type StackHarness, startStack, waitForState } from './support/stack.js';

const DISPATCH_QUIET_MS = 400;
/** Long enough to deliver the late dispatch while the order waits for its payment. */
const PAYMENT_QUIET_MS = 3000;
const NAME = 'await-fallback';
const DISPATCH = 'o2c.v1.ShipmentDispatched';
const PAYMENT = 'o2c.v1.PaymentReceived';

let h: StackHarness;
let conn: amqp.ChannelModel;
let ch: amqp.Channel;
let eventsQueue: string;
let restoreBindings: (() => Promise<void>) | undefined;
/** Copies of the awaited events the connectors published, as the engine would have received them. */
const dropped: amqp.ConsumeMessage[] = [];
const TAP = `o2c.test.${NAME}.dropped`;

const ms = (t: Parameters<typeof timestampMs>[0] | undefined) => (t ? timestampMs(t) : Number.NaN);

/** The engine's events queue and its binding keys for `type` (however the keys are addressed). */
function awaitedBindings(stack: StackHarness, type: string): { queue: string; keys: string[] } {
  const spec = stack.stack.workflow.engine!.queueSpecs().find((q) => q.name.endsWith('.events'))!;
  const keys = spec.bindings
    .filter(
      (b) => b.exchange === EVENTS_EXCHANGE && (b.routingKey === type || b.routingKey.endsWith(`.${type}`)),
    )
    .map((b) => b.routingKey);
  expect(keys.length).toBeGreaterThan(0);
  return { queue: spec.name, keys };
}

/** Unbinds the engine's events queue from `types`; returns what puts the bindings back. */
async function dropOnTheWay(
  ch: amqp.Channel,
  stack: StackHarness,
  types: string[],
): Promise<() => Promise<void>> {
  const removed: [string, string][] = [];
  for (const type of types) {
    const { queue, keys } = awaitedBindings(stack, type);
    for (const key of keys) {
      await ch.unbindQueue(queue, EVENTS_EXCHANGE, key);
      removed.push([queue, key]);
    }
  }
  return async () => {
    for (const [queue, key] of removed) await ch.bindQueue(queue, EVENTS_EXCHANGE, key).catch(() => {});
  };
}

beforeAll(async () => {
  const { spec, connectors } = distributor((s) => {
    for (const step of s.steps) {
      if (step.await?.event === DISPATCH) step.await.pollAfter = `${DISPATCH_QUIET_MS}ms`;
      if (step.await?.event === PAYMENT) step.await.pollAfter = `${PAYMENT_QUIET_MS}ms`;
    }
  });
  h = await startStack({ name: NAME, spec, connectors });
  eventsQueue = h.stack.workflow.engine!.queueSpecs().find((q) => q.name.endsWith('.events'))!.name;
  conn = await amqp.connect(BROKER_URL);
  ch = await conn.createChannel();
  // Drop the awaited events on their way to the engine, and keep copies ('#.' matches a bare type
  // and any addressed key ending in it).
  restoreBindings = await dropOnTheWay(ch, h, [DISPATCH, PAYMENT]);
  await ch.deleteQueue(TAP);
  await ch.assertQueue(TAP, { durable: false, exclusive: true });
  await ch.bindQueue(TAP, EVENTS_EXCHANGE, `#.${DISPATCH}`);
  await ch.bindQueue(TAP, EVENTS_EXCHANGE, `#.${PAYMENT}`);
  await ch.consume(
    TAP,
    (m) => {
      if (m) dropped.push(m);
    },
    { noAck: true },
  );
});

afterAll(async () => {
  await restoreBindings?.();
  await conn?.close().catch(() => {});
  await h?.stop();
});

/** Delivers the copies of `type` for the order to the engine's queue, and waits until it consumed them. */
async function deliverLate(orderId: string, type: string): Promise<void> {
  const late = dropped.filter((m) => m.properties.type === type && m.properties.correlationId === orderId);
  expect(late).toHaveLength(1);
  const m = late[0]!;
  ch.sendToQueue(eventsQueue, m.content, m.properties);
  const store = h.stack.workflow.store;
  const deadline = Date.now() + 10_000;
  for (;;) {
    const rows = await store.transaction((tx) =>
      tx.query('SELECT 1 FROM inbox WHERE consumer = $1 AND message_id = $2', [
        'distributor.events',
        String(m.properties.messageId),
      ]),
    );
    if (rows.length === 1) return;
    if (Date.now() > deadline) throw new Error(`the late ${type} was not consumed`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

async function earlyEvents(orderId: string): Promise<number> {
  const rows = await h.stack.workflow.store.transaction((tx) =>
    tx.query('SELECT type FROM early_events WHERE order_id = $1', [orderId]),
  );
  return rows.length;
}

async function pollRows(orderId: string, wait: string) {
  const { steps } = await h.client.getOrderHistory({ id: orderId });
  const poll = steps.filter((s) => s.step === `poll:${wait}`);
  const waited = steps.find((s) => s.step === wait && s.outcome === 'succeeded');
  return { poll, waitedMs: waited ? ms(waited.endTime) - ms(waited.startTime) : Number.NaN };
}

describe('an await step whose event never arrives', () => {
  let orderId = '';
  let submitted = 0;

  it('is moved on by GetShipment within the quiet period and one question', async () => {
    submitted = Date.now();
    const { order } = await h.client.submitOrder({
      idempotencyKey: `fallback-${submitted}`,
      order: { customerId: 'ACME', currencyCode: 'USD', lines: [{ sku: 'WIDGET-1', quantity: 2 }] },
    });
    orderId = order!.id;
    await waitForState(h.client, orderId, [OrderState.INVOICED], 20_000);
    // The warehouse published the dispatch; the engine's queue never had it.
    expect(
      dropped.filter((m) => m.properties.type === DISPATCH && m.properties.correlationId === orderId),
    ).toHaveLength(1);
    const { poll, waitedMs } = await pollRows(orderId, 'await-dispatch');
    expect(poll.map((p) => p.outcome)).toEqual(['succeeded']);
    expect(poll[0]!.message).toMatch(/GetShipment: dispatched .*no ShipmentDispatched event arrived/);
    expect(waitedMs).toBeGreaterThanOrEqual(DISPATCH_QUIET_MS);
    expect(waitedMs).toBeLessThan(DISPATCH_QUIET_MS + 1500);
    console.log(
      `[figure] await-dispatch left after ${waitedMs} ms with a ${DISPATCH_QUIET_MS} ms quiet period`,
    );
  });

  it('changes nothing when the dropped dispatch arrives after the fallback moved the order on', async () => {
    const before = (await h.client.getOrder({ id: orderId })).order!;
    const historyBefore = (await h.client.getOrderHistory({ id: orderId })).steps.length;
    expect(before.state).toBe(OrderState.INVOICED); // waiting for the payment, quiet period not over
    await deliverLate(orderId, DISPATCH);
    const after = (await h.client.getOrder({ id: orderId })).order!;
    expect(after.version).toBe(before.version);
    expect(after.state).toBe(OrderState.INVOICED);
    expect((await h.client.getOrderHistory({ id: orderId })).steps.length).toBe(historyBefore);
    // Not kept for later either: no await ahead waits for a dispatch.
    expect(await earlyEvents(orderId)).toBe(0);
  });

  it('reaches PAID through GetPaymentStatus within the quiet period and one question', async () => {
    await waitForState(h.client, orderId, [OrderState.PAID], 20_000);
    const toPaidMs = Date.now() - submitted;
    const { poll, waitedMs } = await pollRows(orderId, 'await-payment');
    expect(poll.map((p) => p.outcome)).toEqual(['succeeded']);
    expect(poll[0]!.message).toMatch(/GetPaymentStatus: paid/);
    expect(waitedMs).toBeGreaterThanOrEqual(PAYMENT_QUIET_MS);
    expect(waitedMs).toBeLessThan(PAYMENT_QUIET_MS + 1500);
    console.log(
      `[figure] await-payment left after ${waitedMs} ms with a ${PAYMENT_QUIET_MS} ms quiet period`,
    );
    console.log(`[figure] submit to PAID through both fallbacks: ${toPaidMs} ms`);
  });

  it('changes nothing when the dropped payment arrives after the order is PAID', async () => {
    const before = (await h.client.getOrder({ id: orderId })).order!;
    await deliverLate(orderId, PAYMENT);
    const after = (await h.client.getOrder({ id: orderId })).order!;
    expect(after.version).toBe(before.version);
    expect(after.state).toBe(OrderState.PAID);
    expect(await earlyEvents(orderId)).toBe(0);
  });
});

describe('an await step whose owning system answers "not yet" at first', () => {
  const QUIET = 300;
  const DISPATCH_AFTER = 1500;
  let b: StackHarness;
  let bConn: amqp.ChannelModel;
  let bRestore: (() => Promise<void>) | undefined;

  beforeAll(async () => {
    const { spec, connectors } = distributor((s, cs) => {
      for (const step of s.steps) if (step.await?.event === DISPATCH) step.await.pollAfter = `${QUIET}ms`;
      // The warehouse dispatches well after the quiet period.
      for (const c of cs) if (c.name === 'wms') c.options = { ...c.options, dispatchAfterMs: DISPATCH_AFTER };
    });
    b = await startStack({ name: `${NAME}-backoff`, spec, connectors });
    bConn = await amqp.connect(BROKER_URL);
    bRestore = await dropOnTheWay(await bConn.createChannel(), b, [DISPATCH]);
  });

  afterAll(async () => {
    await bRestore?.();
    await bConn?.close().catch(() => {});
    await b?.stop();
  });

  it('asks again with backoff and proceeds on the first "dispatched"', async () => {
    const { order } = await b.client.submitOrder({
      idempotencyKey: `fallback-backoff-${Date.now()}`,
      order: { customerId: 'ACME', currencyCode: 'USD', lines: [{ sku: 'WIDGET-1', quantity: 1 }] },
    });
    await waitForState(b.client, order!.id, [OrderState.INVOICED, OrderState.PAID], 20_000);
    const { steps } = await b.client.getOrderHistory({ id: order!.id });
    const polls = steps.filter((s) => s.step === 'poll:await-dispatch');
    const outcomes = polls.map((p) => p.outcome);
    // Some "not yet" first (those the history keeps), then exactly one "dispatched".
    expect(outcomes.at(-1)).toBe('succeeded');
    expect(outcomes.filter((o) => o === 'succeeded')).toHaveLength(1);
    expect(outcomes.filter((o) => o === 'retrying').length).toBeGreaterThanOrEqual(1);
    expect(polls[0]!.message).toBe('GetShipment: not dispatched yet');
    const waited = steps.find((s) => s.step === 'await-dispatch' && s.outcome === 'succeeded')!;
    const waitedMs = ms(waited.endTime) - ms(waited.startTime);
    // Not before the warehouse dispatched; at most one backed-off question later (doubling from 300 ms).
    expect(waitedMs).toBeGreaterThanOrEqual(DISPATCH_AFTER - 100);
    expect(waitedMs).toBeLessThan(DISPATCH_AFTER + 2500);
    console.log(
      `[figure] dispatched after ${DISPATCH_AFTER} ms, found by question ${polls.at(-1)!.attempt} after ${waitedMs} ms (quiet period ${QUIET} ms)`,
    );
  });
});

describe('an await step whose owning system never says "dispatched"', () => {
  let c: StackHarness;
  let cConn: amqp.ChannelModel;
  let cRestore: (() => Promise<void>) | undefined;

  beforeAll(async () => {
    const { spec, connectors } = distributor((s) => {
      for (const step of s.steps) {
        // The CRM knows no shipments: every question is answered "not yet".
        if (step.await?.event === DISPATCH)
          step.await = { ...step.await, pollAfter: '300ms', timeout: '3s', connector: 'crm' };
      }
    });
    c = await startStack({ name: `${NAME}-timeout`, spec, connectors });
    cConn = await amqp.connect(BROKER_URL);
    cRestore = await dropOnTheWay(await cConn.createChannel(), c, [DISPATCH]);
  });

  afterAll(async () => {
    await cRestore?.();
    await cConn?.close().catch(() => {});
    await c?.stop();
  });

  it('keeps asking with backoff until the timeout, then holds the order as fallout', async () => {
    const { order } = await c.client.submitOrder({
      idempotencyKey: `fallback-timeout-${Date.now()}`,
      order: { customerId: 'ACME', currencyCode: 'USD', lines: [{ sku: 'WIDGET-1', quantity: 1 }] },
    });
    const held = await waitForState(c.client, order!.id, [OrderState.ON_HOLD, OrderState.INVOICED], 20_000);
    expect(held.state).toBe(OrderState.ON_HOLD);
    expect(held.statusReason).toContain('await-dispatch');
    const { steps } = await c.client.getOrderHistory({ id: order!.id });
    const polls = steps.filter((s) => s.step === 'poll:await-dispatch');
    expect(polls.length).toBeGreaterThanOrEqual(2);
    expect(polls.every((p) => p.outcome === 'retrying')).toBe(true);
    expect(steps.some((s) => s.step === 'await-dispatch' && s.outcome === 'timed_out')).toBe(true);
    const crm = c.stack.connectors.get('crm')!.runtime.driver as SimulatorDriver;
    // Asked from 300 ms on, doubling up to the 3 s timeout: a handful of questions, not hundreds.
    const asked = crm.callCounts.get('getShipment') ?? 0;
    expect(asked).toBeGreaterThanOrEqual(polls.length);
    expect(asked).toBeLessThanOrEqual(8);
    console.log(`[figure] ${asked} questions in a 3 s await with a 300 ms quiet period before the fallout`);
  });
});
