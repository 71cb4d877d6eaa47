// SQL shared by both dialects: the statements are portable, only placeholders and types differ.
import type { OutboxMessage, OutboxRow, SqlParam, Tx } from './types.js';

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

const OUTBOX_COLUMNS = 9;
/** Rows per INSERT: well under both drivers' limits on bound parameters. */
const OUTBOX_ROWS_PER_STATEMENT = 100;

/** Appends messages in write order with as few round trips as possible (multi-row INSERTs). */
export async function enqueueAll(tx: Tx, messages: OutboxMessage[], now: number): Promise<void> {
  for (let start = 0; start < messages.length; start += OUTBOX_ROWS_PER_STATEMENT) {
    const chunk = messages.slice(start, start + OUTBOX_ROWS_PER_STATEMENT);
    const rows = chunk.map(
      (_, r) =>
        `(${Array.from({ length: OUTBOX_COLUMNS }, (_, c) => `$${r * OUTBOX_COLUMNS + c + 1}`).join(', ')})`,
    );
    await tx.execute(
      `INSERT INTO outbox (id, exchange, routing_key, type, correlation_id, ordering_key, headers, body, created_at) VALUES ${rows.join(', ')}`,
      chunk.flatMap((m) => outboxParams(m, now)),
    );
  }
}
