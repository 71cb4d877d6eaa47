// SQL shared by both dialects: the statements are portable, only placeholders and types differ.
import type { OutboxMessage, OutboxRow } from './types.js';

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

/**
 * The ids to claim in one statement: each once, sorted, so two transactions claiming overlapping
 * batches take the inbox row locks in the same order and cannot deadlock.
 */
export function claimOrder(messageIds: readonly string[]): string[] {
  return [...new Set(messageIds)].sort();
}

/** The outbox columns in insert order; `created_at` is one value for the whole statement. */
export const OUTBOX_INSERT_COLUMNS =
  'id, exchange, routing_key, type, correlation_id, ordering_key, headers, body, created_at';

export function headersText(m: OutboxMessage): string | null {
  return m.headers ? JSON.stringify(m.headers) : null;
}

/**
 * A message's values for the outbox columns before `body`, in OUTBOX_INSERT_COLUMNS order; each
 * dialect adds the body in its own form, then `created_at`.
 */
export function outboxValuesBeforeBody(
  m: OutboxMessage,
): [string, string, string, string, string, string, string | null] {
  return [m.id, m.exchange, m.routingKey, m.type, m.correlationId, m.orderingKey, headersText(m)];
}
