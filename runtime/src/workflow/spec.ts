// The Workflow spec as the runtime reads it (the CRD schema in crds/workflow.ts is its source), and
// the pure decisions over it: which step comes next, retry delays, failure policy.

import type { WorkflowSpec as CrdWorkflowSpec, WorkflowStep } from '../../../crds/workflow.js';
import { type BackoffOptions, backoffDelayMs } from '../backoff.js';
import { planCel, toCel } from '../cel.js';
import { parseDurationMs } from '../connectors/config.js';

/** A step as the CRD declares it. */
export type StepSpec = WorkflowStep;

/** What the engine runs of a Workflow: its steps and notifications (the CRD's spec, or part of it). */
export type WorkflowSpec = Pick<CrdWorkflowSpec, 'steps' | 'notify'>;

export const DEFAULT_STEP_ATTEMPTS = 3;
export const DEFAULT_REPLY_TIMEOUT_MS = 5 * 60_000;

export function maxAttempts(step: StepSpec): number {
  return step.retry?.maxAttempts ?? DEFAULT_STEP_ATTEMPTS;
}

/** A step's retry backoff: doubling from `initial` (default 1 s) up to `max` (default 5 min). */
export function stepBackoff(step: StepSpec): BackoffOptions {
  return {
    initialMs: parseDurationMs(step.retry?.backoff?.initial, 1000),
    maxMs: parseDurationMs(step.retry?.backoff?.max, 300_000),
    multiplier: 2,
  };
}

/** Delay before attempt `attempt + 1`: the runtime's backoff over the step's retry settings. */
export function retryDelayMs(step: StepSpec, attempt: number, random: () => number): number {
  return backoffDelayMs(stepBackoff(step), attempt, random);
}

export function awaitTimeoutMs(step: StepSpec): number {
  return parseDurationMs(step.await?.timeout, 72 * 3_600_000);
}

export function replyTimeoutMs(step: StepSpec): number {
  return parseDurationMs(step.timeout, DEFAULT_REPLY_TIMEOUT_MS);
}

type Guard = ReturnType<typeof planCel>;
const guards = new Map<string, Guard>();

export class GuardError extends Error {}

/** Compiles a `when` guard once; throws GuardError naming the step when it does not parse. */
export function compileGuard(step: StepSpec): Guard | undefined {
  if (!step.when) return undefined;
  let compiled = guards.get(step.when);
  if (!compiled) {
    try {
      compiled = planCel(step.when);
    } catch (err) {
      throw new GuardError(
        `step ${step.name}: when ${JSON.stringify(step.when)} does not compile: ${(err as Error).message}`,
      );
    }
    guards.set(step.when, compiled);
  }
  return compiled;
}

/** Evaluates a step's guard; a guard that errors or is not a bool is a GuardError. */
export function guardAllows(step: StepSpec, order: unknown, completed: string[]): boolean {
  const guard = compileGuard(step);
  if (!guard) return true;
  const result = guard({ order: toCel(order), steps: completed });
  if (typeof result !== 'boolean') {
    throw new GuardError(`step ${step.name}: when ${JSON.stringify(step.when)} did not yield a bool`);
  }
  return result;
}

/** Checks a spec before it runs: unique names, one of call/await, guards that compile. */
export function validateSpec(spec: WorkflowSpec): string[] {
  const problems: string[] = [];
  const names = new Set<string>();
  for (const [i, step] of spec.steps.entries()) {
    if (names.has(step.name)) problems.push(`steps[${i}].name: duplicate step ${step.name}`);
    names.add(step.name);
    if (!!step.call === !!step.await) problems.push(`steps[${i}]: a step has exactly one of call or await`);
    try {
      compileGuard(step);
    } catch (err) {
      problems.push(`steps[${i}].when: ${(err as Error).message}`);
    }
  }
  return problems;
}
