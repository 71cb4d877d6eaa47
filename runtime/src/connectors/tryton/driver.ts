// The `tryton` connector driver: the o2c.v1.ConnectorService contract on top of the Tryton JSON-RPC
// client and ERP operations. Money crosses as o2c.v1.Money (integer units + nanos) and as decimal
// strings towards Tryton, never as floats. Tryton's typed errors become ConnectorFailures whose
// ErrorClass decides retry or fallout. Work done inside Tryton (shipment done, invoice posted or
// paid) comes out of the change feed as ShipmentDispatched / InvoicePosted / PaymentReceived.
import { AsyncLocalStorage } from 'node:async_hooks';
import { create } from '@bufbuild/protobuf';
import { type Timestamp, timestampFromMs } from '@bufbuild/protobuf/wkt';
import {
  AddressSchema,
  ErrorClass,
  type ExternalRef,
  ExternalRefSchema,
  type Money,
} from '../../gen/o2c/v1/common_pb.js';
import {
  AllocateInventoryResponseSchema,
  CancelSalesOrderResponseSchema,
  CheckAvailabilityResponseSchema,
  CheckCreditResponseSchema,
  CreateSalesOrderResponseSchema,
  GetPaymentStatusResponseSchema,
  GetPriceResponseSchema,
  GetShipmentResponseSchema,
  PostInvoiceResponseSchema,
  RecordPaymentResponseSchema,
  ReleaseFulfillmentResponseSchema,
  UpsertCustomerResponseSchema,
  UpsertItemResponseSchema,
  ValidateCustomerResponseSchema,
} from '../../gen/o2c/v1/connector_service_pb.js';
import {
  CustomerSchema,
  InventoryBalanceSchema,
  type Invoice,
  InvoiceSchema,
  OrderLineSchema,
  type Payment,
  PaymentSchema,
  type Shipment,
  ShipmentSchema,
} from '../../gen/o2c/v1/entities_pb.js';
import type { Envelope } from '../../gen/o2c/v1/events_pb.js';
import type { Store } from '../../store/types.js';
import { completeBinding, readWatermark, reserveBinding, writeWatermark } from '../bindings.js';
import { type Clock, systemClock } from '../clock.js';
import { type ConnectorRuntimeConfig, parseDurationMs } from '../config.js';
import type { CredentialSource } from '../credentials.js';
import {
  type CallContext,
  type ConnectorDriver,
  ConnectorFailure,
  type DriverMethod,
  toConnectorFailure,
} from '../driver.js';
import { formatDecimal, fromNanos, money, parseDecimalNanos, toNanos } from '../money.js';
import type { OriginateEvents } from '../origination.js';
import { type CallOptions, TrytonClient, type TrytonClientOptions } from './client.js';
import { isTrytonError, type TrytonErrorKind } from './errors.js';
import * as ops from './operations.js';
import { memoryWatermarkStore, pollChanges } from './poller.js';
import type {
  ChangeRecord,
  Invoice as TrytonInvoice,
  PaymentStatus as TrytonPaymentStatus,
  SalesOrder as TrytonSale,
  Shipment as TrytonShipment,
  WatermarkStore,
} from './types.js';

/** `spec.options` of a Connector with `driver: tryton`. */
export interface TrytonDriverOptions {
  /** Tryton warnings to accept instead of failing CreateSalesOrder with CREDIT / STOCK. */
  acceptWarnings?: ('stock' | 'credit')[];
  /** ReleaseFulfillment ships what is reserved and lets Tryton backorder the rest (default false: STOCK). */
  shipPartial?: boolean;
  /** PostInvoice fails with VALIDATION when the invoice total differs from expected_total (default false). */
  strictInvoiceTotal?: boolean;
  /** Database name when `endpoint` is the server root; the credentials' `database` key wins. */
  database?: string;
  language?: string;
  /** Change feed poll interval, e.g. "5s" (default 5s). */
  pollInterval?: string;
  /** Change feed overlap window, e.g. "60s" (default 60s). */
  pollOverlap?: string;
  /** Where the change feed starts without a stored watermark (ISO UTC); default: when it starts. */
  changesSince?: string;
  /** Per HTTP exchange timeout, e.g. "30s" (the governor's call timeout bounds the whole operation). */
  httpTimeout?: string;
}

