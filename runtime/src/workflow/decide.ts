// The O2C state machine as one pure function: decide(instance, spec, input, now, world) takes an
// order's workflow instance, its generation's spec and what happened (an order submitted or
// cancelled, a connector reply, an awaited event, a due timer, a person's retry / resolve / skip),
// and returns what changes as data: the instance, the order and its events, the commands for the
// outbox, step records, exceptions to open or resolve, early events to keep or take, and KPI
// observations. No I/O: the engine shell (engine.ts) loads what decide needs and writes what it says.
import { clone, create, equals, toBinary, toJson } from '@bufbuild/protobuf';
import { timestampFromMs } from '@bufbuild/protobuf/wkt';
import { commandMessage } from '../connectors/commands.js';
import { ErrorClass } from '../gen/o2c/v1/common_pb.js';
import type { ConnectorReply } from '../gen/o2c/v1/connector_service_pb.js';
import { type Order, OrderSchema, OrderState } from '../gen/o2c/v1/entities_pb.js';
import { type Envelope, EnvelopeSchema } from '../gen/o2c/v1/events_pb.js';
import type { OutboxMessage } from '../store/types.js';
import {
  type AwaitFallback,
  awaitFallback,
  decideAwaitedEvent,
  decideAwaitTimer,
  decidePollReply,
  firstAwaitTimer,
  POLL_PREFIX,
  recordsPollAnswer,
} from './await-fallback.js';
import {
  COMPENSATE_PREFIX,
  COMPENSATION_ATTEMPTS,
  nextCompensation,
  onCompensationReply,
  sendCompensation,
  startCompensation,
} from './compensation.js';
import { fallout } from './fallout.js';
import { ACTIVE_STATUSES, type ExceptionRow, type Instance } from './instances.js';
import {
  awaitTimeoutMs,
  guardAllows,
  maxAttempts,
  replyTimeoutMs,
  retryDelayMs,
  type StepSpec,
  type WorkflowSpec,
} from './spec.js';
import { applyAwaitedEvent, applyReply, buildRequest, emptyContext, type StepOutcome } from './steps.js';
import {
  command,
  type DecideWorld,
  type Decision,
  type Draft,
  nothing,
  record,
  stepOf,
} from './transition.js';

export const NOTIFY_PREFIX = 'notify:';

/** What happened to an order: a delivery, a due timer or a person's action. */
export type WorkflowInput =
  | { kind: 'order-submitted'; causationId: string }
  | { kind: 'order-cancelled'; causationId: string }
  | { kind: 'connector-reply'; reply: ConnectorReply; causationId: string }
  | { kind: 'awaited-event'; envelope: Envelope; eventType: string }
  | { kind: 'timer-fired' }
  | { kind: 'retry-step'; exception: ExceptionRow }
  | { kind: 'resolve-exception'; exception: ExceptionRow; resolution: string; skipStep: boolean };

/** An input with what the shell loaded for it. */
export type DecideInput = WorkflowInput & {
  /** The order as stored (undefined: none by that id). */
  order: Order | undefined;
  /** Events that arrived before the order reached their await step, by event type. */
  early?: ReadonlyMap<string, Envelope>;
};

/** The generation an order runs on: its own, else the engine's current one. */
export function generationOf(order: Order, current: number): number {
  return Number(order.workflowGeneration) || current;
}

/** Replies to notifications need nothing from the engine. */
export function isNotifyReply(reply: ConnectorReply): boolean {
  return reply.step.startsWith(NOTIFY_PREFIX);
}

