// Plain inputs and outputs of the Tryton driver's operations. Money is a decimal string (never a
// float); quantities are numbers (Tryton 6.0 stores them as floats); dates are YYYY-MM-DD strings and
// timestamps ISO 8601 UTC strings.

/** A decimal amount such as "10.00". */
export type DecimalString = string;

export interface Address {
  street?: string;
  city?: string;
  postalCode?: string;
  /** ISO 3166-1 alpha-2, e.g. "US" (needs the country module data; ignored when unknown). */
  country?: string;
}

export interface Customer {
  id: number;
  code: string;
  name: string;
  active: boolean;
  /** null: no credit limit set. */
  creditLimit: DecimalString | null;
  /** Receivables + confirmed, not yet invoiced sales. */
  creditUsed: DecimalString;
  currency: string;
  addresses: (Address & { id: number })[];
}

export type ValidateCustomerResult = { valid: true; customer: Customer } | { valid: false; reason: string };

export interface CreditCheckResult {
  approved: boolean;
  customerId: number;
  requested: DecimalString;
  creditLimit: DecimalString | null;
  creditUsed: DecimalString;
  /** creditLimit - creditUsed; null without a limit. */
  available: DecimalString | null;
  currency: string;
}

export interface PriceResult {
  sku: string;
  productId: number;
  quantity: number;
  unit: string;
  unitPrice: DecimalString;
  lineAmount: DecimalString;
  currency: string;
  taxes: { id: number; name: string; rate: DecimalString | null }[];
}

export interface AvailabilityResult {
  sku: string;
  productId: number;
  requested: number;
  /** Physically in the warehouse now. */
  onHand: number;
  /** On hand minus planned outgoing plus planned incoming. */
  forecast: number;
  /** min(onHand, forecast): what can still be promised. */
  availableToPromise: number;
  available: boolean;
}

export interface SalesOrderLineInput {
  sku: string;
  quantity: number;
  /** Omitted: the product's list price. */
  unitPrice?: DecimalString;
}

export interface CreateSalesOrderInput {
  /** The o2c order id; becomes the sale's `reference` (the natural idempotency key). */
  orderId: string;
  /** Party code or name (or numeric id as a string). */
  customer: string;
  lines: SalesOrderLineInput[];
  currency?: string;
  description?: string;
  /** Accept Tryton warnings instead of failing: the stock warning and/or the credit warning. */
  acceptWarnings?: ('stock' | 'credit')[];
}

export type SaleState = 'draft' | 'quotation' | 'confirmed' | 'processing' | 'done' | 'cancelled';

export interface SalesOrder {
  saleId: number;
  number: string | null;
  reference: string;
  state: SaleState;
  shipmentState: string;
  invoiceState: string;
  customerId: number;
  currency: string;
  untaxedAmount: DecimalString;
  taxAmount: DecimalString;
  totalAmount: DecimalString;
  shipmentIds: number[];
  invoiceIds: number[];
  /** False when an existing sale with this reference was found (a retry). */
  created: boolean;
}

export interface AllocationLine {
  sku: string;
  productId: number;
  requested: number;
  allocated: number;
  backordered: number;
}

export interface AllocationResult {
  saleId: number;
  status: 'allocated' | 'partial' | 'none';
  shipmentIds: number[];
  lines: AllocationLine[];
}

export type ShipmentState = 'draft' | 'waiting' | 'assigned' | 'picked' | 'packed' | 'done' | 'cancelled';

export interface Shipment {
  id: number;
  number: string | null;
  state: ShipmentState;
  /** Carrier tracking or other external reference. */
  reference: string | null;
  effectiveDate: string | null;
  saleIds: number[];
  lines: { sku: string; productId: number; quantity: number; state: string }[];
}

export interface ReleaseFulfillmentInput {
  shipmentId: number;
  /** Tracking number written to the shipment's reference. */
  tracking?: string;
  /** Ship what is reserved now and leave the rest for a backorder shipment (default false). */
  shipPartial?: boolean;
}

export interface Invoice {
  id: number;
  number: string | null;
  state: 'draft' | 'validated' | 'posted' | 'paid' | 'cancelled';
  customerId: number;
  currency: string;
  invoiceDate: string | null;
  untaxedAmount: DecimalString;
  taxAmount: DecimalString;
  totalAmount: DecimalString;
  amountToPay: DecimalString;
  saleIds: number[];
}

export interface RecordPaymentInput {
  invoiceId: number;
  amount: DecimalString;
  currency?: string;
  /** Payment method name or id; default: the first one. */
  paymentMethod?: string | number;
  /** YYYY-MM-DD, default today (server date). */
  date?: string;
  /** Idempotency key, stored as the payment line's description; a second call with it is a no-op. */
  paymentId?: string;
}

export interface PaymentStatus {
  invoiceId: number;
  status: 'unpaid' | 'partial' | 'paid' | 'cancelled' | 'not_posted';
  invoiceState: Invoice['state'];
  totalAmount: DecimalString;
  paidAmount: DecimalString;
  amountToPay: DecimalString;
  currency: string;
  payments: { moveLineId: number; amount: DecimalString; date: string | null; description: string | null }[];
}

export interface UpsertCustomerInput {
  code: string;
  name: string;
  address?: Address;
  creditLimit?: DecimalString | null;
}

export interface UpsertItemInput {
  sku: string;
  name: string;
  listPrice: DecimalString;
  /** Default goods (storable). */
  type?: 'goods' | 'service';
  active?: boolean;
}

export interface UpsertResult {
  id: number;
  created: boolean;
}

export interface CancelResult {
  saleId: number | null;
  state: SaleState | null;
  /** True when the sale ended cancelled (or never existed). */
  cancelled: boolean;
  cancelledShipmentIds: number[];
  cancelledInvoiceIds: number[];
  /** Why it could not be fully cancelled (e.g. shipment already done, invoice posted). */
  reason?: string;
}

export type ChangeKind = 'shipment_done' | 'invoice_posted' | 'invoice_paid';

export interface ChangeRecord {
  kind: ChangeKind;
  /** Stable per fact: `tryton:<kind>:<id>`; use it to deduplicate. */
  key: string;
  id: number;
  number: string | null;
  /** write_date of the record (ISO UTC). */
  at: string;
  saleIds: number[];
  /** The sales' references (o2c order ids). */
  orderIds: string[];
  shipment?: Shipment;
  invoice?: Invoice;
}

export interface WatermarkStore {
  load(): Promise<string | undefined>;
  save(w: string): Promise<void>;
}
