// The O2C workflow end to end on simulator connectors, real RabbitMQ and real PostgreSQL.
import { create } from '@bufbuild/protobuf';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BusConnection } from '../../runtime/src/bus/connection.js';
import { connectorMigrations } from '../../runtime/src/connectors/bindings.js';
import type { SimulatorDriver } from '../../runtime/src/connectors/simulator/driver.js';
import { ErrorClass } from '../../runtime/src/gen/o2c/v1/common_pb.js';
import { OrderSchema, OrderState } from '../../runtime/src/gen/o2c/v1/entities_pb.js';
import { createLogger } from '../../runtime/src/observability/logger.js';
import { createRegistry } from '../../runtime/src/observability/metrics.js';
import { OrderRepository } from '../../runtime/src/orders/repository.js';
import { openStore, registerMigrations } from '../../runtime/src/store/index.js';
import { WorkflowEngine } from '../../runtime/src/workflow/engine.js';
import { type Instance, writeInstances } from '../../runtime/src/workflow/instances.js';
import { workflowMigrations } from '../../runtime/src/workflow/migrations.js';
import { emptyContext } from '../../runtime/src/workflow/steps.js';
import { BROKER_URL, freshDatabase } from './support/services.js';
import { distributor, type StackHarness, startStack, waitForState } from './support/stack.js';

const anOrder = (
  customerId: string,
  lines: { sku: string; quantity: number }[] = [{ sku: 'WIDGET-1', quantity: 3 }],
) => ({
  customerId,
  currencyCode: 'USD',
  lines,
});
let n = 0;
const key = (p: string) => `${p}-${Date.now()}-${n++}`;

describe('the distributor workflow', () => {
  let h: StackHarness;
  beforeAll(async () => {
    const { spec, connectors } = distributor();
    h = await startStack({ name: 'wf-happy', spec, connectors });
  });
  afterAll(async () => {
    await h?.stop();
  });

  it('takes an order through every step to PAID and keeps the CRM informed', async () => {
    const { order } = await h.client.submitOrder({ idempotencyKey: key('happy'), order: anOrder('ACME') });
    const paid = await waitForState(h.client, order!.id, [OrderState.PAID]);
    // Priced by the ERP (10.00 x 3), taxed 8.25%, booked in the ERP, shipped, invoiced, paid.
    expect(paid.subtotal?.units).toBe(30n);
    expect(paid.taxTotal?.units).toBe(2n);
    expect(paid.taxTotal?.nanos).toBe(480_000_000);
    expect(paid.total?.units).toBe(32n);
    expect(paid.externalRefs.some((r) => r.system === 'erp')).toBe(true);
    const history = await h.client.getOrderHistory({ id: order!.id });
    const succeeded = history.steps.filter((s) => s.outcome === 'succeeded').map((s) => s.step);
    expect(succeeded).toEqual([
      'validate-customer',
      'price',
      'tax',
      'credit-check',
      'allocate',
      'sales-order',
      'release',
      'await-dispatch',
      'invoice',
      'await-payment',
    ]);
    // The CRM was told about every state change; the last one it has is PAID.
    const crm = h.stack.connectors.get('crm')!.runtime.driver as SimulatorDriver;
    const deadline = Date.now() + 10_000;
    while (crm.statusOf(order!.id) !== String(OrderState.PAID) && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 50));
    }
    expect(crm.statusOf(order!.id)).toBe(String(OrderState.PAID));
    expect(crm.callCounts.get('updateOrderStatus') ?? 0).toBeGreaterThanOrEqual(6);
  });

  it('holds an order over its credit limit, and completes it after the limit is raised and the step retried', async () => {
    const { order } = await h.client.submitOrder({
      idempotencyKey: key('credit'),
      order: anOrder('TIGHT', [{ sku: 'WIDGET-1', quantity: 10 }]),
    });
    const held = await waitForState(h.client, order!.id, [OrderState.ON_HOLD]);
    expect(held.currentStep).toBe('credit-check');
    const { exceptions } = await h.client.listExceptions({ orderId: order!.id });
    expect(exceptions).toHaveLength(1);
    expect(exceptions[0]!.errorClass).toBe(ErrorClass.CREDIT);
    expect(exceptions[0]!.step).toBe('credit-check');

    // The finance team raises the customer's limit in the ERP.
    const erpOptions = h.connectors.find((c) => c.name === 'erp')!.options as {
      customers: Record<string, { creditLimit: string }>;
    };
    erpOptions.customers.TIGHT!.creditLimit = '100000';
    await h.client.retryStep({ exceptionId: exceptions[0]!.id });
    await waitForState(h.client, order!.id, [OrderState.PAID]);
    const after = await h.client.listExceptions({ orderId: order!.id, status: 'all' });
    expect(after.exceptions[0]!.status).toBe('resolved');
  });

  it('backorders what the warehouse lacks and still books the order', async () => {
    const { order } = await h.client.submitOrder({
      idempotencyKey: key('backorder'),
      order: anOrder('ACME', [{ sku: 'SPROCKET-3', quantity: 5 }]),
    });
    const history = async () => (await h.client.getOrderHistory({ id: order!.id })).steps;
    const done = await waitForState(h.client, order!.id, [
      OrderState.PAID,
      OrderState.BOOKED,
      OrderState.SHIPPED,
      OrderState.INVOICED,
    ]);
    expect(done.lines[0]!.allocatedQuantity).toBe(3);
    expect(done.lines[0]!.backorderedQuantity).toBe(2);
    expect((await history()).some((s) => s.step === 'allocate' && s.outcome === 'succeeded')).toBe(true);
  });
});