export function decide(
  instance: Instance | undefined,
  spec: WorkflowSpec,
  input: DecideInput,
  now: number,
  world: DecideWorld,
): Decision {
  const { order } = input;
  if (input.kind === 'order-submitted') {
    if (instance) return nothing('the order already runs');
    if (!order) return nothing('no such order');
    if (order.state !== OrderState.SUBMITTED) return nothing(`the order is ${OrderState[order.state]}`);
    return begin(order, spec, input, now, world);
  }
  if (input.kind === 'resolve-exception' && !input.skipStep) {
    if (input.exception.status !== 'open')
      return rejected(`exception ${input.exception.id} is already resolved`);
    const d = nothing('');
    delete d.ignored;
    d.resolvedExceptions.push(resolvedRow(input.exception, input.resolution || 'resolved by hand', now));
    return d;
  }
  if (!instance) {
    if (input.kind === 'retry-step' || input.kind === 'resolve-exception')
      return rejected(`order ${input.exception.orderId} is not held (workflow missing)`);
    return nothing('not an order of this workflow');
  }
  if (input.kind === 'connector-reply') {
    const reply = input.reply;
    if (isNotifyReply(reply)) return nothing('a notification reply');
    // A reply to a command this instance no longer waits for (a resend answered twice, a step
    // already timed out) changes nothing.
    if (instance.commandId && input.causationId && input.causationId !== instance.commandId)
      return nothing('a reply to a command no longer awaited');
  }
  if (input.kind === 'order-cancelled' && !ACTIVE_STATUSES.has(instance.status))
    return nothing(`the workflow is ${instance.status}`);
  if (input.kind === 'awaited-event') {
    const decision = decideAwaitedEvent(spec.steps, instance, input.eventType || input.envelope.type);
    if (decision === 'ignore') return nothing('an awaited event behind the order');
    if (decision === 'keep-early') {
      // Arrived before the order reached its await step (e.g. dispatched while the ERP reply is
      // still on its way): keep it for then.
      const d = nothing('');
      delete d.ignored;
      d.keepEarly = { type: input.envelope.type, body: toBinary(EnvelopeSchema, input.envelope) };
      return d;
    }
  }
  if (input.kind === 'retry-step' || input.kind === 'resolve-exception') {
    if (input.exception.status !== 'open')
      return rejected(`exception ${input.exception.id} is already resolved`);
    if (instance.status !== 'held')
      return rejected(`order ${input.exception.orderId} is not held (workflow ${instance.status})`);
  }
  if (!order) {
    if (input.kind === 'retry-step' || input.kind === 'resolve-exception')
      return rejected(`order ${input.exception.orderId} not found`);
    return nothing('no such order');
  }
  const t = draft(structuredClone(instance), order, spec, input, now, world);
  switch (input.kind) {
    case 'order-cancelled':
      t.d.resolveOpenExceptions = 'order cancelled';
      t.inst.context.compensationCause = 'cancel';
      startCompensation(t);
      break;
    case 'connector-reply':
      if (!onReply(t, input.reply)) return nothing('a reply to no step the order waits at');
      break;
    case 'awaited-event':
      onStepOutcome(t, stepOf(t), applyAwaitedEvent(input.envelope, t.order, t.inst.context));
      break;
    case 'timer-fired':
      onTimer(t);
      break;
    case 'retry-step':
      retryStep(t, input.exception);
      break;
    case 'resolve-exception':
      skipStep(t, input.exception, input.resolution);
      break;
  }
  return finish(t);
}

function rejected(message: string): Decision {
  const d = nothing('');
  delete d.ignored;
  d.rejected = message;
  return d;
}

function resolvedRow(e: ExceptionRow, resolution: string, now: number): ExceptionRow {
  return { ...e, status: 'resolved', resolvedAt: now, resolution };
}

/** Starts the workflow for a newly submitted order. */
function begin(
  order: Order,
  spec: WorkflowSpec,
  input: DecideInput & { kind: 'order-submitted' },
  now: number,
  world: DecideWorld,
): Decision {
  const generation = generationOf(order, world.generation);
  const inst: Instance = {
    orderId: order.id,
    workflow: world.workflow,
    generation,
    status: 'running',
    stepIndex: 0,
    step: '',
    attempt: 0,
    commandId: null,
    timerAt: null,
    context: emptyContext(),
    startedAt: now,
    updatedAt: now,
  };
  const t = draft(inst, order, spec, input, now, world);
  t.d.created = true;
  if (t.order.workflowGeneration === 0n) t.order.workflowGeneration = BigInt(generation);
  t.order.state = OrderState.IN_PROGRESS;
  enterStep(t, 0, input.causationId);
  return finish(t);
}

/** A draft of the change to an order and its instance, with an empty decision. */
function draft(
  inst: Instance,
  order: Order,
  spec: WorkflowSpec,
  input: DecideInput,
  now: number,
  world: DecideWorld,
): Draft {
  const d = nothing('');
  delete d.ignored;
  return {
    inst,
    before: order,
    order: clone(OrderSchema, order),
    now,
    spec,
    world,
    early: input.early ?? new Map(),
    d,
  };
}

/** Turns the draft into the decision: the order's change and its notifications, the instance. */
function finish(t: Draft): Decision {
  const d = t.d;
  d.instance = t.inst;
  const orderChanged = !equals(OrderSchema, t.before, t.order) || d.events.length > 0;
  if (orderChanged) {
    // The order as it will be saved: the repository bumps the version it was read at.
    t.order.version = t.before.version + 1n;
    t.order.updateTime = timestampFromMs(t.now);
    d.before = t.before;
    d.order = t.order;
    if (t.order.state !== t.before.state) d.commands.push(...notifications(t));
  }
  d.kpis.push({ kind: 'transition', outcome: t.inst.status });
  return d;
}

