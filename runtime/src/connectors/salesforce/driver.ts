// The salesforce driver (CRM): OAuth 2.0 client credentials or JWT bearer; REST upserts by
// external-id field for Account, Product2, PricebookEntry, Order and OrderItem (the order and its
// lines in one composite request); honours Sforce-Limit-Info and backs off on REQUEST_LIMIT_EXCEEDED.
import { create } from '@bufbuild/protobuf';
import { ErrorClass } from '../../gen/o2c/v1/common_pb.js';
import {
  UpdateOrderStatusResponseSchema,
  UpsertCustomerResponseSchema,
  UpsertItemResponseSchema,
  UpsertPriceResponseSchema,
  ValidateCustomerResponseSchema,
} from '../../gen/o2c/v1/connector_service_pb.js';
import { type Customer, CustomerSchema, OrderState } from '../../gen/o2c/v1/entities_pb.js';
import type { CredentialSource } from '../credentials.js';
import { type CallContext, type ConnectorDriver, ConnectorFailure, type DriverMethod } from '../driver.js';
import type { Governor } from '../governor.js';
import { formatDecimal } from '../money.js';
import { type OAuthGrant, OAuthTokenSource } from '../oauth2.js';
import { parseLimitInfo, salesforceFailure } from './errors.js';

export interface SalesforceConfig {
  /** Default v60.0. */
  apiVersion?: string;
  /** Where tokens come from; default the connector's endpoint (My Domain or login.salesforce.com). */
  loginUrl?: string;
  /** Secret keys: client_credentials → client_id, client_secret; jwt_bearer → client_id, username, private_key. */
  auth?: { flow: 'client_credentials' } | { flow: 'jwt_bearer'; audience?: string };
  /** External-id fields holding o2c's ids. */
  externalIds?: Partial<Record<'account' | 'product' | 'pricebookEntry' | 'order' | 'orderItem', string>>;
  /** Price book for PricebookEntry and Order (the org's standard price book id). */
  pricebookId?: string;
  /** o2c order state name (e.g. BOOKED) → Order.Status picklist value. Lines are written while it is Draft. */
  orderStatus?: Record<string, string>;
  /** Slow down when api-usage reaches this share of the allocation. Default 0.9. */
  limitThreshold?: number;
  /** Pause when near the limit, per response, in ms. Default 1000. */
  nearLimitPauseMs?: number;
  /** Pause after REQUEST_LIMIT_EXCEEDED, in ms (the allocation is a rolling 24 h). Default 300000. */
  limitExceededPauseMs?: number;
}

const DEFAULT_EXTERNAL_IDS = {
  account: 'O2C_Id__c',
  product: 'O2C_SKU__c',
  pricebookEntry: 'O2C_Key__c',
  order: 'O2C_Order_Id__c',
  orderItem: 'O2C_Line_Key__c',
};

const DEFAULT_ORDER_STATUS: Record<string, string> = {
  SUBMITTED: 'Draft',
  IN_PROGRESS: 'Draft',
  ALLOCATED: 'Draft',
  BACKORDERED: 'Draft',
  ON_HOLD: 'Draft',
  BOOKED: 'Activated',
  SHIPPED: 'Activated',
  INVOICED: 'Activated',
  PAID: 'Activated',
  CANCELLED: 'Draft',
  FAILED: 'Draft',
};

interface UpsertResult {
  id: string;
  created: boolean;
}

export class SalesforceDriver implements ConnectorDriver {
  readonly driverName = 'salesforce';
  readonly tokens: OAuthTokenSource;
  /** The last Sforce-Limit-Info seen. */
  apiUsage: { used: number; limit: number } | undefined;
  private readonly ext: typeof DEFAULT_EXTERNAL_IDS;
  private readonly version: string;

  constructor(
    private readonly system: string,
    private readonly endpoint: string,
    private readonly cfg: SalesforceConfig,
    credentials: CredentialSource,
    private readonly governor?: Governor,
  ) {
    const login = (cfg.loginUrl ?? endpoint).replace(/\/$/, '');
    const tokenUrl = `${login}/services/oauth2/token`;
    const grant: OAuthGrant =
      cfg.auth?.flow === 'jwt_bearer'
        ? { type: 'jwt_bearer', tokenUrl, audience: cfg.auth.audience ?? 'https://login.salesforce.com' }
        : { type: 'client_credentials', tokenUrl };
    this.tokens = new OAuthTokenSource(grant, credentials);
    this.ext = { ...DEFAULT_EXTERNAL_IDS, ...cfg.externalIds };
    this.version = cfg.apiVersion ?? 'v60.0';
  }

