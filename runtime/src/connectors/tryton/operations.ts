// The Tryton driver's ERP operations as plain async functions over a TrytonClient. Every write is
// written to be safe to retry: creates look up their natural key first (sale reference, party
// code, product code, payment id), and buttons re-read the state before moving it on.
import { date, decimal, type TrytonClient } from './client.js';
import { TrytonError, TrytonStockError } from './errors.js';
import type {
  AllocationLine,
  AllocationResult,
  AvailabilityResult,
  CancelResult,
  CreateSalesOrderInput,
  CreditCheckResult,
  Customer,
  DecimalString,
  Invoice,
  PaymentStatus,
  PriceResult,
  RecordPaymentInput,
  ReleaseFulfillmentInput,
  SaleState,
  SalesOrder,
  Shipment,
  UpsertCustomerInput,
  UpsertItemInput,
  UpsertResult,
  ValidateCustomerResult,
} from './types.js';

type Row = Record<string, unknown> & { id: number };

// ---------------------------------------------------------------------------------------------
// Decimal arithmetic on strings (bigint, scaled), so money never goes through floats.

function scaleOf(a: string): number {
  const i = a.indexOf('.');
  return i < 0 ? 0 : a.length - i - 1;
}
function toUnits(a: string, scale: number): bigint {
  const neg = a.startsWith('-');
  const [int = '0', frac = ''] = (neg ? a.slice(1) : a).split('.');
  const v = BigInt(int + frac.padEnd(scale, '0').slice(0, scale));
  return neg ? -v : v;
}
function fromUnits(v: bigint, scale: number): string {
  const neg = v < 0n;
  const s = (neg ? -v : v).toString().padStart(scale + 1, '0');
  const out = scale === 0 ? s : `${s.slice(0, -scale)}.${s.slice(-scale)}`;
  return neg ? `-${out}` : out;
}
/** a - b, a + b, compare, as decimal strings. */
export const dec = {
  sub(a: string, b: string): string {
    const s = Math.max(scaleOf(a), scaleOf(b), 2);
    return fromUnits(toUnits(a, s) - toUnits(b, s), s);
  },
  add(a: string, b: string): string {
    const s = Math.max(scaleOf(a), scaleOf(b), 2);
    return fromUnits(toUnits(a, s) + toUnits(b, s), s);
  },
  cmp(a: string, b: string): number {
    const s = Math.max(scaleOf(a), scaleOf(b));
    const d = toUnits(a, s) - toUnits(b, s);
    return d < 0n ? -1 : d > 0n ? 1 : 0;
  },
  /** price × quantity, rounded half-up to `scale` digits. */
  mul(price: string, quantity: number, scale = 2): string {
    const qs = scaleOf(String(quantity));
    const ps = scaleOf(price);
    const raw = toUnits(price, ps) * toUnits(String(quantity), qs);
    const from = ps + qs;
    if (from <= scale) return fromUnits(raw * 10n ** BigInt(scale - from), scale);
    const div = 10n ** BigInt(from - scale);
    const half = div / 2n;
    const rounded = raw >= 0n ? (raw + half) / div : -((-raw + half) / div);
    return fromUnits(rounded, scale);
  },
};

/** A decimal string with at least two fraction digits ("0" → "0.00", "12.5" → "12.50"). */
function money(v: unknown): DecimalString {
  if (v === null || v === undefined || v === false) return '0.00';
  let s = String(v);
  // Tryton returns prices with up to 4+ digits ("10.0000"): drop zeros beyond the second digit.
  while (scaleOf(s) > 2 && s.endsWith('0')) s = s.slice(0, -1);
  return scaleOf(s) >= 2 ? s : fromUnits(toUnits(s, 2), 2);
}

// ---------------------------------------------------------------------------------------------
// Lookups, cached per client.

interface Cached {
  warehouseId?: number;
  currencies: Map<number | string, { id: number; code: string }>;
  paymentMethods?: { id: number; name: string }[];
}
const caches = new WeakMap<TrytonClient, Cached>();
function cache(c: TrytonClient): Cached {
  let v = caches.get(c);
  if (!v) {
    v = { currencies: new Map() };
    caches.set(c, v);
  }
  return v;
}

async function warehouseId(c: TrytonClient): Promise<number> {
  const k = cache(c);
  if (k.warehouseId === undefined) {
    const [id] = await c.search('stock.location', [['type', '=', 'warehouse']], {
      limit: 1,
      order: [['id', 'ASC']],
    });
    if (id === undefined) throw new TrytonError('not_found', 'Tryton has no warehouse location');
    k.warehouseId = id;
  }
  return k.warehouseId;
}

