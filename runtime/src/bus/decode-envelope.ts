// Decides, without I/O, whether a delivered body is an o2c.v1.Envelope a queue can handle: it must
// decode, name an event type of the contract (Envelope `type`, else the AMQP `type`), carry that
// type's payload, and be one of the types the queue is for. Anything else is poison, with the reason.
// Unknown fields are kept, not refused: a newer producer may add fields to a known message.
import { type DescField, fromBinary } from '@bufbuild/protobuf';
import { type Envelope, EnvelopeSchema } from '../gen/o2c/v1/events_pb.js';
import { PoisonMessageError } from './errors.js';

type PayloadField = DescField & { fieldKind: 'message' };

/** Envelope payload oneof: message type name (o2c.v1.ShipmentDispatched) → its field. */
const PAYLOAD_FIELD_OF_TYPE: ReadonlyMap<string, PayloadField> = new Map(
  EnvelopeSchema.fields.flatMap((f): [string, PayloadField][] =>
    f.oneof?.name === 'payload' && f.fieldKind === 'message' ? [[f.message.typeName, f]] : [],
  ),
);
/** Message type name → payload case (shipmentDispatched). */
const PAYLOAD_CASE_OF_TYPE: ReadonlyMap<string, string> = new Map(
  [...PAYLOAD_FIELD_OF_TYPE].map(([type, field]) => [type, field.localName]),
);

/** The Envelope payload field carrying `eventType` (e.g. o2c.v1.ItemUpserted → item_upserted). */
export function payloadFieldOf(eventType: string): PayloadField | undefined {
  return PAYLOAD_FIELD_OF_TYPE.get(eventType);
}
const TYPE_OF_PAYLOAD_CASE: ReadonlyMap<string, string> = new Map(
  [...PAYLOAD_CASE_OF_TYPE].map(([type, payloadCase]) => [payloadCase, type]),
);

/** How much of a declared type a poison message quotes. */
const QUOTED_TYPE_MAX = 120;

/**
 * The event type a declared type names: the payload message name itself, or that name followed by a
 * routing qualifier (replies are typed `o2c.v1.ConnectorReply.<namespace>.<workflow>`). Undefined
 * when the contract has no such event.
 */
export function eventTypeOf(declared: string): string | undefined {
  if (PAYLOAD_CASE_OF_TYPE.has(declared)) return declared;
  for (const type of PAYLOAD_CASE_OF_TYPE.keys()) if (declared.startsWith(`${type}.`)) return type;
  return undefined;
}

/** The message type name of an Envelope payload case, e.g. `paymentReceived` → o2c.v1.PaymentReceived. */
export function payloadTypeOf(payloadCase: string | undefined): string | undefined {
  return payloadCase === undefined ? undefined : TYPE_OF_PAYLOAD_CASE.get(payloadCase);
}

export interface DeliveredBody {
  body: Uint8Array;
  /** AMQP message_id: the Envelope id when the Envelope has none. */
  messageId?: unknown;
  /** AMQP type property. */
  type?: unknown;
}

export type DecodedEnvelope =
  | {
      envelope: Envelope /** The event type it declares, qualifier removed; without `accepts` only the Envelope's own type is read, '' when it names none. */;
      eventType: string;
    }
  | { poison: PoisonMessageError };

const quote = (s: string) =>
  JSON.stringify(s.length > QUOTED_TYPE_MAX ? `${s.slice(0, QUOTED_TYPE_MAX)}…` : s);
const text = (v: unknown) =>
  v === undefined || v === null ? '' : Buffer.isBuffer(v) ? v.toString() : String(v);

/**
 * Decodes `delivered` for a queue that takes the event types `accepts` (message names, e.g.
 * o2c.v1.OrderSubmitted). Without `accepts` only the framing is checked: an Envelope with an id.
 */
export function decodeEnvelope(delivered: DeliveredBody, accepts?: readonly string[]): DecodedEnvelope {
  const poison = (poisonClass: ConstructorParameters<typeof PoisonMessageError>[0], message: string) => ({
    poison: new PoisonMessageError(poisonClass, message),
  });
  let envelope: Envelope;
  try {
    envelope = fromBinary(EnvelopeSchema, delivered.body);
  } catch (err) {
    return poison(
      'UndecodableEnvelope',
      `body (${delivered.body.length} bytes) is not an o2c.v1.Envelope: ${(err as Error).message}`,
    );
  }
  if (!envelope.id) envelope.id = text(delivered.messageId);
  if (!envelope.id) return poison('MissingMessageId', 'the envelope has no id and the message no message_id');
  if (!accepts) return { envelope, eventType: eventTypeOf(envelope.type) ?? '' };

  const amqpType = text(delivered.type);
  const declared = envelope.type || amqpType;
  if (!declared)
    return poison('MissingEventType', 'neither the envelope nor the message names an event type');
  if (envelope.type && amqpType && envelope.type !== amqpType) {
    return poison(
      'ConflictingEventType',
      `the envelope says type ${quote(envelope.type)} but the message's AMQP type is ${quote(amqpType)}`,
    );
  }
  const eventType = eventTypeOf(declared);
  if (!eventType) {
    return poison('UnknownEventType', `type ${quote(declared)} is not an event type of the o2c.v1 contract`);
  }
  const carried = payloadTypeOf(envelope.payload.case);
  if (carried !== eventType) {
    return poison(
      'PayloadTypeMismatch',
      carried
        ? `type ${quote(declared)} declares ${eventType} but the payload is ${carried}`
        : `type ${quote(declared)} declares ${eventType} but the envelope carries no payload`,
    );
  }
  if (!accepts.includes(eventType)) {
    return poison(
      'UnexpectedEventType',
      `${eventType} is not for this queue, which takes ${accepts.join(', ') || 'no events'}`,
    );
  }
  return { envelope, eventType };
}
