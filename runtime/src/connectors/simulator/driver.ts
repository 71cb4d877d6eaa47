// The simulator driver: CRM, ERP, WMS, tax and payment behaviour in one in-memory system, with
// configurable latency, failures, stock, credit limits, prices and tax rate. Deterministic for a
// seed, so `make demo`, the benchmarks and the workflow tests see the same outcomes every run.
import { create } from '@bufbuild/protobuf';
import { timestampFromMs } from '@bufbuild/protobuf/wkt';
import { ErrorClass } from '../../gen/o2c/v1/common_pb.js';
import {
  AllocateInventoryResponseSchema,
  CalculateTaxResponseSchema,
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
  ReleaseInventoryResponseSchema,
  UpdateOrderStatusResponseSchema,
  UpsertCustomerResponseSchema,
  UpsertItemResponseSchema,
  UpsertPriceResponseSchema,
  ValidateCustomerResponseSchema,
} from '../../gen/o2c/v1/connector_service_pb.js';
import {
  CustomerSchema,
  InventoryBalanceSchema,
  InvoiceSchema,
  type Order,
  OrderLineSchema,
  PaymentSchema,
  type Shipment,
  ShipmentSchema,
} from '../../gen/o2c/v1/entities_pb.js';
import { PaymentReceivedSchema, ShipmentDispatchedSchema } from '../../gen/o2c/v1/events_pb.js';
import { type Clock, sleep, systemClock } from '../clock.js';
import {
  type CallContext,
  type ConnectorDriver,
  ConnectorFailure,
  type DriverMethod,
  type MethodName,
} from '../driver.js';
import { fromNanos, multiplyRate, parseDecimalNanos, toNanos } from '../money.js';
import type { OriginatedEvent } from '../origination.js';

export interface SimulatedCustomer {
  name?: string;
  active?: boolean;
  /** Blocked customers fail ValidateCustomer with this reason. */
  blockedReason?: string;
  /** Credit limit as a decimal string in the simulator's currency. */
  creditLimit?: string;
}

/** The simulator's configuration (Connector runtime config `options` when `driver: simulator`). */
export interface SimulatorConfig {
  /** Seeds latency and failure draws; same seed and same call order, same outcomes. Default 1. */
  seed?: number;
  /** Latency per call in ms: a fixed number or a uniform range. Default 0. */
  latencyMs?: number | { min: number; max: number };
  /** Probability (0..1) that a call fails as retryable UNAVAILABLE before doing anything. Default 0. */
  failureRate?: number;
  /** Per-operation override of failureRate, by proto name (e.g. `CreateSalesOrder`). */
  failureRates?: Record<string, number>;
  /** ISO currency of prices and limits. Default USD. */
  currency?: string;
  /** Tax rate as a decimal string. Default "0.0825". */
  taxRate?: string;
  /** On-hand stock per SKU; SKUs not listed have defaultStock. */
  stock?: Record<string, number>;
  defaultStock?: number;
  /** Unit price per SKU as a decimal string; others cost defaultPrice. */
  prices?: Record<string, string>;
  defaultPrice?: string;
  /** Known customers; with `unknownCustomers: 'reject'` only these validate. */
  customers?: Record<string, SimulatedCustomer>;
  unknownCustomers?: 'accept' | 'reject';
  /** Credit limit of customers without their own, decimal string. Default "100000". */
  defaultCreditLimit?: string;
  /** How long after ReleaseFulfillment a shipment counts as dispatched (GetShipment). Default 0. */
  dispatchAfterMs?: number;
  /** How long after PostInvoice the invoice counts as paid by the customer (GetPaymentStatus); unset: only RecordPayment pays. */
  payAfterMs?: number;
}

/** Something that happened inside the simulated systems, for the runtime to publish as an event. */
export type SimulatorChange =
  | { kind: 'shipmentDispatched'; orderId: string; shipment: Shipment }
  | { kind: 'paymentReceived'; orderId: string; payment: ReturnType<typeof create<typeof PaymentSchema>> };