  validateCustomer: DriverMethod<'validateCustomer'> = async (req, ctx) => {
    const path = `/sobjects/Account/${this.ext.account}/${encodeURIComponent(req.customerId)}`;
    try {
      const rec = (await this.api('GET', path, undefined, ctx, `read Account ${req.customerId}`)) as Record<
        string,
        unknown
      >;
      return create(ValidateCustomerResponseSchema, {
        valid: true,
        customer: create(CustomerSchema, {
          id: req.customerId,
          name: String(rec.Name ?? ''),
          active: true,
          externalRefs: [{ system: this.system, externalId: String(rec.Id) }],
        }),
      });
    } catch (err) {
      if (err instanceof ConnectorFailure && err.errorClass === ErrorClass.NOT_FOUND) {
        return create(ValidateCustomerResponseSchema, {
          valid: false,
          reason: `no Account with ${this.ext.account} = ${req.customerId}`,
        });
      }
      throw err;
    }
  };

  upsertCustomer: DriverMethod<'upsertCustomer'> = async (req, ctx) => {
    const c = req.customer;
    if (!c?.id) throw new ConnectorFailure(ErrorClass.VALIDATION, 'customer.id is required');
    const r = await this.upsert('Account', this.ext.account, c.id, accountFields(c), ctx);
    return create(UpsertCustomerResponseSchema, {
      ref: { system: this.system, externalId: r.id },
      created: r.created,
    });
  };

  upsertItem: DriverMethod<'upsertItem'> = async (req, ctx) => {
    const item = req.item;
    if (!item?.sku) throw new ConnectorFailure(ErrorClass.VALIDATION, 'item.sku is required');
    const product = {
      Name: item.name || item.sku,
      ProductCode: item.sku,
      Description: item.description || undefined,
      IsActive: item.active,
      QuantityUnitOfMeasure: item.uom || undefined,
    };
    if (!item.listPrice || !this.cfg.pricebookId) {
      const r = await this.upsert('Product2', this.ext.product, item.sku, product, ctx);
      return create(UpsertItemResponseSchema, {
        ref: { system: this.system, externalId: r.id },
        created: r.created,
      });
    }
    // Product and its list price in one all-or-none composite request: one API call, no half state.
    const results = await this.composite(
      [
        { referenceId: 'product', url: this.rowUrl('Product2', this.ext.product, item.sku), body: product },
        {
          referenceId: 'listPrice',
          url: this.rowUrl(
            'PricebookEntry',
            this.ext.pricebookEntry,
            priceKey(item.sku, this.cfg.pricebookId, item.listPrice.currencyCode),
          ),
          body: {
            Product2Id: '@{product.id}',
            Pricebook2Id: this.cfg.pricebookId,
            UnitPrice: Number(formatDecimal(item.listPrice, 2)),
            IsActive: true,
          },
        },
      ],
      ctx,
      `upsert Product2 ${item.sku}`,
    );
    const product0 = results[0] as UpsertResult;
    return create(UpsertItemResponseSchema, {
      ref: { system: this.system, externalId: product0.id },
      created: product0.created,
    });
  };

  upsertPrice: DriverMethod<'upsertPrice'> = async (req, ctx) => {
    const p = req.price;
    if (!p?.sku || !p.unitPrice)
      throw new ConnectorFailure(ErrorClass.VALIDATION, 'price.sku and price.unit_price are required');
    const pricebook = p.priceList || this.cfg.pricebookId;
    if (!pricebook)
      throw new ConnectorFailure(
        ErrorClass.VALIDATION,
        'no price list: set price.price_list or options.pricebookId',
      );
    const r = await this.upsert(
      'PricebookEntry',
      this.ext.pricebookEntry,
      priceKey(p.sku, pricebook, p.unitPrice.currencyCode),
      {
        Product2: { [this.ext.product]: p.sku },
        Pricebook2Id: pricebook,
        UnitPrice: Number(formatDecimal(p.unitPrice, 2)),
        IsActive: true,
      },
      ctx,
    );
    return create(UpsertPriceResponseSchema, {
      ref: { system: this.system, externalId: r.id },
      created: r.created,
    });
  };

