import { create, type MessageInitShape, toBinary } from '@bufbuild/protobuf';
import { BinaryWriter, WireType } from '@bufbuild/protobuf/wire';
import { describe, expect, it } from 'vitest';
import { type Envelope, EnvelopeSchema, ShipmentDispatchedSchema } from '../gen/o2c/v1/events_pb.js';
import { decodeEnvelope, eventTypeOf, payloadTypeOf } from './decode-envelope.js';
import { PoisonMessageError } from './errors.js';

const DISPATCHED = 'o2c.v1.ShipmentDispatched';
const AWAITED = ['o2c.v1.ShipmentDispatched', 'o2c.v1.InvoicePosted', 'o2c.v1.PaymentReceived'];

function anEnvelope(init: MessageInitShape<typeof EnvelopeSchema> = {}): Envelope {
  return create(EnvelopeSchema, {
    id: 'evt-1',
    type: DISPATCHED,
    subject: 'o-1',
    payload: { case: 'shipmentDispatched', value: { orderId: 'o-1' } },
    ...init,
  });
}

const bodyOf = (env: Envelope) => toBinary(EnvelopeSchema, env);

/** Appends field `fieldNo` (a varint no o2c.v1 message declares) to encoded message bytes. */
function withUnknownField(bytes: Uint8Array, fieldNo: number, value = 42): Uint8Array {
  const extra = new BinaryWriter().tag(fieldNo, WireType.Varint).uint32(value).finish();
  return new Uint8Array([...bytes, ...extra]);
}

/** An Envelope whose ShipmentDispatched payload (field 29) carries an unknown field 999. */
function dispatchedWithUnknownPayloadField(): Uint8Array {
  const head = bodyOf(anEnvelope({ payload: { case: undefined } }));
  const payload = withUnknownField(
    toBinary(ShipmentDispatchedSchema, create(ShipmentDispatchedSchema, { orderId: 'o-7' })),
    999,
  );
  const field = new BinaryWriter().tag(29, WireType.LengthDelimited).bytes(payload).finish();
  return new Uint8Array([...head, ...field]);
}

