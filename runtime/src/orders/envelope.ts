// Builds the Envelope of an order event and the outbox row that carries it to o2c.events.
import { create, type MessageInitShape, toBinary } from '@bufbuild/protobuf';
import { timestampFromMs } from '@bufbuild/protobuf/wkt';
import { type Envelope, EnvelopeSchema } from '../gen/o2c/v1/events_pb.js';
import type { OutboxMessage } from '../store/types.js';
import { newEventId } from './ids.js';

export { EVENTS_EXCHANGE } from '../bus/addressing.js';

import { EVENTS_EXCHANGE, eventRoutingKey } from '../bus/addressing.js';

/**
 * Event type = the payload's protobuf message name = AMQP `type`, so Pipelines and Workflow await
 * steps name events the way the contract does (o2c.v1.ShipmentDispatched). The routing key on
 * o2c.events prefixes it with the publisher: `<namespace>.workflow.<name>.<type>`.
 */
export const EventType = {
  OrderSubmitted: 'o2c.v1.OrderSubmitted',
  OrderStateChanged: 'o2c.v1.OrderStateChanged',
  OrderCancelled: 'o2c.v1.OrderCancelled',
  OrderFallout: 'o2c.v1.OrderFallout',
} as const;

export type EnvelopePayload = MessageInitShape<typeof EnvelopeSchema>['payload'];

export interface EnvelopeInit {
  type: string;
  source: string;
  subject: string;
  correlationId: string;
  causationId?: string;
  idempotencyKey?: string;
  traceparent?: string;
  payload: EnvelopePayload;
  now?: number;
}

export function buildEnvelope(init: EnvelopeInit): Envelope {
  return create(EnvelopeSchema, {
    id: newEventId(),
    type: init.type,
    source: init.source,
    subject: init.subject,
    time: timestampFromMs(init.now ?? Date.now()),
    correlationId: init.correlationId,
    causationId: init.causationId ?? '',
    idempotencyKey: init.idempotencyKey ?? '',
    traceparent: init.traceparent ?? '',
    orderingKey: init.subject,
    payload: init.payload,
  });
}

export function envelopeToOutbox(
  envelope: Envelope,
  exchange = EVENTS_EXCHANGE,
  routingKey = eventRoutingKey(envelope.source, envelope.type),
): OutboxMessage {
  const headers: Record<string, string> = {};
  if (envelope.traceparent) headers.traceparent = envelope.traceparent;
  return {
    id: envelope.id,
    exchange,
    routingKey,
    type: envelope.type,
    correlationId: envelope.correlationId,
    orderingKey: envelope.orderingKey || envelope.subject,
    body: toBinary(EnvelopeSchema, envelope),
    headers,
  };
}
