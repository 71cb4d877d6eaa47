// Ready: the conjunction of the other conditions; when not ready it carries the first failure's
// reason and message, so `kubectl get o2c` shows what to fix.
import type { ComputedCondition } from './condition.js';

export function ready(conditions: readonly ComputedCondition[]): ComputedCondition {
  const failing = conditions.find((c) => c.status !== 'True');
  if (failing) {
    return {
      type: 'Ready',
      status: failing.status === 'False' ? 'False' : 'Unknown',
      reason: failing.reason,
      message: `${failing.type}: ${failing.message}`,
    };
  }
  return { type: 'Ready', status: 'True', reason: 'Ready', message: 'All conditions are met.' };
}
