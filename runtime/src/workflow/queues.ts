// The workflow engine's queues, shared by the engine (which consumes them) and the operator (which
// declares them before the pods start): purpose and the o2c.events routing keys bound to it.
import { EventType } from '../orders/envelope.js';

/** Milestone events an await step may name. */
export const AWAITABLE_EVENTS = [
  'o2c.v1.ShipmentDispatched',
  'o2c.v1.InvoicePosted',
  'o2c.v1.PaymentReceived',
];

export function replyRoutingKey(namespace: string, workflow: string): string {
  return `o2c.v1.ConnectorReply.${namespace}.${workflow}`;
}

export function workflowQueues(
  namespace: string,
  workflow: string,
): { purpose: string; bindings: string[] }[] {
  return [
    { purpose: 'orders', bindings: [EventType.OrderSubmitted, EventType.OrderCancelled] },
    { purpose: 'replies', bindings: [replyRoutingKey(namespace, workflow)] },
    { purpose: 'events', bindings: AWAITABLE_EVENTS },
  ];
}
