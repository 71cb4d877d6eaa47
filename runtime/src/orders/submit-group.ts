// The decisions of a grouped SubmitOrder commit, apart from its I/O: which submits of a group write
// a row, and what each caller is answered once the rows for their idempotency keys are known.
import type { Order } from '../gen/o2c/v1/entities_pb.js';

/** One SubmitOrder of a group: its idempotency key, its request's fingerprint, the order it would create. */
export interface SubmitAttempt {
  key: string;
  fingerprint: string;
  order: Order;
}

/** The row stored for an idempotency key after the group's commit. */
export interface StoredSubmit {
  requestHash: string;
  order: Order;
}

export type SubmitAnswer =
  | { kind: 'created'; order: Order }
  | { kind: 'existing'; order: Order }
  | { kind: 'conflict'; existingOrderId: string }
  | { kind: 'missing' };

/**
 * Positions of the submits that try to insert a row: the first one per idempotency key (the others
 * of that key are answered from its row), in key order, so that concurrent groups (other replicas)
 * take the key index entries in one order and never deadlock on each other.
 */
export function writersOf(attempts: readonly Pick<SubmitAttempt, 'key'>[]): number[] {
  const first = new Map<string, number>();
  attempts.forEach((a, i) => {
    if (!first.has(a.key)) first.set(a.key, i);
  });
  return [...first.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([, i]) => i);
}

/**
 * A caller's answer from the row now stored for its key: the same request gets that order (created
 * when it is the one this caller's attempt inserted), a different request the conflict.
 */
export function answerSubmit(attempt: SubmitAttempt, stored: StoredSubmit | undefined): SubmitAnswer {
  if (!stored) return { kind: 'missing' };
  if (stored.requestHash !== attempt.fingerprint)
    return { kind: 'conflict', existingOrderId: stored.order.id };
  if (stored.order.id === attempt.order.id) return { kind: 'created', order: stored.order };
  return { kind: 'existing', order: stored.order };
}