async function currencyCode(c: TrytonClient, id: number): Promise<string> {
  const k = cache(c);
  const hit = k.currencies.get(id);
  if (hit) return hit.code;
  const [row] = await c.read<{ code: string }>('currency.currency', [id], ['code']);
  if (!row) throw new TrytonError('not_found', `currency ${id} not found`);
  k.currencies.set(id, { id, code: row.code });
  k.currencies.set(row.code, { id, code: row.code });
  return row.code;
}

async function currencyId(c: TrytonClient, code: string): Promise<number> {
  const k = cache(c);
  const hit = k.currencies.get(code);
  if (hit) return hit.id;
  const [id] = await c.search('currency.currency', [['code', '=', code]], { limit: 1 });
  if (id === undefined) throw new TrytonError('validation', `currency ${code} is not known to Tryton`);
  k.currencies.set(code, { id, code });
  k.currencies.set(id, { id, code });
  return id;
}

async function companyCurrency(c: TrytonClient): Promise<number> {
  const ctx = await c.context();
  const [company] = await c.read<{ currency: number }>(
    'company.company',
    [Number(ctx.company)],
    ['currency'],
  );
  if (!company) throw new TrytonError('not_found', 'the user has no company');
  return company.currency;
}

const PARTY_FIELDS = [
  'code',
  'name',
  'active',
  'credit_limit_amount',
  'credit_amount',
  'addresses',
  'customer_payment_term',
];

async function findParty(c: TrytonClient, customer: string): Promise<Row | undefined> {
  const active = { context: { active_test: false } };
  let ids = await c.search('party.party', [['code', '=', customer]], { limit: 1, ...active });
  if (ids.length === 0)
    ids = await c.search('party.party', [['name', '=', customer]], { limit: 2, ...active });
  if (ids.length === 0 && /^\d+$/.test(customer))
    ids = await c.search('party.party', [['id', '=', Number(customer)]], { limit: 1, ...active });
  if (ids.length > 1)
    throw new TrytonError('validation', `customer name "${customer}" is ambiguous; use its code`);
  if (ids.length === 0) return undefined;
  const [row] = await c.read<Row>('party.party', ids, PARTY_FIELDS, active);
  return row;
}

async function requireParty(c: TrytonClient, customer: string): Promise<Row> {
  const row = await findParty(c, customer);
  if (!row) throw new TrytonError('not_found', `customer ${customer} not found in Tryton`);
  return row;
}

async function toCustomer(c: TrytonClient, p: Row): Promise<Customer> {
  const addresses = await c.read<{ street: string | null; city: string | null; postal_code: string | null }>(
    'party.address',
    (p.addresses as number[]) ?? [],
    ['street', 'city', 'postal_code'],
  );
  return {
    id: p.id,
    code: String(p.code ?? ''),
    name: String(p.name ?? ''),
    active: p.active !== false,
    creditLimit:
      p.credit_limit_amount === null || p.credit_limit_amount === undefined
        ? null
        : String(p.credit_limit_amount),
    creditUsed: money(p.credit_amount),
    currency: await currencyCode(c, await companyCurrency(c)),
    addresses: addresses.map((a) => ({
      id: a.id,
      street: a.street ?? undefined,
      city: a.city ?? undefined,
      postalCode: a.postal_code ?? undefined,
    })),
  };
}

interface ProductRow extends Row {
  code: string;
  name: string;
  default_uom: number;
  template: number;
  list_price: string | null;
  active: boolean;
}

async function findProduct(c: TrytonClient, sku: string): Promise<ProductRow | undefined> {
  const rows = await c.searchRead<ProductRow>(
    'product.product',
    [['code', '=', sku]],
    ['code', 'name', 'default_uom', 'template', 'list_price', 'active'],
    { limit: 2, context: { active_test: false } },
  );
  if (rows.length > 1) throw new TrytonError('validation', `product code ${sku} is not unique in Tryton`);
  return rows[0];
}

async function requireProduct(c: TrytonClient, sku: string): Promise<ProductRow> {
  const p = await findProduct(c, sku);
  if (!p) throw new TrytonError('not_found', `item ${sku} not found in Tryton`);
  if (!p.active) throw new TrytonError('validation', `item ${sku} is inactive in Tryton`);
  return p;
}

async function customerTaxes(c: TrytonClient, templateIds: number[]): Promise<Map<number, number[]>> {
  const templates = await c.read<{ account_category: number | null }>(
    'product.template',
    [...new Set(templateIds)],
    ['account_category'],
  );
  const categoryIds = [...new Set(templates.map((t) => t.account_category).filter((x): x is number => !!x))];
  const categories = await c.read<{ customer_taxes_used: number[] }>('product.category', categoryIds, [
    'customer_taxes_used',
  ]);
  const byCategory = new Map(categories.map((r) => [r.id, r.customer_taxes_used ?? []]));
  return new Map(
    templates.map((t) => [t.id, t.account_category ? (byCategory.get(t.account_category) ?? []) : []]),
  );
}

