// Pure step logic: what request a call step sends for an order, and what a reply or an awaited
// event does to the order (state, totals, external refs) and to the workflow context. No I/O.
import { create, fromJson, type JsonValue, toJson } from '@bufbuild/protobuf';
import type { CommandRequest } from '../connectors/commands.js';
import { fromNanos, toNanos } from '../connectors/money.js';
import { ErrorClass, type ExternalRef, ExternalRefSchema } from '../gen/o2c/v1/common_pb.js';
import {
  AllocateInventoryRequestSchema,
  CalculateTaxRequestSchema,
  CancelSalesOrderRequestSchema,
  CheckAvailabilityRequestSchema,
  CheckCreditRequestSchema,
  type ConnectorReply,
  CreateSalesOrderRequestSchema,
  GetPaymentStatusRequestSchema,
  GetPriceRequestSchema,
  GetShipmentRequestSchema,
  PostInvoiceRequestSchema,
  RecordPaymentRequestSchema,
  ReleaseFulfillmentRequestSchema,
  ReleaseInventoryRequestSchema,
  UpdateOrderStatusRequestSchema,
  ValidateCustomerRequestSchema,
} from '../gen/o2c/v1/connector_service_pb.js';
import {
  type Invoice,
  InvoiceSchema,
  type Order,
  OrderState,
  type Shipment,
  ShipmentSchema,
} from '../gen/o2c/v1/entities_pb.js';
import type { Envelope } from '../gen/o2c/v1/events_pb.js';
import type { EnvelopePayload } from '../orders/envelope.js';
import type { AwaitState } from './await-fallback.js';

/** What the engine remembers between steps, stored as JSON with the instance. */
export interface StepContext {
  /** Completed call steps, in order: compensation walks them backwards. */
  completed: string[];
  salesOrder?: JsonValue;
  allocationId?: string;
  invoice?: JsonValue;
  shipments?: JsonValue[];
  /** Compensation in progress: steps still to undo. */
  compensating?: string[];
  /** Why the order is being compensated: 'cancel' or 'failure'. */
  compensationCause?: 'cancel' | 'failure';
  /** The order's state before it was put on hold, restored by RetryStep. */
  stateBeforeHold?: OrderState;
  /** When the order was dispatched (epoch ms), for the invoice-lag KPI. */
  dispatchedAt?: number;
  /** The await step now waiting: its timeout and the fallback questions asked (await-fallback.ts). */
  await?: AwaitState;
}

export function emptyContext(): StepContext {
  return { completed: [] };
}

export function salesOrderRef(ctx: StepContext): ExternalRef | undefined {
  return ctx.salesOrder ? fromJson(ExternalRefSchema, ctx.salesOrder) : undefined;
}

export function invoiceOf(ctx: StepContext): Invoice | undefined {
  return ctx.invoice ? fromJson(InvoiceSchema, ctx.invoice) : undefined;
}

function orderAmountNanos(order: Order): bigint {
  if (order.total) return toNanos(order.total);
  if (order.subtotal) return toNanos(order.subtotal);
  return order.lines.reduce((sum, l) => sum + toNanos(l.unitPrice) * BigInt(l.quantity), 0n);
}

const linesOf = (order: Order) => order.lines.map((l) => ({ sku: l.sku, quantity: l.quantity }));

export class UnsupportedOperationError extends Error {}