// ---- steps ------------------------------------------------------------------------------------

/** Moves to step `index` (skipping steps whose guard says no) and starts it. */
function enterStep(t: Draft, index: number, causationId?: string): void {
  const steps = t.spec.steps;
  let i = index;
  for (; i < steps.length; i++) {
    const step = steps[i] as StepSpec;
    let allowed: boolean;
    try {
      allowed = guardAllows(step, toJson(OrderSchema, t.order), t.inst.context.completed);
    } catch (err) {
      t.inst.stepIndex = i;
      t.inst.step = step.name;
      fallout(t, step.name, ErrorClass.VALIDATION, (err as Error).message, 'hold');
      return;
    }
    if (allowed) break;
    record(t, { step: step.name, attempt: 0, outcome: 'skipped', startedAt: t.now, endedAt: t.now });
  }
  const step = steps[i];
  if (!step) {
    complete(t);
    return;
  }
  t.inst.stepIndex = i;
  t.inst.step = step.name;
  if (step.call) {
    sendCommand(t, step, 1, causationId);
    return;
  }
  // An await step: the event may already be here.
  const type = step.await?.event ?? '';
  const early = t.d.takeEarly.includes(type) ? undefined : t.early.get(type);
  if (early) {
    t.d.takeEarly.push(type);
    t.inst.attempt = 1;
    t.inst.updatedAt = t.now; // the step starts now: its record spans this moment, not the step before
    onStepOutcome(t, step, applyAwaitedEvent(early, t.order, t.inst.context));
    return;
  }
  // Wake at the end of the quiet period to ask the owning system, or at the timeout.
  const deadline = t.now + awaitTimeoutMs(step);
  t.inst.context.await = { deadline, polls: 0 };
  t.inst.status = 'waiting';
  t.inst.attempt = 1;
  t.inst.commandId = null;
  t.inst.timerAt = firstAwaitTimer(awaitFallback(steps, i), t.now, deadline);
  t.inst.updatedAt = t.now;
  t.order.currentStep = step.name;
}

function sendCommand(t: Draft, step: StepSpec, attempt: number, causationId?: string): void {
  const call = step.call;
  if (!call) throw new Error(`step ${step.name} calls nothing`);
  let request: ReturnType<typeof buildRequest>;
  try {
    request = buildRequest(call.operation, t.order, t.inst.context);
  } catch (err) {
    fallout(t, step.name, ErrorClass.VALIDATION, (err as Error).message, 'hold');
    return;
  }
  const message = command(
    t,
    call.connector,
    request,
    step.name,
    `${t.inst.orderId}:${step.name}`,
    causationId,
  );
  t.inst.status = 'running';
  t.inst.attempt = attempt;
  t.inst.commandId = message.id;
  t.inst.timerAt = t.now + replyTimeoutMs(step);
  t.inst.updatedAt = t.now;
  t.order.currentStep = step.name;
  record(t, { step: step.name, attempt, outcome: 'started', startedAt: t.now });
}

/** Routes a reply to the step, compensation or question it answers; false: it answers none. */
function onReply(t: Draft, reply: ConnectorReply): boolean {
  const inst = t.inst;
  if (inst.status === 'compensating' && reply.step === inst.step && inst.step.startsWith(COMPENSATE_PREFIX)) {
    onCompensationReply(t, applyReply(reply, t.order, inst.context));
    return true;
  }
  if (inst.status === 'running' && reply.step === inst.step) {
    const step = stepOf(t);
    t.d.kpis.push({
      kind: 'step-latency',
      step: step.name,
      seconds: Math.max(0, t.now - inst.updatedAt) / 1000,
    });
    onStepOutcome(t, step, applyReply(reply, t.order, inst.context));
    return true;
  }
  if (inst.status === 'waiting' && reply.step === `${POLL_PREFIX}${inst.step}`) {
    onPollReply(t, reply);
    return true;
  }
  return false;
}

