// Reconciled: every child was applied. A write the API server refused (an invalid name, a quota, a
// missing permission, an immutable field) is reported here with its message, not only in a log line.
import { type ComputedCondition, type Condition, mergeConditions } from './condition.js';
import { ready } from './ready.js';

export const ReconciledReason = {
  Applied: 'ChildrenApplied',
  Failed: 'ApplyFailed',
  Waiting: 'WaitingForInputs',
} as const;

export function reconciled(
  result: { applied: readonly string[] } | { blocked: true } | { error: string },
): ComputedCondition {
  const type = 'Reconciled';
  if ('error' in result) {
    return {
      type,
      status: 'False',
      reason: ReconciledReason.Failed,
      message: `${result.error}. Retrying with backoff.`,
    };
  }
  if ('blocked' in result) {
    return {
      type,
      status: 'Unknown',
      reason: ReconciledReason.Waiting,
      message: 'Children are not rendered until the spec, its references and Secrets resolve.',
    };
  }
  return {
    type,
    status: 'True',
    reason: ReconciledReason.Applied,
    message: `Applied ${result.applied.join(', ')}.`,
  };
}

/**
 * The conditions after a reconcile that failed before it could compute them all: the others stay as
 * they were, Reconciled carries the error, and Ready follows.
 */
export function failedConditions(
  previous: readonly Condition[] | undefined,
  error: string,
  generation: number | undefined,
  now: Date,
): Condition[] {
  const kept: ComputedCondition[] = (previous ?? [])
    .filter((c) => c.type !== 'Ready' && c.type !== 'Reconciled')
    .map(({ type, status, reason, message }) => ({ type, status, reason, message }));
  const computed = [...kept, reconciled({ error })];
  return mergeConditions(previous, [ready(computed), ...computed], generation, now);
}