/** The request a call step sends, by ConnectorService operation. */
export function buildRequest(operation: string, order: Order, ctx: StepContext): CommandRequest {
  switch (operation) {
    case 'ValidateCustomer':
      return {
        case: 'validateCustomer',
        value: create(ValidateCustomerRequestSchema, { customerId: order.customerId, orderId: order.id }),
      };
    case 'CheckCredit':
      return {
        case: 'checkCredit',
        value: create(CheckCreditRequestSchema, {
          customerId: order.customerId,
          orderId: order.id,
          amount: fromNanos(order.currencyCode, orderAmountNanos(order)),
        }),
      };
    case 'GetPrice':
      return {
        case: 'getPrice',
        value: create(GetPriceRequestSchema, {
          customerId: order.customerId,
          currencyCode: order.currencyCode,
          orderId: order.id,
          lines: linesOf(order),
        }),
      };
    case 'CalculateTax':
      return {
        case: 'calculateTax',
        value: create(CalculateTaxRequestSchema, {
          orderId: order.id,
          customerId: order.customerId,
          shipTo: order.shipTo,
          currencyCode: order.currencyCode,
          lines: order.lines.map((l) => ({
            sku: l.sku,
            quantity: l.quantity,
            unitPrice: l.unitPrice,
            lineTotal:
              l.lineTotal ?? fromNanos(order.currencyCode, toNanos(l.unitPrice) * BigInt(l.quantity)),
          })),
        }),
      };
    case 'CheckAvailability':
      return {
        case: 'checkAvailability',
        value: create(CheckAvailabilityRequestSchema, { lines: linesOf(order) }),
      };
    case 'AllocateInventory':
      return {
        case: 'allocateInventory',
        value: create(AllocateInventoryRequestSchema, {
          orderId: order.id,
          lines: linesOf(order),
          salesOrder: salesOrderRef(ctx),
        }),
      };
    case 'ReleaseInventory':
      return {
        case: 'releaseInventory',
        value: create(ReleaseInventoryRequestSchema, {
          orderId: order.id,
          allocationId: ctx.allocationId ?? '',
        }),
      };
    case 'CreateSalesOrder':
      return { case: 'createSalesOrder', value: create(CreateSalesOrderRequestSchema, { order }) };
    case 'CancelSalesOrder':
      return {
        case: 'cancelSalesOrder',
        value: create(CancelSalesOrderRequestSchema, { orderId: order.id, salesOrder: salesOrderRef(ctx) }),
      };
    case 'ReleaseFulfillment':
      return {
        case: 'releaseFulfillment',
        value: create(ReleaseFulfillmentRequestSchema, { orderId: order.id, salesOrder: salesOrderRef(ctx) }),
      };
    case 'GetShipment':
      return {
        case: 'getShipment',
        value: create(GetShipmentRequestSchema, { orderId: order.id, salesOrder: salesOrderRef(ctx) }),
      };
    case 'PostInvoice':
      return {
        case: 'postInvoice',
        value: create(PostInvoiceRequestSchema, {
          orderId: order.id,
          salesOrder: salesOrderRef(ctx),
          expectedTotal: order.total,
        }),
      };
    case 'RecordPayment': {
      const invoice = invoiceOf(ctx);
      return {
        case: 'recordPayment',
        value: create(RecordPaymentRequestSchema, {
          orderId: order.id,
          invoice: invoice?.externalRefs[0],
          amount: invoice?.amountDue ?? invoice?.total ?? order.total,
        }),
      };
    }
    case 'GetPaymentStatus':
      return {
        case: 'getPaymentStatus',
        value: create(GetPaymentStatusRequestSchema, {
          orderId: order.id,
          invoice: invoiceOf(ctx)?.externalRefs[0],
        }),
      };
    case 'UpdateOrderStatus':
      return { case: 'updateOrderStatus', value: create(UpdateOrderStatusRequestSchema, { order }) };
    default:
      throw new UnsupportedOperationError(`a workflow step cannot call ${operation}`);
  }
}

export interface StepEvent {
  type: string;
  payload: EnvelopePayload;
}

/** What one reply or awaited event did. */
export type StepOutcome =
  /** Done. Its milestone (validated, priced, booked, ...) is the order's new state and step record;
   * no event is published for it, as no queue of the system takes one. */
  | { kind: 'done' }
  /** The step's result says "not yet" (e.g. not dispatched): try again after the retry delay. */
  | { kind: 'not-yet'; message: string }
  | { kind: 'failed'; errorClass: ErrorClass; message: string; retryable: boolean; events: StepEvent[] };

const ev = (type: string, payload: EnvelopePayload): StepEvent => ({ type, payload });

/**
 * Applies a connector's reply to the order (mutated in place) and the context. The caller decides
 * about retries and fallout from the outcome.
 */
