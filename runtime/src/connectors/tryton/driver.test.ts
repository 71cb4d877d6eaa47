import { describe, expect, it } from 'vitest';
import { ErrorClass } from '../../gen/o2c/v1/common_pb.js';
import type { CredentialSource } from '../credentials.js';
import { ConnectorFailure } from '../driver.js';
import { TrytonClient, type TrytonClientOptions } from './client.js';
import { busyMs, databaseUrl, parseOptions, TrytonDriver, trytonFailure } from './driver.js';
import { fromHttpStatus, fromRpcError, TrytonError } from './errors.js';
import type { ChangeRecord } from './types.js';

class MutableCredentials implements CredentialSource {
  version = 1;
  constructor(public values: Record<string, string>) {}
  get() {
    return this.values;
  }
  require(key: string) {
    const v = this.values[key];
    if (v === undefined) throw new Error(`no ${key}`);
    return v;
  }
}

function driver(
  opts: Record<string, unknown> = {},
  creds = new MutableCredentials({ username: 'u', password: 'p' }),
) {
  const built: TrytonClientOptions[] = [];
  const d = new TrytonDriver({
    config: { name: 'erp', system: 'erp', driver: 'tryton', endpoint: 'http://tryton:8000/', options: opts },
    credentials: creds,
    clientFactory: (o) => {
      built.push(o);
      return new TrytonClient(o);
    },
  });
  return { d, built, creds };
}

describe('tryton driver error mapping', () => {
  it('maps Tryton errors to error classes, retryable only for transient ones', () => {
    const cases: [TrytonError, ErrorClass, boolean][] = [
      [
        fromRpcError(['UserError', ['The field "Party" is required.', '', null]], 'm'),
        ErrorClass.VALIDATION,
        false,
      ],
      [
        fromRpcError(
          ['UserWarning', ['credit_limit_amount_sale.sale,3', 'Tight has reached the limit', '']],
          'm',
        ),
        ErrorClass.CREDIT,
        false,
      ],
      [
        fromRpcError(['UserWarning', ['stock_quantity_warning_7', 'The forcast quantity is lower', '']], 'm'),
        ErrorClass.STOCK,
        false,
      ],
      [fromRpcError(['ConcurrencyException', 'Records were modified'], 'm'), ErrorClass.CONFLICT, true],
      [fromHttpStatus(429, 'm', ''), ErrorClass.RATE_LIMITED, true],
      [fromHttpStatus(503, 'm', ''), ErrorClass.UNAVAILABLE, true],
      [fromHttpStatus(403, 'm', ''), ErrorClass.AUTH, false],
      [new TrytonError('timeout', 'slow'), ErrorClass.TIMEOUT, true],
      [new TrytonError('not_found', 'gone'), ErrorClass.NOT_FOUND, false],
    ];
    for (const [e, cls, retryable] of cases) {
      const f = trytonFailure(e);
      expect(f).toBeInstanceOf(ConnectorFailure);
      expect([ErrorClass[f.errorClass], f.retryable]).toEqual([ErrorClass[cls], retryable]);
    }
    expect(
      trytonFailure(fromRpcError(['UserWarning', ['stock_quantity_warning_7', 'x', '']], 'm')).code,
    ).toBe('stock_quantity_warning_7');
    expect(trytonFailure(fromHttpStatus(503, 'm', '')).code).toBe('HTTP_503');
    const refused = Object.assign(new TypeError('fetch failed'), { cause: { code: 'ECONNREFUSED' } });
    expect(trytonFailure(refused).errorClass).toBe(ErrorClass.UNAVAILABLE);
  });
});

