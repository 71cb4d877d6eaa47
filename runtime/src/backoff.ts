// The one retry delay formula of o2c: capped exponential backoff with jitter. The bus reconnects and
// retry tiers, the store's reach for the database, the relay's lease, step retries, compensation
// resends, await polls and the operator's work queue and informers all take their delays from it.

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
