// The peer's order-to-cash saga, step for step the Workflow of examples/distributor/: ten
// activities in order; allocate and sales-order declare their compensations as they complete, and
// a failure undoes them last first (the saga pattern of Temporal's samples).
import { proxyActivities } from '@temporalio/workflow';
import type * as activities from './activities.js';

const step = proxyActivities<typeof activities>({
  startToCloseTimeout: '10 seconds',
  retry: { maximumAttempts: 5 },
});

export async function orderToCash(orderId: string): Promise<string> {
  const compensations: Array<() => Promise<unknown>> = [];
  try {
    await step.validateCustomer(orderId);
    await step.price(orderId);
    await step.tax(orderId);
    await step.creditCheck(orderId);
    await step.allocate(orderId);
    compensations.unshift(() => step.releaseInventory(orderId));
    await step.salesOrder(orderId);
    compensations.unshift(() => step.cancelSalesOrder(orderId));
    await step.release(orderId);
    await step.awaitDispatch(orderId);
    await step.invoice(orderId);
    await step.awaitPayment(orderId);
    return 'PAID';
  } catch (err) {
    for (const undo of compensations) await undo();
    throw err;
  }
}
