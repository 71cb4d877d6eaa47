import { describe, expect, it } from 'vitest';
import { guardAllows, maxAttempts, retryDelayMs, type StepSpec, validateSpec } from './spec.js';

const aStep = (overrides: Partial<StepSpec> = {}): StepSpec => ({
  name: 'credit-check',
  call: { connector: 'erp', operation: 'CheckCredit' },
  ...overrides,
});

describe('workflow spec decisions', () => {
  it.each<[string, string, boolean]>([
    ['a large order passes a size guard', 'order.lines.size() > 1', true],
    ['a guard on a completed step', '"price" in steps', true],
    ['a guard on a step not yet done', '"invoice" in steps', false],
    ['a guard on the customer', 'order.customerId == "ACME"', true],
  ])('%s', (_name, when, expected) => {
    const order = {
      customerId: 'ACME',
      lines: [
        { sku: 'A', quantity: 2 },
        { sku: 'B', quantity: 1 },
      ],
    };
    expect(guardAllows(aStep({ when }), order, ['validate-customer', 'price'])).toBe(expected);
  });

  it('doubles the retry delay from its initial value up to its maximum, jittered down to half', () => {
    const step = aStep({ retry: { maxAttempts: 6, backoff: { initial: '1s', max: '5s' } } });
    const top = () => 1;
    const bottom = () => 0;
    expect([1, 2, 3, 4, 5].map((a) => retryDelayMs(step, a, top))).toEqual([1000, 2000, 4000, 5000, 5000]);
    expect([1, 2, 3, 4, 5].map((a) => retryDelayMs(step, a, bottom))).toEqual([500, 1000, 2000, 2500, 2500]);
    expect(maxAttempts(step)).toBe(6);
    expect(maxAttempts(aStep())).toBe(3);
  });

  it('names the step and field of a guard that does not compile, a duplicate and a step with both kinds', () => {
    const problems = validateSpec({
      steps: [
        aStep({ when: 'order.total >' }),
        aStep(),
        {
          name: 'both',
          call: { connector: 'erp', operation: 'PostInvoice' },
          await: { event: 'o2c.v1.PaymentReceived' },
        },
      ],
    });
    expect(problems).toEqual([
      expect.stringMatching(/^steps\[0\]\.when: step credit-check: when "order.total >" does not compile/),
      'steps[1].name: duplicate step credit-check',
      'steps[2]: a step has exactly one of call or await',
    ]);
  });
});
