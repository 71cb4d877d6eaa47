import { create, getOption, type MessageInitShape } from '@bufbuild/protobuf';
import { predefined, ViolationsSchema } from '@bufbuild/protovalidate/gen/buf/validate/validate_pb.js';
import { ConnectError } from '@connectrpc/connect';
import { describe, expect, it } from 'vitest';
import type { OrderSchema } from '../gen/o2c/v1/entities_pb.js';
import {
  CancelOrderRequestSchema,
  GetOrderRequestSchema,
  ListOrdersRequestSchema,
  SubmitOrderRequestSchema,
} from '../gen/o2c/v1/order_service_pb.js';
import { nativeRegexMatch } from './native-regex.js';
import { assertValid, NAMED_PATTERNS } from './validation.js';

type OrderInit = Exclude<MessageInitShape<typeof OrderSchema>, { $typeName: string }>;

const anOrder = (overrides: Partial<OrderInit> = {}): OrderInit => ({
  customerId: 'ACME',
  currencyCode: 'USD',
  lines: [{ sku: 'WIDGET-1', quantity: 2, unitPrice: { currencyCode: 'USD', units: 10n } }],
  ...overrides,
});

function violation(run: () => void): string {
  try {
    run();
  } catch (err) {
    return ConnectError.from(err).rawMessage;
  }
  return 'valid';
}

const submit = (order: OrderInit) => () =>
  assertValid(SubmitOrderRequestSchema, create(SubmitOrderRequestSchema, { idempotencyKey: 'k-1', order }));

describe('order input rules', () => {
  it.each<[string, () => void, RegExp]>([
    [
      'a NUL in the customer id names order.customer_id',
      submit(anOrder({ customerId: 'AC\u0000ME' })),
      /^order\.customer_id: must not contain control characters/,
    ],
    [
      'a newline in a SKU names order.lines[0].sku',
      submit(anOrder({ lines: [{ sku: 'W\n1', quantity: 1 }] })),
      /order\.lines\[0\]\.sku: must not contain control characters/,
    ],
    [
      'a C1 control character in the purchase order number is refused',
      submit(anOrder({ purchaseOrderNumber: 'PO\u0085' })),
      /order\.purchase_order_number: must not contain control characters/,
    ],
    [
      'a NUL in the notes is refused',
      submit(anOrder({ notes: 'ship\u0000fast' })),
      /order\.notes: must not contain control characters other than tab and newline/,
    ],
    [
      'a control character in an address line is refused',
      submit(anOrder({ shipTo: { lines: ['Main St\u0007'] } })),
      /order\.ship_to\.lines\[0\]: must not contain control characters/,
    ],
    [
      'a negative unit price names order.lines[0].unit_price',
      submit(anOrder({ lines: [{ sku: 'W', quantity: 1, unitPrice: { currencyCode: 'USD', units: -1n } }] })),
      /^order\.lines\[0\]\.unit_price: must not be negative$/,
    ],
    [
      'a negative fraction of a unit is a negative price',
      submit(
        anOrder({
          lines: [{ sku: 'W', quantity: 1, unitPrice: { currencyCode: 'USD', units: 0n, nanos: -1 } }],
        }),
      ),
      /order\.lines\[0\]\.unit_price: must not be negative/,
    ],
    [
      'a NUL in the order id of GetOrder names id',
      () => assertValid(GetOrderRequestSchema, create(GetOrderRequestSchema, { id: 'ord_\u0000' })),
      /^id: must not contain control characters/,
    ],
    [
      'a NUL in the customer filter of ListOrders names customer_id',
      () => assertValid(ListOrdersRequestSchema, create(ListOrdersRequestSchema, { customerId: '\u0000' })),
      /^customer_id: must not contain control characters/,
    ],
    [
      'a creation-time filter beyond year 9999 names created_after',
      () =>
        assertValid(
          ListOrdersRequestSchema,
          create(ListOrdersRequestSchema, { createdAfter: { seconds: 100_000_000_000_000_000n } }),
        ),
      /^created_after: /,
    ],
    [
      'a NUL in a cancel reason names reason',
      () =>
        assertValid(
          CancelOrderRequestSchema,
          create(CancelOrderRequestSchema, { id: 'ord_1', reason: 'x\u0000' }),
        ),
      /^reason: must not contain control characters other than tab and newline/,
    ],
  ])('%s', (_name, run, message) => {
    expect(violation(run)).toMatch(message);
  });

  it.each<[string, () => void]>([
    ['a plain order', submit(anOrder())],
    [
      'non-ASCII letters in ids',
      submit(anOrder({ customerId: 'Müller & Söhne', purchaseOrderNumber: 'PO 12/ä' })),
    ],
    ['tabs and newlines in notes', submit(anOrder({ notes: 'deliver\tmornings\r\nring twice' }))],
    [
      'a zero price',
      submit(
        anOrder({ lines: [{ sku: 'FREE', quantity: 1, unitPrice: { currencyCode: 'USD', units: 0n } }] }),
      ),
    ],
  ])('accepts %s', (_name, run) => {
    expect(violation(run)).toBe('valid');
  });
});

