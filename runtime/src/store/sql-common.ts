// SQL shared by both dialects: the statements are portable, only placeholders and types differ.
import type { OutboxMessage, OutboxRow, SqlParam, Tx } from './types.js';

export const INSERT_OUTBOX_SQL =
  'INSERT INTO outbox (id, exchange, routing_key, type, correlation_id, ordering_key, headers, body, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)';

export function outboxParams(m: OutboxMessage, now: number): SqlParam[] {
  return [
    m.id,
    m.exchange,
    m.routingKey,
    m.type,
    m.correlationId,
    m.orderingKey,
    m.headers ? JSON.stringify(m.headers) : null,
    m.body,
    now,
  ];
}

export const PENDING_OUTBOX_SQL =
  'SELECT seq, id, exchange, routing_key, type, correlation_id, ordering_key, headers, body, created_at FROM outbox WHERE sent_at IS NULL ORDER BY seq LIMIT $1';

export function toOutboxRow(r: Record<string, unknown>): OutboxRow {
  const body = r.body as Uint8Array;
  return {
    seq: Number(r.seq),
    id: String(r.id),
    exchange: String(r.exchange),
    routingKey: String(r.routing_key),
    type: String(r.type),
    correlationId: String(r.correlation_id),
    orderingKey: String(r.ordering_key),
    headers: r.headers ? (JSON.parse(String(r.headers)) as Record<string, string>) : undefined,
    body: body instanceof Uint8Array ? body : new Uint8Array(body as ArrayBufferLike),
    createdAt: Number(r.created_at),
  };
}

export const CLAIM_INBOX_SQL =
  'INSERT INTO inbox (consumer, message_id, processed_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING';

export async function enqueueAll(tx: Tx, messages: OutboxMessage[], now: number): Promise<void> {
  for (const m of messages) await tx.execute(INSERT_OUTBOX_SQL, outboxParams(m, now));
}
