// The durable O2C state machine's shell. Every transition is decided by decide.ts (pure); this shell
// consumes the engine's queues, locks and loads what decide needs, and commits what it decided in
// one transaction per delivery batch: inbox claims, instance rows (locked in order-id order), orders
// and their events, step records, exceptions and outbox rows. The outbox relay publishes after the
// commit. Commands carry the idempotency key `<order>:<step>`, which connectors turn into a natural
// key, so a step re-sent after a crash never acts twice in an external system. Timers (timers.ts)
// are rows with a due time, so they survive restarts.
import { randomUUID } from 'node:crypto';
import { fromBinary } from '@bufbuild/protobuf';
import type { Registry } from 'prom-client';
import type { BusConnection } from '../bus/connection.js';
import { Consumer, type Delivery, type HandlerOutcome, handleBatchOnce } from '../bus/consumer.js';
import { EVENTS_EXCHANGE, type QueueSpec, queueName } from '../bus/topology.js';
import type { QueueRoute } from '../contract/runtime-config.js';
import { type Order, OrderState } from '../gen/o2c/v1/entities_pb.js';
import { type Envelope, EnvelopeSchema } from '../gen/o2c/v1/events_pb.js';
import type { Logger } from '../observability/logger.js';
import { newUlid } from '../orders/ids.js';
import type { OrderChange, OrderRepository, OrderSave } from '../orders/repository.js';
import type { OutboxMessage, Store, Tx } from '../store/types.js';
import { decide, generationOf, isNotifyReply, type WorkflowInput } from './decide.js';
import {
  countDueTimers,
  dropEarlyEvent,
  type ExceptionRow,
  earlyEvents,
  getException,
  type Instance,
  keepEarlyEvents,
  lockInstances,
  openExceptions,
  recordSteps,
  resolveException,
  resolveOpenExceptions,
  type StepRecord,
  writeInstances,
} from './instances.js';
import { createWorkflowKpis, observeKpis, type WorkflowKpis } from './kpis.js';
import { type WorkflowQueuePurpose, workflowPoison } from './poison.js';
import { replyRoutingKey, workflowQueues } from './queues.js';
import { validateSpec, type WorkflowSpec } from './spec.js';
import { orderIdOf } from './steps.js';
import { TimerLoop } from './timers.js';
import type { DecideWorld, Decision, KpiObservation } from './transition.js';

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
  /** Called after each committed batch of transitions, e.g. to wake the outbox relay. */
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

const asError = (err: unknown): Error => (err instanceof Error ? err : new Error(String(err)));

export class ExceptionNotFoundError extends Error {
  constructor(id: string) {
    super(`exception ${id} not found`);
  }
}

export class ExceptionStateError extends Error {}

/** One input for one order, as the shell hands it to decide. */
interface Work {
  orderId: string;
  input: WorkflowInput;
}

/** What a committed batch leaves to do after the commit: change feed, metrics. */
interface Committed {
  changes: OrderChange[];
  kpis: KpiObservation[];
  decisions: Decision[];
  /** Every order of the batch as it stands after it (saved or not), by id. */
  orders: Map<string, Order>;
}

export class WorkflowEngine {
  readonly replyKey: string;
  private readonly specs = new Map<number, WorkflowSpec>();
  private readonly consumers: Consumer[] = [];
  private readonly kpis: WorkflowKpis;
  private readonly now: () => number;
  private readonly world: DecideWorld;
  private readonly timers: TimerLoop<Committed>;
  /** Deliveries of replies and awaited events being handled now. */
  private inFlight = 0;
  /** Refreshed after each timer poll: orders accepted but not started, and due timers. */
  private waiting = { submitted: 0, dueTimers: 0 };
  /** Orders this replica started since the last refresh, and the smoothed rate (orders/s). */
  private started = 0;
  private startRate = { perSecond: 0, at: 0 };