export function applyReply(reply: ConnectorReply, order: Order, ctx: StepContext): StepOutcome {
  const r = reply.result;
  const id = order.id;
  switch (r.case) {
    case 'error':
      return {
        kind: 'failed',
        errorClass: r.value.errorClass || ErrorClass.UNKNOWN,
        message: r.value.message,
        retryable: r.value.retryable,
        events: [],
      };
    case 'validateCustomer':
      if (!r.value.valid) {
        return {
          kind: 'failed',
          errorClass: ErrorClass.VALIDATION,
          message: `customer ${order.customerId} is not valid: ${r.value.reason || 'refused'}`,
          retryable: false,
          events: [],
        };
      }
      order.state = OrderState.IN_PROGRESS;
      return { kind: 'done' };
    case 'checkCredit':
      if (!r.value.approved) {
        return {
          kind: 'failed',
          errorClass: ErrorClass.CREDIT,
          message: r.value.reason || `credit refused for customer ${order.customerId}`,
          retryable: false,
          events: [
            ev('o2c.v1.CreditHold', {
              case: 'creditHold',
              value: {
                orderId: id,
                reason: r.value.reason,
                creditLimit: r.value.creditLimit,
                exposure: r.value.exposure,
              },
            }),
          ],
        };
      }
      return { kind: 'done' };
    case 'getPrice': {
      let subtotal = 0n;
      for (const line of order.lines) {
        const priced = r.value.lines.find((p) => p.sku === line.sku);
        if (!priced) continue;
        line.unitPrice = priced.unitPrice;
        line.lineTotal =
          priced.lineTotal ??
          fromNanos(order.currencyCode, toNanos(priced.unitPrice) * BigInt(line.quantity));
        subtotal += toNanos(line.lineTotal);
      }
      order.subtotal = r.value.subtotal ?? fromNanos(order.currencyCode, subtotal);
      order.total = order.subtotal;
      return { kind: 'done' };
    }
    case 'calculateTax': {
      for (const line of order.lines) {
        const taxed = r.value.lines.find((t) => t.sku === line.sku);
        if (taxed) line.tax = taxed.tax;
      }
      order.taxTotal = r.value.taxTotal;
      const subtotal = order.subtotal ? toNanos(order.subtotal) : orderAmountNanos(order);
      order.total = fromNanos(order.currencyCode, subtotal + toNanos(r.value.taxTotal));
      return { kind: 'done' };
    }
    case 'checkAvailability':
      if (!r.value.allAvailable) {
        return {
          kind: 'failed',
          errorClass: ErrorClass.STOCK,
          message: 'not all lines are available',
          retryable: false,
          events: [],
        };
      }
      return { kind: 'done' };
    case 'allocateInventory': {
      ctx.allocationId = r.value.allocationId;
      for (const line of order.lines) {
        const a = r.value.lines.find((l) => l.sku === line.sku);
        if (!a) continue;
        line.allocatedQuantity = a.allocated;
        line.backorderedQuantity = a.backordered;
      }
      if (r.value.fullyAllocated) {
        order.state = OrderState.ALLOCATED;
        return { kind: 'done' };
      }
      order.state = OrderState.BACKORDERED;
      return { kind: 'done' };
    }
    case 'createSalesOrder': {
      const ref = r.value.salesOrder;
      if (ref) {
        ctx.salesOrder = toJson(ExternalRefSchema, ref);
        if (!order.externalRefs.some((e) => e.system === ref.system && e.externalId === ref.externalId)) {
          order.externalRefs.push(create(ExternalRefSchema, ref));
        }
      }
      order.state = OrderState.BOOKED;
      return { kind: 'done' };
    }
    case 'releaseFulfillment':
      ctx.shipments = r.value.shipments.map((s) => toJson(ShipmentSchema, s));
      return { kind: 'done' };
    case 'getShipment': {
      if (!r.value.dispatched) return { kind: 'not-yet', message: 'not dispatched yet' };
      const shipment = r.value.shipments[0];
      return applyDispatch(order, ctx, shipment);
    }
    case 'postInvoice': {
      const invoice = r.value.invoice;
      if (invoice) ctx.invoice = toJson(InvoiceSchema, invoice);
      order.state = OrderState.INVOICED;
      return { kind: 'done' };
    }
    case 'recordPayment':
      order.state = OrderState.PAID;
      return { kind: 'done' };
    case 'getPaymentStatus':
      if (!r.value.paid) return { kind: 'not-yet', message: 'not paid yet' };
      order.state = OrderState.PAID;
      return { kind: 'done' };
    case 'releaseInventory':
    case 'cancelSalesOrder':
    case 'updateOrderStatus':
    case 'upsertCustomer':
    case 'upsertItem':
    case 'upsertPrice':
      return { kind: 'done' };
    default:
      return {
        kind: 'failed',
        errorClass: ErrorClass.UNKNOWN,
        message: 'empty connector reply',
        retryable: false,
        events: [],
      };
  }
}

function applyDispatch(order: Order, ctx: StepContext, shipment: Shipment | undefined): StepOutcome {
  if (shipment) ctx.shipments = [...(ctx.shipments ?? []), toJson(ShipmentSchema, shipment)];
  order.state = OrderState.SHIPPED;
  return { kind: 'done' };
}

/**
 * Applies an awaited event about the order. The event itself is already on the bus, so the engine
 * emits nothing new for it; it only moves the order.
 */
export function applyAwaitedEvent(envelope: Envelope, order: Order, ctx: StepContext): StepOutcome {
  const p = envelope.payload;
  switch (p.case) {
    case 'shipmentDispatched':
      return applyDispatch(order, ctx, p.value.shipment);
    case 'invoicePosted':
      if (p.value.invoice) ctx.invoice = toJson(InvoiceSchema, p.value.invoice);
      order.state = OrderState.INVOICED;
      return { kind: 'done' };
    case 'paymentReceived':
      order.state = OrderState.PAID;
      return { kind: 'done' };
    default:
      return { kind: 'done' };
  }
}

/** The order id an event is about. */
export function orderIdOf(envelope: Envelope): string {
  const p = envelope.payload;
  if (p.value && 'orderId' in p.value && typeof p.value.orderId === 'string' && p.value.orderId)
    return p.value.orderId;
  return envelope.subject;
}