/** Measured per driver operation: wall time and the part spent inside HTTP exchanges with Tryton. */
export interface OperationStats {
  operation: string;
  idempotencyKey: string;
  correlationId: string;
  ms: number;
  /** Time at least one HTTP exchange with Tryton was in flight (fetch + body parse, as the client measures it). */
  httpMs: number;
  httpCalls: number;
  error?: ConnectorFailure;
}

/** A change from Tryton as an event the connector role publishes (runtime.publishEvent). */
export interface TrytonChangeEvent {
  /** Event type and routing key, e.g. o2c.v1.ShipmentDispatched. */
  type: 'o2c.v1.ShipmentDispatched' | 'o2c.v1.InvoicePosted' | 'o2c.v1.PaymentReceived';
  payload: Envelope['payload'];
  /** The o2c order id. */
  subject: string;
  /** Stable per fact and order (`tryton:<kind>:<id>:<order>`): consumers deduplicate on it. */
  idempotencyKey: string;
}

export interface ChangeFeedOptions {
  intervalMs?: number;
  /** Called when a poll round fails (it is retried on the next tick). */
  onError?: (err: unknown) => void;
  /** Called after each round with the number of events it originated (0 without the lease). */
  onRound?: (events: number) => void;
}

export interface TrytonDriverInit {
  config: ConnectorRuntimeConfig;
  credentials: CredentialSource;
  clock?: Clock;
  store?: Store;
  /** Tests: how to build the client (default: a TrytonClient). */
  clientFactory?: (opts: TrytonClientOptions) => TrytonClient;
  /** Every HTTP exchange with Tryton: method, ms (measured around fetch + parse). */
  onHttp?: (method: string, ms: number) => void;
  onOperation?: (stats: OperationStats) => void;
}

interface CallScope {
  signal?: AbortSignal;
  /** HTTP exchanges as [start, end] (performance.now()); overlapping ones count once. */
  http: [number, number][];
}

/** Length of the union of intervals: the time at least one HTTP exchange was in flight. */
export function busyMs(intervals: readonly [number, number][]): number {
  const sorted = [...intervals].sort((a, b) => a[0] - b[0]);
  let total = 0;
  let start = Number.NEGATIVE_INFINITY;
  let end = Number.NEGATIVE_INFINITY;
  for (const [s, e] of sorted) {
    if (s > end) {
      if (end > start) total += end - start;
      start = s;
      end = e;
    } else if (e > end) {
      end = e;
    }
  }
  if (end > start) total += end - start;
  return total;
}

const scopes = new AsyncLocalStorage<CallScope>();

/** A TrytonClient that passes the running operation's abort signal to every HTTP exchange. */
class ScopedTrytonClient extends TrytonClient {
  override call<T = unknown>(method: string, params: unknown[], opts: CallOptions = {}): Promise<T> {
    const signal = scopes.getStore()?.signal;
    return super.call<T>(method, params, signal && !opts.signal ? { ...opts, signal } : opts);
  }
}

const CLASS_BY_KIND: Record<TrytonErrorKind, ErrorClass> = {
  validation: ErrorClass.VALIDATION,
  credit: ErrorClass.CREDIT,
  stock: ErrorClass.STOCK,
  not_found: ErrorClass.NOT_FOUND,
  conflict: ErrorClass.CONFLICT,
  auth: ErrorClass.AUTH,
  rate_limited: ErrorClass.RATE_LIMITED,
  unavailable: ErrorClass.UNAVAILABLE,
  timeout: ErrorClass.TIMEOUT,
  unknown: ErrorClass.UNKNOWN,
};

/** Classifies what a Tryton operation threw. */
export function trytonFailure(err: unknown): ConnectorFailure {
  if (err instanceof ConnectorFailure) return err;
  if (isTrytonError(err)) {
    const code =
      err.warningName ||
      (err.httpStatus ? `HTTP_${err.httpStatus}` : '') ||
      err.trytonType ||
      err.kind.toUpperCase();
    return new ConnectorFailure(CLASS_BY_KIND[err.kind], err.message, {
      code,
      retryable: err.retryable,
      cause: err,
    });
  }
  return toConnectorFailure(err);
}

const fail = (errorClass: ErrorClass, message: string, code?: string): never => {
  throw new ConnectorFailure(errorClass, message, { code });
};

/** The JSON-RPC database URL from the endpoint and an optional database name. */
export function databaseUrl(endpoint: string, database?: string): string {
  const base = endpoint.endsWith('/') ? endpoint : `${endpoint}/`;
  if (!database) return base;
  const last = new URL(base).pathname.split('/').filter(Boolean).pop();
  return last === database ? base : `${base}${encodeURIComponent(database)}/`;
}