  constructor(private readonly o: WorkflowEngineOptions) {
    this.now = o.now ?? Date.now;
    this.kpis = createWorkflowKpis(o.registry);
    this.replyKey = o.routes?.replyRoutingKey ?? replyRoutingKey(o.namespace, o.workflow);
    const problems = validateSpec(o.spec);
    if (problems.length > 0) throw new EngineError(`Workflow ${o.workflow}: ${problems.join('; ')}`);
    this.specs.set(o.generation, o.spec);
    this.world = {
      workflow: o.workflow,
      generation: o.generation,
      namespace: o.namespace,
      source: o.source,
      replyKey: this.replyKey,
      routingKeyOf: (connector) => o.routes?.commandRoutingKeys[connector],
      commandId: () => randomUUID(),
      exceptionId: () => `exc_${newUlid()}`,
      random: Math.random,
    };
    this.timers = new TimerLoop({
      store: o.store,
      workflow: o.workflow,
      logger: o.logger,
      now: this.now,
      pollMs: o.timerPollMs,
      fire: (tx, due) => {
        const locked = new Map(due.map((inst) => [inst.orderId, inst]));
        return this.run(
          tx,
          due.map((inst) => ({ orderId: inst.orderId, input: { kind: 'timer-fired' } })),
          locked,
        );
      },
      committed: (c) => this.committed(c),
      afterPoll: () => this.refreshBacklog(),
    });
  }

  private queue(purpose: string): string {
    return (
      this.o.routes?.queues[purpose]?.queue ??
      queueName(this.o.namespace, 'workflow', this.o.workflow, purpose)
    );
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
    const make = (spec: QueueSpec, purpose: WorkflowQueuePurpose) =>
      new Consumer({
        connection: this.o.connection,
        spec,
        accepts: accepts.get(purpose),
        batchHandler: (ds) => this.onDeliveries(purpose, ds),
        prefetch: this.o.prefetch ?? 64,
        registry: this.o.registry,
      });
    this.consumers.push(make(orders, 'orders'), make(replies, 'replies'), make(events, 'events'));
    for (const c of this.consumers) await c.start();
    await this.refreshBacklog().catch(() => {});
    this.timers.start();
  }

  async stop(): Promise<void> {
    await this.timers.stop();
    for (const c of this.consumers) await c.stop();
  }

  /** Fires every due timer now; returns how many fired. */
  tick(): Promise<number> {
    return this.timers.tick();
  }

  /**
   * How much work waits for this engine: orders accepted but not yet started (their OrderSubmitted
   * not yet handled, by any replica), plus replies and awaited events this replica is handling,
   * plus timers that are due and not fired. The first and last are counted in the store after each
   * timer poll; the order API refuses new orders while this is past its bound.
   */
  backlog(): number {
    return this.waiting.submitted + this.inFlight + this.waiting.dueTimers;
  }

  /** Counts the stored part of the backlog again now, and answers backlog(). */
  async measureBacklog(): Promise<number> {
    await this.refreshBacklog();
    return this.backlog();
  }

  /** Orders this replica starts per second (smoothed over the last seconds); undefined: none lately. */
  drainPerSecond(): number | undefined {
    return this.startRate.perSecond >= 0.5 ? this.startRate.perSecond : undefined;
  }

  private async refreshBacklog(): Promise<void> {
    const now = this.now();
    if (this.startRate.at > 0 && now > this.startRate.at) {
      const rate = (this.started * 1000) / (now - this.startRate.at);
      // An exponential average over about eight polls: steady, yet it follows a change within seconds.
      this.startRate.perSecond += (rate - this.startRate.perSecond) / 8;
    }
    this.started = 0;
    this.startRate.at = now;
    this.waiting = await this.o.store.transaction(async (tx) => {
      const [submitted] = await tx.query<{ n: number | string }>(
        'SELECT count(*) AS n FROM orders WHERE state = $1',
        [OrderState.SUBMITTED],
      );
      return {
        submitted: Number(submitted?.n ?? 0),
        dueTimers: await countDueTimers(tx, this.o.workflow, now),
      };
    });
  }

  // ---- deliveries -------------------------------------------------------------------------------

  /** What a delivery asks of decide; undefined: nothing (a notification's reply). */
  private workOf(purpose: WorkflowQueuePurpose, d: Delivery): Work | undefined {
    const env = d.envelope;
    const p = env.payload;
    switch (purpose) {
      case 'orders':
        if (p.case === 'orderSubmitted' && p.value.order)
          return { orderId: p.value.order.id, input: { kind: 'order-submitted', causationId: env.id } };
        if (p.case === 'orderCancelled')
          return { orderId: p.value.orderId, input: { kind: 'order-cancelled', causationId: env.id } };
        return undefined;
      case 'replies':
        if (p.case !== 'connectorReply')
          throw new EngineError('replies: workflowPoison lets only replies through');
        if (isNotifyReply(p.value)) return undefined;
        return {
          orderId: p.value.orderId,
          input: { kind: 'connector-reply', reply: p.value, causationId: env.causationId },
        };
      case 'events':
        return {
          orderId: orderIdOf(env),
          input: { kind: 'awaited-event', envelope: env, eventType: d.eventType || env.type },
        };
    }
  }