// ---------------------------------------------------------------------------------------------
// Customer, credit, price, availability.

export async function validateCustomer(c: TrytonClient, customer: string): Promise<ValidateCustomerResult> {
  const p = await findParty(c, customer);
  if (!p) return { valid: false, reason: `customer ${customer} not found` };
  if (p.active === false) return { valid: false, reason: `customer ${customer} is inactive` };
  const full = await toCustomer(c, p);
  if (full.addresses.length === 0) return { valid: false, reason: `customer ${customer} has no address` };
  return { valid: true, customer: full };
}

/** Would `amount` more (untaxed, company currency) stay within the customer's credit limit? */
export async function checkCredit(
  c: TrytonClient,
  customer: string,
  amount: DecimalString,
): Promise<CreditCheckResult> {
  const p = await requireParty(c, customer);
  const currency = await currencyCode(c, await companyCurrency(c));
  const used = money(p.credit_amount);
  const limit =
    p.credit_limit_amount === null || p.credit_limit_amount === undefined
      ? null
      : money(p.credit_limit_amount);
  const available = limit === null ? null : dec.sub(limit, used);
  return {
    approved: available === null || dec.cmp(amount, available) <= 0,
    customerId: p.id,
    requested: amount,
    creditLimit: limit,
    creditUsed: used,
    available,
    currency,
  };
}

export async function getPrice(
  c: TrytonClient,
  sku: string,
  quantity: number,
  opts: { customer?: string } = {},
): Promise<PriceResult> {
  const p = await requireProduct(c, sku);
  const context: Record<string, unknown> = { quantity };
  if (opts.customer) context.customer = (await requireParty(c, opts.customer)).id;
  const [priced] = await c.read<{ sale_price_uom: string | null }>(
    'product.product',
    [p.id],
    ['sale_price_uom'],
    {
      context,
    },
  );
  const unitPrice = priced?.sale_price_uom ?? p.list_price;
  if (unitPrice === null || unitPrice === undefined)
    throw new TrytonError('validation', `item ${sku} has no price`);
  const taxIds = (await customerTaxes(c, [p.template])).get(p.template) ?? [];
  const taxes = await c.read<{ name: string; rate: string | null }>('account.tax', taxIds, ['name', 'rate']);
  const [uom] = await c.read<{ symbol: string }>('product.uom', [p.default_uom], ['symbol']);
  return {
    sku,
    productId: p.id,
    quantity,
    unit: uom?.symbol ?? '',
    unitPrice: money(unitPrice),
    lineAmount: dec.mul(String(unitPrice), quantity),
    currency: await currencyCode(c, await companyCurrency(c)),
    taxes: taxes.map((t) => ({ id: t.id, name: t.name, rate: t.rate })),
  };
}

export async function checkAvailability(
  c: TrytonClient,
  sku: string,
  quantity: number,
): Promise<AvailabilityResult> {
  const p = await requireProduct(c, sku);
  const wh = await warehouseId(c);
  const [row] = await c.read<{ quantity: number; forecast_quantity: number }>(
    'product.product',
    [p.id],
    ['quantity', 'forecast_quantity'],
    { context: { locations: [wh] } },
  );
  const onHand = row?.quantity ?? 0;
  const forecast = row?.forecast_quantity ?? 0;
  const atp = Math.max(0, Math.min(onHand, forecast));
  return {
    sku,
    productId: p.id,
    requested: quantity,
    onHand,
    forecast,
    availableToPromise: atp,
    available: atp >= quantity,
  };
}

// ---------------------------------------------------------------------------------------------
// Sales orders.

const SALE_FIELDS = [
  'number',
  'reference',
  'state',
  'shipment_state',
  'invoice_state',
  'party',
  'currency',
  'untaxed_amount',
  'tax_amount',
  'total_amount',
  'shipments',
  'invoices',
];

async function readSale(c: TrytonClient, id: number, created: boolean): Promise<SalesOrder> {
  const [s] = await c.read<Row>('sale.sale', [id], SALE_FIELDS);
  if (!s) throw new TrytonError('not_found', `sale ${id} not found`);
  return {
    saleId: s.id,
    number: (s.number as string | null) ?? null,
    reference: String(s.reference ?? ''),
    state: s.state as SaleState,
    shipmentState: String(s.shipment_state),
    invoiceState: String(s.invoice_state),
    customerId: Number(s.party),
    currency: await currencyCode(c, Number(s.currency)),
    untaxedAmount: money(s.untaxed_amount),
    taxAmount: money(s.tax_amount),
    totalAmount: money(s.total_amount),
    shipmentIds: (s.shipments as number[]) ?? [],
    invoiceIds: (s.invoices as number[]) ?? [],
    created,
  };
}

export async function getSalesOrder(c: TrytonClient, orderId: string): Promise<SalesOrder | undefined> {
  const ids = await findSalesByReference(c, orderId);
  return ids[0] === undefined ? undefined : readSale(c, ids[0], false);
}