export function parseOptions(raw: Record<string, unknown> | undefined): TrytonDriverOptions {
  const o = (raw ?? {}) as TrytonDriverOptions;
  const accept = o.acceptWarnings ?? [];
  if (!Array.isArray(accept) || accept.some((w) => w !== 'stock' && w !== 'credit')) {
    throw new Error(
      `tryton options.acceptWarnings must list 'stock' and/or 'credit', got ${JSON.stringify(accept)}`,
    );
  }
  return { ...o, acceptWarnings: accept };
}

const dateMs = (d: string | null | undefined): Timestamp | undefined =>
  d ? timestampFromMs(Date.parse(d.length === 10 ? `${d}T00:00:00Z` : d)) : undefined;

/** A decimal string that must not carry more precision than `digits` (money to Tryton). */
function decimalOf(m: Money | undefined, what: string, digits = 2): string {
  if (!m) return fail(ErrorClass.VALIDATION, `${what} is required`, 'MISSING_AMOUNT');
  const s = formatDecimal(m, digits);
  if (parseDecimalNanos(s) !== toNanos(m)) {
    fail(ErrorClass.VALIDATION, `${what} has more than ${digits} fraction digits`, 'AMOUNT_PRECISION');
  }
  return s;
}

export class TrytonDriver implements ConnectorDriver {
  readonly driverName = 'tryton';
  readonly system: string;
  readonly options: TrytonDriverOptions;
  private readonly config: ConnectorRuntimeConfig;
  private readonly credentials: CredentialSource;
  private readonly clock: Clock;
  private readonly store: Store | undefined;
  private readonly clientFactory: (opts: TrytonClientOptions) => TrytonClient;
  private current?: { version: number; client: TrytonClient };
  /** The change feed's watermark without a store (tests): lost with the process. */
  private readonly memoryWatermarks = memoryWatermarkStore();
  private feed?: { stop: () => Promise<void> };
  private closed = false;
  onHttp?: (method: string, ms: number) => void;
  onOperation?: (stats: OperationStats) => void;

  constructor(init: TrytonDriverInit) {
    this.config = init.config;
    this.system = init.config.name;
    this.credentials = init.credentials;
    this.clock = init.clock ?? systemClock;
    this.store = init.store;
    this.options = parseOptions(init.config.options);
    this.clientFactory = init.clientFactory ?? ((o) => new ScopedTrytonClient(o));
    this.onHttp = init.onHttp;
    this.onOperation = init.onOperation;
    if (!init.config.endpoint)
      throw new Error(`connector ${init.config.name}: driver tryton needs spec.endpoint`);
  }

  /** The client for the current credentials; a new one (new login) when the Secret changed. */
  client(): TrytonClient {
    const version = this.credentials.version;
    if (this.current?.version === version) return this.current.client;
    const creds = this.credentials.get();
    const username = creds.username ?? creds.login;
    const password = creds.password;
    if (!username || !password) {
      fail(
        ErrorClass.AUTH,
        `connector ${this.system}: credentials need 'username' and 'password'`,
        'NO_CREDENTIALS',
      );
    }
    const client = this.clientFactory({
      url: databaseUrl(this.config.endpoint ?? '', creds.database ?? this.options.database),
      username: username as string,
      password: password as string,
      language: this.options.language,
      timeoutMs: this.options.httpTimeout ? parseDurationMs(this.options.httpTimeout, 30_000) : undefined,
      onCall: (method, ms) => {
        const scope = scopes.getStore();
        if (scope) {
          const end = performance.now();
          scope.http.push([end - ms, end]);
        }
        this.onHttp?.(method, ms);
      },
    });
    this.current = { version, client };
    return client;
  }

  /** Runs one operation: signal and HTTP timing in scope, errors classified, stats reported. */
  private async run<T>(operation: string, ctx: CallContext, fn: (c: TrytonClient) => Promise<T>): Promise<T> {
    const scope: CallScope = { signal: ctx.signal, http: [] };
    const started = performance.now();
    let error: ConnectorFailure | undefined;
    try {
      return await scopes.run(scope, () => fn(this.client()));
    } catch (err) {
      error = trytonFailure(err);
      throw error;
    } finally {
      this.onOperation?.({
        operation,
        idempotencyKey: ctx.idempotencyKey,
        correlationId: ctx.correlationId,
        ms: performance.now() - started,
        httpMs: busyMs(scope.http),
        httpCalls: scope.http.length,
        error,
      });
    }
  }

