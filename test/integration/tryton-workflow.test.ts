// One full order through the real Tryton ERP end to end: the workflow engine, the Tryton connector
// over RabbitMQ, and the sale in Tryton done, invoiced and paid.
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TrytonClient } from '../../runtime/src/connectors/tryton/client.js';
import { OrderState } from '../../runtime/src/gen/o2c/v1/entities_pb.js';
import { stackFromManifests } from '../../runtime/src/local/stack.js';
import { loadManifests } from '../../runtime/src/manifests.js';
import { startTryton, type TrytonServer } from '../tryton/server.js';
import { type StackHarness, startStack, waitForState } from './support/stack.js';

describe('the distributor workflow on the real Tryton ERP', () => {
  let tryton: TrytonServer;
  let h: StackHarness;

  beforeAll(async () => {
    tryton = await startTryton();
    const credentials = mkdtempSync(join(tmpdir(), 'o2c-tryton-credentials-'));
    writeFileSync(join(credentials, 'username'), tryton.user);
    writeFileSync(join(credentials, 'password'), tryton.password);
    writeFileSync(join(credentials, 'database'), tryton.database);
    const parsed = stackFromManifests(loadManifests(['examples/distributor-tryton/']));
    const spec = structuredClone(parsed.spec);
    // The customer pays at once through the ERP instead of weeks later.
    const i = spec.steps.findIndex((s) => s.name === 'await-payment');
    spec.steps[i] = { name: 'payment', call: { connector: 'erp', operation: 'RecordPayment' } };
    const connectors = structuredClone(parsed.connectors).map((c) =>
      c.name === 'erp'
        ? {
            ...c,
            endpoint: tryton.baseUrl,
            credentialsDir: credentials,
            options: { ...c.options, pollInterval: '500ms' },
          }
        : c,
    );
    h = await startStack({ name: 'wf-tryton', spec, connectors });
  }, 120_000);

  afterAll(async () => {
    await h?.stop();
    await tryton?.stop();
  });

  it('validates, prices, books, ships, invoices and collects an order, with one sale in Tryton', async () => {
    const { order } = await h.client.submitOrder({
      idempotencyKey: `tryton-e2e-${Date.now()}`,
      order: { customerId: 'CUST-ACME', currencyCode: 'USD', lines: [{ sku: 'WIDGET-001', quantity: 3 }] },
    });
    const paid = await waitForState(h.client, order!.id, [OrderState.PAID, OrderState.ON_HOLD], 120_000);
    expect(paid.statusReason).toBe('');
    expect(paid.state).toBe(OrderState.PAID);
    // 3 x 10.00 from Tryton's list price, 10% tax.
    expect(paid.subtotal).toMatchObject({ units: 30n });
    expect(paid.total).toMatchObject({ units: 33n });

    const client = new TrytonClient({ url: tryton.url, username: tryton.user, password: tryton.password });
    const sales = await client.search('sale.sale', [['reference', '=', order!.id]]);
    expect(sales).toHaveLength(1);
    const [sale] = await client.read<{ state: string; shipment_state: string; invoice_state: string }>(
      'sale.sale',
      sales,
      ['state', 'shipment_state', 'invoice_state'],
    );
    expect(sale).toMatchObject({ state: 'done', shipment_state: 'sent', invoice_state: 'paid' });
  }, 180_000);
});