describe('decodeEnvelope', () => {
  it.each([
    {
      name: 'bytes that are no protobuf at all are undecodable',
      body: new Uint8Array([0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]),
      poisonClass: 'UndecodableEnvelope',
      message: /^body \(11 bytes\) is not an o2c.v1.Envelope: /,
    },
    {
      name: 'a valid envelope cut short is undecodable',
      body: bodyOf(anEnvelope()).slice(0, 12),
      poisonClass: 'UndecodableEnvelope',
      message: /not an o2c.v1.Envelope/,
    },
    {
      name: 'a string field that is not UTF-8 is undecodable',
      body: new Uint8Array([0x0a, 0x02, 0xc3, 0x28]),
      poisonClass: 'UndecodableEnvelope',
      message: /not an o2c.v1.Envelope/,
    },
    {
      name: 'an envelope without id and a message without message_id cannot be deduplicated',
      body: bodyOf(anEnvelope({ id: '' })),
      poisonClass: 'MissingMessageId',
      message: /no id/,
    },
    {
      name: 'an envelope that names no type, on a message that names none either',
      body: bodyOf(anEnvelope({ type: '' })),
      poisonClass: 'MissingEventType',
      message: /names an event type/,
    },
    {
      name: 'an unknown event type',
      body: bodyOf(anEnvelope({ type: 'o2c.v1.ShipmentTeleported' })),
      poisonClass: 'UnknownEventType',
      message: /^type "o2c.v1.ShipmentTeleported" is not an event type of the o2c.v1 contract$/,
    },
    {
      name: 'a known name with a suffix glued on is still unknown',
      body: bodyOf(anEnvelope({ type: 'o2c.v1.ShipmentDispatchedV2' })),
      poisonClass: 'UnknownEventType',
      message: /ShipmentDispatchedV2/,
    },
    {
      name: 'a type that says ShipmentDispatched over a PaymentReceived payload',
      body: bodyOf(anEnvelope({ payload: { case: 'paymentReceived', value: { orderId: 'o-1' } } })),
      poisonClass: 'PayloadTypeMismatch',
      message: /declares o2c.v1.ShipmentDispatched but the payload is o2c.v1.PaymentReceived$/,
    },
    {
      name: 'a type that says ShipmentDispatched over an empty payload',
      body: bodyOf(anEnvelope({ payload: { case: undefined } })),
      poisonClass: 'PayloadTypeMismatch',
      message: /declares o2c.v1.ShipmentDispatched but the envelope carries no payload$/,
    },
    {
      name: 'a well-formed event this queue is not for',
      body: bodyOf(
        anEnvelope({
          type: 'o2c.v1.OrderFallout',
          payload: { case: 'orderFallout', value: { orderId: 'o-1' } },
        }),
      ),
      poisonClass: 'UnexpectedEventType',
      message: /^o2c.v1.OrderFallout is not for this queue, which takes o2c.v1.ShipmentDispatched, /,
    },
  ])('refuses $name as $poisonClass', ({ body, poisonClass, message }) => {
    const decoded = decodeEnvelope({ body }, AWAITED);
    expect('poison' in decoded && decoded.poison).toBeInstanceOf(PoisonMessageError);
    if (!('poison' in decoded)) return;
    expect(decoded.poison.name).toBe(poisonClass);
    expect(decoded.poison.message).toMatch(message);
  });

  it.each([
    {
      name: 'an envelope of an accepted type with its payload',
      delivered: { body: bodyOf(anEnvelope()), type: DISPATCHED },
      id: 'evt-1',
      orderId: 'o-1',
    },
    {
      name: 'an envelope without type on a message whose AMQP type names it',
      delivered: { body: bodyOf(anEnvelope({ type: '' })), type: DISPATCHED },
      id: 'evt-1',
      orderId: 'o-1',
    },
    {
      name: 'an envelope without id takes the message_id',
      delivered: { body: bodyOf(anEnvelope({ id: '' })), messageId: 'msg-9' },
      id: 'msg-9',
      orderId: 'o-1',
    },
    {
      name: 'an unknown field in the envelope (a newer producer)',
      delivered: { body: withUnknownField(bodyOf(anEnvelope()), 500) },
      id: 'evt-1',
      orderId: 'o-1',
    },
    {
      name: 'an unknown field inside the known payload',
      delivered: { body: dispatchedWithUnknownPayloadField() },
      id: 'evt-1',
      orderId: 'o-7',
    },
  ])('reads $name', ({ delivered, id, orderId }) => {
    const decoded = decodeEnvelope(delivered, AWAITED);
    if ('poison' in decoded) throw decoded.poison;
    expect(decoded.eventType).toBe(DISPATCHED);
    expect(decoded.envelope.id).toBe(id);
    expect(
      decoded.envelope.payload.case === 'shipmentDispatched' && decoded.envelope.payload.value.orderId,
    ).toBe(orderId);
  });

  it('refuses an envelope whose type disagrees with the AMQP type', () => {
    const decoded = decodeEnvelope({ body: bodyOf(anEnvelope()), type: 'o2c.v1.PaymentReceived' }, AWAITED);
    expect('poison' in decoded && decoded.poison.name).toBe('ConflictingEventType');
  });

  it('checks only the framing when the queue names no types', () => {
    const decoded = decodeEnvelope({ body: bodyOf(anEnvelope({ type: 'test.anything' })) });
    expect('envelope' in decoded && decoded.eventType).toBe('');
  });
});

describe('eventTypeOf', () => {
  it.each([
    ['a payload message name', 'o2c.v1.PaymentReceived', 'o2c.v1.PaymentReceived'],
    [
      'a reply typed with its routing qualifier',
      'o2c.v1.ConnectorReply.default.distributor',
      'o2c.v1.ConnectorReply',
    ],
    ['a name the contract does not have', 'o2c.v1.Refund', undefined],
    ['a name that only starts like one', 'o2c.v1.ConnectorReplyX', undefined],
    ['a message that is no event', 'o2c.v1.Order', undefined],
    ['nothing', '', undefined],
  ])('resolves %s', (_name, declared, expected) => {
    expect(eventTypeOf(declared)).toBe(expected);
  });

  it('names the payload type of every case', () => {
    expect(payloadTypeOf('connectorCommand')).toBe('o2c.v1.ConnectorCommand');
    expect(payloadTypeOf(undefined)).toBeUndefined();
  });
});
