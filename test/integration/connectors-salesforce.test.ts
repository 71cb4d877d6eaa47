// The salesforce driver against the local Salesforce contract server (test/salesforce): no org is
// reachable here, so these tests hold the driver to Salesforce's documented requests, responses
// and error bodies.
import { generateKeyPairSync } from 'node:crypto';
import { create } from '@bufbuild/protobuf';
import { timestampFromMs } from '@bufbuild/protobuf/wkt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connectorMigrations } from '../../runtime/src/connectors/bindings.js';
import { StaticCredentials } from '../../runtime/src/connectors/credentials.js';
import { type CallContext, ConnectorFailure } from '../../runtime/src/connectors/driver.js';
import { Governor } from '../../runtime/src/connectors/governor.js';
import { money } from '../../runtime/src/connectors/money.js';
import { SalesforceDriver } from '../../runtime/src/connectors/salesforce/driver.js';
import { SalesforceChangePoller } from '../../runtime/src/connectors/salesforce/poller.js';
import { ErrorClass } from '../../runtime/src/gen/o2c/v1/common_pb.js';
import {
  CustomerSchema,
  ItemSchema,
  OrderSchema,
  OrderState,
  PriceSchema,
} from '../../runtime/src/gen/o2c/v1/entities_pb.js';
import { openStore, registerMigrations } from '../../runtime/src/store/index.js';
import { SalesforceContractServer } from '../salesforce/contract-server.js';
import { storeUrlFor } from './support/api.js';

registerMigrations(connectorMigrations);

