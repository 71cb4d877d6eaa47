import { create, type MessageInitShape } from '@bufbuild/protobuf';
import { describe, expect, it } from 'vitest';
import { EnvelopeSchema } from '../gen/o2c/v1/events_pb.js';
import { type WorkflowQueuePurpose, workflowPoison } from './poison.js';

type Payload = MessageInitShape<typeof EnvelopeSchema>['payload'];

const anEnvelope = (type: string, payload: Payload, subject = '') =>
  create(EnvelopeSchema, { id: 'e-1', type, subject, payload });

describe('workflowPoison', () => {
  it.each<[string, WorkflowQueuePurpose, ReturnType<typeof anEnvelope>, RegExp | undefined]>([
    [
      'a submitted order with its id is handled',
      'orders',
      anEnvelope('o2c.v1.OrderSubmitted', { case: 'orderSubmitted', value: { order: { id: 'o-1' } } }),
      undefined,
    ],
    [
      'a submitted event without the order is poison',
      'orders',
      anEnvelope('o2c.v1.OrderSubmitted', { case: 'orderSubmitted', value: {} }),
      /OrderSubmitted carries no order id/,
    ],
    [
      'a submitted order without an id is poison',
      'orders',
      anEnvelope('o2c.v1.OrderSubmitted', {
        case: 'orderSubmitted',
        value: { order: { customerId: 'ACME' } },
      }),
      /carries no order id/,
    ],
    [
      'a cancellation that names its order is handled',
      'orders',
      anEnvelope('o2c.v1.OrderCancelled', { case: 'orderCancelled', value: { orderId: 'o-1' } }),
      undefined,
    ],
    [
      'a cancellation that names no order is poison',
      'orders',
      anEnvelope('o2c.v1.OrderCancelled', { case: 'orderCancelled', value: { reason: 'x' } }),
      /OrderCancelled names no order_id/,
    ],
    [
      'a dispatch that names its order is handled',
      'events',
      anEnvelope('o2c.v1.ShipmentDispatched', { case: 'shipmentDispatched', value: { orderId: 'o-1' } }),
      undefined,
    ],
    [
      'a payment known only by its subject is handled',
      'events',
      anEnvelope('o2c.v1.PaymentReceived', { case: 'paymentReceived', value: {} }, 'o-1'),
      undefined,
    ],
    [
      'a dispatch that names no order anywhere is poison',
      'events',
      anEnvelope('o2c.v1.ShipmentDispatched', { case: 'shipmentDispatched', value: {} }),
      /ShipmentDispatched names no order/,
    ],
    [
      'a reply to a step of an order is handled',
      'replies',
      anEnvelope('o2c.v1.ConnectorReply', { case: 'connectorReply', value: { orderId: 'o-1', step: 'tax' } }),
      undefined,
    ],
    [
      'a reply that names no order is poison',
      'replies',
      anEnvelope('o2c.v1.ConnectorReply', { case: 'connectorReply', value: { step: 'tax' } }),
      /ConnectorReply names no order_id/,
    ],
    [
      'a reply that names no step is poison',
      'replies',
      anEnvelope('o2c.v1.ConnectorReply', { case: 'connectorReply', value: { orderId: 'o-1' } }),
      /names no step/,
    ],
    [
      'anything but a reply on the replies queue is poison',
      'replies',
      anEnvelope('o2c.v1.OrderFallout', { case: 'orderFallout', value: { orderId: 'o-1' } }),
      /expected an o2c.v1.ConnectorReply, got orderFallout/,
    ],
  ])('%s', (_name, purpose, envelope, expected) => {
    const poison = workflowPoison(purpose, envelope);
    if (!expected) {
      expect(poison).toBeUndefined();
      return;
    }
    expect(poison?.name).toBe('InvalidPayload');
    expect(poison?.message).toMatch(expected);
  });
});