describe('cancelling an order', () => {
  let h: StackHarness;
  beforeAll(async () => {
    // The warehouse dispatches nothing during this test, so the order waits at await-dispatch.
    const { spec, connectors } = distributor((_spec, cs) => {
      cs.find((c) => c.name === 'wms')!.options!.dispatchAfterMs = 600_000;
    });
    h = await startStack({ name: 'wf-cancel', spec, connectors });
  });
  afterAll(async () => {
    await h?.stop();
  });

  it('after allocation releases the inventory and cancels the ERP order, last step first', async () => {
    const wms = h.stack.connectors.get('wms')!.runtime.driver as SimulatorDriver;
    const { order } = await h.client.submitOrder({
      idempotencyKey: key('cancel'),
      order: anOrder('ACME', [{ sku: 'GADGET-7', quantity: 4 }]),
    });
    let booked = await waitForState(h.client, order!.id, [OrderState.BOOKED]);
    // Cancel once the order waits at await-dispatch: while the release step is still answered the
    // engine changes the order, and CancelOrder rightly answers Aborted to a concurrent change.
    for (const deadline = Date.now() + 10_000; booked.currentStep !== 'await-dispatch'; ) {
      if (Date.now() > deadline) throw new Error(`order stays at ${booked.currentStep}`);
      await new Promise((r) => setTimeout(r, 50));
      booked = (await h.client.getOrder({ id: order!.id })).order!;
    }
    expect(booked.externalRefs.some((r) => r.system === 'erp')).toBe(true);
    const allocatedBefore = wms.inventory('GADGET-7').allocated;
    expect(allocatedBefore).toBeGreaterThanOrEqual(4);

    await h.client.cancelOrder({ id: order!.id, reason: 'customer cancelled' });
    const deadline = Date.now() + 20_000;
    for (;;) {
      const steps = (await h.client.getOrderHistory({ id: order!.id })).steps;
      const compensated = steps.filter((s) => s.outcome === 'compensated').map((s) => s.step);
      if (compensated.length === 2) {
        expect(compensated).toEqual(['compensate:sales-order', 'compensate:allocate']);
        break;
      }
      if (Date.now() > deadline)
        throw new Error(`compensations so far: ${JSON.stringify(steps.map((s) => [s.step, s.outcome]))}`);
      await new Promise((r) => setTimeout(r, 50));
    }
    expect(wms.inventory('GADGET-7').allocated).toBe(allocatedBefore - 4);
    expect((await h.client.getOrder({ id: order!.id })).order?.state).toBe(OrderState.CANCELLED);
  });
});

describe('the backlog the order API admits against', () => {
  it('counts orders accepted but not started and this workflow’s due timers, not later or other ones', async () => {
    registerMigrations([...workflowMigrations, ...connectorMigrations]);
    const store = await openStore(await freshDatabase('o2c_test_wf_backlog'));
    const source = 'o2c/wf-backlog/workflow/distributor';
    const orders = new OrderRepository(store, source);
    const logger = createLogger('test', 'warn');
    const now = Date.now();
    // Never started: the engine's consumers and timers do not run, so nothing drains the backlog.
    const engine = new WorkflowEngine({
      store,
      orders,
      connection: new BusConnection({ url: BROKER_URL, name: 'wf-backlog', logger }),
      namespace: 'wf-backlog',
      workflow: 'distributor',
      generation: 1,
      spec: distributor().spec,
      source,
      logger,
      registry: createRegistry(false),
      now: () => now,
    });
    try {
      expect(await engine.measureBacklog()).toBe(0);
      for (let i = 0; i < 3; i++) {
        await orders.submit({ order: create(OrderSchema, anOrder('ACME')), idempotencyKey: key('backlog') });
      }
      expect(await engine.measureBacklog()).toBe(3);
      const instance = (orderId: string, workflow: string, timerAt: number): Instance => ({
        orderId,
        workflow,
        generation: 1,
        status: 'retrying',
        stepIndex: 2,
        step: 'tax',
        attempt: 1,
        commandId: null,
        timerAt,
        context: emptyContext(),
        startedAt: now,
        updatedAt: now,
      });
      await store.transaction((tx) =>
        writeInstances(tx, [
          instance('due', 'distributor', now - 1),
          instance('later', 'distributor', now + 60_000),
          instance('elsewhere', 'another-workflow', now - 1),
        ]),
      );
      expect(await engine.measureBacklog()).toBe(4);
    } finally {
      await store.close();
    }
  });
});