  updateOrderStatus: DriverMethod<'updateOrderStatus'> = async (req, ctx) => {
    const o = req.order;
    if (!o?.id) throw new ConnectorFailure(ErrorClass.VALIDATION, 'order.id is required');
    const stateName = OrderState[o.state] ?? 'UNSPECIFIED';
    const status = { ...DEFAULT_ORDER_STATUS, ...this.cfg.orderStatus }[stateName] ?? 'Draft';
    // Salesforce refuses products on an activated order: lines are written while it is a draft, and
    // activation is the last subrequest of the same all-or-none composite.
    const active = status !== 'Draft' && (await this.isActive(o.id, ctx));
    const header: Record<string, unknown> = {
      Account: { [this.ext.account]: o.customerId },
      EffectiveDate: new Date(Number(o.createTime?.seconds ?? 0n) * 1000 || Date.now())
        .toISOString()
        .slice(0, 10),
      Status: active ? status : 'Draft',
      PoNumber: o.purchaseOrderNumber || undefined,
      Pricebook2Id: active ? undefined : this.cfg.pricebookId,
      O2C_Status__c: stateName,
      O2C_Tracking_Number__c: req.trackingNumber || undefined,
      O2C_Invoice_Total__c: req.invoiceTotal ? Number(formatDecimal(req.invoiceTotal, 2)) : undefined,
      O2C_Paid__c: req.paid,
    };
    const requests: CompositeSubrequest[] = [
      { referenceId: 'order', url: this.rowUrl('Order', this.ext.order, o.id), body: header },
    ];
    if (!active) {
      o.lines.forEach((line, i) => {
        requests.push({
          referenceId: `line${i + 1}`,
          url: this.rowUrl('OrderItem', this.ext.orderItem, `${o.id}:${i + 1}`),
          body: {
            OrderId: '@{order.id}',
            PricebookEntry: {
              [this.ext.pricebookEntry]: priceKey(line.sku, this.cfg.pricebookId ?? '', o.currencyCode),
            },
            Quantity: line.quantity,
            UnitPrice: Number(formatDecimal(line.unitPrice, 2)),
          },
        });
      });
      if (status !== 'Draft') {
        requests.push({
          referenceId: 'activate',
          url: `${this.base()}/sobjects/Order/@{order.id}`,
          body: { Status: status },
        });
      }
    }
    const results = await this.composite(requests, ctx, `update Order ${o.id}`);
    const orderResult = results[0] as UpsertResult;
    return create(UpdateOrderStatusResponseSchema, {
      ref: { system: this.system, externalId: orderResult.id },
    });
  };

  private async isActive(orderId: string, ctx: CallContext): Promise<boolean> {
    try {
      const rec = (await this.api(
        'GET',
        `/sobjects/Order/${this.ext.order}/${encodeURIComponent(orderId)}`,
        undefined,
        ctx,
        'read Order',
      )) as {
        Status?: string;
      };
      return rec.Status !== undefined && rec.Status !== 'Draft';
    } catch (err) {
      if (err instanceof ConnectorFailure && err.errorClass === ErrorClass.NOT_FOUND) return false;
      throw err;
    }
  }

  /** PATCH /sobjects/{type}/{field}/{value}: 201 created, 200 updated, 300 ambiguous. */
  async upsert(
    type: string,
    field: string,
    value: string,
    body: Record<string, unknown>,
    ctx: CallContext,
  ): Promise<UpsertResult> {
    const res = (await this.api(
      'PATCH',
      this.rowPath(type, field, value),
      stripUndefined(body),
      ctx,
      `upsert ${type} ${value}`,
    )) as {
      id: string;
      created?: boolean;
    };
    return { id: res.id, created: res.created ?? false };
  }

