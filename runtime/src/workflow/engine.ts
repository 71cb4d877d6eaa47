// The durable O2C state machine. Each order has one workflow instance; every transition (new state,
// step history, commands to connectors, events) commits in one transaction, and the outbox relay
// publishes after the commit. Commands carry the idempotency key `<order>:<step>`, which connectors
// turn into a natural key, so a step re-sent after a crash never acts twice in an external system.
// Timers (retry delays, reply timeouts, await timeouts) are rows with a due time, so they survive
// restarts.
import { clone, create, equals, fromBinary, toBinary, toJson, toJsonString } from '@bufbuild/protobuf';
import type { Registry } from 'prom-client';
import type { BusConnection } from '../bus/connection.js';
import { Consumer, type Delivery, type HandlerOutcome, handleOnce } from '../bus/consumer.js';
import { EVENTS_EXCHANGE, type QueueSpec, queueName } from '../bus/topology.js';
import { commandMessage } from '../connectors/commands.js';
import type { QueueRoute } from '../contract/runtime-config.js';
import { ErrorClass } from '../gen/o2c/v1/common_pb.js';
import { ConnectorCommandSchema, type ConnectorReply } from '../gen/o2c/v1/connector_service_pb.js';
import { type Order, OrderSchema, OrderState } from '../gen/o2c/v1/entities_pb.js';
import { type Envelope, EnvelopeSchema } from '../gen/o2c/v1/events_pb.js';
import type { Logger } from '../observability/logger.js';
import { EventType } from '../orders/envelope.js';
import type { OrderChange, OrderRepository } from '../orders/repository.js';
import type { OutboxMessage, Store, Tx } from '../store/types.js';
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
  ACTIVE_STATUSES,
  dueInstances,
  type ExceptionRow,
  getException,
  type Instance,
  insertInstance,
  keepEarlyEvent,
  lockInstance,
  openException,
  recordStep,
  resolveException,
  resolveOpenExceptions,
  takeEarlyEvent,
  updateInstance,
} from './instances.js';
import { createWorkflowKpis, type WorkflowKpis } from './kpis.js';
import { type WorkflowQueuePurpose, workflowPoison } from './poison.js';
import { replyRoutingKey, workflowQueues } from './queues.js';
import {
  awaitTimeoutMs,
  guardAllows,
  maxAttempts,
  replyTimeoutMs,
  retryDelayMs,
  type StepSpec,
  validateSpec,
  type WorkflowSpec,
} from './spec.js';
import {
  applyAwaitedEvent,
  applyReply,
  buildRequest,
  emptyContext,
  orderIdOf,
  type StepEvent,
  type StepOutcome,
} from './steps.js';

export interface WorkflowEngineOptions {
  store: Store;
  orders: OrderRepository;
  connection: BusConnection;
  namespace: string;
  workflow: string;
  generation: number;
  spec: WorkflowSpec;
  source: string;
  logger: Logger;
  registry: Registry;
  /** How often due timers are looked for. Default 250 ms. */
  timerPollMs?: number;
  prefetch?: number;
  now?: () => number;
  /** Called after each committed transition, e.g. to wake the outbox relay. */
  onCommitted?: () => void;
  /** Queues, reply key and Connector routing keys as the operator rendered them; default computed. */
  routes?: WorkflowRoutes;
}

export interface WorkflowRoutes {
  queues: Record<string, QueueRoute>;
  replyRoutingKey: string;
  /** Connector name -> routing key of its commands. */
  commandRoutingKeys: Record<string, string>;
}

export class EngineError extends Error {}

const COMPENSATE_PREFIX = 'compensate:';
const NOTIFY_PREFIX = 'notify:';
const COMPENSATION_ATTEMPTS = 8;

/** One transition in progress: what it changes, emits and sends, committed together. */
interface Transition {
  inst: Instance;
  before: Order;
  order: Order;
  events: (StepEvent & { causationId?: string })[];
  commands: OutboxMessage[];
  now: number;
}

export class WorkflowEngine {
  readonly replyKey: string;
  private readonly specs = new Map<number, WorkflowSpec>();
  private readonly consumers: Consumer[] = [];
  private readonly kpis: WorkflowKpis;
  private readonly now: () => number;
  private timer: NodeJS.Timeout | undefined;
  private ticking: Promise<void> | undefined;
  private stopped = false;