function onStepOutcome(t: Draft, step: StepSpec, outcome: StepOutcome): void {
  const inst = t.inst;
  const span = { step: step.name, attempt: inst.attempt, startedAt: inst.updatedAt, endedAt: t.now };
  if (outcome.kind === 'done') {
    record(t, { ...span, outcome: 'succeeded' });
    if (step.call) inst.context.completed.push(step.name);
    delete inst.context.await;
    observeMilestones(t);
    enterStep(t, inst.stepIndex + 1);
    return;
  }
  const errorClass = outcome.kind === 'failed' ? outcome.errorClass : ErrorClass.NOT_FOUND;
  const retryable = outcome.kind === 'not-yet' || outcome.retryable;
  if (outcome.kind === 'failed') t.d.events.push(...outcome.events);
  if (retryable && inst.attempt < maxAttempts(step)) {
    record(t, { ...span, outcome: 'retrying', errorClass, message: outcome.message });
    inst.status = 'retrying';
    inst.commandId = null;
    inst.timerAt = t.now + retryDelayMs(step, inst.attempt, t.world.random);
    inst.updatedAt = t.now;
    return;
  }
  record(t, { ...span, outcome: 'failed', errorClass, message: outcome.message });
  failStep(t, step, errorClass, outcome.message);
}

/** A step has failed for good: its onFailure policy decides (default hold). */
function failStep(t: Draft, step: StepSpec, errorClass: ErrorClass, message: string): void {
  const policy = step.onFailure ?? 'hold';
  if (policy === 'continue') {
    enterStep(t, t.inst.stepIndex + 1);
    return;
  }
  fallout(t, step.name, errorClass, message, policy);
  if (policy === 'compensate') startCompensation(t);
}

function complete(t: Draft): void {
  t.inst.status = 'completed';
  t.inst.commandId = null;
  t.inst.timerAt = null;
  t.inst.updatedAt = t.now;
  t.order.currentStep = '';
  t.d.kpis.push({ kind: 'transition', outcome: 'completed' });
}

function observeMilestones(t: Draft): void {
  if (t.order.state === t.before.state) return;
  const sinceSubmit = (t.now - t.inst.startedAt) / 1000;
  if (t.order.state === OrderState.INVOICED) {
    t.d.kpis.push({ kind: 'cycle-time', milestone: 'invoiced', seconds: sinceSubmit });
    const dispatchedAt = t.inst.context.dispatchedAt;
    if (dispatchedAt) t.d.kpis.push({ kind: 'invoice-lag', seconds: (t.now - dispatchedAt) / 1000 });
  }
  if (t.order.state === OrderState.SHIPPED) t.inst.context.dispatchedAt = t.now;
  if (t.order.state === OrderState.PAID)
    t.d.kpis.push({ kind: 'cycle-time', milestone: 'paid', seconds: sinceSubmit });
}

// ---- await steps: the fallback query ------------------------------------------------------------

/** Asks the owning system whether the awaited fact happened (the fallback for a missed event). */
function sendPoll(t: Draft, step: StepSpec, fallback: AwaitFallback, nextAt: number): void {
  const state = t.inst.context.await;
  if (!state) return;
  state.polls += 1;
  const message = command(
    t,
    fallback.connector,
    buildRequest(fallback.operation, t.order, t.inst.context),
    `${POLL_PREFIX}${step.name}`,
    `${t.inst.orderId}:${POLL_PREFIX}${step.name}:${state.polls}`,
  );
  // Still waiting: the event moves the step as before; an unanswered question is asked again.
  t.inst.commandId = message.id;
  t.inst.timerAt = nextAt;
}

/** The owning system's answer: proceed as if the event had arrived, or wait for the next question. */
function onPollReply(t: Draft, reply: ConnectorReply): void {
  const inst = t.inst;
  const step = stepOf(t);
  const decision = decidePollReply(reply, inst.orderId);
  inst.commandId = null;
  const polls = inst.context.await?.polls ?? 1;
  t.d.kpis.push({ kind: 'await-fallback', step: step.name, answer: decision.kind });
  if (recordsPollAnswer(decision, polls)) {
    record(t, {
      step: `${POLL_PREFIX}${step.name}`,
      attempt: polls,
      outcome:
        decision.kind === 'proceed' ? 'succeeded' : decision.kind === 'ask-again' ? 'retrying' : 'failed',
      message: decision.message,
      startedAt: t.now,
      endedAt: t.now,
    });
  }
  if (decision.kind === 'stop-polling') {
    if (inst.context.await) {
      inst.context.await.stopped = true;
      inst.timerAt = inst.context.await.deadline;
    }
    return;
  }
  if (decision.kind === 'ask-again') return;
  // The same path an arriving event takes.
  const env = create(EnvelopeSchema, {
    type: decision.event.type,
    subject: inst.orderId,
    correlationId: inst.orderId,
    payload: decision.event.payload,
  });
  onStepOutcome(t, step, applyAwaitedEvent(env, t.order, inst.context));
}

// ---- timers -----------------------------------------------------------------------------------