  private ref(externalId: number | string, displayId?: string | null): ExternalRef {
    return create(ExternalRefSchema, {
      system: this.system,
      externalId: String(externalId),
      displayId: displayId ?? '',
    });
  }

  /**
   * The sale of an order, found by its natural key (reference = o2c order id). A request's ExternalRef
   * must name the same sale; the reference stays the authority, so a stale ref cannot hit another order.
   */
  private async saleOf(c: TrytonClient, orderId: string, ref?: ExternalRef): Promise<TrytonSale> {
    const sale = await ops.getSalesOrder(c, orderId);
    if (!sale) return fail(ErrorClass.NOT_FOUND, `no Tryton sale with reference ${orderId}`, 'NO_SALE');
    if (ref?.externalId && ref.system === this.system && ref.externalId !== String(sale.saleId)) {
      fail(
        ErrorClass.VALIDATION,
        `sales order ${ref.externalId} is not the Tryton sale of order ${orderId} (${sale.saleId})`,
        'SALE_MISMATCH',
      );
    }
    return sale;
  }

  // ---------------------------------------------------------------------------------------------
  // Customer, credit, price, availability.

  validateCustomer: DriverMethod<'validateCustomer'> = (req, ctx) =>
    this.run('ValidateCustomer', ctx, async (c) => {
      const r = await ops.validateCustomer(c, req.customerId);
      if (!r.valid) return create(ValidateCustomerResponseSchema, { valid: false, reason: r.reason });
      const cu = r.customer;
      const addr = cu.addresses[0];
      const address = addr
        ? create(AddressSchema, {
            name: cu.name,
            lines: addr.street ? addr.street.split('\n') : [],
            city: addr.city ?? '',
            postalCode: addr.postalCode ?? '',
          })
        : undefined;
      return create(ValidateCustomerResponseSchema, {
        valid: true,
        customer: create(CustomerSchema, {
          id: req.customerId,
          name: cu.name,
          active: cu.active,
          billingAddress: address,
          shippingAddress: address,
          creditLimit: cu.creditLimit === null ? undefined : money(cu.currency, cu.creditLimit),
          externalRefs: [this.ref(cu.id, cu.code)],
        }),
      });
    });

  checkCredit: DriverMethod<'checkCredit'> = (req, ctx) =>
    this.run('CheckCredit', ctx, async (c) => {
      const amount = req.amount ? decimalOf(req.amount, 'amount') : '0.00';
      const r = await ops.checkCredit(c, req.customerId, amount);
      if (req.amount?.currencyCode && req.amount.currencyCode !== r.currency) {
        fail(
          ErrorClass.VALIDATION,
          `credit is kept in ${r.currency}, not ${req.amount.currencyCode}`,
          'CURRENCY',
        );
      }
      return create(CheckCreditResponseSchema, {
        approved: r.approved,
        creditLimit: r.creditLimit === null ? undefined : money(r.currency, r.creditLimit),
        exposure: money(r.currency, r.creditUsed),
        available: r.available === null ? undefined : money(r.currency, r.available),
        reason: r.approved
          ? ''
          : `credit limit ${r.creditLimit} ${r.currency} exceeded: exposure ${r.creditUsed} + order ${r.requested}`,
      });
    });

  getPrice: DriverMethod<'getPrice'> = (req, ctx) =>
    this.run('GetPrice', ctx, async (c) => {
      let subtotal = 0n;
      let currency = req.currencyCode;
      const lines = [];
      for (const l of req.lines) {
        const p = await ops.getPrice(
          c,
          l.sku,
          l.quantity,
          req.customerId ? { customer: req.customerId } : {},
        );
        if (currency && currency !== p.currency) {
          fail(ErrorClass.VALIDATION, `Tryton prices ${l.sku} in ${p.currency}, not ${currency}`, 'CURRENCY');
        }
        currency = p.currency;
        const total = parseDecimalNanos(p.lineAmount);
        subtotal += total;
        lines.push({
          sku: l.sku,
          quantity: l.quantity,
          unitPrice: money(p.currency, p.unitPrice),
          lineTotal: fromNanos(p.currency, total),
        });
      }
      return create(GetPriceResponseSchema, { lines, subtotal: fromNanos(currency || 'USD', subtotal) });
    });

