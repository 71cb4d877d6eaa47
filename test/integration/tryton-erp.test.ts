// The Tryton driver against a real Tryton 6.0 server (Debian packages), started from the fixture
// snapshot of test/tryton/setup.sh on a free loopback port.
import { createServer, type Server, Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  allocateInventory,
  cancelSalesOrder,
  checkAvailability,
  checkCredit,
  createSalesOrder,
  findSalesByReference,
  getPaymentStatus,
  getPrice,
  getSalesOrder,
  getShipment,
  isTrytonError,
  memoryWatermarkStore,
  pollChanges,
  postInvoice,
  recordPayment,
  releaseFulfillment,
  TrytonClient,
  type TrytonError,
  upsertCustomer,
  upsertItem,
  validateCustomer,
} from '../../runtime/src/connectors/tryton/index.js';
import { startTryton, type TrytonServer } from '../tryton/server.js';

let tryton: TrytonServer;
let client: TrytonClient;
const timings: Record<string, number[]> = {};

function newClient(url = tryton.url, timeoutMs?: number): TrytonClient {
  return new TrytonClient({
    url,
    username: tryton.user,
    password: tryton.password,
    timeoutMs,
    onCall: (method, ms) => {
      const list = timings[method] ?? [];
      list.push(ms);
      timings[method] = list;
    },
  });
}

async function rejection(p: Promise<unknown>): Promise<TrytonError> {
  try {
    await p;
  } catch (err) {
    if (isTrytonError(err)) return err;
    throw err;
  }
  throw new Error('expected the call to fail');
}

beforeAll(async () => {
  tryton = await startTryton();
  client = newClient();
});

afterAll(async () => {
  await tryton?.dispose();
  if (process.env.O2C_TRYTON_TIMINGS) {
    const summary = Object.fromEntries(
      Object.entries(timings).map(([m, l]) => [
        m,
        { n: l.length, meanMs: Math.round(l.reduce((a, b) => a + b, 0) / l.length) },
      ]),
    );
    console.log(JSON.stringify(summary, null, 1));
  }
});