  private async composite(
    requests: CompositeSubrequest[],
    ctx: CallContext,
    what: string,
  ): Promise<unknown[]> {
    const body = {
      allOrNone: true,
      compositeRequest: requests.map((r) => ({
        method: r.method ?? 'PATCH',
        url: r.url,
        referenceId: r.referenceId,
        body: stripUndefined(r.body),
      })),
    };
    const res = (await this.api('POST', '/composite', body, ctx, what)) as {
      compositeResponse: { body: unknown; httpStatusCode: number; referenceId: string }[];
    };
    const failed = res.compositeResponse.filter((r) => r.httpStatusCode >= 300);
    if (failed.length > 0) {
      const errors = failed.flatMap((r) => (Array.isArray(r.body) ? r.body : []));
      const first = failed.find((r) => !JSON.stringify(r.body).includes('PROCESSING_HALTED')) ?? failed[0];
      throw salesforceFailure(`${what} (${first?.referenceId})`, first?.httpStatusCode ?? 400, errors);
    }
    return res.compositeResponse.map((r) => {
      const b = r.body as { id?: string; created?: boolean } | null;
      return { id: b?.id ?? '', created: b?.created ?? r.httpStatusCode === 201 };
    });
  }

  private base(): string {
    return `/services/data/${this.version}`;
  }

  private rowPath(type: string, field: string, value: string): string {
    return `/sobjects/${type}/${field}/${encodeURIComponent(value)}`;
  }

  private rowUrl(type: string, field: string, value: string): string {
    return `${this.base()}${this.rowPath(type, field, value)}`;
  }

  /** One REST call with the current token; a 401 renews the token once. */
  async api(
    method: string,
    path: string,
    body: unknown,
    ctx: CallContext,
    what: string,
    renewed = false,
  ): Promise<unknown> {
    const token = await this.tokens.get(ctx.signal);
    const base = (token.instanceUrl ?? this.endpoint).replace(/\/$/, '');
    const res = await fetch(`${base}${this.base()}${path}`, {
      method,
      headers: {
        Authorization: `Bearer ${token.accessToken}`,
        Accept: 'application/json',
        ...(body === undefined ? {} : { 'Content-Type': 'application/json' }),
      },
      body: body === undefined ? undefined : JSON.stringify(body),
      signal: ctx.signal,
    });
    this.observeLimits(res.headers.get('sforce-limit-info'));
    const text = await res.text();
    let parsed: unknown = null;
    try {
      parsed = text ? JSON.parse(text) : null;
    } catch {
      parsed = text;
    }
    if (res.status === 401 && !renewed) {
      this.tokens.invalidate();
      return this.api(method, path, body, ctx, what, true);
    }
    if (res.status >= 300) {
      const limited =
        Array.isArray(parsed) &&
        (parsed as { errorCode?: string }[]).some((e) => e.errorCode === 'REQUEST_LIMIT_EXCEEDED');
      throw salesforceFailure(
        what,
        res.status,
        parsed,
        limited ? (this.cfg.limitExceededPauseMs ?? 300_000) : undefined,
      );
    }
    return parsed;
  }

  private observeLimits(header: string | null): void {
    const usage = parseLimitInfo(header);
    if (!usage) return;
    this.apiUsage = usage;
    if (usage.limit > 0 && usage.used / usage.limit >= (this.cfg.limitThreshold ?? 0.9)) {
      this.governor?.backOff(this.cfg.nearLimitPauseMs ?? 1000);
    }
  }
}

interface CompositeSubrequest {
  referenceId: string;
  url: string;
  method?: string;
  body: Record<string, unknown>;
}

function accountFields(c: Customer): Record<string, unknown> {
  const a = c.billingAddress;
  return {
    Name: c.name || c.id,
    AccountNumber: c.taxId || undefined,
    BillingStreet: a?.lines.join('\n') || undefined,
    BillingCity: a?.city || undefined,
    BillingState: a?.region || undefined,
    BillingPostalCode: a?.postalCode || undefined,
    BillingCountry: a?.countryCode || undefined,
    O2C_Active__c: c.active,
  };
}

/** The PricebookEntry natural key: one entry per product, price book and currency. */
export function priceKey(sku: string, pricebook: string, currency: string): string {
  return `${sku}:${pricebook}:${currency}`;
}

function stripUndefined(o: Record<string, unknown>): Record<string, unknown> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined));
}
