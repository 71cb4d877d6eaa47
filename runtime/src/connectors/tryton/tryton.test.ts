import { describe, expect, it } from 'vitest';
import { date, decimal, reviver } from './client.js';
import { fromHttpStatus, fromRpcError } from './errors.js';
import { dec } from './operations.js';

describe('tryton wire encoding', () => {
  it('encodes Decimal and date and decodes Tryton classes to strings', () => {
    expect(JSON.stringify({ a: decimal('10.50'), d: date('2026-01-31') })).toBe(
      '{"a":{"__class__":"Decimal","decimal":"10.50"},"d":{"__class__":"date","year":2026,"month":1,"day":31}}',
    );
    expect(() => decimal('1e3')).toThrow();
    const body = JSON.parse(
      '{"p":{"__class__":"Decimal","decimal":"85.80"},"d":{"__class__":"date","year":2026,"month":3,"day":4},' +
        '"t":{"__class__":"datetime","year":2026,"month":3,"day":4,"hour":5,"minute":6,"second":7,"microsecond":89}}',
      reviver,
    );
    expect(body).toEqual({ p: '85.80', d: '2026-03-04', t: '2026-03-04T05:06:07.000089Z' });
  });
});

describe('tryton error mapping', () => {
  it('maps UserError, UserWarning, ConcurrencyException and HTTP statuses', () => {
    expect(
      fromRpcError(['UserError', ['Party "X" has reached their credit limit of $50.00.', '', null]], 'm'),
    ).toMatchObject({
      kind: 'credit',
      retryable: false,
    });
    expect(fromRpcError(['UserError', ['The field "Party" is required.', '', null]], 'm').kind).toBe(
      'validation',
    );
    expect(
      fromRpcError(['UserWarning', ['credit_limit_amount_sale.sale,3', 'limit', '']], 'm'),
    ).toMatchObject({
      kind: 'credit',
      warningName: 'credit_limit_amount_sale.sale,3',
    });
    expect(fromRpcError(['UserWarning', ['stock_quantity_warning_7', 'forecast', '']], 'm').kind).toBe(
      'stock',
    );
    expect(fromRpcError(['ConcurrencyException', 'Records were modified'], 'm')).toMatchObject({
      kind: 'conflict',
      retryable: true,
    });
    expect(fromRpcError(['database is locked', ''], 'm').retryable).toBe(true);
    expect(fromRpcError(["KeyError: 'x'", ''], 'm')).toMatchObject({ kind: 'unknown', retryable: false });
    expect(fromHttpStatus(403, 'm', '')).toMatchObject({ kind: 'auth', retryable: false });
    expect(fromHttpStatus(429, 'm', '')).toMatchObject({ kind: 'rate_limited', retryable: true });
    expect(fromHttpStatus(503, 'm', '')).toMatchObject({ kind: 'unavailable', retryable: true });
  });
});

describe('decimal strings', () => {
  it('adds, subtracts, compares and multiplies without floats', () => {
    expect(dec.sub('50.00', '0.0')).toBe('50.00');
    expect(dec.add('0.10', '0.20')).toBe('0.30');
    expect(dec.sub('1', '1.005')).toBe('-0.005');
    expect(dec.cmp('100.00', '50')).toBe(1);
    expect(dec.cmp('-1', '0')).toBe(-1);
    expect(dec.mul('10.0000', 3)).toBe('30.00');
    expect(dec.mul('0.335', 1)).toBe('0.34');
    expect(dec.mul('7.25', 2.5)).toBe('18.13');
  });
});
