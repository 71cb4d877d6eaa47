// What the workflow engine cannot act on although the message's type and payload agree: an order
// event without its order, an awaited event or a connector reply that names no order. The engine
// parks these as poison instead of recording them in the inbox as handled.
import { PoisonMessageError } from '../bus/errors.js';
import type { Envelope } from '../gen/o2c/v1/events_pb.js';
import { orderIdOf } from './steps.js';

/** The engine's queues, by purpose (runtime/src/workflow/queues.ts). */
export type WorkflowQueuePurpose = 'orders' | 'events' | 'replies';

/** Why the engine cannot handle `envelope` on its `purpose` queue; undefined when it can. */
export function workflowPoison(
  purpose: WorkflowQueuePurpose,
  envelope: Envelope,
): PoisonMessageError | undefined {
  const invalid = (message: string) => new PoisonMessageError('InvalidPayload', message);
  const p = envelope.payload;
  switch (purpose) {
    case 'orders':
      if (p.case === 'orderSubmitted' && !p.value.order?.id)
        return invalid('o2c.v1.OrderSubmitted carries no order id');
      if (p.case === 'orderCancelled' && !p.value.orderId)
        return invalid('o2c.v1.OrderCancelled names no order_id');
      return undefined;
    case 'events':
      return orderIdOf(envelope)
        ? undefined
        : invalid(`${envelope.type} names no order (no order_id, no subject)`);
    case 'replies':
      if (p.case !== 'connectorReply')
        return invalid(`expected an o2c.v1.ConnectorReply, got ${p.case ?? 'no payload'}`);
      if (!p.value.orderId) return invalid('o2c.v1.ConnectorReply names no order_id');
      if (!p.value.step) return invalid('o2c.v1.ConnectorReply names no step');
      return undefined;
  }
}