const { publicKey, privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
const sf = new SalesforceContractServer({
  jwtPublicKey: publicKey.export({ type: 'spki', format: 'pem' }).toString(),
  jwtUsername: 'integration@o2c.example',
});
let url: string;
const creds = new StaticCredentials({ client_id: 'o2c-client', client_secret: 'o2c-secret' });
const ctx = (): CallContext => ({
  signal: AbortSignal.timeout(10_000),
  idempotencyKey: 'k',
  correlationId: 'c',
});

beforeAll(async () => {
  url = await sf.start();
});
afterAll(() => sf.stop());

const aDriver = (
  extra: Partial<ConstructorParameters<typeof SalesforceDriver>[2]> = {},
  governor?: Governor,
  credentials = creds,
) =>
  new SalesforceDriver('crm', url, { pricebookId: sf.standardPricebookId, ...extra }, credentials, governor);

const customer = (id: string, name = `Customer ${id}`) =>
  create(CustomerSchema, {
    id,
    name,
    active: true,
    billingAddress: {
      lines: ['1 Main St'],
      city: 'Austin',
      region: 'TX',
      postalCode: '78701',
      countryCode: 'US',
    },
  });

describe('authentication', () => {
  it('gets a token with client credentials and reuses it', async () => {
    const driver = aDriver();
    const before = sf.tokensIssued;
    await driver.upsertCustomer(
      { $typeName: 'o2c.v1.UpsertCustomerRequest', customer: customer('auth-1') },
      ctx(),
    );
    await driver.upsertCustomer(
      { $typeName: 'o2c.v1.UpsertCustomerRequest', customer: customer('auth-1') },
      ctx(),
    );
    expect(sf.tokensIssued).toBe(before + 1);
  });

  it('refreshes the token once when the session expired (401 INVALID_SESSION_ID) and carries on', async () => {
    const driver = aDriver();
    await driver.upsertCustomer(
      { $typeName: 'o2c.v1.UpsertCustomerRequest', customer: customer('auth-2') },
      ctx(),
    );
    const before = sf.tokensIssued;
    sf.expireSessions();
    const res = await driver.upsertCustomer(
      { $typeName: 'o2c.v1.UpsertCustomerRequest', customer: customer('auth-2') },
      ctx(),
    );
    expect(res.ref?.externalId).toMatch(/^001/);
    expect(sf.tokensIssued).toBe(before + 1);
  });

  it('gets a token with the JWT bearer flow', async () => {
    const driver = aDriver(
      { auth: { flow: 'jwt_bearer', audience: 'https://login.salesforce.com' } },
      undefined,
      new StaticCredentials({
        client_id: 'connected-app-key',
        username: 'integration@o2c.example',
        private_key: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
      }),
    );
    const res = await driver.upsertCustomer(
      { $typeName: 'o2c.v1.UpsertCustomerRequest', customer: customer('jwt-1') },
      ctx(),
    );
    expect(res.created).toBe(true);
  });

  it('reports refused client credentials as AUTH with invalid_client', async () => {
    const driver = aDriver(
      {},
      undefined,
      new StaticCredentials({ client_id: 'o2c-client', client_secret: 'wrong' }),
    );
    const err = (await driver
      .upsertCustomer({ $typeName: 'o2c.v1.UpsertCustomerRequest', customer: customer('x') }, ctx())
      .catch((e: unknown) => e)) as ConnectorFailure;
    expect(err.errorClass).toBe(ErrorClass.AUTH);
    expect(err.code).toBe('invalid_client');
    expect(err.retryable).toBe(false);
  });
});

describe('upsert by external id', () => {
  it('creates an Account once and updates it the second time', async () => {
    const driver = aDriver();
    const first = await driver.upsertCustomer(
      { $typeName: 'o2c.v1.UpsertCustomerRequest', customer: customer('acme', 'ACME') },
      ctx(),
    );
    const second = await driver.upsertCustomer(
      { $typeName: 'o2c.v1.UpsertCustomerRequest', customer: customer('acme', 'ACME Corp') },
      ctx(),
    );
    expect(first.created).toBe(true);
    expect(second.created).toBe(false);
    expect(second.ref?.externalId).toBe(first.ref?.externalId);
    const accounts = sf.all('Account').filter((a) => a.O2C_Id__c === 'acme');
    expect(accounts).toHaveLength(1);
    expect(accounts[0]?.Name).toBe('ACME Corp');
  });

  it('writes a Product2 and its standard PricebookEntry in one composite request', async () => {
    const driver = aDriver();
    const calls = sf.requests.length;
    const item = create(ItemSchema, {
      sku: 'WIDGET',
      name: 'Widget',
      active: true,
      listPrice: money('USD', '12.50'),
    });
    await driver.upsertItem({ $typeName: 'o2c.v1.UpsertItemRequest', item }, ctx());
    await driver.upsertItem({ $typeName: 'o2c.v1.UpsertItemRequest', item }, ctx());
    expect(
      sf.requests
        .slice(calls)
        .map((r) => r.path)
        .filter((p) => p.startsWith('/services/data')),
    ).toEqual(['/services/data/v60.0/composite', '/services/data/v60.0/composite']);
    expect(sf.all('Product2').filter((p) => p.O2C_SKU__c === 'WIDGET')).toHaveLength(1);
    const entries = sf
      .all('PricebookEntry')
      .filter((e) => e.O2C_Key__c === `WIDGET:${sf.standardPricebookId}:USD`);
    expect(entries).toHaveLength(1);
    expect(entries[0]?.UnitPrice).toBe(12.5);
  });

  it('upserts a price by its product, price book and currency key', async () => {
    const driver = aDriver();
    const price = create(PriceSchema, { sku: 'WIDGET', unitPrice: money('USD', '11.99') });
    const res = await driver.upsertPrice({ $typeName: 'o2c.v1.UpsertPriceRequest', price }, ctx());
    expect(res.created).toBe(false);
    expect(
      sf.all('PricebookEntry').find((e) => e.O2C_Key__c === `WIDGET:${sf.standardPricebookId}:USD`)
        ?.UnitPrice,
    ).toBe(11.99);
  });

  it('mirrors an order with its lines, then activates it without touching the lines', async () => {
    const driver = aDriver();
    const order = create(OrderSchema, {
      id: 'ord-1',
      customerId: 'acme',
      currencyCode: 'USD',
      state: OrderState.SUBMITTED,
      createTime: timestampFromMs(Date.parse('2026-03-01T10:00:00Z')),
      lines: [{ sku: 'WIDGET', quantity: 3, unitPrice: money('USD', '11.99') }],
    });
    await driver.updateOrderStatus(
      { $typeName: 'o2c.v1.UpdateOrderStatusRequest', order, trackingNumber: '', paid: false },
      ctx(),
    );
    order.state = OrderState.SHIPPED;
    await driver.updateOrderStatus(
      { $typeName: 'o2c.v1.UpdateOrderStatusRequest', order, trackingNumber: '1Z999', paid: false },
      ctx(),
    );
    order.state = OrderState.PAID;
    await driver.updateOrderStatus(
      { $typeName: 'o2c.v1.UpdateOrderStatusRequest', order, trackingNumber: '1Z999', paid: true },
      ctx(),
    );
    const orders = sf.all('Order').filter((o) => o.O2C_Order_Id__c === 'ord-1');
    expect(orders).toHaveLength(1);
    expect(orders[0]).toMatchObject({
      Status: 'Activated',
      O2C_Status__c: 'PAID',
      O2C_Tracking_Number__c: '1Z999',
      O2C_Paid__c: true,
      EffectiveDate: '2026-03-01',
    });
    expect(sf.all('OrderItem').filter((i) => i.O2C_Line_Key__c === 'ord-1:1')).toHaveLength(1);
  });

  it('rolls the whole composite back when a line refers to an unknown price book entry', async () => {
    const driver = aDriver();
    const order = create(OrderSchema, {
      id: 'ord-2',
      customerId: 'acme',
      currencyCode: 'USD',
      state: OrderState.SUBMITTED,
      lines: [{ sku: 'NO-SUCH-SKU', quantity: 1, unitPrice: money('USD', '1') }],
    });
    const err = (await driver
      .updateOrderStatus(
        { $typeName: 'o2c.v1.UpdateOrderStatusRequest', order, trackingNumber: '', paid: false },
        ctx(),
      )
      .catch((e: unknown) => e)) as ConnectorFailure;
    expect(err.errorClass).toBe(ErrorClass.VALIDATION);
    expect(err.code).toBe('INVALID_FIELD');
    expect(sf.all('Order').filter((o) => o.O2C_Order_Id__c === 'ord-2')).toHaveLength(0);
  });
});

describe('documented error bodies', () => {
  it.each([
    [400, 'REQUIRED_FIELD_MISSING', 'Required fields are missing: [Name]', ErrorClass.VALIDATION, false],
    [400, 'FIELD_CUSTOM_VALIDATION_EXCEPTION', 'Billing country must be set', ErrorClass.VALIDATION, false],
    [400, 'MALFORMED_ID', 'Invalid id: 001xyz', ErrorClass.VALIDATION, false],
    [
      400,
      'UNABLE_TO_LOCK_ROW',
      'unable to obtain exclusive access to this record',
      ErrorClass.CONFLICT,
      true,
    ],
    [
      400,
      'DUPLICATE_VALUE',
      'duplicate value found: O2C_Id__c duplicates value on record with id: 001...',
      ErrorClass.CONFLICT,
      true,
    ],
    [404, 'NOT_FOUND', 'The requested resource does not exist', ErrorClass.NOT_FOUND, false],
    [
      403,
      'INSUFFICIENT_ACCESS_OR_READONLY',
      'insufficient access rights on object id',
      ErrorClass.AUTH,
      false,
    ],
    [503, 'SERVER_UNAVAILABLE', 'Server temporarily unavailable', ErrorClass.UNAVAILABLE, true],
  ])('HTTP %i %s becomes its error class', async (status, errorCode, message, errorClass, retryable) => {
    const driver = aDriver();
    sf.failNext(status, errorCode, message);
    const err = (await driver
      .upsertCustomer({ $typeName: 'o2c.v1.UpsertCustomerRequest', customer: customer('err') }, ctx())
      .catch((e: unknown) => e)) as ConnectorFailure;
    expect(err).toBeInstanceOf(ConnectorFailure);
    expect(err.errorClass).toBe(errorClass);
    expect(err.retryable).toBe(retryable);
    expect(err.code).toBe(errorCode);
    expect(err.message).toContain(message);
  });

  it('reports an upsert on a field that is no external id as NOT_FOUND, as Salesforce answers it', async () => {
    const driver = aDriver({ externalIds: { account: 'Not_A_Field' } });
    const err = (await driver
      .upsertCustomer({ $typeName: 'o2c.v1.UpsertCustomerRequest', customer: customer('e2') }, ctx())
      .catch((e: unknown) => e)) as ConnectorFailure;
    expect(err.errorClass).toBe(ErrorClass.NOT_FOUND);
  });

  it('answers ValidateCustomer for an unknown account with valid = false instead of an error', async () => {
    const res = await aDriver().validateCustomer(
      { $typeName: 'o2c.v1.ValidateCustomerRequest', customerId: 'nobody', orderId: '' },
      ctx(),
    );
    expect(res.valid).toBe(false);
  });
});

describe('API limits', () => {
  it('reads Sforce-Limit-Info and slows down near the allocation', async () => {
    const governor = new Governor({ requestsPerSecond: 100, maxConcurrency: 1 });
    const driver = aDriver({ limitThreshold: 0.5, nearLimitPauseMs: 300 }, governor);
    sf.apiUsed = 0;
    sf.apiLimit = 4;
    try {
      const t0 = Date.now();
      for (let i = 0; i < 3; i++) {
        await governor.run((signal) =>
          driver.upsertCustomer(
            { $typeName: 'o2c.v1.UpsertCustomerRequest', customer: customer('lim') },
            { ...ctx(), signal },
          ),
        );
      }
      expect(driver.apiUsage).toEqual({ used: 3, limit: 4 });
      // The second answer reported 2/4 (the 50 % threshold): the third call waited for the pause.
      expect(Date.now() - t0).toBeGreaterThanOrEqual(280);
    } finally {
      sf.apiLimit = 15_000;
    }
  });

  it('backs off on REQUEST_LIMIT_EXCEEDED: a retryable RATE_LIMITED and no call until the pause is over', async () => {
    const governor = new Governor({ requestsPerSecond: 100, maxConcurrency: 1 });
    const driver = aDriver({ limitExceededPauseMs: 800 }, governor);
    sf.apiUsed = 10;
    sf.apiLimit = 10;
    try {
      const err = (await governor
        .run((signal) =>
          driver.upsertCustomer(
            { $typeName: 'o2c.v1.UpsertCustomerRequest', customer: customer('lim') },
            { ...ctx(), signal },
          ),
        )
        .catch((e: unknown) => e)) as ConnectorFailure;
      expect(err.errorClass).toBe(ErrorClass.RATE_LIMITED);
      expect(err.code).toBe('REQUEST_LIMIT_EXCEEDED');
      expect(err.retryable).toBe(true);
      sf.apiLimit = 15_000;
      const before = sf.requests.length;
      const t0 = Date.now();
      await governor.run((signal) =>
        driver.upsertCustomer(
          { $typeName: 'o2c.v1.UpsertCustomerRequest', customer: customer('lim') },
          { ...ctx(), signal },
        ),
      );
      expect(Date.now() - t0).toBeGreaterThanOrEqual(700);
      expect(sf.requests.length).toBe(before + 1);
    } finally {
      sf.apiLimit = 15_000;
    }
  });
});

describe('SystemModstamp poller', () => {
  it('hands on changed accounts once, oldest first, and resumes from the stored watermark', async () => {
    const store = await openStore(await storeUrlFor('sqlite', 'o2c_it_connectors_salesforce'));
    try {
      const seen: string[] = [];
      const poller = new SalesforceChangePoller(aDriver(), store, {
        system: 'crm',
        sobject: 'Account',
        fields: ['Name', 'O2C_Id__c'],
        batchSize: 100,
        onRecords: async (records) => void seen.push(...records.map((r) => String(r.O2C_Id__c))),
      });
      const first = await poller.pollOnce();
      expect(first).toBeGreaterThan(0);
      expect(await poller.pollOnce()).toBe(0);
      const acme = sf.all('Account').find((a) => a.O2C_Id__c === 'acme');
      sf.touch('Account', acme?.Id ?? '', { Name: 'ACME (edited in Salesforce)' });
      seen.length = 0;
      expect(await poller.pollOnce()).toBe(1);
      expect(seen).toEqual(['acme']);
    } finally {
      await store.close();
    }
  });
});

describe('inbound webhook', () => {
  it('turns a signed Account change from the relay into a Customer and refuses an unsigned one', async () => {
    const { startSalesforceWebhook } = await import('../../runtime/src/connectors/salesforce/inbound.js');
    const { signPayload } = await import('../../runtime/src/connectors/http/webhook.js');
    const customers: string[] = [];
    const hook = await startSalesforceWebhook({
      system: 'crm',
      port: 0,
      host: '127.0.0.1',
      secret: () => 'relay-secret',
      onCustomer: async (c) => void customers.push(`${c.id}:${c.name}`),
    });
    try {
      const body = JSON.stringify({
        sobject: 'Account',
        record: { Id: '001Z', O2C_Id__c: 'acme', Name: 'ACME Renamed' },
      });
      const post = (signature: string) =>
        fetch(`http://127.0.0.1:${hook.port}/salesforce`, {
          method: 'POST',
          headers: { 'X-Signature-256': signature },
          body,
        });
      expect((await post(signPayload('relay-secret', body))).status).toBe(202);
      expect((await post('sha256=00')).status).toBe(401);
      expect(customers).toEqual(['acme:ACME Renamed']);
    } finally {
      await hook.close();
    }
  });
});
