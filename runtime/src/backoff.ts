// The runtime's one retry delay formula: capped exponential backoff with jitter. The bus reconnects,
// the store reaches for the database and the outbox relay re-acquires its lease with it.

export interface BackoffOptions {
  initialMs: number;
  maxMs: number;
  multiplier: number;
}

/** Capped exponential backoff with "equal jitter": half fixed, half random, never above the cap. */
export function backoffDelayMs(
  b: BackoffOptions,
  attempt: number,
  random: () => number = Math.random,
): number {
  const capped = Math.min(b.maxMs, b.initialMs * b.multiplier ** Math.max(0, attempt - 1));
  return Math.round(capped / 2 + (random() * capped) / 2);
}
