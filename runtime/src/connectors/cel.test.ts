import { describe, expect, it } from 'vitest';
import { CelMappingError, compileCel } from './cel.js';

describe('compileCel', () => {
  it.each([
    [
      'builds a path from request fields',
      `'/customers/' + request.customerId`,
      { request: { customerId: 'c-1' } },
      '/customers/c-1',
    ],
    [
      'builds a JSON body with lists mapped element by element',
      `{"ref": request.orderId, "lines": request.lines.map(l, {"sku": l.sku, "qty": l.quantity * 2})}`,
      { request: { orderId: 'o', lines: [{ sku: 'A', quantity: 3 }] } },
      { ref: 'o', lines: [{ sku: 'A', qty: 6 }] },
    ],
    [
      'tests for an optional field with has()',
      `has(response.error) ? response.error : "none"`,
      { response: {} },
      'none',
    ],
    [
      'builds Money from a decimal string without floats',
      `money("USD", response.total)`,
      { response: { total: '7.05' } },
      { currencyCode: 'USD', units: '7', nanos: 50000000 },
    ],
    ['has the strings extension', `"a.b".split(".")[1]`, {}, 'b'],
    ['keeps decimals as doubles', `response.total * 2.0`, { response: { total: 1.25 } }, 2.5],
  ])('%s', (_name, expr, vars, expected) => {
    expect(compileCel(expr, 'test')(vars)).toEqual(expected);
  });

  it('names the mapping when the expression does not parse', () => {
    expect(() => compileCel('request.(', 'operations.GetPrice.path')).toThrow(
      /operations.GetPrice.path: invalid CEL/,
    );
  });

  it('names the mapping when evaluation fails', () => {
    expect(() => compileCel('request.missing.x', 'operations.GetPrice.body')({ request: {} })).toThrow(
      CelMappingError,
    );
  });
});