  checkAvailability: DriverMethod<'checkAvailability'> = (req, ctx) =>
    this.run('CheckAvailability', ctx, async (c) => {
      const balances = [];
      let all = true;
      for (const l of req.lines) {
        const a = await ops.checkAvailability(c, l.sku, l.quantity);
        if (!a.available) all = false;
        balances.push(
          create(InventoryBalanceSchema, {
            sku: l.sku,
            location: req.location || 'warehouse',
            onHand: BigInt(Math.round(a.onHand)),
            allocated: BigInt(Math.max(0, Math.round(a.onHand - a.forecast))),
            available: BigInt(Math.round(a.availableToPromise)),
            updatedTime: timestampFromMs(this.clock.now()),
          }),
        );
      }
      return create(CheckAvailabilityResponseSchema, { balances, allAvailable: all });
    });

  // ---------------------------------------------------------------------------------------------
  // Sales orders.

  createSalesOrder: DriverMethod<'createSalesOrder'> = (req, ctx) =>
    this.run('CreateSalesOrder', ctx, async (c) => {
      const order = req.order;
      if (!order?.id)
        return fail(ErrorClass.VALIDATION, 'order.id is required (it becomes the sale reference)');
      if (this.store) await this.binding((tx) => reserveBinding(tx, this.system, 'order', order.id));
      const sale = await ops.createSalesOrder(c, {
        orderId: order.id,
        customer: order.customerId,
        currency: order.currencyCode || undefined,
        description: order.purchaseOrderNumber
          ? `o2c order ${order.id} / PO ${order.purchaseOrderNumber}`
          : undefined,
        lines: order.lines.map((l) => ({
          sku: l.sku,
          quantity: l.quantity,
          unitPrice: l.unitPrice ? decimalOf(l.unitPrice, `unit price of ${l.sku}`, 4) : undefined,
        })),
        acceptWarnings: this.options.acceptWarnings,
      });
      if (this.store) {
        await this.binding((tx) =>
          completeBinding(tx, this.system, 'order', order.id, String(sale.saleId), sale.number ?? undefined),
        );
      }
      return create(CreateSalesOrderResponseSchema, {
        salesOrder: this.ref(sale.saleId, sale.number),
        existed: !sale.created,
        state: sale.state,
      });
    });

  private async binding<T>(
    fn: (tx: Parameters<Parameters<Store['transaction']>[0]>[0]) => Promise<T>,
  ): Promise<T> {
    try {
      return await (this.store as Store).transaction(fn);
    } catch (err) {
      throw new ConnectorFailure(ErrorClass.UNAVAILABLE, `binding store: ${(err as Error).message}`, {
        code: 'STORE',
        cause: err,
      });
    }
  }

  cancelSalesOrder: DriverMethod<'cancelSalesOrder'> = (req, ctx) =>
    this.run('CancelSalesOrder', ctx, async (c) => {
      const ref = req.salesOrder;
      const saleId =
        ref?.externalId && (!ref.system || ref.system === this.system) && /^\d+$/.test(ref.externalId)
          ? Number(ref.externalId)
          : undefined;
      const r = await ops.cancelSalesOrder(c, saleId === undefined ? { orderId: req.orderId } : { saleId });
      if (!r.cancelled && r.reason) {
        fail(
          ErrorClass.VALIDATION,
          `Tryton sale ${r.saleId} cannot be cancelled: ${r.reason}`,
          'NOT_CANCELLABLE',
        );
      }
      return create(CancelSalesOrderResponseSchema, { cancelled: r.cancelled });
    });

  // ---------------------------------------------------------------------------------------------
  // Inventory and shipments.

  allocateInventory: DriverMethod<'allocateInventory'> = (req, ctx) =>
    this.run('AllocateInventory', ctx, async (c) => {
      const sale = await this.saleOf(c, req.orderId, req.salesOrder);
      const r = await ops.allocateInventory(c, sale.saleId);
      return create(AllocateInventoryResponseSchema, {
        allocationId: `sale:${sale.saleId}/shipments:${r.shipmentIds.join(',')}`,
        lines: r.lines.map((l) => ({
          sku: l.sku,
          requested: Math.round(l.requested),
          allocated: Math.round(l.allocated),
          backordered: Math.round(l.backordered),
        })),
        fullyAllocated: r.status === 'allocated',
      });
    });