/** Sales with reference = orderId, oldest first. */
export async function findSalesByReference(c: TrytonClient, orderId: string): Promise<number[]> {
  return c.search('sale.sale', [['reference', '=', orderId]], { order: [['id', 'ASC']] });
}

/** Runs a button; accepts the listed kinds of UserWarning (by recording them for the user) and retries. */
async function buttonAccepting(
  c: TrytonClient,
  model: string,
  name: string,
  id: number,
  accept: readonly ('stock' | 'credit')[],
): Promise<void> {
  const accepted = new Set<string>();
  for (;;) {
    try {
      await c.button(model, name, [id]);
      return;
    } catch (err) {
      if (
        err instanceof TrytonError &&
        err.trytonType === 'UserWarning' &&
        err.warningName &&
        !accepted.has(err.warningName) &&
        (err.kind === 'stock' || err.kind === 'credit') &&
        accept.includes(err.kind)
      ) {
        accepted.add(err.warningName);
        await c.create('res.user.warning', [{ user: c.userId, name: err.warningName, always: false }]);
        continue;
      }
      throw err;
    }
  }
}

const inFlight = new Map<string, Promise<unknown>>();

/** Serialises calls per key in this process. */
async function serialised<T>(key: string, fn: () => Promise<T>): Promise<T> {
  const prev = inFlight.get(key) ?? Promise.resolve();
  const run = prev.then(fn, fn);
  const tail = run.catch(() => undefined);
  inFlight.set(key, tail);
  try {
    return await run;
  } finally {
    if (inFlight.get(key) === tail) inFlight.delete(key);
  }
}

/**
 * Creates (or finds) the sale with reference = orderId, then quotes and confirms it. Never makes a
 * second sale for one orderId: looks the reference up first (creates serialised per reference in
 * this process) and, should a concurrent creator elsewhere have raced us, keeps the oldest sale and
 * deletes the younger draft right after the create.
 */
export async function createSalesOrder(c: TrytonClient, input: CreateSalesOrderInput): Promise<SalesOrder> {
  if (!input.orderId) throw new TrytonError('validation', 'orderId is required');
  if (input.lines.length === 0) throw new TrytonError('validation', 'a sales order needs at least one line');
  return serialised(`${c.url}|sale|${input.orderId}`, async () => {
    let created = false;
    let [saleId] = await findSalesByReference(c, input.orderId);
    if (saleId === undefined) {
      const values = await saleValues(c, input);
      const [id] = await c.create('sale.sale', [values]);
      if (id === undefined) throw new TrytonError('unknown', 'Tryton created no sale');
      const all = await findSalesByReference(c, input.orderId);
      saleId = all[0] ?? id;
      if (saleId !== id) {
        // Lost a race with another creator: remove our younger draft and continue with the oldest.
        await c.model('sale.sale', 'delete', [[id]]).catch(() => undefined);
      } else {
        created = true;
      }
    }
    const accept = input.acceptWarnings ?? [];
    let sale = await readSale(c, saleId, created);
    if (sale.state === 'draft') {
      await buttonAccepting(c, 'sale.sale', 'quote', saleId, accept);
      sale = await readSale(c, saleId, created);
    }
    if (sale.state === 'quotation') {
      await buttonAccepting(c, 'sale.sale', 'confirm', saleId, accept);
      sale = await readSale(c, saleId, created);
    }
    return sale;
  });
}

async function saleValues(c: TrytonClient, input: CreateSalesOrderInput): Promise<Record<string, unknown>> {
  const party = await requireParty(c, input.customer);
  if (party.active === false) throw new TrytonError('validation', `customer ${input.customer} is inactive`);
  const addresses = (party.addresses as number[]) ?? [];
  if (addresses.length === 0)
    throw new TrytonError('validation', `customer ${input.customer} has no address`);
  const products = await Promise.all(input.lines.map((l) => requireProduct(c, l.sku)));
  const taxes = await customerTaxes(
    c,
    products.map((p) => p.template),
  );
  let paymentTerm = party.customer_payment_term as number | null;
  if (!paymentTerm) {
    const [cfg] = await c.read<{ default_customer_payment_term: number | null }>(
      'account.configuration',
      [1],
      ['default_customer_payment_term'],
    );
    paymentTerm = cfg?.default_customer_payment_term ?? null;
  }
  const values: Record<string, unknown> = {
    party: party.id,
    invoice_address: addresses[0],
    shipment_address: addresses[0],
    reference: input.orderId,
    description: input.description ?? `o2c order ${input.orderId}`,
    lines: [
      [
        'create',
        input.lines.map((l, i) => {
          const p = products[i]!;
          if (!(l.quantity > 0))
            throw new TrytonError('validation', `line ${i + 1}: quantity must be positive`);
          const price = l.unitPrice ?? p.list_price;
          if (price === null || price === undefined)
            throw new TrytonError('validation', `item ${l.sku} has no price`);
          return {
            type: 'line',
            sequence: i + 1,
            product: p.id,
            description: p.name,
            quantity: l.quantity,
            unit: p.default_uom,
            unit_price: decimal(price),
            taxes: [['add', taxes.get(p.template) ?? []]],
          };
        }),
      ],
    ],
  };
  if (paymentTerm) values.payment_term = paymentTerm;
  if (input.currency) values.currency = await currencyId(c, input.currency);
  return values;
}

