// SpecValid: what the apiserver's schema cannot check — CEL in Pipelines (filter, transform,
// ordering key) and Workflow step guards — compiles, and names the field when it does not.
import type { ComputedCondition } from './condition.js';

export const SpecReason = {
  Valid: 'SpecValid',
  Invalid: 'InvalidSpec',
} as const;

export function specValid(problems: readonly string[]): ComputedCondition {
  const type = 'SpecValid';
  if (problems.length === 0) {
    return {
      type,
      status: 'True',
      reason: SpecReason.Valid,
      message: 'Every expression in the spec compiles.',
    };
  }
  return { type, status: 'False', reason: SpecReason.Invalid, message: `${problems.join('; ')}.` };
}