  private shipmentProto(s: TrytonShipment, orderId: string): Shipment {
    return create(ShipmentSchema, {
      id: s.number ?? String(s.id),
      orderId,
      trackingNumber: s.reference ?? '',
      lines: s.lines
        .filter((l) => l.state !== 'cancelled')
        .map((l) => create(OrderLineSchema, { sku: l.sku, quantity: Math.round(l.quantity) })),
      dispatchTime: s.state === 'done' ? dateMs(s.effectiveDate) : undefined,
      externalRefs: [this.ref(s.id, s.number)],
    });
  }

  releaseFulfillment: DriverMethod<'releaseFulfillment'> = (req, ctx) =>
    this.run('ReleaseFulfillment', ctx, async (c) => {
      const sale = await this.saleOf(c, req.orderId, req.salesOrder);
      if (sale.state !== 'processing' && sale.state !== 'done') {
        fail(
          ErrorClass.VALIDATION,
          `Tryton sale ${sale.number ?? sale.saleId} is ${sale.state}, not processing`,
        );
      }
      const shipments: Shipment[] = [];
      const states = await c.read<{ state: string }>('stock.shipment.out', sale.shipmentIds, ['state']);
      for (const s of states) {
        if (s.state === 'cancelled') continue;
        const done =
          s.state === 'done'
            ? await ops.getShipment(c, s.id)
            : await ops.releaseFulfillment(c, { shipmentId: s.id, shipPartial: this.options.shipPartial });
        shipments.push(this.shipmentProto(done, req.orderId));
      }
      return create(ReleaseFulfillmentResponseSchema, { shipments });
    });

  getShipment: DriverMethod<'getShipment'> = (req, ctx) =>
    this.run('GetShipment', ctx, async (c) => {
      const sale = await this.saleOf(c, req.orderId, req.salesOrder);
      const list: TrytonShipment[] = [];
      for (const id of sale.shipmentIds) list.push(await ops.getShipment(c, id));
      const live = list.filter((s) => s.state !== 'cancelled');
      return create(GetShipmentResponseSchema, {
        shipments: live.map((s) => this.shipmentProto(s, req.orderId)),
        dispatched: live.length > 0 && live.every((s) => s.state === 'done'),
      });
    });

  // ---------------------------------------------------------------------------------------------
  // Invoices and payments.

  private invoiceProto(i: TrytonInvoice, orderId: string): Invoice {
    return create(InvoiceSchema, {
      id: String(i.id),
      orderId,
      number: i.number ?? '',
      total: money(i.currency, i.totalAmount),
      amountDue: money(i.currency, i.amountToPay),
      postTime: i.state === 'posted' || i.state === 'paid' ? dateMs(i.invoiceDate) : undefined,
      externalRefs: [this.ref(i.id, i.number)],
    });
  }

  private async invoiceOf(c: TrytonClient, orderId: string, ref?: ExternalRef): Promise<number> {
    if (ref?.externalId && (!ref.system || ref.system === this.system) && /^\d+$/.test(ref.externalId)) {
      return Number(ref.externalId);
    }
    const sale = await this.saleOf(c, orderId);
    const invoices = await c.read<{ state: string }>('account.invoice', sale.invoiceIds, ['state']);
    const live = invoices.filter((i) => i.state !== 'cancelled');
    const pick = live.find((i) => i.state === 'posted') ?? live[0];
    if (!pick)
      return fail(ErrorClass.NOT_FOUND, `Tryton sale for order ${orderId} has no invoice`, 'NO_INVOICE');
    return pick.id;
  }

  postInvoice: DriverMethod<'postInvoice'> = (req, ctx) =>
    this.run('PostInvoice', ctx, async (c) => {
      const sale = await this.saleOf(c, req.orderId, req.salesOrder);
      const invoices = await c.read<{ state: string }>('account.invoice', sale.invoiceIds, ['state']);
      const live = invoices.filter((i) => i.state !== 'cancelled');
      if (live.length === 0) {
        fail(
          ErrorClass.NOT_FOUND,
          `Tryton sale ${sale.number ?? sale.saleId} has no invoice (yet)`,
          'NO_INVOICE',
        );
      }
      let first: TrytonInvoice | undefined;
      for (const i of live) {
        if (
          this.options.strictInvoiceTotal &&
          req.expectedTotal &&
          i.state !== 'posted' &&
          i.state !== 'paid'
        ) {
          const draft = await ops.getInvoice(c, i.id);
          if (toNanos(money(draft.currency, draft.totalAmount)) !== toNanos(req.expectedTotal)) {
            fail(
              ErrorClass.VALIDATION,
              `invoice total ${draft.totalAmount} ${draft.currency} differs from the order's ${formatDecimal(req.expectedTotal)}`,
              'TOTAL_MISMATCH',
            );
          }
        }
        const posted = await ops.postInvoice(c, i.id);
        first ??= posted;
      }
      return create(PostInvoiceResponseSchema, {
        invoice: this.invoiceProto(first as TrytonInvoice, req.orderId),
      });
    });

