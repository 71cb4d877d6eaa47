import { describe, expect, it } from 'vitest';
import { ErrorClass } from '../gen/o2c/v1/common_pb.js';
import { ConnectorFailure } from './driver.js';
import { checkOwnership } from './ownership.js';

const erpOwns = ['customer', 'item', 'price', 'inventory', 'order', 'shipment', 'invoice', 'payment'];

describe('checkOwnership', () => {
  it.each([
    ['an ERP owning orders may create a sales order', erpOwns, 'CreateSalesOrder'],
    ['a WMS owning inventory may allocate it', ['inventory'], 'AllocateInventory'],
    ['a CRM may mirror order status without owning orders', ['customer'], 'UpdateOrderStatus'],
    ['any connector may read, even one that owns nothing', undefined, 'CheckCredit'],
    ['a tax system may calculate tax', [], 'CalculateTax'],
  ])('%s', (_name, owns, operation) => {
    expect(() => checkOwnership('c', owns, operation)).not.toThrow();
  });

  it.each([
    ['a CRM that owns customers may not create a sales order', ['customer'], 'CreateSalesOrder', 'order'],
    ['a WMS may not post an invoice', ['inventory', 'shipment'], 'PostInvoice', 'invoice'],
    ['a connector without owns may not upsert an item', undefined, 'UpsertItem', 'item'],
    [
      'a payment system owning payments may not release inventory',
      ['payment'],
      'ReleaseInventory',
      'inventory',
    ],
  ])('%s', (_name, owns, operation, entity) => {
    let failure: ConnectorFailure | undefined;
    try {
      checkOwnership('crm', owns, operation);
    } catch (err) {
      failure = err as ConnectorFailure;
    }
    expect(failure).toBeInstanceOf(ConnectorFailure);
    expect(failure?.errorClass).toBe(ErrorClass.OWNERSHIP);
    expect(failure?.retryable).toBe(false);
    expect(failure?.message).toContain(`connector crm refused ${operation}: it writes ${entity}`);
  });
});
