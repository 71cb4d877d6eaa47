// The workflow engine's queues, shared by the engine (which consumes them) and the operator (which
// declares them before the pods start): purpose, the o2c.events routing keys bound to it, and the
// event types the engine takes from it (anything else is parked as poison). Orders come only from
// the Workflow's own API, replies only to its own reply-to, awaited events from the Connectors of
// its namespace (any of them: the event names the order, which the engine looks up).
import { eventBindingKey, REPLY_TYPE, replyRoutingKey as replyKeyOf } from '../bus/addressing.js';
import { EventType } from '../orders/envelope.js';

/** Milestone events an await step may name. */
export const AWAITABLE_EVENTS = [
  'o2c.v1.ShipmentDispatched',
  'o2c.v1.InvoicePosted',
  'o2c.v1.PaymentReceived',
];

export function replyRoutingKey(namespace: string, workflow: string): string {
  return replyKeyOf({ namespace, kind: 'workflow', name: workflow });
}

/** A queue of the engine: purpose, routing keys bound, and the event types it takes (others are poison). */
export interface WorkflowQueue {
  purpose: 'orders' | 'replies' | 'events';
  bindings: string[];
  accepts: string[];
}

export function workflowQueues(namespace: string, workflow: string): WorkflowQueue[] {
  const orders = [EventType.OrderSubmitted, EventType.OrderCancelled];
  return [
    {
      purpose: 'orders',
      bindings: orders.map((type) => eventBindingKey(namespace, 'workflow', workflow, type)),
      accepts: orders,
    },
    { purpose: 'replies', bindings: [replyRoutingKey(namespace, workflow)], accepts: [REPLY_TYPE] },
    {
      purpose: 'events',
      bindings: AWAITABLE_EVENTS.map((type) => eventBindingKey(namespace, 'connector', undefined, type)),
      accepts: AWAITABLE_EVENTS,
    },
  ];
}
