// The fallback for a missed awaited event: after a quiet period an await step asks the system that
// owns the fact (GetShipment, GetPaymentStatus) and proceeds on what it finds, exactly as if the
// event had arrived. Pure decisions over the step, its state and the reply; engine.ts does the I/O.
import { type BackoffOptions, backoffDelayMs } from '../backoff.js';
import { parseDurationMs } from '../connectors/config.js';
import type { ConnectorReply } from '../gen/o2c/v1/connector_service_pb.js';
import { ACTIVE_STATUSES, type InstanceStatus } from './instances.js';
import type { StepSpec } from './spec.js';
import type { StepEvent } from './steps.js';

/** Quiet period before the first question when the await names none. */
export const DEFAULT_POLL_AFTER_MS = 10 * 60_000;
/** Later questions double from the quiet period up to this (or the quiet period, when longer). */
export const MAX_POLL_INTERVAL_MS = 3_600_000;
/** Step name of a fallback query in commands, replies and history: `poll:<await step>`. */
export const POLL_PREFIX = 'poll:';

/** The query that stands in for each awaitable event; an event without one has no fallback. */
export const FALLBACK_OPERATIONS: Readonly<Record<string, 'GetShipment' | 'GetPaymentStatus'>> = {
  'o2c.v1.ShipmentDispatched': 'GetShipment',
  'o2c.v1.PaymentReceived': 'GetPaymentStatus',
};

export interface AwaitFallback {
  connector: string;
  operation: 'GetShipment' | 'GetPaymentStatus';
  pollAfterMs: number;
}

/** Where an await step stands, kept in the step context while it waits. */
export interface AwaitState {
  /** The await's timeout (epoch ms): fallout then. */
  deadline: number;
  /** Questions sent so far. */
  polls: number;
  /** The owning system cannot answer (e.g. the driver does not offer the query): wait for the event only. */
  stopped?: boolean;
}

/**
 * The fallback of `steps[index]`: its query, the Connector asked (`await.connector`, else the one of
 * the nearest call step before it, which released the fulfillment or posted the invoice) and the quiet
 * period. Undefined for a step that is no await, an event without a query, or no Connector to ask.
 */
export function awaitFallback(steps: readonly StepSpec[], index: number): AwaitFallback | undefined {
  const a = steps[index]?.await;
  if (!a) return undefined;
  const operation = FALLBACK_OPERATIONS[a.event];
  if (!operation) return undefined;
  let connector = a.connector;
  for (let i = index - 1; !connector && i >= 0; i--) connector = steps[i]?.call?.connector;
  if (!connector) return undefined;
  return { connector, operation, pollAfterMs: parseDurationMs(a.pollAfter, DEFAULT_POLL_AFTER_MS) };
}

/** When an await step entered at `now` first wakes up: the quiet period's end, or its timeout. */
export function firstAwaitTimer(fallback: AwaitFallback | undefined, now: number, deadline: number): number {
  return fallback ? Math.min(deadline, now + fallback.pollAfterMs) : deadline;
}

export const pollBackoff = (fallback: AwaitFallback): BackoffOptions => ({
  initialMs: fallback.pollAfterMs,
  maxMs: Math.max(fallback.pollAfterMs, MAX_POLL_INTERVAL_MS),
  multiplier: 2,
});

export type AwaitTimerDecision =
  | { kind: 'time-out' }
  /** Ask the owning system now; wake again at nextAt (the next question, or the timeout). */
  | { kind: 'poll'; nextAt: number }
  /** Nothing to ask: sleep until the timeout. */
  | { kind: 'wait'; until: number };

/** What a due timer of a waiting await step does. State from before this fallback existed times out. */
export function decideAwaitTimer(
  state: AwaitState | undefined,
  fallback: AwaitFallback | undefined,
  now: number,
  random: () => number = Math.random,
): AwaitTimerDecision {
  if (!state || now >= state.deadline) return { kind: 'time-out' };
  if (!fallback || state.stopped) return { kind: 'wait', until: state.deadline };
  const next = now + backoffDelayMs(pollBackoff(fallback), state.polls + 1, random);
  return { kind: 'poll', nextAt: Math.min(state.deadline, next) };
}