/** A due timer: a retry, a reply timeout, an await's question or timeout, a compensation resend. */
function onTimer(t: Draft): void {
  const inst = t.inst;
  inst.timerAt = null;
  if (inst.status === 'compensating') {
    if (inst.attempt >= COMPENSATION_ATTEMPTS) {
      fallout(
        t,
        inst.step,
        ErrorClass.TIMEOUT,
        `no reply to ${inst.step} after ${inst.attempt} attempts`,
        'hold',
      );
      return;
    }
    sendCompensation(t, inst.step.slice(COMPENSATE_PREFIX.length), inst.attempt + 1);
    return;
  }
  if (inst.status === 'waiting') {
    const step = stepOf(t);
    const fallback = awaitFallback(t.spec.steps, inst.stepIndex);
    const decision = decideAwaitTimer(inst.context.await, fallback, t.now, t.world.random);
    if (decision.kind === 'poll' && fallback) {
      sendPoll(t, step, fallback, decision.nextAt);
      return;
    }
    if (decision.kind === 'wait') {
      inst.timerAt = decision.until;
      return;
    }
    delete inst.context.await;
    record(t, {
      step: step.name,
      attempt: inst.attempt,
      outcome: 'timed_out',
      startedAt: inst.updatedAt,
      endedAt: t.now,
    });
    failStep(t, step, ErrorClass.TIMEOUT, `no ${step.await?.event} within ${step.await?.timeout ?? '72h'}`);
    return;
  }
  if (inst.status === 'running' || inst.status === 'retrying') {
    const step = stepOf(t);
    if (inst.status === 'running') {
      record(t, {
        step: step.name,
        attempt: inst.attempt,
        outcome: 'timed_out',
        errorClass: ErrorClass.TIMEOUT,
        message: 'no reply in time',
        startedAt: inst.updatedAt,
        endedAt: t.now,
      });
    }
    if (inst.attempt >= maxAttempts(step)) {
      failStep(
        t,
        step,
        ErrorClass.TIMEOUT,
        `no reply from ${step.call?.connector} after ${inst.attempt} attempts`,
      );
      return;
    }
    sendCommand(t, step, inst.attempt + 1);
  }
}

// ---- people: retry and resolve fallout --------------------------------------------------------

/** Resumes an order from the step that failed, after the cause was fixed. */
function retryStep(t: Draft, exception: ExceptionRow): void {
  t.d.resolvedExceptions.push(resolvedRow(exception, 'retried', t.now));
  if (exception.step.startsWith(COMPENSATE_PREFIX)) {
    sendCompensation(t, exception.step.slice(COMPENSATE_PREFIX.length), 1);
    return;
  }
  restoreFromHold(t);
  const step = stepOf(t);
  if (step.call) sendCommand(t, step, 1);
  else enterStep(t, t.inst.stepIndex);
}

/** Closes an exception and continues after its step, done by hand. */
function skipStep(t: Draft, exception: ExceptionRow, resolution: string): void {
  t.d.resolvedExceptions.push(resolvedRow(exception, resolution || 'resolved by hand', t.now));
  restoreFromHold(t);
  if (exception.step.startsWith(COMPENSATE_PREFIX)) {
    t.inst.context.compensating = t.inst.context.compensating?.slice(1);
    nextCompensation(t);
    return;
  }
  record(t, {
    step: exception.step,
    attempt: t.inst.attempt,
    outcome: 'skipped',
    message: resolution,
    startedAt: t.now,
    endedAt: t.now,
  });
  t.inst.context.completed.push(exception.step);
  enterStep(t, t.inst.stepIndex + 1);
}

function restoreFromHold(t: Draft): void {
  t.order.state = t.inst.context.stateBeforeHold ?? OrderState.IN_PROGRESS;
  t.order.statusReason = '';
  delete t.inst.context.stateBeforeHold;
}

// ---- notifications ----------------------------------------------------------------------------

/** CRM status write-back and other `notify` targets: fire and forget, retried by the connector. */
function notifications(t: Draft): OutboxMessage[] {
  const order = t.order;
  return (t.spec.notify ?? []).map((n, i) =>
    commandMessage({
      id: t.world.commandId(),
      namespace: t.world.namespace,
      connector: n.connector,
      routingKey: t.world.routingKeyOf(n.connector),
      request: buildRequest(n.operation, order, emptyContext()),
      orderId: order.id,
      step: `${NOTIFY_PREFIX}${n.connector}.${i}`,
      replyTo: t.world.replyKey,
      correlationId: order.id,
      idempotencyKey: `${order.id}:notify:${n.connector}:${order.version}`,
      source: t.world.source,
      now: t.now,
    }),
  );
}
