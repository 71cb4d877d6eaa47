// Durability of the workflow: a SIGKILLed workflow process resumes every order, durable timers
// survive restarts, and a failing tax service retries, falls out, and recovers.
import { type ChildProcess, spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { createClient } from '@connectrpc/connect';
import { createConnectTransport } from '@connectrpc/connect-node';
import { afterAll, describe, expect, it } from 'vitest';
import { BusConnection } from '../../runtime/src/bus/connection.js';
import { queueName } from '../../runtime/src/bus/topology.js';
import { type ConnectorRole, startConnectorRole } from '../../runtime/src/connectors/role.js';
import type { SimulatorDriver } from '../../runtime/src/connectors/simulator/driver.js';
import { ErrorClass } from '../../runtime/src/gen/o2c/v1/common_pb.js';
import { OrderState } from '../../runtime/src/gen/o2c/v1/entities_pb.js';
import { OrderService } from '../../runtime/src/gen/o2c/v1/order_service_pb.js';
import { deleteQueues } from '../../runtime/src/local/stack.js';
import { createLogger } from '../../runtime/src/observability/logger.js';
import { BROKER_URL, freshDatabase } from './support/services.js';
import { distributor, startStack, waitForState } from './support/stack.js';

function startWorkflowProcess(env: Record<string, string>): Promise<{ child: ChildProcess; port: number }> {
  // node itself (with tsx's loader), not the tsx CLI: SIGKILL must hit the process that does the work.
  const child = spawn(
    process.execPath,
    ['--import', 'tsx', 'test/integration/fixtures/workflow-process.ts'],
    {
      env: { ...process.env, ...env },
      stdio: ['ignore', 'pipe', 'inherit'],
    },
  );
  return new Promise((resolve, reject) => {
    const lines = createInterface({ input: child.stdout! });
    lines.on('line', (line) => {
      const m = /^ready (\d+)$/.exec(line);
      if (m) resolve({ child, port: Number(m[1]) });
    });
    child.once('exit', (code) => reject(new Error(`workflow process exited with ${code}`)));
  });
}

describe('a workflow process killed in the middle of 200 orders', () => {
  const children: ChildProcess[] = [];
  const roles: ConnectorRole[] = [];
  let bus: BusConnection | undefined;
  afterAll(async () => {
    for (const c of children) c.kill('SIGKILL');
    for (const r of roles) await r.stop();
    await bus?.close();
    const retry = { maxAttempts: 1, backoff: { initialMs: 1, maxMs: 1, multiplier: 1 } };
    await deleteQueues(BROKER_URL, [
      ...roles.map((r) => r.consumer.spec),
      ...['orders', 'replies', 'events'].map((p) => ({
        name: queueName('wf-kill', 'workflow', 'distributor', p),
        bindings: [],
        retry,
      })),
    ]);
  });

  it('resumes every order after a restart, with exactly one ERP sales order each', async () => {
    const namespace = 'wf-kill';
    const storeUrl = await freshDatabase('o2c_test_wf_kill');
    const { connectors } = distributor();
    bus = new BusConnection({
      url: BROKER_URL,
      name: 'test-connectors',
      logger: createLogger('test', 'warn'),
    });
    await bus.start();
    for (const config of connectors) {
      roles.push(
        await startConnectorRole({
          config: { ...config, namespace },
          connection: bus,
          logger: createLogger('test', 'warn'),
          retry: { maxAttempts: 3, backoff: { initialMs: 100, maxMs: 500, multiplier: 2 } },
        }),
      );
    }
    const env = { O2C_STORE_URL: storeUrl, O2C_NAMESPACE: namespace };
    const first = await startWorkflowProcess(env);
    children.push(first.child);
    const client = createClient(
      OrderService,
      createConnectTransport({ baseUrl: `http://127.0.0.1:${first.port}`, httpVersion: '1.1' }),
    );
    const ids: string[] = [];
    for (let i = 0; i < 200; i++) {
      const { order } = await client.submitOrder({
        idempotencyKey: `kill-${i}`,
        order: {
          customerId: 'ACME',
          currencyCode: 'USD',
          lines: [{ sku: 'WIDGET-1', quantity: 1 + (i % 5) }],
        },
      });
      ids.push(order!.id);
      if (i === 120) first.child.kill('SIGKILL'); // mid-stream: some orders are mid-step, some not started
      if (i >= 120) break;
    }
    await new Promise((r) => first.child.once('exit', r));

    const second = await startWorkflowProcess({ ...env, O2C_API_PORT: '0' });
    children.push(second.child);
    const client2 = createClient(
      OrderService,
      createConnectTransport({ baseUrl: `http://127.0.0.1:${second.port}`, httpVersion: '1.1' }),
    );
    for (let i = ids.length; i < 200; i++) {
      const { order } = await client2.submitOrder({
        idempotencyKey: `kill-${i}`,
        order: {
          customerId: 'ACME',
          currencyCode: 'USD',
          lines: [{ sku: 'WIDGET-1', quantity: 1 + (i % 5) }],
        },
      });
      ids.push(order!.id);
    }
    expect(new Set(ids).size).toBe(200);
    for (const id of ids) await waitForState(client2, id, [OrderState.PAID], 120_000);
    const erp = roles.find((r) => r.runtime.config.name === 'erp')!.runtime.driver as SimulatorDriver;
    expect(erp.salesOrderCount()).toBe(200);
    second.child.kill('SIGTERM');
  }, 300_000);
});

describe('durable timers', () => {
  it('fires an await timeout armed before a restart after it', async () => {
    const storeUrl = await freshDatabase('o2c_test_wf_timer');
    const { spec, connectors } = distributor((s, cs) => {
      s.steps.find((x) => x.name === 'await-dispatch')!.await!.timeout = '3s';
      cs.find((c) => c.name === 'wms')!.options!.dispatchAfterMs = 600_000;
    });
    const first = await startStack({ name: 'wf-timer', spec, connectors, storeUrl });
    const { order } = await first.client.submitOrder({
      idempotencyKey: `timer-${Date.now()}`,
      order: { customerId: 'ACME', currencyCode: 'USD', lines: [{ sku: 'WIDGET-1', quantity: 1 }] },
    });
    const booked = await waitForState(first.client, order!.id, [OrderState.BOOKED]);
    expect(booked.state).toBe(OrderState.BOOKED);
    // BOOKED comes before the release step; stopping during it would leave the release to the
    // second process's simulator, which (in memory) never saw the sales order. Wait for the await.
    for (const deadline = Date.now() + 15_000; ; ) {
      const { order: now } = await first.client.getOrder({ id: order!.id });
      if (now?.currentStep === 'await-dispatch') break;
      if (Date.now() > deadline) throw new Error(`order never reached await-dispatch: ${now?.currentStep}`);
      await new Promise((r) => setTimeout(r, 50));
    }
    await first.stop(); // the timer is armed; nothing runs while the process is down
    await new Promise((r) => setTimeout(r, 3500));
    const second = await startStack({ name: 'wf-timer', spec, connectors, storeUrl });
    try {
      const held = await waitForState(second.client, order!.id, [OrderState.ON_HOLD], 15_000);
      expect(held.currentStep).toBe('await-dispatch');
      const { exceptions } = await second.client.listExceptions({ orderId: order!.id });
      expect(exceptions[0]?.errorClass).toBe(ErrorClass.TIMEOUT);
      expect(exceptions[0]?.message).toContain('o2c.v1.ShipmentDispatched');
    } finally {
      await second.stop();
    }
  }, 120_000);
});

describe('a tax service that goes down', () => {
  it('retries, opens an exception after its attempts, and completes once it is back and the step is retried', async () => {
    const failureRates: Record<string, number> = { CalculateTax: 1 };
    const { spec, connectors } = distributor((s, cs) => {
      const tax = s.steps.find((x) => x.name === 'tax')!;
      tax.retry = { maxAttempts: 3, backoff: { initial: '100ms', max: '200ms' } };
      const taxConnector = cs.find((c) => c.name === 'tax')!;
      taxConnector.options!.failureRates = failureRates;
      // The connector's circuit opens on the outage; a short open window lets the test see it close.
      taxConnector.circuitBreaker = { consecutiveFailures: 5, openFor: '500ms' };
    });
    const h = await startStack({ name: 'wf-tax', spec, connectors });
    try {
      const { order } = await h.client.submitOrder({
        idempotencyKey: `tax-${Date.now()}`,
        order: { customerId: 'ACME', currencyCode: 'USD', lines: [{ sku: 'WIDGET-1', quantity: 2 }] },
      });
      const held = await waitForState(h.client, order!.id, [OrderState.ON_HOLD], 30_000);
      expect(held.currentStep).toBe('tax');
      const history = (await h.client.getOrderHistory({ id: order!.id })).steps.filter(
        (s) => s.step === 'tax',
      );
      expect(history.filter((s) => s.outcome === 'retrying')).toHaveLength(2);
      expect(history.at(-1)?.outcome).toBe('failed');
      const { exceptions } = await h.client.listExceptions({ orderId: order!.id });
      expect(exceptions[0]?.errorClass).toBe(ErrorClass.UNAVAILABLE);
      expect(exceptions[0]?.attempts).toBe(3);

      failureRates.CalculateTax = 0; // the tax service is back
      await new Promise((r) => setTimeout(r, 600)); // past the circuit's open window
      await h.client.retryStep({ exceptionId: exceptions[0]!.id });
      const paid = await waitForState(h.client, order!.id, [OrderState.PAID], 30_000);
      expect(paid.taxTotal?.units).toBe(1n);
    } finally {
      await h.stop();
    }
  }, 120_000);
});

describe('a changed Workflow', () => {
  it('lets running orders finish on the generation they started on and applies to new orders', async () => {
    const storeUrl = await freshDatabase('o2c_test_wf_versions');
    const v1 = distributor();
    const first = await startStack({ name: 'wf-versions', ...v1, storeUrl, generation: 1 });
    const { order: old } = await first.client.submitOrder({
      idempotencyKey: `v1-${Date.now()}`,
      order: { customerId: 'TIGHT', currencyCode: 'USD', lines: [{ sku: 'WIDGET-1', quantity: 10 }] },
    });
    const held = await waitForState(first.client, old!.id, [OrderState.ON_HOLD]);
    expect(held.workflowGeneration).toBe(1n);
    await first.stop();

    // Generation 2 checks availability right after validating the customer.
    const v2 = distributor((spec) => {
      spec.steps.splice(1, 0, {
        name: 'check-availability',
        call: { connector: 'wms', operation: 'CheckAvailability' },
      });
    });
    const second = await startStack({ name: 'wf-versions', ...v2, storeUrl, generation: 2 });
    try {
      const erp = second.connectors.find((c) => c.name === 'erp')!.options as {
        customers: Record<string, { creditLimit: string }>;
      };
      erp.customers.TIGHT!.creditLimit = '100000';
      const { exceptions } = await second.client.listExceptions({ orderId: old!.id });
      await second.client.retryStep({ exceptionId: exceptions[0]!.id });
      const { order: fresh } = await second.client.submitOrder({
        idempotencyKey: `v2-${Date.now()}`,
        order: { customerId: 'ACME', currencyCode: 'USD', lines: [{ sku: 'WIDGET-1', quantity: 1 }] },
      });
      const oldDone = await waitForState(second.client, old!.id, [OrderState.PAID]);
      const freshDone = await waitForState(second.client, fresh!.id, [OrderState.PAID]);
      expect(oldDone.workflowGeneration).toBe(1n);
      expect(freshDone.workflowGeneration).toBe(2n);
      const stepsOf = async (id: string) =>
        (await second.client.getOrderHistory({ id })).steps
          .filter((s) => s.outcome === 'succeeded')
          .map((s) => s.step);
      expect(await stepsOf(old!.id)).not.toContain('check-availability');
      expect((await stepsOf(fresh!.id)).slice(0, 2)).toEqual(['validate-customer', 'check-availability']);
    } finally {
      await second.stop();
    }
  }, 120_000);
});