  private paymentsOf(st: TrytonPaymentStatus, orderId: string, method = ''): Payment[] {
    return st.payments.map((p) =>
      create(PaymentSchema, {
        id: p.description ?? String(p.moveLineId),
        orderId,
        invoiceId: String(st.invoiceId),
        amount: money(st.currency, p.amount),
        method,
        receiveTime: dateMs(p.date),
        externalRefs: [this.ref(p.moveLineId)],
      }),
    );
  }

  recordPayment: DriverMethod<'recordPayment'> = (req, ctx) =>
    this.run('RecordPayment', ctx, async (c) => {
      const invoiceId = await this.invoiceOf(c, req.orderId, req.invoice);
      const paymentId = ctx.idempotencyKey || `${req.orderId}:payment`;
      const st = await ops.recordPayment(c, {
        invoiceId,
        amount: decimalOf(req.amount, 'amount'),
        currency: req.amount?.currencyCode || undefined,
        paymentMethod: req.method || undefined,
        paymentId,
      });
      const payment = this.paymentsOf(st, req.orderId, req.method).find((p) => p.id === paymentId);
      if (!payment) return fail(ErrorClass.UNKNOWN, `Tryton recorded no payment line for ${paymentId}`);
      return create(RecordPaymentResponseSchema, { payment });
    });

  getPaymentStatus: DriverMethod<'getPaymentStatus'> = (req, ctx) =>
    this.run('GetPaymentStatus', ctx, async (c) => {
      const invoiceId = await this.invoiceOf(c, req.orderId, req.invoice);
      const st = await ops.getPaymentStatus(c, invoiceId);
      return create(GetPaymentStatusResponseSchema, {
        paid: st.status === 'paid',
        amountPaid: money(st.currency, st.paidAmount),
        amountDue: money(st.currency, st.amountToPay),
        payments: this.paymentsOf(st, req.orderId),
      });
    });

  // ---------------------------------------------------------------------------------------------
  // Master data.

  upsertCustomer: DriverMethod<'upsertCustomer'> = (req, ctx) =>
    this.run('UpsertCustomer', ctx, async (c) => {
      const cu = req.customer;
      if (!cu?.id) return fail(ErrorClass.VALIDATION, 'customer.id is required (it becomes the party code)');
      const a = cu.billingAddress ?? cu.shippingAddress;
      const r = await ops.upsertCustomer(c, {
        code: cu.id,
        name: cu.name || cu.id,
        address: a
          ? {
              street: a.lines.join('\n'),
              city: a.city,
              postalCode: a.postalCode,
              country: a.countryCode || undefined,
            }
          : undefined,
        creditLimit: cu.creditLimit ? decimalOf(cu.creditLimit, 'credit limit') : undefined,
      });
      return create(UpsertCustomerResponseSchema, { ref: this.ref(r.id, cu.id), created: r.created });
    });

  upsertItem: DriverMethod<'upsertItem'> = (req, ctx) =>
    this.run('UpsertItem', ctx, async (c) => {
      const it = req.item;
      if (!it?.sku) return fail(ErrorClass.VALIDATION, 'item.sku is required (it becomes the product code)');
      const r = await ops.upsertItem(c, {
        sku: it.sku,
        name: it.name || it.sku,
        listPrice: decimalOf(it.listPrice, `list price of ${it.sku}`, 4),
        // proto3 cannot tell "inactive" from "not set": an upsert never deactivates a product here.
        active: it.active || undefined,
      });
      return create(UpsertItemResponseSchema, { ref: this.ref(r.id, it.sku), created: r.created });
    });

  // ---------------------------------------------------------------------------------------------
  // Change feed.