/**
 * Compensation: cancels the sale for orderId (or saleId). Draft and quotation sales are cancelled;
 * for a processing sale the shipments not yet done and invoices not yet posted are cancelled, and
 * the result says what could not be undone.
 */
export async function cancelSalesOrder(
  c: TrytonClient,
  ref: { orderId?: string; saleId?: number },
): Promise<CancelResult> {
  const saleId = ref.saleId ?? (ref.orderId ? (await findSalesByReference(c, ref.orderId))[0] : undefined);
  const result: CancelResult = {
    saleId: saleId ?? null,
    state: null,
    cancelled: true,
    cancelledShipmentIds: [],
    cancelledInvoiceIds: [],
  };
  if (saleId === undefined) return result;
  let sale = await readSale(c, saleId, false);
  if (sale.state === 'confirmed') {
    await c.button('sale.sale', 'draft', [saleId]).catch(() => undefined);
    sale = await readSale(c, saleId, false);
  }
  if (sale.state === 'draft' || sale.state === 'quotation') {
    await c.button('sale.sale', 'cancel', [saleId]);
    sale = await readSale(c, saleId, false);
  } else if (sale.state === 'processing') {
    const reasons: string[] = [];
    const shipments = await c.read<{ state: string }>('stock.shipment.out', sale.shipmentIds, ['state']);
    const open = shipments.filter((s) =>
      ['draft', 'waiting', 'assigned', 'picked', 'packed'].includes(s.state),
    );
    if (shipments.some((s) => s.state === 'done')) reasons.push('a shipment is already done');
    const packed = open.filter((s) => s.state === 'packed' || s.state === 'picked');
    if (packed.length) reasons.push('a shipment is already picked or packed');
    const cancellable = open.filter((s) => !packed.includes(s)).map((s) => s.id);
    if (cancellable.length) {
      await c.button('stock.shipment.out', 'cancel', cancellable);
      result.cancelledShipmentIds = cancellable;
    }
    const invoices = await c.read<{ state: string }>('account.invoice', sale.invoiceIds, ['state']);
    const draftInvoices = invoices
      .filter((i) => i.state === 'draft' || i.state === 'validated')
      .map((i) => i.id);
    if (invoices.some((i) => i.state === 'posted' || i.state === 'paid'))
      reasons.push('an invoice is already posted');
    if (draftInvoices.length) {
      await c.button('account.invoice', 'cancel', draftInvoices);
      result.cancelledInvoiceIds = draftInvoices;
    }
    sale = await readSale(c, saleId, false);
    if (reasons.length) result.reason = reasons.join('; ');
  }
  result.state = sale.state;
  result.cancelled = sale.state === 'cancelled' || (sale.state === 'processing' && !result.reason);
  return result;
}

// ---------------------------------------------------------------------------------------------
// Shipments.

interface MoveRow extends Row {
  product: number;
  quantity: number;
  state: string;
}

async function productCodes(c: TrytonClient, ids: number[]): Promise<Map<number, string>> {
  const rows = await c.read<{ code: string }>('product.product', [...new Set(ids)], ['code']);
  return new Map(rows.map((r) => [r.id, r.code]));
}

