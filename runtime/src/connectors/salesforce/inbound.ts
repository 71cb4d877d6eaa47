// Inbound from Salesforce: account changes and orders entered in the CRM, received from a webhook
// (a Platform Event / Change Data Capture relay posting JSON, signed with HMAC-SHA256) or read by
// the SystemModstamp poller, turned into canonical Customer and Order messages.
import { create } from '@bufbuild/protobuf';
import {
  type Customer,
  CustomerSchema,
  type Order,
  OrderSchema,
  OrderState,
} from '../../gen/o2c/v1/entities_pb.js';
import { startWebhookReceiver, type WebhookReceiver } from '../http/webhook.js';

export interface SalesforceRecordIds {
  account?: string;
  order?: string;
}

/** An Account record (REST/SOQL field names) as a canonical Customer. */
export function accountToCustomer(
  system: string,
  rec: Record<string, unknown>,
  ext: SalesforceRecordIds = {},
): Customer {
  const field = ext.account ?? 'O2C_Id__c';
  const str = (k: string) => (typeof rec[k] === 'string' ? (rec[k] as string) : '');
  return create(CustomerSchema, {
    id: str(field) || str('Id'),
    name: str('Name'),
    taxId: str('AccountNumber'),
    active: rec.O2C_Active__c !== false,
    billingAddress: {
      lines: str('BillingStreet') ? str('BillingStreet').split('\n') : [],
      city: str('BillingCity'),
      region: str('BillingState'),
      postalCode: str('BillingPostalCode'),
      countryCode: str('BillingCountry').length === 2 ? str('BillingCountry') : '',
    },
    externalRefs: [{ system, externalId: str('Id') }],
  });
}

/** An Order entered in Salesforce, with its OrderItems (SKU in Product2.ProductCode), as a submitted o2c Order. */
export function salesforceOrderToOrder(
  system: string,
  rec: Record<string, unknown>,
  items: { sku: string; quantity: number }[],
  customerId: string,
): Order {
  return create(OrderSchema, {
    customerId,
    currencyCode: typeof rec.CurrencyIsoCode === 'string' ? rec.CurrencyIsoCode : 'USD',
    purchaseOrderNumber: typeof rec.PoNumber === 'string' ? rec.PoNumber : '',
    channel: 'salesforce',
    state: OrderState.SUBMITTED,
    // The Salesforce Order id is the idempotency key: a relayed event delivered twice submits once.
    idempotencyKey: `salesforce:${String(rec.Id ?? '')}`,
    lines: items.map((i) => ({ sku: i.sku, quantity: i.quantity })),
    externalRefs: [{ system, externalId: String(rec.Id ?? '') }],
  });
}

export interface SalesforceWebhookOptions {
  system: string;
  port: number;
  host?: string;
  secret: () => string;
  ext?: SalesforceRecordIds;
  onCustomer: (customer: Customer) => Promise<void>;
  /** Orders need their lines: the relay posts them as `items: [{sku, quantity}]` and `customerId`. */
  onOrder?: (order: Order) => Promise<void>;
}

/**
 * The relay posts `{sobject: "Account" | "Order", record: {...}, items?: [...], customerId?: "..."}`
 * with `X-Signature-256: sha256=<hex HMAC of the body>`.
 */
export function startSalesforceWebhook(opts: SalesforceWebhookOptions): Promise<WebhookReceiver> {
  return startWebhookReceiver({
    port: opts.port,
    host: opts.host,
    path: '/salesforce',
    secret: opts.secret,
    onEvent: async (body) => {
      const event = body as {
        sobject?: string;
        record?: Record<string, unknown>;
        items?: { sku: string; quantity: number }[];
        customerId?: string;
      };
      if (!event.record) throw new Error('relay body has no record');
      if (event.sobject === 'Account')
        await opts.onCustomer(accountToCustomer(opts.system, event.record, opts.ext));
      else if (event.sobject === 'Order' && opts.onOrder) {
        await opts.onOrder(
          salesforceOrderToOrder(opts.system, event.record, event.items ?? [], event.customerId ?? ''),
        );
      }
    },
  });
}
