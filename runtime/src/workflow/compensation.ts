// Compensation: the completed steps that declare one are undone, last first, each command resent
// with the runtime's backoff until its Connector answers, the order held for people when it cannot.
// Pure, like decide.ts.
import { type BackoffOptions, backoffDelayMs } from '../backoff.js';
import { OrderState } from '../gen/o2c/v1/entities_pb.js';
import { fallout } from './fallout.js';
import { buildRequest, type StepOutcome } from './steps.js';
import { command, type Draft, record } from './transition.js';

export const COMPENSATE_PREFIX = 'compensate:';
/** Sends of one compensation command before the order is held for a person. */
export const COMPENSATION_ATTEMPTS = 8;
/** How long a compensation command waits for its reply before it is sent again (doubling). */
export const COMPENSATION_RESEND: BackoffOptions = { initialMs: 60_000, maxMs: 600_000, multiplier: 2 };
/** How long a compensation that failed retryably waits before it is sent again (doubling). */
export const COMPENSATION_RETRY: BackoffOptions = { initialMs: 2_000, maxMs: 60_000, multiplier: 2 };

/** Undoes the completed steps that declare a compensation, last first. */
export function startCompensation(t: Draft): void {
  t.inst.context.compensating = [...t.inst.context.completed]
    .reverse()
    .filter((name) => t.spec.steps.find((s) => s.name === name)?.compensate);
  nextCompensation(t);
}

export function nextCompensation(t: Draft): void {
  const next = t.inst.context.compensating?.[0];
  if (!next) {
    const cancelled = t.inst.context.compensationCause === 'cancel';
    t.inst.status = cancelled ? 'cancelled' : 'failed';
    t.inst.commandId = null;
    t.inst.timerAt = null;
    t.inst.updatedAt = t.now;
    if (!cancelled) t.order.state = OrderState.FAILED;
    t.order.currentStep = '';
    return;
  }
  sendCompensation(t, next, 1);
  record(t, { step: `${COMPENSATE_PREFIX}${next}`, attempt: 1, outcome: 'started', startedAt: t.now });
}

export function sendCompensation(t: Draft, stepName: string, attempt: number): void {
  const step = t.spec.steps.find((s) => s.name === stepName);
  if (!step?.call || !step.compensate) throw new Error(`step ${stepName} declares no compensation`);
  const message = command(
    t,
    step.call.connector,
    buildRequest(step.compensate.operation, t.order, t.inst.context),
    `${COMPENSATE_PREFIX}${stepName}`,
    `${t.inst.orderId}:${COMPENSATE_PREFIX}${stepName}`,
  );
  t.inst.status = 'compensating';
  t.inst.step = `${COMPENSATE_PREFIX}${stepName}`;
  t.inst.attempt = attempt;
  t.inst.commandId = message.id;
  t.inst.timerAt = t.now + backoffDelayMs(COMPENSATION_RESEND, attempt, t.world.random);
  t.inst.updatedAt = t.now;
}

export function onCompensationReply(t: Draft, outcome: StepOutcome): void {
  const inst = t.inst;
  const span = { step: inst.step, attempt: inst.attempt, startedAt: inst.updatedAt, endedAt: t.now };
  if (outcome.kind === 'done') {
    record(t, { ...span, outcome: 'compensated' });
    inst.context.compensating = inst.context.compensating?.slice(1);
    nextCompensation(t);
    return;
  }
  if (outcome.kind === 'failed' && !outcome.retryable) {
    record(t, { ...span, outcome: 'failed', errorClass: outcome.errorClass, message: outcome.message });
    fallout(t, inst.step, outcome.errorClass, `compensation failed: ${outcome.message}`, 'hold');
    return;
  }
  // Retryable: the timer resends it with backoff.
  inst.commandId = null;
  inst.timerAt = t.now + backoffDelayMs(COMPENSATION_RETRY, inst.attempt, t.world.random);
}