describe('tryton driver', () => {
  it('takes an order through every operation: sale done, invoice paid, changes polled', async () => {
    const { customers } = tryton.fixture;
    const started = performance.now();

    const valid = await validateCustomer(client, customers.good.code);
    expect(valid.valid).toBe(true);
    if (!valid.valid) return;
    expect(valid.customer).toMatchObject({
      id: customers.good.id,
      name: customers.good.name,
      currency: 'USD',
    });
    expect((await validateCustomer(client, 'NO-SUCH-CUSTOMER')).valid).toBe(false);

    const price = await getPrice(client, 'WIDGET-001', 3, { customer: customers.good.code });
    expect(price).toMatchObject({ unitPrice: '10.00', lineAmount: '30.00', currency: 'USD' });
    expect(price.taxes.map((t) => t.rate)).toEqual(['0.10']);

    const credit = await checkCredit(client, customers.good.code, '30.00');
    expect(credit).toMatchObject({ approved: true, creditLimit: '1000000.00', creditUsed: '0.00' });

    const stock = await checkAvailability(client, 'WIDGET-001', 3);
    expect(stock).toMatchObject({ onHand: 1000, available: true });

    const order = {
      orderId: 'o2c-full-1',
      customer: customers.good.code,
      currency: 'USD',
      lines: [
        { sku: 'WIDGET-001', quantity: 3, unitPrice: price.unitPrice },
        { sku: 'GADGET-002', quantity: 2, unitPrice: '24.00' },
      ],
    };
    const sale = await createSalesOrder(client, order);
    expect(sale).toMatchObject({
      reference: 'o2c-full-1',
      state: 'processing',
      created: true,
      untaxedAmount: '78.00',
      taxAmount: '7.80',
      totalAmount: '85.80',
      currency: 'USD',
    });
    expect(sale.shipmentIds).toHaveLength(1);
    expect(sale.invoiceIds).toHaveLength(1);
    const again = await createSalesOrder(client, order);
    expect(again).toMatchObject({ saleId: sale.saleId, created: false, state: 'processing' });

    const allocation = await allocateInventory(client, sale.saleId);
    expect(allocation.status).toBe('allocated');
    expect(allocation.lines.find((l) => l.sku === 'WIDGET-001')).toMatchObject({
      requested: 3,
      allocated: 3,
      backordered: 0,
    });

    const shipment = await releaseFulfillment(client, {
      shipmentId: sale.shipmentIds[0]!,
      tracking: 'TRACK-0001',
    });
    expect(shipment).toMatchObject({ state: 'done', reference: 'TRACK-0001', saleIds: [sale.saleId] });
    expect(await releaseFulfillment(client, { shipmentId: shipment.id })).toMatchObject({ state: 'done' });

    const invoice = await postInvoice(client, sale.invoiceIds[0]!);
    expect(invoice).toMatchObject({ state: 'posted', totalAmount: '85.80', amountToPay: '85.80' });
    expect(invoice.number).toBeTruthy();
    expect(await postInvoice(client, invoice.id)).toMatchObject({ state: 'posted' });

    const status0 = await getPaymentStatus(client, invoice.id);
    expect(status0).toMatchObject({ status: 'unpaid', paidAmount: '0.00' });
    const paid = await recordPayment(client, {
      invoiceId: invoice.id,
      amount: '85.80',
      currency: 'USD',
      paymentId: 'pay-full-1',
    });
    expect(paid).toMatchObject({ status: 'paid', paidAmount: '85.80', amountToPay: '0.00' });
    expect(paid.payments).toEqual([expect.objectContaining({ amount: '85.80', description: 'pay-full-1' })]);
    // The same payment retried is a no-op.
    const retried = await recordPayment(client, {
      invoiceId: invoice.id,
      amount: '85.80',
      paymentId: 'pay-full-1',
    });
    expect(retried.payments).toHaveLength(1);

    expect(await getSalesOrder(client, 'o2c-full-1')).toMatchObject({
      state: 'done',
      invoiceState: 'paid',
      shipmentState: 'sent',
    });
    timings['full sale (o2c ms)'] = [performance.now() - started];

    const store = memoryWatermarkStore();
    const changes = [];
    for await (const change of pollChanges(client, store)) changes.push(change);
    expect(changes.map((c) => [c.kind, c.orderIds])).toEqual([
      ['shipment_done', ['o2c-full-1']],
      ['invoice_posted', ['o2c-full-1']],
      ['invoice_paid', ['o2c-full-1']],
    ]);
    expect(changes[0]?.shipment?.reference).toBe('TRACK-0001');
    expect(changes[2]?.invoice?.state).toBe('paid');
    expect(store.value).toBeTruthy();
    const second = [];
    for await (const change of pollChanges(client, store)) second.push(change);
    expect(second).toEqual([]);
  });

  it('holds an order over the credit limit as a credit error, and confirms it once accepted', async () => {
    const low = tryton.fixture.customers.low_credit;
    const check = await checkCredit(client, low.code, '100.00');
    expect(check).toMatchObject({ approved: false, creditLimit: '50.00', available: '50.00' });

    const order = {
      orderId: 'o2c-credit-1',
      customer: low.code,
      lines: [{ sku: 'WIDGET-001', quantity: 10 }],
    };
    const err = await rejection(createSalesOrder(client, order));
    expect(err.kind).toBe('credit');
    expect(err.retryable).toBe(false);
    expect(err.warningName).toMatch(/^credit_limit_amount_sale\.sale,\d+$/);
    expect(err.message).toMatch(/credit limit/);
    // The sale waits in quotation; retrying without accepting fails the same way, with no second sale.
    expect(await getSalesOrder(client, 'o2c-credit-1')).toMatchObject({ state: 'quotation' });
    expect((await rejection(createSalesOrder(client, order))).kind).toBe('credit');
    // Released from the hold (the workflow's decision): the warning is accepted and the sale confirmed.
    const released = await createSalesOrder(client, { ...order, acceptWarnings: ['credit'] });
    expect(released).toMatchObject({ state: 'processing', created: false });
    expect(await findSalesByReference(client, 'o2c-credit-1')).toHaveLength(1);
  });

  it('allocates what is there when stock is short and backorders the rest', async () => {
    const availability = await checkAvailability(client, 'SCARCE-003', 8);
    expect(availability).toMatchObject({ onHand: 5, available: false, availableToPromise: 5 });

    const order = {
      orderId: 'o2c-short-1',
      customer: 'CUST-ACME',
      lines: [{ sku: 'SCARCE-003', quantity: 8 }],
    };
    const warned = await rejection(createSalesOrder(client, order));
    expect(warned.kind).toBe('stock');
    expect(warned.warningName).toMatch(/^stock_quantity_warning_\d+$/);

    const sale = await createSalesOrder(client, { ...order, acceptWarnings: ['stock'] });
    expect(sale.state).toBe('processing');
    const allocation = await allocateInventory(client, sale.saleId);
    expect(allocation.status).toBe('partial');
    expect(allocation.lines).toEqual([
      {
        sku: 'SCARCE-003',
        productId: tryton.fixture.products.scarce.id,
        requested: 8,
        allocated: 5,
        backordered: 3,
      },
    ]);

    // Without shipPartial the shipment is not released; with it, 5 ship and Tryton backorders 3.
    expect((await rejection(releaseFulfillment(client, { shipmentId: sale.shipmentIds[0]! }))).kind).toBe(
      'stock',
    );
    const shipped = await releaseFulfillment(client, { shipmentId: sale.shipmentIds[0]!, shipPartial: true });
    expect(shipped.state).toBe('done');
    expect(shipped.lines.filter((l) => l.state === 'done').map((l) => l.quantity)).toEqual([5]);
    const after = await getSalesOrder(client, 'o2c-short-1');
    expect(after?.shipmentIds.length).toBe(2);
    const backorder = await getShipment(client, after!.shipmentIds.find((id) => id !== shipped.id)!);
    expect(backorder.state).toBe('waiting');
    expect(backorder.lines.map((l) => l.quantity)).toEqual([3]);
    const stillShort = await allocateInventory(client, sale.saleId);
    expect(stillShort.status).toBe('partial');
    expect(stillShort.lines[0]).toMatchObject({ allocated: 5, backordered: 3 });
  });

  it('makes exactly one sale when the create reply is lost and the call is retried', async () => {
    const proxy = await cuttingProxy(tryton.port);
    try {
      const viaProxy = newClient(proxy.url);
      const order = {
        orderId: 'o2c-lost-1',
        customer: 'CUST-ACME',
        lines: [{ sku: 'GADGET-002', quantity: 1 }],
      };
      proxy.cutAfter('"model.sale.sale.create"');
      const lost = await rejection(createSalesOrder(viaProxy, order));
      expect(lost.retryable).toBe(true);
      expect(proxy.cuts).toBe(1);
      const retried = await createSalesOrder(viaProxy, order);
      expect(retried).toMatchObject({ state: 'processing', created: false });
      expect(await findSalesByReference(client, 'o2c-lost-1')).toEqual([retried.saleId]);

      // Racing creates for one order: the same client twice, and two clients that share no lock.
      const race = { ...order, orderId: 'o2c-race-1' };
      const results = await Promise.all([
        createSalesOrder(client, race),
        createSalesOrder(client, race),
        createSalesOrder(viaProxy, race),
        createSalesOrder(newClient(), race),
      ]);
      const ids = await findSalesByReference(client, 'o2c-race-1');
      expect(ids).toHaveLength(1);
      expect(new Set(results.map((r) => r.saleId))).toEqual(new Set(ids));
      expect(results.every((r) => r.state === 'processing')).toBe(true);
    } finally {
      await proxy.close();
    }
  });

  it('fails as retryable unavailable while Tryton is down and recovers when it is back', async () => {
    expect((await validateCustomer(client, 'CUST-ACME')).valid).toBe(true);
    await tryton.stop();
    const t0 = performance.now();
    const err = await rejection(validateCustomer(client, 'CUST-ACME'));
    const failMs = performance.now() - t0;
    expect(err.kind).toBe('unavailable');
    expect(err.retryable).toBe(true);
    expect(failMs).toBeLessThan(2_000);
    const err2 = await rejection(
      createSalesOrder(client, {
        orderId: 'o2c-down-1',
        customer: 'CUST-ACME',
        lines: [{ sku: 'WIDGET-001', quantity: 1 }],
      }),
    );
    expect(err2).toMatchObject({ kind: 'unavailable', retryable: true });
    await tryton.start();
    expect((await validateCustomer(client, 'CUST-ACME')).valid).toBe(true);
    expect(
      await createSalesOrder(client, {
        orderId: 'o2c-down-1',
        customer: 'CUST-ACME',
        lines: [{ sku: 'WIDGET-001', quantity: 1 }],
      }),
    ).toMatchObject({ state: 'processing', created: true });
  });

  it('logs in again when the session is gone, maps bad credentials and unknown methods', async () => {
    await tryton.reset(); // the restored database knows none of this client's sessions
    expect((await validateCustomer(client, 'CUST-ACME')).valid).toBe(true);
    expect(await findSalesByReference(client, 'o2c-full-1')).toEqual([]);

    const bad = new TrytonClient({ url: tryton.url, username: tryton.user, password: 'wrong-password' });
    expect(await rejection(bad.login())).toMatchObject({ kind: 'auth', retryable: false });
    expect(await rejection(client.model('res.user', 'no_such_method', []))).toMatchObject({
      kind: 'auth',
      httpStatus: 403,
    });
  });

  it('upserts customers and items by their codes, and cancels an order as compensation', async () => {
    const first = await upsertCustomer(client, {
      code: 'CUST-NEW',
      name: 'New Customer',
      address: { street: '9 Elm Road', city: 'Ogdenville' },
      creditLimit: '500.00',
    });
    expect(first.created).toBe(true);
    const second = await upsertCustomer(client, {
      code: 'CUST-NEW',
      name: 'New Customer Renamed',
      creditLimit: '750.00',
    });
    expect(second).toEqual({ id: first.id, created: false });
    expect(await validateCustomer(client, 'CUST-NEW')).toMatchObject({
      valid: true,
      customer: { name: 'New Customer Renamed', creditLimit: '750.00' },
    });

    const item = await upsertItem(client, { sku: 'NEW-ITEM-9', name: 'New item', listPrice: '3.50' });
    expect(item.created).toBe(true);
    expect(await upsertItem(client, { sku: 'NEW-ITEM-9', name: 'New item v2', listPrice: '3.75' })).toEqual({
      id: item.id,
      created: false,
    });
    expect(await getPrice(client, 'NEW-ITEM-9', 2)).toMatchObject({ unitPrice: '3.75', lineAmount: '7.50' });

    const sale = await createSalesOrder(client, {
      orderId: 'o2c-cancel-1',
      customer: 'CUST-NEW',
      lines: [{ sku: 'WIDGET-001', quantity: 2 }],
    });
    expect(sale.state).toBe('processing');
    const cancelled = await cancelSalesOrder(client, { orderId: 'o2c-cancel-1' });
    expect(cancelled).toMatchObject({
      cancelled: true,
      cancelledShipmentIds: sale.shipmentIds,
      cancelledInvoiceIds: sale.invoiceIds,
    });
    expect(await cancelSalesOrder(client, { orderId: 'never-created' })).toMatchObject({
      saleId: null,
      cancelled: true,
    });
  });
});

/** A TCP proxy to Tryton that can drop the reply of one request after forwarding it. */
async function cuttingProxy(port: number): Promise<{
  url: string;
  cuts: number;
  cutAfter(marker: string): void;
  close(): Promise<void>;
}> {
  let marker: string | undefined;
  const sockets = new Set<Socket>();
  const state = { cuts: 0 };
  const server: Server = createServer((down) => {
    sockets.add(down);
    const up = new Socket();
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
        // The request reached Tryton and was answered: drop the answer and cut the connection.
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
    down.on('close', end);
    up.on('close', end);
    down.on('error', end);
    up.on('error', end);
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
        for (const s of sockets) s.destroy();
        server.close(() => r());
      }),
  };
}