  /**
   * Handles a batch of one queue's deliveries in one transaction; one outcome per delivery, in
   * order. When that transaction fails, each delivery is tried in a transaction of its own, so one
   * that cannot be handled (it then retries with backoff) does not hold the others back.
   */
  private async onDeliveries(purpose: WorkflowQueuePurpose, ds: Delivery[]): Promise<HandlerOutcome[]> {
    const counted = purpose === 'orders' ? 0 : ds.length;
    this.inFlight += counted;
    try {
      const outcomes: HandlerOutcome[] = ds.map(() => 'ack');
      const batch: { i: number; d: Delivery; work: Work }[] = [];
      for (const [i, d] of ds.entries()) {
        const poison = workflowPoison(purpose, d.envelope);
        if (poison) {
          outcomes[i] = { fail: poison };
          continue;
        }
        const work = this.workOf(purpose, d);
        if (work) batch.push({ i, d, work });
      }
      if (batch.length === 0) return outcomes;
      try {
        await this.handleBatch(purpose, batch);
      } catch (err) {
        if (batch.length === 1) {
          outcomes[batch[0]?.i ?? 0] = { retry: asError(err) };
          return outcomes;
        }
        this.o.logger.warn(
          { err, deliveries: batch.length },
          'batch failed; handling its deliveries one by one',
        );
        for (const item of batch) {
          try {
            await this.handleBatch(purpose, [item]);
          } catch (e) {
            outcomes[item.i] = { retry: asError(e) };
          }
        }
      }
      return outcomes;
    } finally {
      this.inFlight -= counted;
    }
  }

  /** One transaction: the inbox claims, then every fresh delivery decided and written together. */
  private async handleBatch(
    purpose: WorkflowQueuePurpose,
    batch: { d: Delivery; work: Work }[],
  ): Promise<void> {
    const committed = await handleBatchOnce(
      this.o.store,
      `${this.o.workflow}.${purpose}`,
      batch.map((b) => b.d.envelope),
      (tx, fresh) =>
        this.run(
          tx,
          batch.filter((_, k) => fresh[k]).map((b) => b.work),
        ),
    );
    this.committed(committed);
  }

  // ---- people: retry and resolve fallout --------------------------------------------------------

  /** Resumes an order from the step that failed, after the cause was fixed. */
  async retryStep(exceptionId: string): Promise<Order> {
    const { committed, order } = await this.o.store.transaction(async (tx) => {
      const exception = await this.exceptionOf(tx, exceptionId);
      const committed = await this.run(tx, [
        { orderId: exception.orderId, input: { kind: 'retry-step', exception } },
      ]);
      const order = committed.orders.get(exception.orderId);
      if (!order) throw new ExceptionStateError(`order ${exception.orderId} not found`);
      return { committed, order };
    });
    this.committed(committed);
    return order;
  }

  /** Closes an exception; with skipStep the order continues after the step, done by hand. */
  async resolve(exceptionId: string, resolution: string, skipStep: boolean): Promise<ExceptionRow> {
    const committed = await this.o.store.transaction(async (tx) => {
      const exception = await this.exceptionOf(tx, exceptionId);
      return this.run(tx, [
        { orderId: exception.orderId, input: { kind: 'resolve-exception', exception, resolution, skipStep } },
      ]);
    });
    this.committed(committed);
    const row = committed.decisions[0]?.resolvedExceptions[0];
    if (!row) throw new ExceptionStateError(`exception ${exceptionId} was not resolved`);
    return row;
  }

  private async exceptionOf(tx: Tx, exceptionId: string): Promise<ExceptionRow> {
    const exception = await getException(tx, exceptionId);
    if (!exception) throw new ExceptionNotFoundError(exceptionId);
    return exception;
  }

  // ---- the batch transaction --------------------------------------------------------------------

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