  constructor(private readonly o: WorkflowEngineOptions) {
    this.now = o.now ?? Date.now;
    this.kpis = createWorkflowKpis(o.registry);
    this.replyKey = o.routes?.replyRoutingKey ?? replyRoutingKey(o.namespace, o.workflow);
    const problems = validateSpec(o.spec);
    if (problems.length > 0) throw new EngineError(`Workflow ${o.workflow}: ${problems.join('; ')}`);
    this.specs.set(o.generation, o.spec);
  }

  private queue(purpose: string): string {
    return (
      this.o.routes?.queues[purpose]?.queue ??
      queueName(this.o.namespace, 'workflow', this.o.workflow, purpose)
    );
  }

  private routingKeyOf(connector: string): string | undefined {
    return this.o.routes?.commandRoutingKeys[connector];
  }

  queueSpecs(): QueueSpec[] {
    const retry = { maxAttempts: 10, backoff: { initialMs: 200, maxMs: 30_000, multiplier: 2 } };
    if (this.o.routes) {
      return Object.values(this.o.routes.queues).map((q) => ({ name: q.queue, bindings: q.bindings, retry }));
    }
    return workflowQueues(this.o.namespace, this.o.workflow).map((q) => ({
      name: this.queue(q.purpose),
      bindings: q.bindings.map((routingKey) => ({ exchange: EVENTS_EXCHANGE, routingKey })),
      retry,
    }));
  }

  async start(): Promise<void> {
    await this.o.store.transaction(async (tx) => {
      await tx.execute(
        'INSERT INTO workflow_specs (workflow, generation, spec, created_at) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING',
        [this.o.workflow, this.o.generation, JSON.stringify(this.o.spec), this.now()],
      );
    });
    const [orders, replies, events] = this.queueSpecs() as [QueueSpec, QueueSpec, QueueSpec];
    // The event types each queue takes do not depend on its name: anything else there is poison.
    const accepts = new Map(
      workflowQueues(this.o.namespace, this.o.workflow).map((q) => [q.purpose, q.accepts]),
    );
    const make = (
      spec: QueueSpec,
      purpose: WorkflowQueuePurpose,
      handler: (d: Delivery) => Promise<HandlerOutcome>,
    ) =>
      new Consumer({
        connection: this.o.connection,
        spec,
        accepts: accepts.get(purpose),
        handler: (d) => {
          const poison = workflowPoison(purpose, d.envelope);
          return poison ? Promise.resolve({ fail: poison }) : handler(d);
        },
        prefetch: this.o.prefetch ?? 64,
        registry: this.o.registry,
      });
    this.consumers.push(
      make(orders, 'orders', (d) => this.onOrderEvent(d)),
      make(replies, 'replies', (d) => this.onReply(d)),
      make(events, 'events', (d) => this.onAwaitedEvent(d)),
    );
    for (const c of this.consumers) await c.start();
    this.scheduleTick();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    await this.ticking;
    for (const c of this.consumers) await c.stop();
  }

  // ---- message handlers -------------------------------------------------------------------------

  private async onOrderEvent(d: Delivery): Promise<HandlerOutcome> {
    const env = d.envelope;
    const changes: OrderChange[] = [];
    const result = await handleOnce(this.o.store, `${this.o.workflow}.orders`, env, async (tx) => {
      if (env.payload.case === 'orderSubmitted' && env.payload.value.order) {
        await this.begin(tx, env.payload.value.order.id, env.id, changes);
      } else if (env.payload.case === 'orderCancelled') {
        await this.cancel(tx, env.payload.value.orderId, env.id, changes);
      }
    });
    this.committed(result.duplicate ? [] : changes);
    return 'ack';
  }

  private async onReply(d: Delivery): Promise<HandlerOutcome> {
    const env = d.envelope;
    if (env.payload.case !== 'connectorReply')
      throw new EngineError('replies: workflowPoison lets only replies through');
    const reply = env.payload.value;
    if (reply.step.startsWith(NOTIFY_PREFIX)) return 'ack';
    const changes: OrderChange[] = [];
    const result = await handleOnce(this.o.store, `${this.o.workflow}.replies`, env, async (tx) => {
      const inst = await lockInstance(tx, reply.orderId);
      if (!inst) return;
      // A reply to a command this instance no longer waits for (a resend answered twice, a step
      // already timed out) changes nothing.
      if (inst.commandId && env.causationId && env.causationId !== inst.commandId) return;
      const t = await this.transition(tx, inst);
      if (!t) return;
      if (
        inst.status === 'compensating' &&
        reply.step === inst.step &&
        inst.step.startsWith(COMPENSATE_PREFIX)
      ) {
        await this.onCompensationReply(tx, t, applyReply(reply, t.order, t.inst.context));
      } else if (inst.status === 'running' && reply.step === inst.step) {
        const step = this.stepOf(inst);
        this.kpis.stepLatency.observe({ step: step.name }, Math.max(0, t.now - inst.updatedAt) / 1000);
        await this.onStepOutcome(tx, t, step, applyReply(reply, t.order, t.inst.context));
      } else if (inst.status === 'waiting' && reply.step === `${POLL_PREFIX}${inst.step}`) {
        await this.onPollReply(tx, t, reply);
      } else {
        return;
      }
      changes.push(...(await this.commit(tx, t)));
    });
    this.committed(result.duplicate ? [] : changes);
    return 'ack';
  }

