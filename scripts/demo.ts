// make demo: the reference O2C flow end to end. Starts examples/distributor/ the way `o2c dev`
// does (embedded SQLite store, simulator connectors, the real RabbitMQ), submits a handful of
// orders through the public API — one invalid, one repeated, one over its credit limit — follows
// them to the end, fixes the credit hold the way finance would, and prints what came back.
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Code, ConnectError, createClient } from '@connectrpc/connect';
import { createConnectTransport } from '@connectrpc/connect-node';
import { formatDecimal } from '../runtime/src/connectors/money.js';
import { ErrorClass } from '../runtime/src/gen/o2c/v1/common_pb.js';
import { type Order, OrderState } from '../runtime/src/gen/o2c/v1/entities_pb.js';
import { OrderService } from '../runtime/src/gen/o2c/v1/order_service_pb.js';
import { stackFromManifests, startLocalStack } from '../runtime/src/local/stack.js';
import { loadManifests } from '../runtime/src/manifests.js';
import { createLogger } from '../runtime/src/observability/logger.js';

const BROKER = process.env.O2C_BROKER_URL ?? 'amqp://guest:guest@127.0.0.1:5672';
const run = Date.now().toString(36);
const manifests = loadManifests(['examples/distributor/']);
const parsed = stackFromManifests(manifests);
// Demo pace: the warehouse dispatches and customers pay within a second.
for (const c of parsed.connectors) {
  if (c.options && 'dispatchAfterMs' in c.options) c.options.dispatchAfterMs = 400;
  if (c.options && 'payAfterMs' in c.options) c.options.payAfterMs = 600;
}
const storeUrl = `sqlite:${join(mkdtempSync(join(tmpdir(), 'o2c-demo-')), 'demo.sqlite')}`;
console.log('o2c demo: examples/distributor/ on the embedded store, simulator connectors, RabbitMQ\n');
const stack = await startLocalStack({
  namespace: `demo-${run}`,
  workflowName: parsed.workflowName,
  spec: parsed.spec,
  connectors: parsed.connectors,
  storeUrl,
  brokerUrl: BROKER,
  logger: createLogger('demo', process.env.O2C_LOG_LEVEL ?? 'warn'),
  timerPollMs: 100,
});
const baseUrl = `http://127.0.0.1:${stack.workflow.api.port}`;
const client = createClient(OrderService, createConnectTransport({ baseUrl, httpVersion: '1.1' }));
const money = (m?: { currencyCode: string; units: bigint; nanos: number }) =>
  m ? `${formatDecimal(m as never)} ${m.currencyCode}` : '-';
const state = (s: OrderState) => OrderState[s] ?? String(s);

let failures = 0;
function check(ok: boolean, what: string): void {
  console.log(`  ${ok ? 'ok ' : 'FAIL'} ${what}`);
  if (!ok) failures++;
}