/** Tries to reserve stock for the sale's waiting shipments; partial → backordered quantities. */
export async function allocateInventory(c: TrytonClient, saleId: number): Promise<AllocationResult> {
  const sale = await readSale(c, saleId, false);
  if (sale.state !== 'processing' && sale.state !== 'done') {
    throw new TrytonError(
      'validation',
      `sale ${saleId} is ${sale.state}: only processing sales have shipments`,
    );
  }
  const shipments = await c.read<{ state: string; inventory_moves: number[]; outgoing_moves: number[] }>(
    'stock.shipment.out',
    sale.shipmentIds,
    ['state', 'inventory_moves', 'outgoing_moves'],
  );
  const waiting = shipments.filter((s) => s.state === 'waiting').map((s) => s.id);
  for (const id of waiting) await c.button('stock.shipment.out', 'assign_try', [id]);
  const active = shipments.filter((s) => s.state !== 'cancelled');
  const refreshed = await c.read<{ inventory_moves: number[]; outgoing_moves: number[] }>(
    'stock.shipment.out',
    active.map((s) => s.id),
    ['inventory_moves', 'outgoing_moves'],
  );
  const invMoves = await c.read<MoveRow>(
    'stock.move',
    refreshed.flatMap((s) => s.inventory_moves),
    ['product', 'quantity', 'state'],
  );
  const outMoves = await c.read<MoveRow>(
    'stock.move',
    refreshed.flatMap((s) => s.outgoing_moves),
    ['product', 'quantity', 'state'],
  );
  const lines = new Map<number, AllocationLine>();
  const line = (product: number) => {
    let l = lines.get(product);
    if (!l) {
      l = { sku: '', productId: product, requested: 0, allocated: 0, backordered: 0 };
      lines.set(product, l);
    }
    return l;
  };
  for (const m of outMoves) if (m.state !== 'cancelled') line(m.product).requested += m.quantity;
  for (const m of invMoves)
    if (m.state === 'assigned' || m.state === 'done') line(m.product).allocated += m.quantity;
  // A done shipment's outgoing moves count as allocated (inventory moves may be gone).
  for (const m of outMoves)
    if (m.state === 'done') line(m.product).allocated = Math.max(line(m.product).allocated, m.quantity);
  const codes = await productCodes(c, [...lines.keys()]);
  let allocatedAny = false;
  let short = false;
  for (const l of lines.values()) {
    l.sku = codes.get(l.productId) ?? '';
    l.allocated = Math.min(l.allocated, l.requested);
    l.backordered = Math.max(0, l.requested - l.allocated);
    if (l.allocated > 0) allocatedAny = true;
    if (l.backordered > 0) short = true;
  }
  return {
    saleId,
    status: !short ? 'allocated' : allocatedAny ? 'partial' : 'none',
    shipmentIds: active.map((s) => s.id),
    lines: [...lines.values()],
  };
}

export async function getShipment(c: TrytonClient, shipmentId: number): Promise<Shipment> {
  const [s] = await c.read<Row>(
    'stock.shipment.out',
    [shipmentId],
    ['number', 'state', 'reference', 'effective_date', 'outgoing_moves'],
  );
  if (!s) throw new TrytonError('not_found', `shipment ${shipmentId} not found`);
  const moves = await c.read<MoveRow>('stock.move', (s.outgoing_moves as number[]) ?? [], [
    'product',
    'quantity',
    'state',
  ]);
  const codes = await productCodes(
    c,
    moves.map((m) => m.product),
  );
  const saleIds = await c.search('sale.sale', [['shipments', 'in', [shipmentId]]]);
  return {
    id: s.id,
    number: (s.number as string | null) ?? null,
    state: s.state as Shipment['state'],
    reference: (s.reference as string | null) || null,
    effectiveDate: (s.effective_date as string | null) ?? null,
    saleIds,
    lines: moves.map((m) => ({
      sku: codes.get(m.product) ?? '',
      productId: m.product,
      quantity: m.quantity,
      state: m.state,
    })),
  };
}

/** Moves a shipment on to done: (assign) → pick → pack → done. Safe to call again. */
export async function releaseFulfillment(c: TrytonClient, input: ReleaseFulfillmentInput): Promise<Shipment> {
  const id = input.shipmentId;
  const state = async () =>
    (await c.read<{ state: string }>('stock.shipment.out', [id], ['state']))[0]?.state;
  let s = await state();
  if (s === undefined) throw new TrytonError('not_found', `shipment ${id} not found`);
  if (s === 'cancelled') throw new TrytonError('validation', `shipment ${id} is cancelled`);
  if (s === 'draft') {
    await c.button('stock.shipment.out', 'wait', [id]);
    s = await state();
  }
  if (s === 'waiting') {
    const assigned = await c.button<boolean>('stock.shipment.out', 'assign_try', [id]);
    if (!assigned) {
      if (!input.shipPartial) {
        throw new TrytonStockError(
          `shipment ${id} cannot be fully reserved; release with shipPartial or wait for stock`,
        );
      }
      // Ship what is reserved; Tryton's sale creates a backorder shipment for the rest.
      await c.wizard('stock.shipment.assign', 'ignore', {}, { model: 'stock.shipment.out', ids: [id] });
    }
    s = await state();
  }
  if (input.tracking && s !== 'done') {
    await c.write('stock.shipment.out', [id], { reference: input.tracking });
  }
  if (s === 'assigned') {
    await c.button('stock.shipment.out', 'pick', [id]);
    s = await state();
  }
  if (s === 'picked') {
    await c.button('stock.shipment.out', 'pack', [id]);
    s = await state();
  }
  if (s === 'packed') {
    await c.button('stock.shipment.out', 'done', [id]);
  }
  return getShipment(c, id);
}

// ---------------------------------------------------------------------------------------------
// Invoices and payments.

