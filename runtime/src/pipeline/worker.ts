// The Pipeline worker: consumes the source connector's events, filters and transforms them with CEL
// and calls the sink connector's operation as a command, waiting for its reply, under the bus retry
// policy (delivery.maxAttempts / backoff), the DLQ (delivery.deadLetter) and, with an ordering key,
// ordered partitions. Without ordering one queue does everything; with ordering an intake queue bound
// on o2c.events evaluates the key and forwards each event to the consistent-hash partitions of the
// delivery queue, because the broker can only hash on a header the publisher sets. Every queue takes
// only the source event types: anything else (undecodable, another or an unknown type, a payload that
// is not its type) is poison and parked in the DLQ with the reason, whatever delivery.deadLetter says.
import { toBinary, toJson } from '@bufbuild/protobuf';
import type { Logger } from 'pino';
import { Counter, register as defaultRegistry, type Registry } from 'prom-client';
import { eventBindingKey } from '../bus/addressing.js';
import type { BusConnection } from '../bus/connection.js';
import { Consumer, type Delivery, type HandlerOutcome, handleOnce, PermanentError } from '../bus/consumer.js';
import { ConfirmPublisher } from '../bus/publisher.js';
import {
  COMMANDS_EXCHANGE,
  EVENTS_EXCHANGE,
  orderingExchangeName,
  type QueueSpec,
  queueName,
} from '../bus/topology.js';
import { buildCommandEnvelope, COMMAND_TYPE, commandRoutingKey } from '../connectors/commands.js';
import { ORDERING_PARTITIONS, type QueueRoute } from '../contract/runtime-config.js';
import { ErrorClass } from '../gen/o2c/v1/common_pb.js';
import type { ConnectorReply } from '../gen/o2c/v1/connector_service_pb.js';
import { type Envelope, EnvelopeSchema } from '../gen/o2c/v1/events_pb.js';
import type { Store } from '../store/types.js';
import { type JsonValue, PipelineEvaluationError } from './cel.js';
import { ReplyWaiter } from './replies.js';
import { buildSinkRequest } from './sink.js';
import { type CompiledPipeline, compilePipelineSpec, type PipelineSpec } from './spec.js';

export type PipelineOutcome = 'delivered' | 'filtered' | 'foreign' | 'duplicate' | 'dropped' | 'failed';

export interface PipelineWorkerOptions {
  namespace: string;
  name: string;
  spec: PipelineSpec;
  connection: BusConnection;
  /** With a store, the inbox skips events already delivered (redeliveries, replays). */
  store?: Store;
  logger: Logger;
  registry?: Registry;
  /** Consistent-hash partitions of an ordered pipeline. Default 4. */
  partitions?: number;
  /** How long one attempt waits for the sink connector's reply. Default 30 s. */
  replyTimeoutMs?: number;
  /** Distinguishes replicas in the reply routing key; default random. */
  instance?: string;
  /** Queues and the sink's routing key as the operator rendered them; default computed. */
  routes?: PipelineRoutes;
}

export interface PipelineRoutes {
  events: QueueRoute;
  deliveries?: QueueRoute;
  sinkRoutingKey: string;
}

export interface PipelineQueues {
  /** Bound on o2c.events to the source Connector's events of the source types. */
  events: QueueSpec;
  /** Ordered pipelines: the partitioned queue the intake forwards to; its DLQ holds the failures. */
  deliveries?: QueueSpec;
}

/** The queues of a Pipeline; the failed events wait in `dlqName((deliveries ?? events).name)`. */
export function pipelineQueues(
  namespace: string,
  name: string,
  pipeline: CompiledPipeline,
  partitions = ORDERING_PARTITIONS,
  routes?: PipelineRoutes,
): PipelineQueues {
  // Only the source Connector's events of this namespace: another tenant's, or another Connector's
  // of the same type, are not this Pipeline's to deliver.
  const source = pipeline.spec.source.connector;
  const bindings =
    routes?.events.bindings ??
    [...pipeline.sources.keys()].map((type) => ({
      exchange: EVENTS_EXCHANGE,
      routingKey: eventBindingKey(namespace, 'connector', source, type),
    }));
  const events: QueueSpec = {
    name: routes?.events.queue ?? queueName(namespace, 'pipeline', name, 'events'),
    bindings,
    retry: pipeline.retry,
  };
  if (!pipeline.orderingKey) return { events };
  return {
    // The intake only forwards; a failed forward is parked at once (no delay tiers to declare).
    events: { ...events, retry: { ...pipeline.retry, maxAttempts: 1 } },
    deliveries: {
      name: routes?.deliveries?.queue ?? queueName(namespace, 'pipeline', name, 'deliveries'),
      bindings: [],
      retry: pipeline.retry,
      ordering: { partitions: routes?.deliveries?.partitions ?? partitions },
    },
  };
}

/** A connector reply's error as the handler outcome: retryable errors retry, others are permanent. */
function replyOutcome(reply: ConnectorReply, sink: string): HandlerOutcome {
  if (reply.result.case !== 'error') return 'ack';
  const e = reply.result.value;
  const message = `${sink} ${reply.operation} failed (${ErrorClass[e.errorClass]}${e.code ? ` ${e.code}` : ''}): ${e.message}`;
  return e.retryable ? { retry: new Error(message) } : { fail: new PermanentError(message) };
}

