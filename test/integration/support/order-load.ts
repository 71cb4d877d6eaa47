// Steady order load against the order API for restart tests: submits at a fixed rate, records every
// answer, sorts client errors into "known not stored" and "outcome unknown", and retries the unknown
// ones with the same idempotency key, as a client is told to.
import { type Client, Code, ConnectError } from '@connectrpc/connect';
import { OrderState } from '../../../runtime/src/gen/o2c/v1/entities_pb.js';
import type { OrderService } from '../../../runtime/src/gen/o2c/v1/order_service_pb.js';

export interface Submission {
  key: string;
  sentAt: number;
  answeredAt: number;
  orderId?: string;
  error?: { code: Code; message: string };
}

/** The API's answer when it cannot know whether the order was stored (errors.ts in the API). */
export const OUTCOME_UNKNOWN = /unknown.*same idempotency key|same idempotency key.*unknown/i;
/** An answer that says for sure the order was not stored. */
export const NOT_STORED = /not (been )?stored|nothing was (written|stored)|was not accepted/i;

export type ErrorKind = 'outcome-unknown' | 'not-stored' | 'other';

export function errorKind(e: { code: Code; message: string }): ErrorKind {
  if (e.code === Code.Unavailable && OUTCOME_UNKNOWN.test(e.message)) return 'outcome-unknown';
  if (e.code === Code.Unavailable && NOT_STORED.test(e.message)) return 'not-stored';
  return 'other';
}

/** Order content is a function of the key, so a retry sends exactly the same order. */
export function orderFor(key: string) {
  const n = Number(/(\d+)$/.exec(key)?.[1] ?? 0);
  return {
    customerId: 'ACME',
    currencyCode: 'USD',
    lines: [{ sku: `WIDGET-${n % 7}`, quantity: 1 + (n % 5) }],
  };
}

export async function submitOnce(client: Client<typeof OrderService>, key: string): Promise<Submission> {
  const sentAt = Date.now();
  try {
    const { order } = await client.submitOrder(
      { idempotencyKey: key, order: orderFor(key) },
      { timeoutMs: 20_000 },
    );
    return { key, sentAt, answeredAt: Date.now(), orderId: order?.id };
  } catch (err) {
    const e = ConnectError.from(err);
    return { key, sentAt, answeredAt: Date.now(), error: { code: e.code, message: e.rawMessage } };
  }
}

/** Submits `ratePerSecond` orders per second for `durationMs`; `during` runs alongside (a restart). */
export async function steadyLoad<T>(options: {
  client: Client<typeof OrderService>;
  prefix: string;
  ratePerSecond: number;
  durationMs: number;
  during: () => Promise<T>;
}): Promise<{ submissions: Submission[]; during: T }> {
  const { client, prefix, ratePerSecond, durationMs } = options;
  const total = Math.round((ratePerSecond * durationMs) / 1000);
  const started = Date.now();
  const pending: Promise<Submission>[] = [];
  const during = options.during();
  for (let i = 0; i < total; i++) {
    const due = started + (i * 1000) / ratePerSecond;
    const wait = due - Date.now();
    if (wait > 0) await new Promise((r) => setTimeout(r, wait));
    pending.push(submitOnce(client, `${prefix}-${i}`));
  }
  const [submissions, result] = await Promise.all([Promise.all(pending), during]);
  return { submissions, during: result };
}

/** A test's read of the Workflow database. */
export type RowsQuery = <R extends Record<string, unknown>>(sql: string, params?: unknown[]) => Promise<R[]>;

/** Waits until every order of `ids` is PAID, reading every `intervalMs`; else names five that are not. */
export async function waitUntilPaid(
  query: RowsQuery,
  ids: string[],
  timeoutMs: number,
  intervalMs: number,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const rows = await query<{ id: string; state: number }>(
      'SELECT id, state FROM orders WHERE id = ANY($1::text[]) AND state <> $2',
      [ids, OrderState.PAID],
    );
    if (rows.length === 0) return;
    if (Date.now() > deadline) {
      const sample = rows.slice(0, 5).map((r) => `${r.id} ${OrderState[r.state]}`);
      throw new Error(`${rows.length} of ${ids.length} orders are not PAID: ${sample.join(', ')}`);
    }
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}