  /** Turns one poller record into the events it means, one per o2c order. */
  toEvents(r: ChangeRecord): TrytonChangeEvent[] {
    const out: TrytonChangeEvent[] = [];
    for (const orderId of r.orderIds) {
      const idempotencyKey = `${r.key}:${orderId}`;
      if (r.kind === 'shipment_done' && r.shipment) {
        out.push({
          type: 'o2c.v1.ShipmentDispatched',
          subject: orderId,
          idempotencyKey,
          payload: {
            case: 'shipmentDispatched',
            value: {
              $typeName: 'o2c.v1.ShipmentDispatched',
              orderId,
              shipment: this.shipmentProto(r.shipment, orderId),
            },
          },
        });
      } else if (r.kind === 'invoice_posted' && r.invoice) {
        out.push({
          type: 'o2c.v1.InvoicePosted',
          subject: orderId,
          idempotencyKey,
          payload: {
            case: 'invoicePosted',
            value: {
              $typeName: 'o2c.v1.InvoicePosted',
              orderId,
              invoice: this.invoiceProto(r.invoice, orderId),
            },
          },
        });
      } else if (r.kind === 'invoice_paid' && r.invoice) {
        const i = r.invoice;
        out.push({
          type: 'o2c.v1.PaymentReceived',
          subject: orderId,
          idempotencyKey,
          payload: {
            case: 'paymentReceived',
            value: {
              $typeName: 'o2c.v1.PaymentReceived',
              orderId,
              payment: create(PaymentSchema, {
                id: r.key,
                orderId,
                invoiceId: String(i.id),
                amount: money(i.currency, i.totalAmount),
                receiveTime: dateMs(r.at),
                externalRefs: [this.ref(i.id, i.number)],
              }),
            },
          },
        });
      }
    }
    return out;
  }

  /** The change feed's lease and watermark name: one replica of this Connector polls at a time. */
  private get feedName(): string {
    return `o2c.change-feed.${this.config.namespace ?? 'default'}.${this.config.name}`;
  }

  /**
   * One poll round: every new change becomes events, handed to `originate` with the watermark
   * advance, which commits both in one transaction (with a store); a round that fails moves nothing
   * and is repeated. With a store, the round runs only while holding the feed's lease.
   */
  async pollOnce(originate: OriginateEvents, initialSince?: string): Promise<number> {
    const store = this.store;
    const lease = store ? await store.tryAcquireLease(this.feedName) : undefined;
    if (store && !lease) return 0;
    try {
      const events: TrytonChangeEvent[] = [];
      const watermarks: WatermarkStore = store
        ? {
            load: () => store.transaction((tx) => readWatermark(tx, this.system, 'tryton-changes')),
            save: (w) =>
              originate(events, (tx) =>
                writeWatermark(tx, this.system, 'tryton-changes', w, this.clock.now()),
              ),
          }
        : {
            load: () => this.memoryWatermarks.load(),
            save: async (w) => {
              await originate(events);
              await this.memoryWatermarks.save(w);
            },
          };
      for await (const record of pollChanges(this.client(), watermarks, {
        overlapMs: parseDurationMs(this.options.pollOverlap, 60_000),
        initialSince: initialSince ?? this.options.changesSince,
      })) {
        events.push(...this.toEvents(record));
      }
      return events.length;
    } finally {
      await lease?.release();
    }
  }

  /**
   * Starts polling Tryton for shipments done, invoices posted and invoices paid; each round's events
   * go to `originate` (the connector runtime's: its outbox) together with the watermark advance.
   * Returns a stop function.
   */
  startChangeFeed(originate: OriginateEvents, opts: ChangeFeedOptions = {}): () => Promise<void> {
    if (this.feed || this.closed)
      throw new Error(`connector ${this.config.name}: the change feed runs already or the driver is closed`);
    const intervalMs = opts.intervalMs ?? parseDurationMs(this.options.pollInterval, 5_000);
    const since = this.options.changesSince ?? new Date(this.clock.now()).toISOString();
    let stopped = false;
    let timer: unknown;
    let round: Promise<void> = Promise.resolve();
    const tick = () => {
      round = this.pollOnce(originate, since)
        .then(
          (n) => opts.onRound?.(n),
          (err: unknown) => opts.onError?.(err),
        )
        .finally(() => {
          if (!stopped) timer = this.clock.setTimeout(tick, intervalMs);
        });
    };
    tick();
    const feed = {
      stop: async () => {
        stopped = true;
        this.clock.clearTimeout(timer);
        await round;
      },
    };
    this.feed = feed;
    return () => this.stopFeed();
  }

  private async stopFeed(): Promise<void> {
    const feed = this.feed;
    this.feed = undefined;
    await feed?.stop();
  }

  async close(): Promise<void> {
    this.closed = true;
    await this.stopFeed();
  }
}