export type PollReplyDecision =
  /** The owning system says it happened: the step proceeds on this event, as if it had arrived. */
  | { kind: 'proceed'; event: StepEvent; message: string }
  /** Not yet (or a passing failure): the timer already set asks again. */
  | { kind: 'ask-again'; message: string }
  /** The system cannot answer this question: wait for the event alone until the timeout. */
  | { kind: 'stop-polling'; message: string };

/** What the reply to a fallback query means for the await step. */
export function decidePollReply(reply: ConnectorReply, orderId: string): PollReplyDecision {
  const r = reply.result;
  switch (r.case) {
    case 'getShipment': {
      if (!r.value.dispatched) return { kind: 'ask-again', message: 'GetShipment: not dispatched yet' };
      const shipment = r.value.shipments.find((s) => s.dispatchTime) ?? r.value.shipments[0];
      return {
        kind: 'proceed',
        message: `GetShipment: dispatched (${r.value.shipments.length} shipment(s)); no ShipmentDispatched event arrived`,
        event: {
          type: 'o2c.v1.ShipmentDispatched',
          payload: { case: 'shipmentDispatched', value: { orderId, shipment } },
        },
      };
    }
    case 'getPaymentStatus': {
      if (!r.value.paid) return { kind: 'ask-again', message: 'GetPaymentStatus: not paid yet' };
      return {
        kind: 'proceed',
        message: 'GetPaymentStatus: paid; no PaymentReceived event arrived',
        event: {
          type: 'o2c.v1.PaymentReceived',
          payload: { case: 'paymentReceived', value: { orderId, payment: r.value.payments.at(-1) } },
        },
      };
    }
    case 'error':
      return r.value.retryable
        ? { kind: 'ask-again', message: `${reply.operation}: ${r.value.message}` }
        : {
            kind: 'stop-polling',
            message: `${reply.operation}: ${r.value.message}; waiting for the event only`,
          };
    default:
      return {
        kind: 'stop-polling',
        message: `${reply.operation || 'fallback query'}: answered ${r.case ?? 'nothing'}; waiting for the event only`,
      };
  }
}

/**
 * Whether the answer to question `polls` goes into the step history: every "it happened" and "cannot
 * answer", but "not yet" only for questions 1, 2, 4, 8, ... — a 45-day payment wait asked hourly
 * leaves about ten rows, not a thousand.
 */
export function recordsPollAnswer(decision: PollReplyDecision, polls: number): boolean {
  return decision.kind !== 'ask-again' || (polls > 0 && (polls & (polls - 1)) === 0);
}

export type AwaitedEventDecision = 'apply' | 'keep-early' | 'ignore';

/**
 * What an awaited event does to an instance: moves the step that waits for it; is kept for an await
 * of its type still ahead (it arrived early); else changes nothing — among others the event that
 * arrives after the fallback already moved the order on, or a second copy of one.
 */
export function decideAwaitedEvent(
  steps: readonly StepSpec[],
  inst: { status: InstanceStatus; stepIndex: number },
  eventType: string,
): AwaitedEventDecision {
  if (inst.status === 'waiting' && steps[inst.stepIndex]?.await?.event === eventType) return 'apply';
  if (!ACTIVE_STATUSES.has(inst.status)) return 'ignore';
  // A step held at its await (timed out) keeps the event for RetryStep; otherwise only awaits ahead.
  const ahead = steps.some(
    (s, i) =>
      s.await?.event === eventType &&
      (i > inst.stepIndex || (i === inst.stepIndex && inst.status !== 'waiting')),
  );
  return ahead ? 'keep-early' : 'ignore';
}