async function waitFor(id: string, states: OrderState[], timeoutMs = 30_000): Promise<Order> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const { order } = await client.getOrder({ id });
    if (order && states.includes(order.state)) return order;
    if (Date.now() > deadline)
      throw new Error(`order ${id} stuck in ${state(order!.state)} at ${order!.currentStep}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

try {
  console.log(`1. Submitting orders to ${baseUrl}/o2c.v1.OrderService/SubmitOrder`);
  const submitted: { label: string; order: Order }[] = [];
  const orders: [string, string, { sku: string; quantity: number }[]][] = [
    [
      'ACME, 3 lines',
      'ACME',
      [
        { sku: 'WIDGET-1', quantity: 12 },
        { sku: 'GADGET-7', quantity: 2 },
        { sku: 'SPROCKET-3', quantity: 1 },
      ],
    ],
    ['GLOBEX, 1 line', 'GLOBEX', [{ sku: 'WIDGET-1', quantity: 40 }]],
    ['ACME, short stock', 'ACME', [{ sku: 'SPROCKET-3', quantity: 6 }]],
    ['TIGHT, over credit', 'TIGHT', [{ sku: 'GADGET-7', quantity: 3 }]],
  ];
  for (const [label, customerId, lines] of orders) {
    const { order } = await client.submitOrder({
      idempotencyKey: `demo-${run}-${customerId}-${submitted.length}`,
      order: { customerId, currencyCode: 'USD', purchaseOrderNumber: `PO-${submitted.length + 1}`, lines },
    });
    submitted.push({ label, order: order! });
    console.log(`  accepted ${order!.id}  ${label}`);
  }

  console.log('\n2. The same idempotency key again (a client retry):');
  const repeat = await client.submitOrder({
    idempotencyKey: `demo-${run}-ACME-0`,
    order: { customerId: 'ACME', currencyCode: 'USD', purchaseOrderNumber: 'PO-1', lines: orders[0]![2] },
  });
  check(
    repeat.order?.id === submitted[0]!.order.id,
    `returns the original order ${repeat.order?.id}, no second order`,
  );

  console.log('\n3. An invalid order (no lines, a currency that does not exist):');
  try {
    await client.submitOrder({
      idempotencyKey: `demo-${run}-bad`,
      order: { customerId: 'ACME', currencyCode: 'XXY', lines: [] },
    });
    check(false, 'rejected');
  } catch (err) {
    const e = ConnectError.from(err);
    check(e.code === Code.InvalidArgument, `InvalidArgument: ${e.rawMessage}`);
  }

  console.log(
    '\n4. Following the orders through validate, price, tax, credit, allocate, ERP, dispatch, invoice, payment:',
  );
  const tight = submitted[3]!.order;
  const held = await waitFor(tight.id, [OrderState.ON_HOLD]);
  for (const { label, order } of submitted.slice(0, 3)) {
    const done = await waitFor(order.id, [OrderState.PAID]);
    const erp = done.externalRefs.find((r) => r.system === 'erp');
    console.log(
      `  ${done.id}  ${state(done.state).padEnd(6)} ${label.padEnd(18)} subtotal ${money(done.subtotal).padStart(14)}  tax ${money(done.taxTotal).padStart(12)}  total ${money(done.total).padStart(14)}  ERP ${erp?.displayId || erp?.externalId}`,
    );
  }
  const short = await client.getOrder({ id: submitted[2]!.order.id });
  const line = short.order!.lines[0]!;
  check(
    line.backorderedQuantity > 0,
    `short stock: ${line.allocatedQuantity} allocated, ${line.backorderedQuantity} backordered`,
  );

  console.log(
    `\n5. Fallout: ${tight.id} is ${state(held.state)} at ${held.currentStep}: ${held.statusReason}`,
  );
  const { exceptions } = await client.listExceptions({ orderId: tight.id });
  const exc = exceptions[0]!;
  check(exc.errorClass === ErrorClass.CREDIT, `exception ${exc.id} (${ErrorClass[exc.errorClass]}) is open`);
  console.log('  Finance raises the credit limit in the ERP and retries the step.');
  const erpOptions = parsed.connectors.find((c) => c.name === 'erp')!.options as {
    customers: Record<string, { creditLimit: string }>;
  };
  erpOptions.customers.TIGHT!.creditLimit = '100000';
  await client.retryStep({ exceptionId: exc.id });
  const recovered = await waitFor(tight.id, [OrderState.PAID]);
  check(
    recovered.state === OrderState.PAID,
    `${tight.id} completed: ${state(recovered.state)}, total ${money(recovered.total)}`,
  );

  console.log('\n6. The history of one order:');
  const history = await client.getOrderHistory({ id: submitted[0]!.order.id });
  for (const s of history.steps.filter((x) => x.outcome !== 'started')) {
    const ms =
      s.endTime && s.startTime
        ? Number(s.endTime.seconds - s.startTime.seconds) * 1000 + (s.endTime.nanos - s.startTime.nanos) / 1e6
        : 0;
    console.log(`  ${s.step.padEnd(18)} ${s.outcome.padEnd(10)} ${ms.toFixed(0).padStart(5)} ms`);
  }

  const crm = stack.connectors.get('crm')!.runtime.driver as { statusOf(id: string): string | undefined };
  check(crm.statusOf(submitted[0]!.order.id) === String(OrderState.PAID), 'the CRM shows the order as paid');
} finally {
  await stack.stop({ deleteQueues: true });
}
console.log(
  failures === 0 ? '\ndemo finished: every check passed' : `\ndemo finished with ${failures} failed check(s)`,
);
process.exit(failures === 0 ? 0 : 1);