  /**
   * Decides every input in order on in-memory state (two inputs for one order apply one after the
   * other) and writes the result with multi-row statements. `locked`: instances the caller already
   * holds (due timers); the others are locked here, in order-id order.
   */
  private async run(tx: Tx, work: readonly Work[], locked?: Map<string, Instance>): Promise<Committed> {
    if (work.length === 0) return { changes: [], kpis: [], decisions: [], orders: new Map() };
    const ids = [...new Set(work.map((w) => w.orderId))];
    const instances = locked ?? (await lockInstances(tx, this.o.workflow, ids));
    const orders = await this.o.orders.getMany(ids, tx);
    const early = new Map<string, Map<string, Envelope>>();
    for (const [orderId, byType] of await earlyEvents(tx, ids)) {
      early.set(
        orderId,
        new Map([...byType].map(([type, body]) => [type, fromBinary(EnvelopeSchema, body)])),
      );
    }
    const changedInstances = new Map<string, Instance>();
    const saves: OrderSave[] = [];
    const commands: OutboxMessage[] = [];
    const stepRecords: StepRecord[] = [];
    const opened: ExceptionRow[] = [];
    const resolved: ExceptionRow[] = [];
    const resolveOpen: { orderId: string; resolution: string }[] = [];
    const kept: { orderId: string; type: string; body: Uint8Array }[] = [];
    const taken: { orderId: string; type: string }[] = [];
    const kpis: KpiObservation[] = [];
    const decisions: Decision[] = [];
    const now = this.now();
    for (const { orderId, input } of work) {
      const instance = instances.get(orderId);
      const order = orders.get(orderId);
      const generation =
        instance?.generation ?? (order ? generationOf(order, this.o.generation) : this.o.generation);
      const spec = await this.specFor(tx, generation);
      const byType = early.get(orderId) ?? new Map<string, Envelope>();
      const d = decide(instance, spec, { ...input, order, early: byType }, now, this.world);
      if (d.rejected) throw new ExceptionStateError(d.rejected);
      decisions.push(d);
      if (d.instance) {
        instances.set(orderId, d.instance);
        changedInstances.set(orderId, d.instance);
      }
      if (d.order && d.before) {
        saves.push({ order: d.order, before: d.before, events: d.events });
        orders.set(orderId, d.order);
      }
      commands.push(...d.commands);
      stepRecords.push(...d.stepRecords);
      opened.push(...d.openExceptions);
      resolved.push(...d.resolvedExceptions);
      if (d.resolveOpenExceptions) {
        resolveOpen.push({ orderId, resolution: d.resolveOpenExceptions });
        // Exceptions this batch opened for the order are closed with the stored ones.
        for (const e of opened) {
          if (e.orderId !== orderId || e.status !== 'open') continue;
          Object.assign(e, { status: 'resolved', resolvedAt: now, resolution: d.resolveOpenExceptions });
        }
      }
      if (d.keepEarly) {
        kept.push({ orderId, ...d.keepEarly });
        byType.set(d.keepEarly.type, fromBinary(EnvelopeSchema, d.keepEarly.body));
        early.set(orderId, byType);
      }
      for (const type of d.takeEarly) {
        taken.push({ orderId, type });
        byType.delete(type);
      }
      kpis.push(...d.kpis);
    }
    for (const r of resolveOpen) await resolveOpenExceptions(tx, r.orderId, r.resolution, now);
    for (const e of resolved) await resolveException(tx, e.id, e.resolution, now);
    await openExceptions(tx, opened);
    const saved = await this.o.orders.saveMany(tx, saves);
    await tx.enqueueOutbox(commands);
    await recordSteps(tx, stepRecords);
    await writeInstances(tx, [...changedInstances.values()]);
    await keepEarlyEvents(tx, kept, now);
    for (const t of taken) await dropEarlyEvent(tx, t.orderId, t.type);
    const changes = saves.map((s, i) => ({ order: saved[i] ?? s.order, previousState: s.before.state }));
    for (const c of changes) orders.set(c.order.id, c.order);
    return { changes, kpis, decisions, orders };
  }

  private committed(c: Committed): void {
    if (c.decisions.length === 0) return;
    for (const d of c.decisions) if (d.created) this.started++;
    observeKpis(this.kpis, c.kpis);
    for (const change of c.changes) this.o.orders.emitChange(change);
    this.o.onCommitted?.();
  }
}
