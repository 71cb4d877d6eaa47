import { describe, expect, it } from 'vitest';
import { OrderState } from '../runtime/src/gen/o2c/v1/entities_pb.js';
import { brokenGuarantees, type OrderRow, type RunState, tallyRun } from './workflow-counts.js';

const T0 = 1_000_000;
const paid = (id: string, key = `k-${id}`, ms = 500): OrderRow => ({
  id,
  idempotencyKey: key,
  state: OrderState.PAID,
  createdAt: T0 + 10,
  updatedAt: T0 + 10 + ms,
});
const waiting = (id: string): OrderRow => ({ ...paid(id), state: OrderState.INVOICED, updatedAt: T0 + 20 });

/** Two orders, both accepted, PAID once, one sales order each: every guarantee held. */
const healthy = (): RunState => ({
  acceptedIds: new Set(['a', 'b']),
  orders: [paid('a', 'k-a', 400), paid('b', 'k-b', 900)],
  lastStepSuccesses: new Map([
    ['a', 1],
    ['b', 1],
  ]),
  salesOrdersCreated: { a: 1, b: 1 },
  createSalesOrderCalls: 2,
  resubmitsAnsweredAnotherOrder: 0,
  startedAtMs: T0,
});

describe('tallyRun', () => {
  it('counts a healthy run as accepted, completed, and one sales order per order', () => {
    const { counts, cycleTimesMs, seconds } = tallyRun(healthy());
    expect(counts).toMatchObject({ accepted: 2, stored: 2, completed: 2, lost: 0 });
    expect(counts.erpSalesOrders).toMatchObject({ exactlyOne: 2, zero: 0, moreThanOne: 0 });
    expect(cycleTimesMs).toEqual([400, 900]);
    expect(seconds).toBe(0.91);
    expect(brokenGuarantees(counts)).toEqual([]);
  });

  it.each<[string, (s: RunState) => RunState, string, number]>([
    [
      'an accepted order still INVOICED at the deadline is lost',
      (s) => ({ ...s, orders: [paid('a'), waiting('b')] }),
      'lost',
      1,
    ],
    [
      'an accepted order missing from the database is lost',
      (s) => ({ ...s, orders: [paid('a')] }),
      'lost',
      1,
    ],
    [
      'a second order row for one idempotency key is a duplicate',
      (s) => ({ ...s, orders: [...s.orders, { ...waiting('c'), idempotencyKey: 'k-a' }] }),
      'duplicated.keysWithTwoOrders',
      1,
    ],
    [
      'a resubmit answered with another order is a duplicate',
      (s) => ({ ...s, resubmitsAnsweredAnotherOrder: 1 }),
      'duplicated.resubmitsAnsweredAnotherOrder',
      1,
    ],
    [
      'an order whose last step succeeded twice completed twice',
      (s) => ({ ...s, lastStepSuccesses: new Map([...s.lastStepSuccesses, ['b', 2]]) }),
      'duplicated.completedTwice',
      1,
    ],
    [
      'a PAID order without its last step in the history is reported',
      (s) => ({ ...s, lastStepSuccesses: new Map([['a', 1]]) }),
      'paidWithoutLastStepRecord',
      1,
    ],
    [
      'an accepted order without an ERP sales order counts as zero',
      (s) => ({ ...s, salesOrdersCreated: { a: 1 } }),
      'erpSalesOrders.zero',
      1,
    ],
    [
      'an accepted order with two ERP sales orders counts as more than one',
      (s) => ({ ...s, salesOrdersCreated: { a: 1, b: 2 } }),
      'erpSalesOrders.moreThanOne',
      1,
    ],
    [
      'an ERP sales order for an order nobody accepted is counted apart',
      (s) => ({ ...s, salesOrdersCreated: { ...s.salesOrdersCreated, x: 1 } }),
      'erpSalesOrders.forNoAcceptedOrder',
      1,
    ],
  ])('%s', (_, change, path, expected) => {
    const { counts } = tallyRun(change(healthy()));
    const value = path.split('.').reduce<unknown>((v, k) => (v as Record<string, unknown>)[k], counts);
    expect(value).toBe(expected);
    expect(brokenGuarantees(counts)).toHaveLength(1);
  });

  it('does not count a stored order the API never answered as lost', () => {
    const { counts } = tallyRun({ ...healthy(), orders: [...healthy().orders, waiting('unanswered')] });
    expect(counts).toMatchObject({ accepted: 2, stored: 3, lost: 0 });
  });

  it('times a run with no order PAID as 1 ms, not as zero seconds', () => {
    expect(tallyRun({ ...healthy(), orders: [waiting('a'), waiting('b')] }).seconds).toBe(0.001);
  });
});