const counters = new WeakMap<Registry, Counter<'pipeline' | 'outcome'>>();

function outcomeCounter(registry: Registry): Counter<'pipeline' | 'outcome'> {
  let c = counters.get(registry);
  if (!c) {
    c = new Counter({
      name: 'o2c_pipeline_events_total',
      help: 'Source events handled by pipelines, by outcome',
      labelNames: ['pipeline', 'outcome'],
      registers: [registry],
    });
    counters.set(registry, c);
  }
  return c;
}

export class PipelineWorker {
  readonly pipeline: CompiledPipeline;
  readonly queues: PipelineQueues;
  /** `o2c/<namespace>/connector/<source>`: only events from there are handled. */
  readonly expectedSource: string;
  readonly replies: ReplyWaiter;
  private readonly o: PipelineWorkerOptions;
  private readonly publisher: ConfirmPublisher;
  private readonly consumers: Consumer[] = [];
  private readonly counter: Counter<'pipeline' | 'outcome'>;
  private readonly inboxConsumer: string;
  private readonly commandSource: string;
  private readonly logger: Logger;
  /** Outcomes so far, for tests and `o2c` diagnostics. */
  readonly counts: Record<PipelineOutcome, number> = {
    delivered: 0,
    filtered: 0,
    foreign: 0,
    duplicate: 0,
    dropped: 0,
    failed: 0,
  };

  constructor(o: PipelineWorkerOptions) {
    this.o = o;
    this.pipeline = compilePipelineSpec(o.spec);
    this.queues = pipelineQueues(o.namespace, o.name, this.pipeline, o.partitions, o.routes);
    this.expectedSource = `o2c/${o.namespace}/connector/${o.spec.source.connector}`;
    this.commandSource = `o2c/${o.namespace}/pipeline/${o.name}`;
    this.inboxConsumer = `pipeline.${o.namespace}.${o.name}`;
    this.logger = o.logger;
    this.counter = outcomeCounter(o.registry ?? defaultRegistry);
    this.publisher = new ConfirmPublisher(o.connection, { registry: o.registry });
    this.replies = new ReplyWaiter({
      connection: o.connection,
      namespace: o.namespace,
      pipeline: o.name,
      instance: o.instance,
      logger: o.logger.child({ component: 'replies' }),
    });
  }

  async start(): Promise<void> {
    await this.replies.start();
    const { concurrency } = this.pipeline;
    const { events, deliveries } = this.queues;
    if (deliveries) {
      const partitions = deliveries.ordering?.partitions ?? 1;
      this.consumers.push(
        // Declared first: the intake forwards into its partitions.
        this.consumer(deliveries, Math.max(1, Math.ceil(concurrency / partitions)), (d) => this.deliver(d)),
        this.consumer(events, concurrency, (d) => this.forward(d, deliveries)),
      );
    } else {
      this.consumers.push(this.consumer(events, concurrency, (d) => this.deliver(d)));
    }
    for (const c of this.consumers) await c.start();
    this.logger.info(
      { queues: this.consumers.map((c) => c.spec.name), replyTo: this.replies.routingKey },
      'pipeline consuming',
    );
  }

  async stop(): Promise<void> {
    for (const c of [...this.consumers].reverse()) await c.stop();
    this.consumers.length = 0;
    await this.replies.stop();
    await this.publisher.close();
  }

  private consumer(spec: QueueSpec, prefetch: number, handler: (d: Delivery) => Promise<HandlerOutcome>) {
    return new Consumer({
      connection: this.o.connection,
      spec,
      accepts: [...this.pipeline.sources.keys()],
      prefetch,
      registry: this.o.registry,
      handler,
    });
  }

  private count(outcome: PipelineOutcome): void {
    this.counts[outcome]++;
    this.counter.inc({ pipeline: `${this.o.namespace}/${this.o.name}`, outcome });
  }

  /** The event payload as protobuf JSON (implicit defaults included, so `event.item.active` exists). */
  private eventOf(envelope: Envelope): { json: JsonValue; type: string } | undefined {
    const value = envelope.payload.value;
    if (!value || !this.isFromSource(envelope)) return undefined;
    const source = this.pipeline.sources.get(value.$typeName);
    if (!source) return undefined;
    return {
      type: source.type,
      json: toJson(source.payload.message, value as never, { alwaysEmitImplicit: true }) as JsonValue,
    };
  }

  private isFromSource(envelope: Envelope): boolean {
    return envelope.source === this.expectedSource;
  }

