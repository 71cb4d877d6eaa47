// Events a connector originates — work done inside its system: dispatches, payments, invoices posted,
// master-data changes — and the one way they leave it: written to the connector's outbox in the same
// transaction as what records them (a change feed's watermark), then relayed with confirms, so a
// broker outage only delays them and a restart neither loses nor repeats one.
import { createHash } from 'node:crypto';
import { create, toBinary } from '@bufbuild/protobuf';
import { timestampFromMs } from '@bufbuild/protobuf/wkt';
import { EVENTS_EXCHANGE, eventRoutingKey } from '../bus/addressing.js';
import { freshClaims } from '../bus/consumer.js';
import { type Envelope, EnvelopeSchema } from '../gen/o2c/v1/events_pb.js';
import type { OutboxMessage, Store, Tx } from '../store/types.js';

export interface OriginatedEvent {
  /** Event type, e.g. o2c.v1.ShipmentDispatched; routed as `<ns>.connector.<name>.<type>`. */
  type: string;
  payload: Envelope['payload'];
  /** What the event is about (the o2c order id, a SKU): subject and ordering key. */
  subject: string;
  /**
   * Stable per fact, e.g. `tryton:shipment_done:12:<order>`. The envelope id derives from it, so a
   * fact seen twice (an overlapping poll, a second replica) is one message id.
   */
  idempotencyKey: string;
  correlationId?: string;
}

/**
 * Writes events to the outbox; `alsoInTx` (a watermark advance) commits in the same transaction.
 * Resolves after the commit. A fact already originated is skipped.
 */
export type OriginateEvents = (
  events: OriginatedEvent[],
  alsoInTx?: (tx: Tx) => Promise<void>,
) => Promise<void>;

/** A UUID-shaped id that is the same for the same source and fact (RFC 9562 version 8 layout). */
export function originatedEventId(source: string, idempotencyKey: string): string {
  const h = createHash('sha256').update(source).update('\0').update(idempotencyKey).digest();
  h[6] = (h[6]! & 0x0f) | 0x80;
  h[8] = (h[8]! & 0x3f) | 0x80;
  const x = h.subarray(0, 16).toString('hex');
  return `${x.slice(0, 8)}-${x.slice(8, 12)}-${x.slice(12, 16)}-${x.slice(16, 20)}-${x.slice(20)}`;
}

/** The outbox row of one originated event. */
export function originatedMessage(source: string, event: OriginatedEvent, now: number): OutboxMessage {
  const envelope = create(EnvelopeSchema, {
    id: originatedEventId(source, event.idempotencyKey),
    type: event.type,
    source,
    subject: event.subject,
    time: timestampFromMs(now),
    correlationId: event.correlationId ?? event.subject,
    idempotencyKey: event.idempotencyKey,
    orderingKey: event.subject,
    payload: event.payload,
  });
  return {
    id: envelope.id,
    exchange: EVENTS_EXCHANGE,
    routingKey: eventRoutingKey(source, event.type),
    body: toBinary(EnvelopeSchema, envelope),
    type: event.type,
    correlationId: envelope.correlationId,
    orderingKey: envelope.orderingKey,
  };
}

export interface OriginatorOptions {
  store: Store;
  /** e.g. `o2c/<namespace>/connector/<name>`. */
  source: string;
  /** Inbox consumer that remembers which facts were originated: `originated.<connector>`. */
  consumer: string;
  now: () => number;
  /** After each commit that wrote rows (wakes the outbox relay). */
  onCommitted?: (messages: OutboxMessage[]) => void;
}

/** The connector's OriginateEvents over its store. */
export function storeOriginator(o: OriginatorOptions): OriginateEvents {
  return async (events, alsoInTx) => {
    const written = await o.store.transaction(async (tx) => {
      const now = o.now();
      const messages = events.map((e) => originatedMessage(o.source, e, now));
      const claimed = await tx.claimInboxMany(
        o.consumer,
        messages.map((m) => m.id),
      );
      const isFresh = freshClaims(messages, claimed);
      const fresh = messages.filter((_, i) => isFresh[i]);
      if (fresh.length > 0) await tx.enqueueOutbox(fresh);
      await alsoInTx?.(tx);
      return fresh;
    });
    if (written.length > 0) o.onCommitted?.(written);
  };
}