const INVOICE_FIELDS = [
  'number',
  'state',
  'party',
  'currency',
  'invoice_date',
  'untaxed_amount',
  'tax_amount',
  'total_amount',
  'amount_to_pay',
  'sales',
];

export async function getInvoice(c: TrytonClient, invoiceId: number): Promise<Invoice> {
  const [i] = await c.read<Row>('account.invoice', [invoiceId], INVOICE_FIELDS);
  if (!i) throw new TrytonError('not_found', `invoice ${invoiceId} not found`);
  return toInvoice(c, i);
}

async function toInvoice(c: TrytonClient, i: Row): Promise<Invoice> {
  return {
    id: i.id,
    number: (i.number as string | null) ?? null,
    state: i.state as Invoice['state'],
    customerId: Number(i.party),
    currency: await currencyCode(c, Number(i.currency)),
    invoiceDate: (i.invoice_date as string | null) ?? null,
    untaxedAmount: money(i.untaxed_amount),
    taxAmount: money(i.tax_amount),
    totalAmount: money(i.total_amount),
    amountToPay: money(i.amount_to_pay),
    saleIds: (i.sales as number[]) ?? [],
  };
}

/** Posts a draft or validated invoice; an invoice already posted or paid is returned as it is. */
export async function postInvoice(c: TrytonClient, invoiceId: number): Promise<Invoice> {
  const inv = await getInvoice(c, invoiceId);
  if (inv.state === 'cancelled') throw new TrytonError('validation', `invoice ${invoiceId} is cancelled`);
  if (inv.state === 'draft' || inv.state === 'validated') {
    await c.button('account.invoice', 'post', [invoiceId]);
    return getInvoice(c, invoiceId);
  }
  return inv;
}

async function paymentMethodId(c: TrytonClient, method: string | number | undefined): Promise<number> {
  const k = cache(c);
  if (!k.paymentMethods) {
    k.paymentMethods = await c.searchRead<{ name: string }>('account.invoice.payment.method', [], ['name'], {
      order: [['id', 'ASC']],
    });
  }
  const found =
    method === undefined
      ? k.paymentMethods[0]
      : k.paymentMethods.find((m) => m.id === method || m.name === method || String(m.id) === String(method));
  if (!found) throw new TrytonError('validation', `payment method ${method ?? '(any)'} not found in Tryton`);
  return found.id;
}

/** Records a payment on a posted invoice with Tryton's pay wizard; idempotent by paymentId. */
export async function recordPayment(c: TrytonClient, input: RecordPaymentInput): Promise<PaymentStatus> {
  const [raw] = await c.read<Row>(
    'account.invoice',
    [input.invoiceId],
    [...INVOICE_FIELDS, 'company', 'account', 'payment_lines'],
  );
  if (!raw) throw new TrytonError('not_found', `invoice ${input.invoiceId} not found`);
  const inv = await toInvoice(c, raw);
  if (input.paymentId) {
    const done = await paymentLines(c, (raw.payment_lines as number[]) ?? []);
    if (done.some((l) => l.description === input.paymentId)) return getPaymentStatus(c, input.invoiceId);
  }
  if (inv.state === 'paid') {
    throw new TrytonError('validation', `invoice ${input.invoiceId} is already paid`);
  }
  if (inv.state !== 'posted')
    throw new TrytonError('validation', `invoice ${input.invoiceId} is ${inv.state}, not posted`);
  if (input.currency && input.currency !== inv.currency) {
    throw new TrytonError(
      'validation',
      `payment currency ${input.currency} differs from the invoice's ${inv.currency}`,
    );
  }
  if (dec.cmp(input.amount, '0') <= 0) throw new TrytonError('validation', 'payment amount must be positive');
  if (dec.cmp(input.amount, inv.amountToPay) > 0) {
    throw new TrytonError(
      'validation',
      `payment ${input.amount} exceeds the amount to pay ${inv.amountToPay}`,
    );
  }
  const start = {
    amount: decimal(input.amount),
    currency: Number(raw.currency),
    currency_digits: 2,
    description: input.paymentId ?? `o2c payment ${inv.number ?? inv.id}`,
    company: raw.company,
    invoice_account: raw.account,
    payment_method: await paymentMethodId(c, input.paymentMethod),
    date: date(input.date ?? inv.invoiceDate ?? new Date().toISOString().slice(0, 10)),
  };
  await c.wizard(
    'account.invoice.pay',
    'pay',
    { start, ask: { type: 'partial' } },
    {
      model: 'account.invoice',
      ids: [input.invoiceId],
    },
  );
  return getPaymentStatus(c, input.invoiceId);
}