  private async onAwaitedEvent(d: Delivery): Promise<HandlerOutcome> {
    const env = d.envelope;
    const orderId = orderIdOf(env);
    const changes: OrderChange[] = [];
    const result = await handleOnce(this.o.store, `${this.o.workflow}.events`, env, async (tx) => {
      const inst = await lockInstance(tx, orderId);
      if (!inst) return; // not an order of this workflow
      const spec = await this.specFor(tx, inst.generation);
      const decision = decideAwaitedEvent(spec.steps, inst, d.eventType || env.type);
      if (decision === 'apply') {
        const t = await this.transition(tx, inst);
        if (!t) return;
        await this.onStepOutcome(tx, t, this.stepOf(inst), applyAwaitedEvent(env, t.order, t.inst.context));
        changes.push(...(await this.commit(tx, t)));
      } else if (decision === 'keep-early') {
        // Arrived before the order reached its await step (e.g. dispatched while the ERP reply is
        // still on its way): keep it for then.
        await keepEarlyEvent(tx, orderId, env.type, fromBinaryBody(env), this.now());
      }
      // 'ignore': the step it would move is behind the order (the fallback found the fact first).
    });
    this.committed(result.duplicate ? [] : changes);
    return 'ack';
  }

  // ---- timers -----------------------------------------------------------------------------------