/** Every code point up to U+07FF (C0, DEL, C1, Latin, ...) and some beyond: line separators, BOM, emoji. */
const CODE_POINTS = [...Array.from({ length: 0x800 }, (_, i) => i), 0x2028, 0x2029, 0xfeff, 0xfffd, 0x1f69a];

describe('named patterns (the predefined rules written as string.pattern)', () => {
  it.each(NAMED_PATTERNS.map((r) => [r.ruleId, r] as const))(
    '%s is the pattern and message of its predefined rule in rules.proto',
    (_id, r) => {
      const [cel] = getOption(r.rule, predefined).cel;
      // The rule refuses a string with a character of its class; the pattern accepts only others.
      const klass = r.pattern.replace(/^\^\[\^/, '[').replace(/\]\*\$$/, ']');
      expect(cel?.id).toBe(r.ruleId);
      expect(cel?.expression).toContain(`this.matches('${klass.replaceAll('\\', '\\\\')}')`);
      expect(cel?.expression).toContain(`'${r.message}'`);
      for (const cp of CODE_POINTS) {
        const s = `a${String.fromCodePoint(cp)}b`;
        expect(nativeRegexMatch(r.pattern, s), `U+${cp.toString(16)}`).toBe(!nativeRegexMatch(klass, s));
      }
    },
  );

  it('a field with a named pattern refuses the same characters as a field with the predefined rule', () => {
    // Order.customer_id carries the identifier pattern, OrderLine.sku the predefined CEL rule.
    const refusedBy = (run: () => void) => violation(run).includes('must not contain control characters');
    for (const cp of CODE_POINTS) {
      const c = String.fromCodePoint(cp);
      const asPattern = refusedBy(submit(anOrder({ customerId: `A${c}B` })));
      const asRule = refusedBy(submit(anOrder({ lines: [{ sku: `A${c}B`, quantity: 1 }] })));
      expect(asPattern, `U+${cp.toString(16)}`).toBe(asRule);
    }
  });

  it('reports a violated named pattern with its rule id and rule path in the details', () => {
    let details: { ruleId: string; rule: string }[] = [];
    try {
      assertValid(
        SubmitOrderRequestSchema,
        create(SubmitOrderRequestSchema, { order: anOrder({ customerId: 'A\u0000', notes: 'x\u0000' }) }),
      );
    } catch (err) {
      details = ConnectError.from(err)
        .findDetails(ViolationsSchema)
        .flatMap((v) => v.violations)
        .map((v) => ({
          ruleId: v.ruleId,
          rule: (v.rule?.elements ?? []).map((e) => e.fieldName).join('.'),
        }));
    }
    expect(details).toEqual([
      { ruleId: 'string.identifier', rule: 'string.[o2c.v1.identifier]' },
      { ruleId: 'string.text', rule: 'string.[o2c.v1.text]' },
    ]);
  });
});
