import { create } from '@bufbuild/protobuf';
import { describe, expect, it } from 'vitest';
import { ErrorClass } from '../../gen/o2c/v1/common_pb.js';
import { OrderSchema } from '../../gen/o2c/v1/entities_pb.js';
import { ManualClock } from '../clock.js';
import type { CallContext, ConnectorFailure } from '../driver.js';
import { formatDecimal, money } from '../money.js';
import { type SimulatorConfig, SimulatorDriver } from './driver.js';

const ctx: CallContext = { signal: new AbortController().signal, idempotencyKey: 'k', correlationId: 'c' };
const sim = (cfg: SimulatorConfig = {}) => new SimulatorDriver(cfg, new ManualClock());
const line = (sku: string, quantity: number) => ({
  $typeName: 'o2c.v1.PriceRequestLine' as const,
  sku,
  quantity,
});

describe('SimulatorDriver', () => {
  it('prices lines from its price list and computes tax at the configured rate', async () => {
    const s = sim({ prices: { WIDGET: '12.50' }, taxRate: '0.10' });
    const priced = await s.getPrice(
      {
        $typeName: 'o2c.v1.GetPriceRequest',
        customerId: 'c',
        currencyCode: 'USD',
        lines: [line('WIDGET', 3)],
        orderId: 'o',
      },
      ctx,
    );
    expect(formatDecimal(priced.subtotal)).toBe('37.50');
    const tax = await s.calculateTax(
      {
        $typeName: 'o2c.v1.CalculateTaxRequest',
        orderId: 'o',
        customerId: 'c',
        lines: priced.lines,
        currencyCode: 'USD',
      },
      ctx,
    );
    expect(formatDecimal(tax.taxTotal)).toBe('3.75');
  });

  it('allocates what is in stock and backorders the rest, once per order', async () => {
    const s = sim({ stock: { BOLT: 5 } });
    const req = {
      $typeName: 'o2c.v1.AllocateInventoryRequest' as const,
      orderId: 'o-1',
      lines: [line('BOLT', 8)],
    };
    const first = await s.allocateInventory(req, ctx);
    expect(first.lines[0]).toMatchObject({ requested: 8, allocated: 5, backordered: 3 });
    expect(first.fullyAllocated).toBe(false);
    const again = await s.allocateInventory(req, ctx);
    expect(again.allocationId).toBe(first.allocationId);
    expect(s.inventory('BOLT')).toEqual({ onHand: 5, allocated: 5 });
  });

  it('refuses credit beyond the customer limit, counting open sales orders', async () => {
    const s = sim({ customers: { acme: { creditLimit: '1000' } } });
    const order = create(OrderSchema, {
      id: 'o-1',
      customerId: 'acme',
      currencyCode: 'USD',
      total: money('USD', '800'),
    });
    await s.createSalesOrder({ $typeName: 'o2c.v1.CreateSalesOrderRequest', order }, ctx);
    const credit = await s.checkCredit(
      {
        $typeName: 'o2c.v1.CheckCreditRequest',
        customerId: 'acme',
        amount: money('USD', '300'),
        orderId: 'o-2',
      },
      ctx,
    );
    expect(credit.approved).toBe(false);
    expect(formatDecimal(credit.available)).toBe('200.00');
  });

  it('creates one sales order per o2c order id, however often it is asked', async () => {
    const s = sim();
    const order = create(OrderSchema, { id: 'o-9', customerId: 'c' });
    const a = await s.createSalesOrder({ $typeName: 'o2c.v1.CreateSalesOrderRequest', order }, ctx);
    const b = await s.createSalesOrder({ $typeName: 'o2c.v1.CreateSalesOrderRequest', order }, ctx);
    expect(b.existed).toBe(true);
    expect(b.salesOrder?.externalId).toBe(a.salesOrder?.externalId);
    expect(s.salesOrderCount()).toBe(1);
  });

  it('fails the same calls for the same seed', async () => {
    const outcomes = async (seed: number) => {
      const s = sim({ seed, failureRate: 0.5 });
      const r: boolean[] = [];
      for (let i = 0; i < 20; i++) {
        r.push(
          await s
            .validateCustomer(
              { $typeName: 'o2c.v1.ValidateCustomerRequest', customerId: 'c', orderId: '' },
              ctx,
            )
            .then(
              () => true,
              (e: ConnectorFailure) => {
                expect(e.errorClass).toBe(ErrorClass.UNAVAILABLE);
                return false;
              },
            ),
        );
      }
      return r;
    };
    expect(await outcomes(42)).toEqual(await outcomes(42));
    expect((await outcomes(42)).filter((x) => !x).length).toBeGreaterThan(3);
  });

  it('marks a shipment dispatched after dispatchAfterMs and announces it to listeners', async () => {
    const clock = new ManualClock();
    const s = new SimulatorDriver({ dispatchAfterMs: 1000 }, clock);
    const changes: string[] = [];
    s.onChange((c) => changes.push(`${c.kind}:${c.orderId}`));
    await s.releaseFulfillment({ $typeName: 'o2c.v1.ReleaseFulfillmentRequest', orderId: 'o-1' }, ctx);
    const before = await s.getShipment({ $typeName: 'o2c.v1.GetShipmentRequest', orderId: 'o-1' }, ctx);
    expect(before.dispatched).toBe(false);
    await clock.advance(1000);
    const after = await s.getShipment({ $typeName: 'o2c.v1.GetShipmentRequest', orderId: 'o-1' }, ctx);
    expect(after.dispatched).toBe(true);
    expect(changes).toEqual(['shipmentDispatched:o-1']);
  });

  it('pays an invoice through RecordPayment once per idempotency key', async () => {
    const s = sim();
    const order = create(OrderSchema, {
      id: 'o-1',
      customerId: 'c',
      currencyCode: 'USD',
      total: money('USD', '50'),
    });
    await s.createSalesOrder({ $typeName: 'o2c.v1.CreateSalesOrderRequest', order }, ctx);
    await s.postInvoice({ $typeName: 'o2c.v1.PostInvoiceRequest', orderId: 'o-1' }, ctx);
    const pay = {
      $typeName: 'o2c.v1.RecordPaymentRequest' as const,
      orderId: 'o-1',
      amount: money('USD', '50'),
      method: 'card',
    };
    await s.recordPayment(pay, ctx);
    await s.recordPayment(pay, ctx);
    const status = await s.getPaymentStatus(
      { $typeName: 'o2c.v1.GetPaymentStatusRequest', orderId: 'o-1' },
      ctx,
    );
    expect(status.paid).toBe(true);
    expect(status.payments).toHaveLength(1);
  });

  it.each([
    {
      sentence: 'an open sales order counts its whole total against the credit',
      next: 'none',
      available: '200.00',
    },
    {
      sentence: 'a part-paid sales order counts only what is still due',
      next: 'pay 300',
      available: '500.00',
    },
    { sentence: 'a fully paid sales order counts nothing', next: 'pay 800', available: '1000.00' },
    { sentence: 'a cancelled sales order counts nothing', next: 'cancel', available: '1000.00' },
    {
      sentence: 'the order being checked does not count against its own credit',
      next: 'check o-1',
      available: '1000.00',
    },
  ])('$sentence', async ({ next, available }) => {
    const s = sim({ customers: { acme: { creditLimit: '1000' } } });
    const order = create(OrderSchema, {
      id: 'o-1',
      customerId: 'acme',
      currencyCode: 'USD',
      total: money('USD', '800'),
    });
    await s.createSalesOrder({ $typeName: 'o2c.v1.CreateSalesOrderRequest', order }, ctx);
    if (next.startsWith('pay')) {
      await s.postInvoice({ $typeName: 'o2c.v1.PostInvoiceRequest', orderId: 'o-1' }, ctx);
      const amount = money('USD', next.slice(4));
      await s.recordPayment(
        { $typeName: 'o2c.v1.RecordPaymentRequest', orderId: 'o-1', amount, method: 'card' },
        ctx,
      );
    }
    if (next === 'cancel')
      await s.cancelSalesOrder({ $typeName: 'o2c.v1.CancelSalesOrderRequest', orderId: 'o-1' }, ctx);
    const credit = await s.checkCredit(
      {
        $typeName: 'o2c.v1.CheckCreditRequest',
        customerId: 'acme',
        amount: money('USD', '100'),
        orderId: next === 'check o-1' ? 'o-1' : 'o-2',
      },
      ctx,
    );
    expect(formatDecimal(credit.available)).toBe(available);
  });
});