/** A simulated change as the event the connector originates; one fact, one idempotency key. */
export function simulatorEvent(system: string, change: SimulatorChange): OriginatedEvent {
  if (change.kind === 'shipmentDispatched') {
    return {
      type: 'o2c.v1.ShipmentDispatched',
      subject: change.orderId,
      idempotencyKey: `${system}:shipment_dispatched:${change.shipment.id}:${change.orderId}`,
      payload: {
        case: 'shipmentDispatched',
        value: create(ShipmentDispatchedSchema, { orderId: change.orderId, shipment: change.shipment }),
      },
    };
  }
  return {
    type: 'o2c.v1.PaymentReceived',
    subject: change.orderId,
    idempotencyKey: `${system}:payment_received:${change.payment.id}:${change.orderId}`,
    payload: {
      case: 'paymentReceived',
      value: create(PaymentReceivedSchema, { orderId: change.orderId, payment: change.payment }),
    },
  };
}

interface SalesOrderRecord {
  id: string;
  number: string;
  order: Order;
  totalNanos: bigint;
  state: 'confirmed' | 'cancelled' | 'done';
  customerId: string;
}

/** mulberry32: tiny, fast, good enough for simulated dice. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const OPERATION_BY_METHOD: Record<string, string> = {};

export class SimulatorDriver implements ConnectorDriver {
  readonly driverName = 'simulator';
  readonly system: string;
  private readonly cfg: Required<Omit<SimulatorConfig, 'latencyMs' | 'payAfterMs' | 'failureRates'>> &
    Pick<SimulatorConfig, 'latencyMs' | 'payAfterMs' | 'failureRates'>;
  private readonly random: () => number;
  private readonly onHand = new Map<string, number>();
  private readonly allocatedBySku = new Map<string, number>();
  private readonly allocations = new Map<
    string,
    { id: string; lines: Map<string, number>; released: boolean }
  >();
  private readonly salesOrders = new Map<string, SalesOrderRecord>();
  private readonly shipments = new Map<
    string,
    { shipment: Shipment; releasedAt: number; announced: boolean }
  >();
  private readonly invoices = new Map<
    string,
    { invoice: ReturnType<typeof create<typeof InvoiceSchema>>; postedAt: number }
  >();
  private readonly payments = new Map<string, Array<ReturnType<typeof create<typeof PaymentSchema>>>>();
  private readonly paymentKeys = new Set<string>();
  /** Sum of the payments per order, kept as they come (GetPaymentStatus, credit exposure). */
  private readonly paidByOrder = new Map<string, bigint>();
  /**
   * Open exposure per customer: the sum of (total - paid) over their sales orders that are not
   * cancelled, kept as orders, payments and cancellations come, so CheckCredit reads it at once
   * instead of scanning every sales order.
   */
  private readonly exposureByCustomer = new Map<string, bigint>();
  private readonly masterData = new Map<string, string>();
  private readonly statuses = new Map<string, string>();
  private readonly listeners: Array<(c: SimulatorChange) => void> = [];
  private sequence = 0;
  /** Calls that reached the simulated system, per operation; benchmarks and tests read it. */
  readonly callCounts = new Map<string, number>();

  constructor(
    config: SimulatorConfig = {},
    private readonly clock: Clock = systemClock,
    opts: { system?: string } = {},
  ) {
    this.system = opts.system ?? 'simulator';
    this.cfg = {
      seed: config.seed ?? 1,
      latencyMs: config.latencyMs,
      failureRate: config.failureRate ?? 0,
      failureRates: config.failureRates,
      currency: config.currency ?? 'USD',
      taxRate: config.taxRate ?? '0.0825',
      stock: config.stock ?? {},
      defaultStock: config.defaultStock ?? 1000,
      prices: config.prices ?? {},
      defaultPrice: config.defaultPrice ?? '10.00',
      customers: config.customers ?? {},
      unknownCustomers: config.unknownCustomers ?? 'accept',
      defaultCreditLimit: config.defaultCreditLimit ?? '100000',
      dispatchAfterMs: config.dispatchAfterMs ?? 0,
      payAfterMs: config.payAfterMs,
    };
    this.random = prng(this.cfg.seed);
  }

  /** Subscribes to changes made inside the simulated systems (dispatches, customer payments). */
  onChange(listener: (c: SimulatorChange) => void): void {
    this.listeners.push(listener);
  }

  /** Stock on hand and allocated for a SKU, for tests. */
  inventory(sku: string): { onHand: number; allocated: number } {
    return { onHand: this.stockOf(sku), allocated: this.allocatedBySku.get(sku) ?? 0 };
  }

  salesOrderCount(): number {
    return this.salesOrders.size;
  }

  validateCustomer: DriverMethod<'validateCustomer'> = (req, ctx) =>
    this.call('validateCustomer', ctx, () => {
      const known = this.cfg.customers[req.customerId];
      if (!known && this.cfg.unknownCustomers === 'reject') {
        return create(ValidateCustomerResponseSchema, {
          valid: false,
          reason: `unknown customer ${req.customerId}`,
        });
      }
      const active = known?.active ?? true;
      const reason = known?.blockedReason ?? (active ? '' : 'customer is inactive');
      return create(ValidateCustomerResponseSchema, {
        valid: reason === '',
        reason,
        customer: create(CustomerSchema, {
          id: req.customerId,
          name: known?.name ?? `Customer ${req.customerId}`,
          active,
          creditLimit: fromNanos(this.cfg.currency, this.creditLimitOf(req.customerId)),
          externalRefs: [{ system: this.system, externalId: `C-${req.customerId}` }],
        }),
      });
    });

  checkCredit: DriverMethod<'checkCredit'> = (req, ctx) =>
    this.call('checkCredit', ctx, () => {
      const currency = req.amount?.currencyCode || this.cfg.currency;
      const limit = this.creditLimitOf(req.customerId);
      // The order being checked does not count against its own credit.
      const own = this.salesOrders.get(req.orderId);
      const ownOpen =
        own && own.customerId === req.customerId && own.state !== 'cancelled'
          ? own.totalNanos - this.paidNanos(own.order.id)
          : 0n;
      const exposure = (this.exposureByCustomer.get(req.customerId) ?? 0n) - ownOpen;
      const amount = toNanos(req.amount);
      const approved = exposure + amount <= limit;
      return create(CheckCreditResponseSchema, {
        approved,
        creditLimit: fromNanos(currency, limit),
        exposure: fromNanos(currency, exposure),
        available: fromNanos(currency, limit - exposure),
        reason: approved
          ? ''
          : `credit limit ${fromNanosString(limit)} exceeded: exposure ${fromNanosString(exposure)} + order ${fromNanosString(amount)}`,
      });
    });

  getPrice: DriverMethod<'getPrice'> = (req, ctx) =>
    this.call('getPrice', ctx, () => {
      const currency = req.currencyCode || this.cfg.currency;
      let subtotal = 0n;
      const lines = req.lines.map((l) => {
        const unit = parseDecimalNanos(this.cfg.prices[l.sku] ?? this.cfg.defaultPrice);
        const total = unit * BigInt(l.quantity);
        subtotal += total;
        return {
          sku: l.sku,
          quantity: l.quantity,
          unitPrice: fromNanos(currency, unit),
          lineTotal: fromNanos(currency, total),
        };
      });
      return create(GetPriceResponseSchema, { lines, subtotal: fromNanos(currency, subtotal) });
    });

  calculateTax: DriverMethod<'calculateTax'> = (req, ctx) =>
    this.call('calculateTax', ctx, () => {
      const currency = req.currencyCode || req.lines[0]?.lineTotal?.currencyCode || this.cfg.currency;
      let total = 0n;
      const lines = req.lines.map((l) => {
        const taxable = toNanos(l.lineTotal);
        const tax = multiplyRate(taxable, this.cfg.taxRate);
        total += tax;
        return {
          sku: l.sku,
          taxable: fromNanos(currency, taxable),
          tax: fromNanos(currency, tax),
          rate: this.cfg.taxRate,
        };
      });
      return create(CalculateTaxResponseSchema, { lines, taxTotal: fromNanos(currency, total) });
    });

  checkAvailability: DriverMethod<'checkAvailability'> = (req, ctx) =>
    this.call('checkAvailability', ctx, () => {
      const balances = req.lines.map((l) =>
        create(InventoryBalanceSchema, {
          sku: l.sku,
          location: req.location || 'main',
          onHand: BigInt(this.stockOf(l.sku)),
          allocated: BigInt(this.allocatedBySku.get(l.sku) ?? 0),
          available: BigInt(this.availableOf(l.sku)),
          updatedTime: timestampFromMs(this.clock.now()),
        }),
      );
      const allAvailable = req.lines.every((l) => this.availableOf(l.sku) >= l.quantity);
      return create(CheckAvailabilityResponseSchema, { balances, allAvailable });
    });

  allocateInventory: DriverMethod<'allocateInventory'> = (req, ctx) =>
    this.call('allocateInventory', ctx, () => {
      // Natural key: the order id. A repeat answers with the allocation made the first time.
      let alloc = this.allocations.get(req.orderId);
      if (!alloc || alloc.released) {
        alloc = { id: `ALLOC-${req.orderId}`, lines: new Map(), released: false };
        for (const l of req.lines) {
          const take = Math.max(0, Math.min(l.quantity, this.availableOf(l.sku)));
          alloc.lines.set(l.sku, (alloc.lines.get(l.sku) ?? 0) + take);
          this.allocatedBySku.set(l.sku, (this.allocatedBySku.get(l.sku) ?? 0) + take);
        }
        this.allocations.set(req.orderId, alloc);
      }
      const granted = new Map(alloc.lines);
      const lines = req.lines.map((l) => {
        const allocated = Math.min(l.quantity, granted.get(l.sku) ?? 0);
        granted.set(l.sku, (granted.get(l.sku) ?? 0) - allocated);
        return { sku: l.sku, requested: l.quantity, allocated, backordered: l.quantity - allocated };
      });
      return create(AllocateInventoryResponseSchema, {
        allocationId: alloc.id,
        lines,
        fullyAllocated: lines.every((l) => l.backordered === 0),
      });
    });

  releaseInventory: DriverMethod<'releaseInventory'> = (req, ctx) =>
    this.call('releaseInventory', ctx, () => {
      const alloc = this.allocations.get(req.orderId);
      if (!alloc || alloc.released) return create(ReleaseInventoryResponseSchema, { released: false });
      for (const [sku, qty] of alloc.lines)
        this.allocatedBySku.set(sku, (this.allocatedBySku.get(sku) ?? 0) - qty);
      alloc.released = true;
      return create(ReleaseInventoryResponseSchema, { released: true });
    });

  createSalesOrder: DriverMethod<'createSalesOrder'> = (req, ctx) =>
    this.call('createSalesOrder', ctx, () => {
      const order = req.order;
      if (!order) throw new ConnectorFailure(ErrorClass.VALIDATION, 'order is required');
      // Natural key: the o2c order id, as Tryton's sale reference.
      const existing = this.salesOrders.get(order.id);
      if (existing) {
        return create(CreateSalesOrderResponseSchema, {
          salesOrder: { system: this.system, externalId: existing.id, displayId: existing.number },
          existed: true,
          state: existing.state,
        });
      }
      const number = `SO${String(++this.sequence).padStart(6, '0')}`;
      const record: SalesOrderRecord = {
        id: `so-${order.id}`,
        number,
        order,
        totalNanos: toNanos(order.total) || order.lines.reduce((s, l) => s + toNanos(l.lineTotal), 0n),
        state: 'confirmed',
        customerId: order.customerId,
      };
      this.salesOrders.set(order.id, record);
      this.addExposure(record.customerId, record.totalNanos - this.paidNanos(order.id));
      return create(CreateSalesOrderResponseSchema, {
        salesOrder: { system: this.system, externalId: record.id, displayId: number },
        existed: false,
        state: record.state,
      });
    });

  cancelSalesOrder: DriverMethod<'cancelSalesOrder'> = (req, ctx) =>
    this.call('cancelSalesOrder', ctx, () => {
      const so = this.salesOrders.get(req.orderId);
      if (!so) return create(CancelSalesOrderResponseSchema, { cancelled: false });
      if (so.state === 'done') {
        throw new ConnectorFailure(
          ErrorClass.VALIDATION,
          `sales order ${so.number} is shipped and cannot be cancelled`,
        );
      }
      if (so.state !== 'cancelled')
        this.addExposure(so.customerId, this.paidNanos(so.order.id) - so.totalNanos);
      so.state = 'cancelled';
      return create(CancelSalesOrderResponseSchema, { cancelled: true });
    });

  releaseFulfillment: DriverMethod<'releaseFulfillment'> = (req, ctx) =>
    this.call('releaseFulfillment', ctx, () => {
      const existing = this.shipments.get(req.orderId);
      if (existing) return create(ReleaseFulfillmentResponseSchema, { shipments: [existing.shipment] });
      const alloc = this.allocations.get(req.orderId);
      const so = this.salesOrders.get(req.orderId);
      const lines = alloc
        ? [...alloc.lines].map(([sku, qty]) => create(OrderLineSchema, { sku, quantity: qty }))
        : (so?.order.lines ?? []);
      const shipment = create(ShipmentSchema, {
        id: `SH-${req.orderId}`,
        orderId: req.orderId,
        carrier: 'SIM-EXPRESS',
        trackingNumber: `1Z${String(this.shipments.size + 1).padStart(10, '0')}`,
        lines,
        externalRefs: [{ system: this.system, externalId: `SH-${req.orderId}` }],
      });
      const releasedAt = this.clock.now();
      const entry = { shipment, releasedAt, announced: false };
      this.shipments.set(req.orderId, entry);
      const announce = () => {
        if (entry.announced) return;
        entry.announced = true;
        shipment.dispatchTime = timestampFromMs(releasedAt + this.cfg.dispatchAfterMs);
        this.consumeStock(req.orderId);
        this.emit({ kind: 'shipmentDispatched', orderId: req.orderId, shipment });
      };
      if (this.listeners.length > 0) this.clock.setTimeout(announce, this.cfg.dispatchAfterMs);
      return create(ReleaseFulfillmentResponseSchema, { shipments: [shipment] });
    });

  getShipment: DriverMethod<'getShipment'> = (req, ctx) =>
    this.call('getShipment', ctx, () => {
      const entry = this.shipments.get(req.orderId);
      if (!entry) return create(GetShipmentResponseSchema, { shipments: [], dispatched: false });
      const dispatched = this.clock.now() - entry.releasedAt >= this.cfg.dispatchAfterMs;
      if (dispatched && !entry.shipment.dispatchTime) {
        entry.shipment.dispatchTime = timestampFromMs(entry.releasedAt + this.cfg.dispatchAfterMs);
      }
      return create(GetShipmentResponseSchema, { shipments: [entry.shipment], dispatched });
    });

  postInvoice: DriverMethod<'postInvoice'> = (req, ctx) =>
    this.call('postInvoice', ctx, () => {
      const existing = this.invoices.get(req.orderId);
      if (existing) return create(PostInvoiceResponseSchema, { invoice: existing.invoice });
      const so = this.salesOrders.get(req.orderId);
      const currency = req.expectedTotal?.currencyCode || so?.order.currencyCode || this.cfg.currency;
      const total = req.expectedTotal ? toNanos(req.expectedTotal) : (so?.totalNanos ?? 0n);
      const now = this.clock.now();
      const invoice = create(InvoiceSchema, {
        id: `INV-${req.orderId}`,
        orderId: req.orderId,
        number: `INV${String(this.invoices.size + 1).padStart(6, '0')}`,
        total: fromNanos(currency, total),
        amountDue: fromNanos(currency, total),
        postTime: timestampFromMs(now),
        dueTime: timestampFromMs(now + 30 * 86_400_000),
        externalRefs: [{ system: this.system, externalId: `INV-${req.orderId}` }],
      });
      this.invoices.set(req.orderId, { invoice, postedAt: now });
      if (this.cfg.payAfterMs !== undefined && this.listeners.length > 0) {
        this.clock.setTimeout(() => {
          const payment = this.pay(
            req.orderId,
            toNanos(invoice.amountDue),
            'simulated-transfer',
            `auto:${req.orderId}`,
          );
          if (payment) this.emit({ kind: 'paymentReceived', orderId: req.orderId, payment });
        }, this.cfg.payAfterMs);
      }
      return create(PostInvoiceResponseSchema, { invoice });
    });

  recordPayment: DriverMethod<'recordPayment'> = (req, ctx) =>
    this.call('recordPayment', ctx, () => {
      const key = ctx.idempotencyKey || `${req.orderId}:${toNanos(req.amount)}`;
      const payment = this.pay(req.orderId, toNanos(req.amount), req.method || 'manual', key);
      const existing = this.payments.get(req.orderId)?.find((p) => p.id === `PAY-${key}`);
      const result = payment ?? existing;
      if (!result) throw new ConnectorFailure(ErrorClass.NOT_FOUND, `no invoice for order ${req.orderId}`);
      return create(RecordPaymentResponseSchema, { payment: result });
    });

  getPaymentStatus: DriverMethod<'getPaymentStatus'> = (req, ctx) =>
    this.call('getPaymentStatus', ctx, () => {
      const inv = this.invoices.get(req.orderId);
      if (!inv) throw new ConnectorFailure(ErrorClass.NOT_FOUND, `no invoice for order ${req.orderId}`);
      if (this.cfg.payAfterMs !== undefined && this.clock.now() - inv.postedAt >= this.cfg.payAfterMs) {
        this.pay(
          req.orderId,
          toNanos(inv.invoice.total) - this.paidNanos(req.orderId),
          'simulated-transfer',
          `auto:${req.orderId}`,
        );
      }
      const currency = inv.invoice.total?.currencyCode ?? this.cfg.currency;
      const paid = this.paidNanos(req.orderId);
      const due = toNanos(inv.invoice.total) - paid;
      return create(GetPaymentStatusResponseSchema, {
        paid: due <= 0n,
        amountPaid: fromNanos(currency, paid),
        amountDue: fromNanos(currency, due > 0n ? due : 0n),
        payments: this.payments.get(req.orderId) ?? [],
      });
    });

  upsertCustomer: DriverMethod<'upsertCustomer'> = (req, ctx) =>
    this.call('upsertCustomer', ctx, () => {
      const id = req.customer?.id ?? '';
      return create(UpsertCustomerResponseSchema, this.upsert('customer', id, `C-${id}`));
    });

  upsertItem: DriverMethod<'upsertItem'> = (req, ctx) =>
    this.call('upsertItem', ctx, () => {
      const sku = req.item?.sku ?? '';
      return create(UpsertItemResponseSchema, this.upsert('item', sku, `I-${sku}`));
    });

  upsertPrice: DriverMethod<'upsertPrice'> = (req, ctx) =>
    this.call('upsertPrice', ctx, () => {
      const p = req.price;
      const key = `${p?.priceList ?? ''}/${p?.customerId ?? ''}/${p?.sku ?? ''}`;
      if (p?.sku && p.unitPrice && !p.customerId)
        this.cfg.prices[p.sku] = fromNanosString(toNanos(p.unitPrice));
      return create(UpsertPriceResponseSchema, this.upsert('price', key, `P-${key}`));
    });

  updateOrderStatus: DriverMethod<'updateOrderStatus'> = (req, ctx) =>
    this.call('updateOrderStatus', ctx, () => {
      const id = req.order?.id ?? '';
      this.statuses.set(id, String(req.order?.state ?? 0));
      return create(UpdateOrderStatusResponseSchema, {
        ref: { system: this.system, externalId: `CRM-${id}` },
      });
    });

  /** The order status last written by UpdateOrderStatus, for tests. */
  statusOf(orderId: string): string | undefined {
    return this.statuses.get(orderId);
  }

  private async call<T>(method: MethodName, ctx: CallContext, body: () => T): Promise<T> {
    const latency = this.drawLatency();
    const fails = this.random() < (this.cfg.failureRates?.[operationName(method)] ?? this.cfg.failureRate);
    await sleep(this.clock, latency, ctx.signal);
    this.callCounts.set(method, (this.callCounts.get(method) ?? 0) + 1);
    if (fails) {
      throw new ConnectorFailure(ErrorClass.UNAVAILABLE, `simulated outage of ${this.system}`, {
        code: 'SIMULATED',
      });
    }
    return body();
  }

  private drawLatency(): number {
    const l = this.cfg.latencyMs;
    if (l === undefined) return 0;
    if (typeof l === 'number') return l;
    return l.min + Math.floor(this.random() * (l.max - l.min + 1));
  }

  private upsert(entity: string, key: string, externalId: string) {
    const created = !this.masterData.has(`${entity}:${key}`);
    this.masterData.set(`${entity}:${key}`, externalId);
    return { ref: { system: this.system, externalId }, created };
  }

  private pay(orderId: string, amount: bigint, method: string, key: string) {
    if (this.paymentKeys.has(key) || amount <= 0n) return undefined;
    const inv = this.invoices.get(orderId);
    if (!inv) return undefined;
    this.paymentKeys.add(key);
    const payment = create(PaymentSchema, {
      id: `PAY-${key}`,
      orderId,
      invoiceId: inv.invoice.id,
      amount: fromNanos(inv.invoice.total?.currencyCode ?? this.cfg.currency, amount),
      method,
      receiveTime: timestampFromMs(this.clock.now()),
      externalRefs: [{ system: this.system, externalId: `PAY-${key}` }],
    });
    const list = this.payments.get(orderId) ?? [];
    list.push(payment);
    this.payments.set(orderId, list);
    this.paidByOrder.set(orderId, this.paidNanos(orderId) + amount);
    const so = this.salesOrders.get(orderId);
    if (so && so.state !== 'cancelled') this.addExposure(so.customerId, -amount);
    if (so && this.paidNanos(orderId) >= so.totalNanos) so.state = 'done';
    return payment;
  }

  private paidNanos(orderId: string): bigint {
    return this.paidByOrder.get(orderId) ?? 0n;
  }

  private addExposure(customerId: string, delta: bigint): void {
    this.exposureByCustomer.set(customerId, (this.exposureByCustomer.get(customerId) ?? 0n) + delta);
  }

  private consumeStock(orderId: string): void {
    const alloc = this.allocations.get(orderId);
    if (!alloc || alloc.released) return;
    for (const [sku, qty] of alloc.lines) {
      this.onHand.set(sku, this.stockOf(sku) - qty);
      this.allocatedBySku.set(sku, (this.allocatedBySku.get(sku) ?? 0) - qty);
    }
    alloc.released = true;
  }

  private stockOf(sku: string): number {
    return this.onHand.get(sku) ?? this.cfg.stock[sku] ?? this.cfg.defaultStock;
  }

  private availableOf(sku: string): number {
    return this.stockOf(sku) - (this.allocatedBySku.get(sku) ?? 0);
  }

  private creditLimitOf(customerId: string): bigint {
    return parseDecimalNanos(this.cfg.customers[customerId]?.creditLimit ?? this.cfg.defaultCreditLimit);
  }

  private emit(change: SimulatorChange): void {
    for (const l of this.listeners) l(change);
  }
}

function operationName(method: string): string {
  OPERATION_BY_METHOD[method] ??= method.charAt(0).toUpperCase() + method.slice(1);
  return OPERATION_BY_METHOD[method];
}

function fromNanosString(n: bigint): string {
  const neg = n < 0n;
  const abs = neg ? -n : n;
  const units = abs / 1_000_000_000n;
  const cents = ((abs % 1_000_000_000n) / 10_000_000n).toString().padStart(2, '0');
  return `${neg ? '-' : ''}${units}.${cents}`;
}