  /** Ordered pipelines' intake: evaluates the ordering key and forwards to the key's partition. */
  private async forward(d: Delivery, deliveries: QueueSpec): Promise<HandlerOutcome> {
    const event = this.eventOf(d.envelope);
    if (!event) {
      this.count('foreign');
      return 'ack';
    }
    let key: string;
    try {
      key = orderingKeyOf(this.pipeline, event.json);
    } catch {
      // The delivery stage evaluates it again and parks the event with the reason.
      key = d.envelope.id;
    }
    const traceparent = d.envelope.traceparent || undefined;
    await this.publisher.publish({
      exchange: orderingExchangeName(deliveries.name),
      routingKey: event.type,
      body: d.message.content,
      messageId: d.envelope.id,
      type: d.envelope.type || event.type,
      correlationId: d.envelope.correlationId,
      traceparent,
      orderingKey: key,
    });
    return 'ack';
  }

  private async deliver(d: Delivery): Promise<HandlerOutcome> {
    const outcome = await this.attemptDelivery(d).catch(
      (err: unknown): HandlerOutcome =>
        err instanceof PipelineEvaluationError
          ? { fail: new PermanentError(err.message) }
          : { retry: err as Error },
    );
    if (outcome === 'ack') return outcome;
    const final = 'fail' in outcome || d.attempt >= this.pipeline.retry.maxAttempts;
    if (!final) return outcome;
    if (!this.pipeline.deadLetter) {
      const err = 'fail' in outcome ? outcome.fail : outcome.retry;
      d.logger.warn({ err }, 'delivery failed for good; dropped (delivery.deadLetter is false)');
      this.count('dropped');
      return 'ack';
    }
    this.count('failed');
    return outcome;
  }

  private async attemptDelivery(d: Delivery): Promise<HandlerOutcome> {
    const envelope = d.envelope;
    const event = this.eventOf(envelope);
    if (!event) {
      this.count('foreign');
      return 'ack';
    }
    const { filter, transform, target } = this.pipeline;
    if (filter) {
      const pass = filter.evaluate(event.json);
      if (typeof pass !== 'boolean')
        throw new PipelineEvaluationError(
          `spec.filter (${filter.source}) evaluated to ${JSON.stringify(pass)}, not a bool`,
        );
      if (!pass) {
        this.count('filtered');
        return 'ack';
      }
    }
    if (this.o.store && (await this.delivered(envelope.id))) {
      this.count('duplicate');
      return 'ack';
    }
    const overlay: Record<string, JsonValue> = {};
    for (const { jsonName, expr } of transform) overlay[jsonName] = expr.evaluate(event.json);
    const source = this.pipeline.sources.get(event.type);
    const entityJson = source?.entity
      ? (event.json as Record<string, JsonValue>)[source.entity.jsonName]
      : undefined;
    const request = buildSinkRequest(target, entityJson, overlay);
    const key = this.pipeline.orderingKey ? orderingKeyOf(this.pipeline, event.json) : envelope.subject;

    const command = buildCommandEnvelope({
      namespace: this.o.namespace,
      connector: this.o.spec.sink.connector,
      request,
      orderId: '',
      step: `pipeline/${this.o.name}`,
      replyTo: this.replies.routingKey,
      correlationId: envelope.correlationId || envelope.id,
      causationId: envelope.id,
      idempotencyKey: `${this.o.name}:${envelope.id}`,
      source: this.commandSource,
      traceparent: envelope.traceparent,
    });
    command.subject = envelope.subject || key;
    command.orderingKey = key;
    const replyTimeoutMs = this.o.replyTimeoutMs ?? 30_000;
    const reply = this.replies.expect(command.id, replyTimeoutMs);
    reply.catch(() => {}); // observed below; keeps a publish failure from leaving it unhandled
    try {
      await this.publisher.publish({
        exchange: COMMANDS_EXCHANGE,
        routingKey:
          this.o.routes?.sinkRoutingKey ?? commandRoutingKey(this.o.namespace, this.o.spec.sink.connector),
        body: toBinary(EnvelopeSchema, command),
        messageId: command.id,
        type: COMMAND_TYPE,
        correlationId: command.correlationId,
        traceparent: command.traceparent || undefined,
        orderingKey: key,
      });
    } catch (err) {
      this.replies.forget(command.id);
      throw err;
    }
    const outcome = replyOutcome(await reply, this.o.spec.sink.connector);
    if (outcome !== 'ack') return outcome;
    // The claim follows the sink's success; a crash in between re-sends under the same idempotency key.
    if (this.o.store) await handleOnce(this.o.store, this.inboxConsumer, envelope, async () => {});
    this.count('delivered');
    return 'ack';
  }

  /** Whether this pipeline already delivered event `id` (its inbox row commits after the sink's reply). */
  private async delivered(id: string): Promise<boolean> {
    const store = this.o.store as Store;
    const rows = await store.transaction((tx) =>
      tx.query('SELECT 1 AS seen FROM inbox WHERE consumer = $1 AND message_id = $2', [
        this.inboxConsumer,
        id,
      ]),
    );
    return rows.length > 0;
  }
}

/** The ordering key of an event as a string; an evaluation error is the event's permanent failure. */
export function orderingKeyOf(pipeline: CompiledPipeline, event: JsonValue): string {
  const expr = pipeline.orderingKey;
  if (!expr) return '';
  const key = expr.evaluate(event);
  if (key === null) throw new PipelineEvaluationError(`${expr.field} (${expr.source}) evaluated to null`);
  return typeof key === 'string' ? key : JSON.stringify(key);
}
