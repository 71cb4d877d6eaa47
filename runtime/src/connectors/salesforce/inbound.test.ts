import { describe, expect, it } from 'vitest';
import { accountToCustomer, salesforceOrderToOrder } from './inbound.js';

describe('accountToCustomer', () => {
  it('maps an Account to a Customer keyed by the o2c external id, keeping the Salesforce Id as a ref', () => {
    const c = accountToCustomer('crm', {
      Id: '001A',
      O2C_Id__c: 'acme',
      Name: 'ACME',
      BillingStreet: '1 Main St\nSuite 2',
      BillingCity: 'Austin',
      BillingCountry: 'US',
    });
    expect(c.id).toBe('acme');
    expect(c.billingAddress?.lines).toEqual(['1 Main St', 'Suite 2']);
    expect(c.externalRefs[0]).toMatchObject({ system: 'crm', externalId: '001A' });
  });

  it('falls back to the Salesforce Id for an account o2c has not seen', () => {
    expect(accountToCustomer('crm', { Id: '001B', Name: 'New' }).id).toBe('001B');
  });
});

describe('salesforceOrderToOrder', () => {
  it('submits once per Salesforce order: its Id is the idempotency key', () => {
    const o = salesforceOrderToOrder(
      'crm',
      { Id: '801X', CurrencyIsoCode: 'EUR' },
      [{ sku: 'A', quantity: 2 }],
      'acme',
    );
    expect(o.idempotencyKey).toBe('salesforce:801X');
    expect(o.currencyCode).toBe('EUR');
    expect(o.lines[0]).toMatchObject({ sku: 'A', quantity: 2 });
  });
});
