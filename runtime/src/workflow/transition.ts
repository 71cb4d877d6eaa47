// One transition in progress for decide (decide.ts): the copies it changes and the decision it
// builds, with the helpers every part of the state machine records and sends through. No I/O.
import { commandMessage } from '../connectors/commands.js';
import type { ErrorClass } from '../gen/o2c/v1/common_pb.js';
import type { Order } from '../gen/o2c/v1/entities_pb.js';
import type { Envelope } from '../gen/o2c/v1/events_pb.js';
import type { OrderEvent } from '../orders/repository.js';
import type { OutboxMessage } from '../store/types.js';
import type { PollReplyDecision } from './await-fallback.js';
import type { ExceptionRow, Instance, StepRecord } from './instances.js';
import type { StepSpec, WorkflowSpec } from './spec.js';
import type { buildRequest } from './steps.js';

/** What decide needs from the engine besides the input: names, addresses, ids and chance. */
export interface DecideWorld {
  workflow: string;
  /** The generation a new order runs on when it names none. */
  generation: number;
  namespace: string;
  /** Producer of the commands, e.g. o2c/default/workflow/distributor. */
  source: string;
  /** Routing key of replies to this Workflow. */
  replyKey: string;
  /** A Connector's command routing key as the operator rendered it; undefined: the default. */
  routingKeyOf: (connector: string) => string | undefined;
  /** A fresh id for a command message. */
  commandId: () => string;
  /** A fresh id for an exception. */
  exceptionId: () => string;
  /** [0, 1): the jitter of every backoff. */
  random: () => number;
}

export type KpiObservation =
  | { kind: 'step-latency'; step: string; seconds: number }
  | { kind: 'fallout'; step: string; errorClass: ErrorClass }
  | { kind: 'cycle-time'; milestone: 'invoiced' | 'paid'; seconds: number }
  | { kind: 'invoice-lag'; seconds: number }
  | { kind: 'await-fallback'; step: string; answer: PollReplyDecision['kind'] }
  | { kind: 'transition'; outcome: string };

/** What one input changes; the shell writes all of it in one transaction. */
export interface Decision {
  /** The instance to write (new or changed); undefined when it stays as it was. */
  instance: Instance | undefined;
  /** The instance is new: insert it. */
  created: boolean;
  /** The order to save (with `before` as the version read); undefined when it stays as it was. */
  order: Order | undefined;
  before: Order | undefined;
  /** Events appended with the order's change (the order repository adds OrderStateChanged). */
  events: OrderEvent[];
  /** Commands to connectors (steps, compensations, fallback queries, notifications) for the outbox. */
  commands: OutboxMessage[];
  stepRecords: StepRecord[];
  openExceptions: ExceptionRow[];
  /** Exceptions closed by this input, as they read afterwards. */
  resolvedExceptions: ExceptionRow[];
  /** Close every open exception of the order with this resolution (a cancel). */
  resolveOpenExceptions?: string;
  /** An event to keep until the order reaches its await step. */
  keepEarly?: { type: string; body: Uint8Array };
  /** Types of kept early events this input used up. */
  takeEarly: string[];
  kpis: KpiObservation[];
  /** A person's action that the instance's state does not allow; nothing else is set. */
  rejected?: string;
  /** Why nothing changed, for logs and tests (a duplicate, a stale reply, ...). */
  ignored?: string;
}

/** One transition in progress: the copies it changes and what it emits, turned into a Decision. */
export interface Draft {
  inst: Instance;
  before: Order;
  order: Order;
  now: number;
  spec: WorkflowSpec;
  world: DecideWorld;
  early: ReadonlyMap<string, Envelope>;
  d: Decision;
}

export function nothing(ignored: string): Decision {
  return {
    instance: undefined,
    created: false,
    order: undefined,
    before: undefined,
    events: [],
    commands: [],
    stepRecords: [],
    openExceptions: [],
    resolvedExceptions: [],
    takeEarly: [],
    kpis: [],
    ignored,
  };
}

export function stepOf(t: Draft): StepSpec {
  const step = t.spec.steps[t.inst.stepIndex];
  if (!step)
    throw new Error(
      `order ${t.inst.orderId}: no step ${t.inst.stepIndex} in generation ${t.inst.generation}`,
    );
  return step;
}

export function record(t: Draft, r: Omit<StepRecord, 'orderId'>): void {
  t.d.stepRecords.push({ orderId: t.inst.orderId, ...r });
}

export function command(
  t: Draft,
  connector: string,
  request: ReturnType<typeof buildRequest>,
  step: string,
  idempotencyKey: string,
  causationId?: string,
): OutboxMessage {
  const message = commandMessage({
    id: t.world.commandId(),
    namespace: t.world.namespace,
    connector,
    routingKey: t.world.routingKeyOf(connector),
    request,
    orderId: t.inst.orderId,
    step,
    replyTo: t.world.replyKey,
    correlationId: t.inst.orderId,
    causationId,
    idempotencyKey,
    source: t.world.source,
    now: t.now,
  });
  t.d.commands.push(message);
  return message;
}