/** Payment move lines with their move's description (where the pay wizard keeps it). */
async function paymentLines(c: TrytonClient, ids: number[]): Promise<PaymentStatus['payments']> {
  const lines = await c.read<{ debit: string; credit: string; date: string | null; move: number }>(
    'account.move.line',
    ids,
    ['debit', 'credit', 'date', 'move'],
  );
  const moves = await c.read<{ description: string | null }>(
    'account.move',
    [...new Set(lines.map((l) => l.move))],
    ['description'],
  );
  const desc = new Map(moves.map((m) => [m.id, m.description]));
  return lines.map((l) => ({
    moveLineId: l.id,
    amount: dec.sub(l.credit, l.debit),
    date: l.date,
    description: desc.get(l.move) ?? null,
  }));
}

export async function getPaymentStatus(c: TrytonClient, invoiceId: number): Promise<PaymentStatus> {
  const [raw] = await c.read<Row>('account.invoice', [invoiceId], [...INVOICE_FIELDS, 'payment_lines']);
  if (!raw) throw new TrytonError('not_found', `invoice ${invoiceId} not found`);
  const inv = await toInvoice(c, raw);
  const lines = await paymentLines(c, (raw.payment_lines as number[]) ?? []);
  const paid = inv.state === 'paid' ? inv.totalAmount : dec.sub(inv.totalAmount, inv.amountToPay);
  let status: PaymentStatus['status'];
  if (inv.state === 'paid') status = 'paid';
  else if (inv.state === 'cancelled') status = 'cancelled';
  else if (inv.state !== 'posted') status = 'not_posted';
  else status = dec.cmp(paid, '0') > 0 ? 'partial' : 'unpaid';
  return {
    invoiceId,
    status,
    invoiceState: inv.state,
    totalAmount: inv.totalAmount,
    paidAmount: inv.state === 'posted' || inv.state === 'paid' ? paid : '0.00',
    amountToPay: inv.amountToPay,
    currency: inv.currency,
    payments: lines,
  };
}

// ---------------------------------------------------------------------------------------------
// Master data.

export async function upsertCustomer(c: TrytonClient, input: UpsertCustomerInput): Promise<UpsertResult> {
  if (!input.code || !input.name) throw new TrytonError('validation', 'customer code and name are required');
  const [existing] = await c.search('party.party', [['code', '=', input.code]], {
    limit: 1,
    context: { active_test: false },
  });
  const values: Record<string, unknown> = { name: input.name };
  if (input.creditLimit !== undefined) {
    values.credit_limit_amount = input.creditLimit === null ? null : decimal(input.creditLimit);
  }
  const addr = input.address
    ? {
        street: input.address.street ?? null,
        city: input.address.city ?? null,
        postal_code: input.address.postalCode ?? null,
      }
    : undefined;
  if (existing === undefined) {
    const [id] = await c.create('party.party', [
      { ...values, code: input.code, addresses: [['create', [addr ?? {}]]] },
    ]);
    return { id: id!, created: true };
  }
  await c.write('party.party', [existing], { ...values, active: true });
  if (addr) {
    const [p] = await c.read<{ addresses: number[] }>('party.party', [existing], ['addresses']);
    const first = p?.addresses[0];
    if (first === undefined) await c.write('party.party', [existing], { addresses: [['create', [addr]]] });
    else await c.write('party.address', [first], addr);
  }
  return { id: existing, created: false };
}

export async function upsertItem(
  c: TrytonClient,
  input: UpsertItemInput,
  opts: { accountCategory?: string } = {},
): Promise<UpsertResult> {
  if (!input.sku || !input.name) throw new TrytonError('validation', 'item sku and name are required');
  const existing = await findProduct(c, input.sku);
  const active = input.active ?? true;
  if (existing) {
    await c.write('product.template', [existing.template], {
      name: input.name,
      list_price: decimal(input.listPrice),
      active,
    });
    if (existing.active !== active) await c.write('product.product', [existing.id], { active });
    return { id: existing.id, created: false };
  }
  const [unit] = await c.search('product.uom', [['name', '=', 'Unit']], { limit: 1 });
  const categoryDomain: unknown[] = [['accounting', '=', true]];
  if (opts.accountCategory) categoryDomain.push(['name', '=', opts.accountCategory]);
  const [category] = await c.search('product.category', categoryDomain, { limit: 1, order: [['id', 'ASC']] });
  if (unit === undefined) throw new TrytonError('not_found', 'product unit "Unit" not found');
  const [templateId] = await c.create('product.template', [
    {
      name: input.name,
      type: input.type ?? 'goods',
      salable: true,
      default_uom: unit,
      sale_uom: unit,
      list_price: decimal(input.listPrice),
      active,
      ...(category !== undefined ? { account_category: category } : {}),
      products: [['create', [{ suffix_code: input.sku, active }]]],
    },
  ]);
  const p = await findProduct(c, input.sku);
  if (!p)
    throw new TrytonError('unknown', `item ${input.sku} not found after creating template ${templateId}`);
  return { id: p.id, created: true };
}