describe('tryton driver configuration', () => {
  it('builds the database URL from endpoint and database name', () => {
    expect(databaseUrl('http://tryton:8000/o2c/')).toBe('http://tryton:8000/o2c/');
    expect(databaseUrl('http://tryton:8000', 'o2c')).toBe('http://tryton:8000/o2c/');
    expect(databaseUrl('http://tryton:8000/o2c', 'o2c')).toBe('http://tryton:8000/o2c/');
  });

  it('accepts only stock and credit warnings', () => {
    expect(parseOptions({ acceptWarnings: ['stock'] }).acceptWarnings).toEqual(['stock']);
    expect(parseOptions(undefined).acceptWarnings).toEqual([]);
    expect(() => parseOptions({ acceptWarnings: ['everything'] })).toThrow(/acceptWarnings/);
  });

  it('logs in again (a new client) when the credentials change, and refuses without them', () => {
    const { d, built, creds } = driver(
      {},
      new MutableCredentials({ username: 'u', password: 'p', database: 'o2c' }),
    );
    const first = d.client();
    expect(d.client()).toBe(first);
    expect(built[0]).toMatchObject({ url: 'http://tryton:8000/o2c/', username: 'u', password: 'p' });
    creds.values = { username: 'u', password: 'rotated', database: 'o2c' };
    creds.version++;
    expect(d.client()).not.toBe(first);
    expect(built[1]?.password).toBe('rotated');
    creds.values = {};
    creds.version++;
    expect(() => d.client()).toThrow(ConnectorFailure);
  });

  it('measures HTTP time as the union of overlapping exchanges', () => {
    expect(busyMs([])).toBe(0);
    expect(
      busyMs([
        [0, 10],
        [5, 15],
        [20, 25],
      ]),
    ).toBe(20);
  });
});

describe('tryton change feed events', () => {
  it('turns poller records into ShipmentDispatched, InvoicePosted and PaymentReceived per order', () => {
    const { d } = driver();
    const invoice = {
      id: 7,
      number: 'INV/0007',
      state: 'paid' as const,
      customerId: 2,
      currency: 'USD',
      invoiceDate: '2026-11-27',
      untaxedAmount: '81.00',
      taxAmount: '8.10',
      totalAmount: '89.10',
      amountToPay: '0.00',
      saleIds: [3],
    };
    const base = {
      id: 7,
      number: 'INV/0007',
      at: '2026-11-27T10:00:00.000000Z',
      saleIds: [3],
      orderIds: ['o-1'],
    };
    const records: ChangeRecord[] = [
      {
        ...base,
        kind: 'shipment_done',
        key: 'tryton:shipment_done:4',
        id: 4,
        shipment: {
          id: 4,
          number: 'CS/4',
          state: 'done',
          reference: '1Z999',
          effectiveDate: '2026-11-27',
          saleIds: [3],
          lines: [{ sku: 'WIDGET-001', productId: 1, quantity: 3, state: 'done' }],
        },
      },
      { ...base, kind: 'invoice_posted', key: 'tryton:invoice_posted:7', invoice },
      { ...base, kind: 'invoice_paid', key: 'tryton:invoice_paid:7', invoice },
    ];
    const events = records.flatMap((r) => d.toEvents(r));
    expect(events.map((e) => [e.type, e.subject, e.idempotencyKey])).toEqual([
      ['o2c.v1.ShipmentDispatched', 'o-1', 'tryton:shipment_done:4:o-1'],
      ['o2c.v1.InvoicePosted', 'o-1', 'tryton:invoice_posted:7:o-1'],
      ['o2c.v1.PaymentReceived', 'o-1', 'tryton:invoice_paid:7:o-1'],
    ]);
    const [ship, posted, paid] = events;
    if (ship?.payload.case === 'shipmentDispatched') {
      expect(ship.payload.value.shipment).toMatchObject({
        id: 'CS/4',
        trackingNumber: '1Z999',
        orderId: 'o-1',
      });
      expect(ship.payload.value.shipment?.externalRefs[0]).toMatchObject({ system: 'erp', externalId: '4' });
    } else throw new Error('not a ShipmentDispatched');
    if (posted?.payload.case === 'invoicePosted') {
      expect(posted.payload.value.invoice?.total).toMatchObject({
        currencyCode: 'USD',
        units: 89n,
        nanos: 100_000_000,
      });
    } else throw new Error('not an InvoicePosted');
    if (paid?.payload.case === 'paymentReceived') {
      expect(paid.payload.value.payment).toMatchObject({
        invoiceId: '7',
        amount: { units: 89n, nanos: 100_000_000 },
      });
    } else throw new Error('not a PaymentReceived');
  });
});
