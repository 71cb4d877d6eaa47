// What a bench-workflow run counts, decided from the state it read: the order rows of the workflow's
// database, the last step's successes in its step history, the sales orders the simulated ERP
// created, and the order ids the API answered. No I/O: bench/workflow.ts reads, this decides.
import { OrderState } from '../runtime/src/gen/o2c/v1/entities_pb.js';

export interface OrderRow {
  id: string;
  idempotencyKey: string;
  state: number;
  /** Epoch ms, as the orders table keeps them. */
  createdAt: number;
  updatedAt: number;
}

export interface RunState {
  /** Order ids the API answered, one per idempotency key. */
  acceptedIds: ReadonlySet<string>;
  /** Every order row in the workflow's database. */
  orders: readonly OrderRow[];
  /** order id -> successes of the last step (await-payment) in step_executions. */
  lastStepSuccesses: ReadonlyMap<string, number>;
  /** order id -> sales orders the simulated ERP created for it. */
  salesOrdersCreated: Readonly<Record<string, number>>;
  createSalesOrderCalls: number;
  /** Resubmits of a key the API answered with another order id than the first submit's. */
  resubmitsAnsweredAnotherOrder: number;
  /** Epoch ms of the first submit. */
  startedAtMs: number;
}

export interface Counts {
  /** Orders the API accepted (answered with an order id), one per idempotency key. */
  accepted: number;
  /** Order rows in the workflow's database. */
  stored: number;
  /** Accepted and PAID within the deadline. */
  completed: number;
  /** Accepted and not PAID within the deadline (an accepted id missing from the database included). */
  lost: number;
  duplicated: {
    /** Idempotency keys with more than one order row. */
    keysWithTwoOrders: number;
    /** A resubmit answered with another order id than the first submit of its key. */
    resubmitsAnsweredAnotherOrder: number;
    /** Orders whose last step succeeded more than once. */
    completedTwice: number;
  };
  /** PAID orders whose step history lacks the last step's success (what completedTwice reads). */
  paidWithoutLastStepRecord: number;
  erpSalesOrders: {
    /** Accepted orders with exactly one sales order in the simulated ERP. */
    exactlyOne: number;
    zero: number;
    moreThanOne: number;
    /** Sales orders in the ERP for no accepted order. */
    forNoAcceptedOrder: number;
    createSalesOrderCalls: number;
  };
}

export interface Tally {
  counts: Counts;
  /** Submitted -> PAID of each completed order, ascending. */
  cycleTimesMs: number[];
  /** From the first submit to the last accepted order PAID (at least 1 ms). */
  seconds: number;
}

export function tallyRun(s: RunState): Tally {
  const byId = new Map(s.orders.map((o) => [o.id, o]));
  const perKey = new Map<string, number>();
  for (const o of s.orders) perKey.set(o.idempotencyKey, (perKey.get(o.idempotencyKey) ?? 0) + 1);

  const cycleTimesMs: number[] = [];
  let lastPaidAt = s.startedAtMs;
  let exactlyOne = 0;
  let zero = 0;
  let moreThanOne = 0;
  for (const id of s.acceptedIds) {
    const o = byId.get(id);
    if (o?.state === OrderState.PAID) {
      cycleTimesMs.push(o.updatedAt - o.createdAt);
      lastPaidAt = Math.max(lastPaidAt, o.updatedAt);
    }
    const n = s.salesOrdersCreated[id] ?? 0;
    if (n === 1) exactlyOne++;
    else if (n === 0) zero++;
    else moreThanOne++;
  }
  cycleTimesMs.sort((a, b) => a - b);
  const completed = cycleTimesMs.length;
  return {
    counts: {
      accepted: s.acceptedIds.size,
      stored: s.orders.length,
      completed,
      lost: s.acceptedIds.size - completed,
      duplicated: {
        keysWithTwoOrders: [...perKey.values()].filter((n) => n > 1).length,
        resubmitsAnsweredAnotherOrder: s.resubmitsAnsweredAnotherOrder,
        completedTwice: [...s.lastStepSuccesses.values()].filter((n) => n > 1).length,
      },
      paidWithoutLastStepRecord: s.orders.filter(
        (o) => o.state === OrderState.PAID && !s.lastStepSuccesses.get(o.id),
      ).length,
      erpSalesOrders: {
        exactlyOne,
        zero,
        moreThanOne,
        forNoAcceptedOrder: Object.keys(s.salesOrdersCreated).filter((id) => !s.acceptedIds.has(id)).length,
        createSalesOrderCalls: s.createSalesOrderCalls,
      },
    },
    cycleTimesMs,
    seconds: Math.max(0.001, (lastPaidAt - s.startedAtMs) / 1000),
  };
}

/** The guarantees a run's counts break, each named in a sentence; none when all held. */
export function brokenGuarantees(c: Counts): string[] {
  const broken: string[] = [];
  if (c.lost) broken.push(`${c.lost} accepted orders were not PAID by the deadline`);
  if (c.duplicated.keysWithTwoOrders)
    broken.push(`${c.duplicated.keysWithTwoOrders} idempotency keys have more than one order`);
  if (c.duplicated.resubmitsAnsweredAnotherOrder)
    broken.push(`${c.duplicated.resubmitsAnsweredAnotherOrder} resubmits were answered with another order`);
  if (c.duplicated.completedTwice) broken.push(`${c.duplicated.completedTwice} orders completed twice`);
  if (c.paidWithoutLastStepRecord)
    broken.push(`${c.paidWithoutLastStepRecord} PAID orders lack their last step in the step history`);
  if (c.erpSalesOrders.zero) broken.push(`${c.erpSalesOrders.zero} accepted orders have no ERP sales order`);
  if (c.erpSalesOrders.moreThanOne)
    broken.push(`${c.erpSalesOrders.moreThanOne} accepted orders have more than one ERP sales order`);
  if (c.erpSalesOrders.forNoAcceptedOrder)
    broken.push(`${c.erpSalesOrders.forNoAcceptedOrder} ERP sales orders belong to no accepted order`);
  return broken;
}