  private scheduleTick(): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => {
      this.ticking = this.tick()
        .then(() => undefined)
        .catch((err) => this.o.logger.warn({ err }, 'workflow timers failed; retrying'))
        .finally(() => this.scheduleTick());
    }, this.o.timerPollMs ?? 250);
  }

  /** Fires every due timer: retries, reply timeouts, await timeouts. */
  async tick(): Promise<number> {
    let fired = 0;
    for (;;) {
      const changes: OrderChange[] = [];
      const count = await this.o.store.transaction(async (tx) => {
        const due = await dueInstances(tx, this.now(), 50);
        for (const inst of due) {
          const t = await this.transition(tx, inst);
          if (!t) continue;
          await this.onTimer(tx, t);
          changes.push(...(await this.commit(tx, t)));
        }
        return due.length;
      });
      this.committed(changes);
      fired += count;
      if (count < 50 || this.stopped) return fired;
    }
  }

  private async onTimer(tx: Tx, t: Transition): Promise<void> {
    const inst = t.inst;
    inst.timerAt = null;
    if (inst.status === 'compensating') {
      if (inst.attempt >= COMPENSATION_ATTEMPTS) {
        await this.fallout(
          tx,
          t,
          inst.step,
          ErrorClass.TIMEOUT,
          `no reply to ${inst.step} after ${inst.attempt} attempts`,
          'hold',
        );
        return;
      }
      await this.sendCompensation(t, inst.step.slice(COMPENSATE_PREFIX.length), inst.attempt + 1);
      return;
    }
    const step = this.stepOf(inst);
    if (inst.status === 'waiting') {
      const fallback = awaitFallback(this.specs.get(inst.generation)!.steps, inst.stepIndex);
      const decision = decideAwaitTimer(inst.context.await, fallback, t.now);
      if (decision.kind === 'poll' && fallback) {
        this.sendPoll(t, step, fallback, decision.nextAt);
        return;
      }
      if (decision.kind === 'wait') {
        inst.timerAt = decision.until;
        return;
      }
      delete inst.context.await;
      await recordStep(tx, {
        orderId: inst.orderId,
        step: step.name,
        attempt: inst.attempt,
        outcome: 'timed_out',
        startedAt: inst.updatedAt,
        endedAt: t.now,
      });
      await this.failStep(
        tx,
        t,
        step,
        ErrorClass.TIMEOUT,
        `no ${step.await?.event} within ${step.await?.timeout ?? '72h'}`,
      );
      return;
    }
    if (inst.status === 'running' || inst.status === 'retrying') {
      if (inst.status === 'running') {
        await recordStep(tx, {
          orderId: inst.orderId,
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
        await this.failStep(
          tx,
          t,
          step,
          ErrorClass.TIMEOUT,
          `no reply from ${step.call?.connector} after ${inst.attempt} attempts`,
        );
        return;
      }
      await this.sendCommand(tx, t, step, inst.attempt + 1);
    }
  }

  // ---- transitions ------------------------------------------------------------------------------

  private stepOf(inst: Instance): StepSpec {
    const spec = this.specs.get(inst.generation);
    const step = spec?.steps[inst.stepIndex];
    if (!step)
      throw new EngineError(
        `order ${inst.orderId}: no step ${inst.stepIndex} in generation ${inst.generation}`,
      );
    return step;
  }

  private async specFor(tx: Tx, generation: number): Promise<WorkflowSpec> {
    let spec = this.specs.get(generation);
    if (!spec) {
      const rows = await tx.query<{ spec: string }>(
        'SELECT spec FROM workflow_specs WHERE workflow = $1 AND generation = $2',
        [this.o.workflow, generation],
      );
      if (!rows[0])
        throw new EngineError(`Workflow ${this.o.workflow} generation ${generation} is unknown here`);
      spec = JSON.parse(rows[0].spec) as WorkflowSpec;
      this.specs.set(generation, spec);
    }
    return spec;
  }

  private async transition(tx: Tx, inst: Instance): Promise<Transition | undefined> {
    await this.specFor(tx, inst.generation);
    const order = await this.o.orders.get(inst.orderId, tx);
    if (!order) return undefined;
    return {
      inst,
      before: order,
      order: clone(OrderSchema, order),
      events: [],
      commands: [],
      now: this.now(),
    };
  }

  /** Starts the workflow for a newly submitted order (once; a redelivery finds the instance). */
  private async begin(tx: Tx, orderId: string, causationId: string, changes: OrderChange[]): Promise<void> {
    const order = await this.o.orders.get(orderId, tx);
    if (!order || order.state !== OrderState.SUBMITTED) return;
    const generation = Number(order.workflowGeneration) || this.o.generation;
    await this.specFor(tx, generation);
    const now = this.now();
    const inst: Instance = {
      orderId,
      workflow: this.o.workflow,
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
    if (!(await insertInstance(tx, inst))) return;
    const t: Transition = {
      inst,
      before: order,
      order: clone(OrderSchema, order),
      events: [],
      commands: [],
      now,
    };
    if (t.order.workflowGeneration === 0n) t.order.workflowGeneration = BigInt(generation);
    t.order.state = OrderState.IN_PROGRESS;
    await this.enterStep(tx, t, 0, causationId);
    changes.push(...(await this.commit(tx, t)));
  }

  /** Moves to step `index` (skipping steps whose guard says no) and starts it. */
  private async enterStep(tx: Tx, t: Transition, index: number, causationId?: string): Promise<void> {
    const spec = this.specs.get(t.inst.generation)!;
    let i = index;
    for (; i < spec.steps.length; i++) {
      const step = spec.steps[i]!;
      let allowed: boolean;
      try {
        allowed = guardAllows(step, toJson(OrderSchema, t.order), t.inst.context.completed);
      } catch (err) {
        t.inst.stepIndex = i;
        t.inst.step = step.name;
        await this.fallout(tx, t, step.name, ErrorClass.VALIDATION, (err as Error).message, 'hold');
        return;
      }
      if (allowed) break;
      await recordStep(tx, {
        orderId: t.inst.orderId,
        step: step.name,
        attempt: 0,
        outcome: 'skipped',
        startedAt: t.now,
        endedAt: t.now,
      });
    }
    if (i >= spec.steps.length) {
      this.complete(t);
      return;
    }
    const step = spec.steps[i]!;
    t.inst.stepIndex = i;
    t.inst.step = step.name;
    if (step.call) {
      await this.sendCommand(tx, t, step, 1, causationId);
      return;
    }
    // An await step: the event may already be here.
    const type = step.await!.event;
    const early = await takeEarlyEvent(tx, t.inst.orderId, type);
    if (early) {
      const env = fromBinary(EnvelopeSchema, early);
      t.inst.attempt = 1;
      await this.onStepOutcome(tx, t, step, applyAwaitedEvent(env, t.order, t.inst.context));
      return;
    }
    // Wake at the end of the quiet period to ask the owning system, or at the timeout.
    const deadline = t.now + awaitTimeoutMs(step);
    t.inst.context.await = { deadline, polls: 0 };
    t.inst.status = 'waiting';
    t.inst.attempt = 1;
    t.inst.commandId = null;
    t.inst.timerAt = firstAwaitTimer(awaitFallback(spec.steps, i), t.now, deadline);
    t.inst.updatedAt = t.now;
    t.order.currentStep = step.name;
  }

  private async sendCommand(
    tx: Tx,
    t: Transition,
    step: StepSpec,
    attempt: number,
    causationId?: string,
  ): Promise<void> {
    const call = step.call!;
    let request: ReturnType<typeof buildRequest>;
    try {
      request = buildRequest(call.operation, t.order, t.inst.context);
    } catch (err) {
      await this.fallout(tx, t, step.name, ErrorClass.VALIDATION, (err as Error).message, 'hold');
      return;
    }
    const message = commandMessage({
      namespace: this.o.namespace,
      connector: call.connector,
      routingKey: this.routingKeyOf(call.connector),
      request,
      orderId: t.inst.orderId,
      step: step.name,
      replyTo: this.replyKey,
      correlationId: t.inst.orderId,
      causationId,
      idempotencyKey: `${t.inst.orderId}:${step.name}`,
      source: this.o.source,
      now: t.now,
    });
    t.commands.push(message);
    t.inst.status = 'running';
    t.inst.attempt = attempt;
    t.inst.commandId = message.id;
    t.inst.timerAt = t.now + replyTimeoutMs(step);
    t.inst.updatedAt = t.now;
    t.order.currentStep = step.name;
    await recordStep(tx, {
      orderId: t.inst.orderId,
      step: step.name,
      attempt,
      outcome: 'started',
      startedAt: t.now,
    });
  }

  /** Asks the owning system whether the awaited fact happened (the fallback for a missed event). */
  private sendPoll(t: Transition, step: StepSpec, fallback: AwaitFallback, nextAt: number): void {
    const state = t.inst.context.await!;
    state.polls += 1;
    const message = commandMessage({
      namespace: this.o.namespace,
      connector: fallback.connector,
      routingKey: this.routingKeyOf(fallback.connector),
      request: buildRequest(fallback.operation, t.order, t.inst.context),
      orderId: t.inst.orderId,
      step: `${POLL_PREFIX}${step.name}`,
      replyTo: this.replyKey,
      correlationId: t.inst.orderId,
      idempotencyKey: `${t.inst.orderId}:${POLL_PREFIX}${step.name}:${state.polls}`,
      source: this.o.source,
      now: t.now,
    });
    t.commands.push(message);
    // Still waiting: the event moves the step as before; an unanswered question is asked again.
    t.inst.commandId = message.id;
    t.inst.timerAt = nextAt;
  }

  /** The owning system's answer: proceed as if the event had arrived, or wait for the next question. */
  private async onPollReply(tx: Tx, t: Transition, reply: ConnectorReply): Promise<void> {
    const inst = t.inst;
    const step = this.stepOf(inst);
    const decision = decidePollReply(reply, inst.orderId);
    inst.commandId = null;
    const polls = inst.context.await?.polls ?? 1;
    this.kpis.awaitFallback.inc({ step: step.name, answer: decision.kind });
    if (recordsPollAnswer(decision, polls)) {
      await recordStep(tx, {
        orderId: inst.orderId,
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
    await this.onStepOutcome(tx, t, step, applyAwaitedEvent(env, t.order, inst.context));
  }

  private async onStepOutcome(tx: Tx, t: Transition, step: StepSpec, outcome: StepOutcome): Promise<void> {
    const inst = t.inst;
    if (outcome.kind === 'done') {
      t.events.push(...outcome.events);
      await recordStep(tx, {
        orderId: inst.orderId,
        step: step.name,
        attempt: inst.attempt,
        outcome: 'succeeded',
        startedAt: inst.updatedAt,
        endedAt: t.now,
      });
      if (step.call) inst.context.completed.push(step.name);
      delete inst.context.await;
      this.observeMilestones(t);
      await this.enterStep(tx, t, inst.stepIndex + 1);
      return;
    }
    const errorClass = outcome.kind === 'failed' ? outcome.errorClass : ErrorClass.NOT_FOUND;
    const retryable = outcome.kind === 'not-yet' || outcome.retryable;
    if (outcome.kind === 'failed') t.events.push(...outcome.events);
    if (retryable && inst.attempt < maxAttempts(step)) {
      await recordStep(tx, {
        orderId: inst.orderId,
        step: step.name,
        attempt: inst.attempt,
        outcome: 'retrying',
        errorClass,
        message: outcome.message,
        startedAt: inst.updatedAt,
        endedAt: t.now,
      });
      inst.status = 'retrying';
      inst.commandId = null;
      inst.timerAt = t.now + retryDelayMs(step, inst.attempt);
      inst.updatedAt = t.now;
      return;
    }
    await recordStep(tx, {
      orderId: inst.orderId,
      step: step.name,
      attempt: inst.attempt,
      outcome: 'failed',
      errorClass,
      message: outcome.message,
      startedAt: inst.updatedAt,
      endedAt: t.now,
    });
    await this.failStep(tx, t, step, errorClass, outcome.message);
  }

  /** A step has failed for good: its onFailure policy decides (default hold). */
  private async failStep(
    tx: Tx,
    t: Transition,
    step: StepSpec,
    errorClass: ErrorClass,
    message: string,
  ): Promise<void> {
    const policy = step.onFailure ?? 'hold';
    if (policy === 'continue') {
      await this.enterStep(tx, t, t.inst.stepIndex + 1);
      return;
    }
    await this.fallout(tx, t, step.name, errorClass, message, policy);
  }

  private async fallout(
    tx: Tx,
    t: Transition,
    stepName: string,
    errorClass: ErrorClass,
    message: string,
    policy: 'hold' | 'fail' | 'compensate',
  ): Promise<ExceptionRow> {
    const inst = t.inst;
    const step = this.specs.get(inst.generation)?.steps[inst.stepIndex];
    let payload = '{}';
    try {
      if (step?.call) {
        const req = buildRequest(step.call.operation, t.order, inst.context);
        payload = toJsonString(ConnectorCommandSchema, {
          $typeName: 'o2c.v1.ConnectorCommand',
          operation: step.call.operation,
          orderId: inst.orderId,
          step: step.name,
          replyTo: '',
          request: req as never,
        });
      }
    } catch {
      // The payload is for people; a step that cannot build its request has none.
    }
    const exception = await openException(tx, {
      orderId: inst.orderId,
      step: stepName,
      errorClass,
      message,
      attempts: inst.attempt,
      payload,
      openedAt: t.now,
    });
    this.kpis.fallout.inc({ step: stepName, error_class: ErrorClass[errorClass] ?? 'UNKNOWN' });
    t.events.push({
      type: EventType.OrderFallout,
      payload: {
        case: 'orderFallout',
        value: {
          orderId: inst.orderId,
          step: stepName,
          errorClass,
          message,
          attempts: inst.attempt,
          exceptionId: exception.id,
        },
      },
    });
    t.order.statusReason = `${stepName}: ${message}`;
    inst.commandId = null;
    inst.timerAt = null;
    inst.updatedAt = t.now;
    if (policy === 'hold') {
      if (t.order.state !== OrderState.ON_HOLD) inst.context.stateBeforeHold = t.order.state;
      t.order.state = OrderState.ON_HOLD;
      inst.status = 'held';
    } else if (policy === 'fail') {
      t.order.state = OrderState.FAILED;
      inst.status = 'failed';
    } else {
      inst.context.compensationCause = 'failure';
      await this.startCompensation(tx, t);
    }
    return exception;
  }

  private complete(t: Transition): void {
    t.inst.status = 'completed';
    t.inst.commandId = null;
    t.inst.timerAt = null;
    t.inst.updatedAt = t.now;
    t.order.currentStep = '';
    this.kpis.transitions.inc({ outcome: 'completed' });
  }

  private observeMilestones(t: Transition): void {
    const submitted = t.inst.startedAt;
    if (t.order.state !== t.before.state) {
      if (t.order.state === OrderState.INVOICED) {
        this.kpis.cycleTime.observe({ milestone: 'invoiced' }, (t.now - submitted) / 1000);
        const dispatchedAt = t.inst.context.dispatchedAt;
        if (dispatchedAt) this.kpis.invoiceLag.observe((t.now - dispatchedAt) / 1000);
      }
      if (t.order.state === OrderState.SHIPPED) t.inst.context.dispatchedAt = t.now;
      if (t.order.state === OrderState.PAID)
        this.kpis.cycleTime.observe({ milestone: 'paid' }, (t.now - submitted) / 1000);
    }
  }

  // ---- cancel and compensation ------------------------------------------------------------------

  private async cancel(tx: Tx, orderId: string, causationId: string, changes: OrderChange[]): Promise<void> {
    const inst = await lockInstance(tx, orderId);
    if (!inst || !ACTIVE_STATUSES.has(inst.status)) return;
    const t = await this.transition(tx, inst);
    if (!t) return;
    await resolveOpenExceptions(tx, orderId, 'order cancelled', t.now);
    inst.context.compensationCause = 'cancel';
    await this.startCompensation(tx, t, causationId);
    changes.push(...(await this.commit(tx, t)));
  }

  /** Undoes the completed steps that declare a compensation, last first. */
  private async startCompensation(tx: Tx, t: Transition, causationId?: string): Promise<void> {
    const spec = this.specs.get(t.inst.generation)!;
    const undo = [...t.inst.context.completed]
      .reverse()
      .filter((name) => spec.steps.find((s) => s.name === name)?.compensate);
    t.inst.context.compensating = undo;
    await this.nextCompensation(tx, t, causationId);
  }

  private async nextCompensation(tx: Tx, t: Transition, _causationId?: string): Promise<void> {
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
    await this.sendCompensation(t, next, 1);
    await recordStep(tx, {
      orderId: t.inst.orderId,
      step: `${COMPENSATE_PREFIX}${next}`,
      attempt: 1,
      outcome: 'started',
      startedAt: t.now,
    });
  }

  private async sendCompensation(t: Transition, stepName: string, attempt: number): Promise<void> {
    const spec = this.specs.get(t.inst.generation)!;
    const step = spec.steps.find((s) => s.name === stepName)!;
    const message = commandMessage({
      namespace: this.o.namespace,
      connector: step.call!.connector,
      routingKey: this.routingKeyOf(step.call!.connector),
      request: buildRequest(step.compensate!.operation, t.order, t.inst.context),
      orderId: t.inst.orderId,
      step: `${COMPENSATE_PREFIX}${stepName}`,
      replyTo: this.replyKey,
      correlationId: t.inst.orderId,
      idempotencyKey: `${t.inst.orderId}:${COMPENSATE_PREFIX}${stepName}`,
      source: this.o.source,
      now: t.now,
    });
    t.commands.push(message);
    t.inst.status = 'compensating';
    t.inst.step = `${COMPENSATE_PREFIX}${stepName}`;
    t.inst.attempt = attempt;
    t.inst.commandId = message.id;
    t.inst.timerAt = t.now + Math.min(60_000 * attempt, 600_000);
    t.inst.updatedAt = t.now;
  }

  private async onCompensationReply(tx: Tx, t: Transition, outcome: StepOutcome): Promise<void> {
    const stepName = t.inst.step;
    if (outcome.kind === 'done') {
      await recordStep(tx, {
        orderId: t.inst.orderId,
        step: stepName,
        attempt: t.inst.attempt,
        outcome: 'compensated',
        startedAt: t.inst.updatedAt,
        endedAt: t.now,
      });
      t.inst.context.compensating = t.inst.context.compensating?.slice(1);
      await this.nextCompensation(tx, t);
      return;
    }
    const message = outcome.message;
    if (outcome.kind === 'failed' && !outcome.retryable) {
      await recordStep(tx, {
        orderId: t.inst.orderId,
        step: stepName,
        attempt: t.inst.attempt,
        outcome: 'failed',
        errorClass: outcome.errorClass,
        message,
        startedAt: t.inst.updatedAt,
        endedAt: t.now,
      });
      await this.fallout(tx, t, stepName, outcome.errorClass, `compensation failed: ${message}`, 'hold');
      return;
    }
    // Retryable: the timer resends it with backoff.
    t.inst.commandId = null;
    t.inst.timerAt = t.now + Math.min(1000 * 2 ** t.inst.attempt, 60_000);
  }

  // ---- people: retry and resolve fallout --------------------------------------------------------

  /** Resumes an order from the step that failed, after the cause was fixed. */
  async retryStep(exceptionId: string): Promise<Order> {
    const changes: OrderChange[] = [];
    const order = await this.o.store.transaction(async (tx) => {
      const { t, exception } = await this.openExceptionTransition(tx, exceptionId);
      await resolveException(tx, exception.id, 'retried', t.now);
      if (exception.step.startsWith(COMPENSATE_PREFIX)) {
        await this.sendCompensation(t, exception.step.slice(COMPENSATE_PREFIX.length), 1);
      } else {
        this.restoreFromHold(t);
        const step = this.stepOf(t.inst);
        if (step.call) await this.sendCommand(tx, t, step, 1);
        else await this.enterStep(tx, t, t.inst.stepIndex);
      }
      changes.push(...(await this.commit(tx, t)));
      return t.order;
    });
    this.committed(changes);
    return order;
  }

  /** Closes an exception; with skipStep the order continues after the step, done by hand. */
  async resolve(exceptionId: string, resolution: string, skipStep: boolean): Promise<ExceptionRow> {
    const changes: OrderChange[] = [];
    const row = await this.o.store.transaction(async (tx) => {
      const exception = await getException(tx, exceptionId);
      if (!exception) throw new ExceptionNotFoundError(exceptionId);
      if (exception.status !== 'open')
        throw new ExceptionStateError(`exception ${exceptionId} is already resolved`);
      await resolveException(tx, exceptionId, resolution || 'resolved by hand', this.now());
      if (skipStep) {
        const { t } = await this.openExceptionTransition(tx, exceptionId, true);
        this.restoreFromHold(t);
        if (!exception.step.startsWith(COMPENSATE_PREFIX)) {
          await recordStep(tx, {
            orderId: t.inst.orderId,
            step: exception.step,
            attempt: t.inst.attempt,
            outcome: 'skipped',
            message: resolution,
            startedAt: t.now,
            endedAt: t.now,
          });
          t.inst.context.completed.push(exception.step);
          await this.enterStep(tx, t, t.inst.stepIndex + 1);
        } else {
          t.inst.context.compensating = t.inst.context.compensating?.slice(1);
          await this.nextCompensation(tx, t);
        }
        changes.push(...(await this.commit(tx, t)));
      }
      return (await getException(tx, exceptionId))!;
    });
    this.committed(changes);
    return row;
  }

  private async openExceptionTransition(tx: Tx, exceptionId: string, allowResolved = false) {
    const exception = await getException(tx, exceptionId);
    if (!exception) throw new ExceptionNotFoundError(exceptionId);
    if (exception.status !== 'open' && !allowResolved)
      throw new ExceptionStateError(`exception ${exceptionId} is already resolved`);
    const inst = await lockInstance(tx, exception.orderId);
    if (inst?.status !== 'held') {
      throw new ExceptionStateError(
        `order ${exception.orderId} is not held (workflow ${inst?.status ?? 'missing'})`,
      );
    }
    const t = await this.transition(tx, inst);
    if (!t) throw new ExceptionStateError(`order ${exception.orderId} not found`);
    return { t, exception };
  }

  private restoreFromHold(t: Transition): void {
    t.order.state = t.inst.context.stateBeforeHold ?? OrderState.IN_PROGRESS;
    t.order.statusReason = '';
    delete t.inst.context.stateBeforeHold;
  }

  // ---- commit -----------------------------------------------------------------------------------

  /** Writes the transition: order (+ events), commands, notifications, instance. */
  private async commit(tx: Tx, t: Transition): Promise<OrderChange[]> {
    const changes: OrderChange[] = [];
    const orderChanged = !orderEquals(t.before, t.order) || t.events.length > 0;
    if (orderChanged) {
      const saved = await this.o.orders.save(tx, t.order, t.before, t.events);
      if (saved.state !== t.before.state) {
        changes.push({ order: saved, previousState: t.before.state });
        t.commands.push(...this.notifications(saved, t.now));
      } else {
        changes.push({ order: saved, previousState: t.before.state });
      }
    }
    if (t.commands.length > 0) await tx.enqueueOutbox(t.commands);
    await updateInstance(tx, t.inst);
    this.kpis.transitions.inc({ outcome: t.inst.status });
    return changes;
  }

  /** CRM status write-back and other `notify` targets: fire and forget, retried by the connector. */
  private notifications(order: Order, now: number): OutboxMessage[] {
    const spec = this.specs.get(Number(order.workflowGeneration)) ?? this.o.spec;
    return (spec.notify ?? []).map((n, i) =>
      commandMessage({
        namespace: this.o.namespace,
        connector: n.connector,
        routingKey: this.routingKeyOf(n.connector),
        request: buildRequest(n.operation, order, emptyContext()),
        orderId: order.id,
        step: `${NOTIFY_PREFIX}${n.connector}.${i}`,
        replyTo: this.replyKey,
        correlationId: order.id,
        idempotencyKey: `${order.id}:notify:${n.connector}:${order.version}`,
        source: this.o.source,
        now,
      }),
    );
  }

  private committed(changes: OrderChange[]): void {
    for (const c of changes) this.o.orders.emitChange(c);
    this.o.onCommitted?.();
  }
}

export class ExceptionNotFoundError extends Error {
  constructor(id: string) {
    super(`exception ${id} not found`);
  }
}

export class ExceptionStateError extends Error {}

function orderEquals(a: Order, b: Order): boolean {
  return equals(OrderSchema, a, b);
}

function fromBinaryBody(env: Envelope): Uint8Array {
  return toBinary(EnvelopeSchema, env);
}
