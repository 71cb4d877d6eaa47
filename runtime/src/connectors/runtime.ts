// The connector role's core: takes command envelopes (one, or a delivery batch at once), checks
// ownership, runs the driver calls concurrently under the governor (which keeps the rate limit, the
// concurrency cap and the circuit breaker exact) and produces the replies — written to the outbox in
// the same transaction as their inbox claims when a store is configured, many replies per
// transaction (group commit), else published directly with confirms. Retryable failures go back to
// the bus consumer, which retries them with its delay policy.
import type { Logger } from 'pino';
import { handleBatchOnce } from '../bus/consumer.js';
import { decodeEnvelope } from '../bus/decode-envelope.js';
import { PoisonMessageError } from '../bus/errors.js';
import { ErrorClass } from '../gen/o2c/v1/common_pb.js';
import type { ConnectorCommand, ConnectorReply } from '../gen/o2c/v1/connector_service_pb.js';
import type { Envelope } from '../gen/o2c/v1/events_pb.js';
import type { OutboxMessage, Store } from '../store/types.js';
import { type Clock, systemClock } from './clock.js';
import { COMMAND_TYPE, emptyReply, replyMessage } from './commands.js';
import { type ConnectorRuntimeConfig, governorLimits } from './config.js';
import {
  type CallContext,
  type ConnectorDriver,
  ConnectorFailure,
  type DriverMethod,
  type MethodName,
  methodForOperation,
  toConnectorFailure,
} from './driver.js';
import { Governor } from './governor.js';
import { GroupCommit } from './group-commit.js';
import { type OriginateEvents, originatedMessage, storeOriginator } from './origination.js';
import { checkOwnership } from './ownership.js';

/** Publishes one message and resolves when the broker confirmed it (the bus ConfirmPublisher). */
export interface MessagePublisher {
  publish(message: OutboxMessage): Promise<void>;
}

export interface DeliveryInfo {
  /** AMQP message_id; the Envelope id when absent. */
  messageId?: string;
  /** 1 for the first delivery. */
  attempt?: number;
  /** True on the consumer's last attempt: a retryable failure is then answered instead of thrown. */
  finalAttempt?: boolean;
}

export type HandleOutcome = 'replied' | 'duplicate';

/** One command of a batch: the decoded envelope and how it was delivered. */
export interface CommandDelivery {
  envelope: Envelope;
  delivery?: DeliveryInfo;
}

/**
 * What became of one command of a batch: answered, a duplicate (its reply was written before), or
 * the error to settle its delivery with (a retryable ConnectorFailure, a PoisonMessageError, a store
 * failure).
 */
export type CommandOutcome = HandleOutcome | { error: unknown };

/** A reply waiting for its group commit: the command's message id claims the inbox. */
interface PendingReply {
  messageId: string;
  message: OutboxMessage;
}

export interface ConnectorRuntimeOptions {
  config: ConnectorRuntimeConfig;
  driver: ConnectorDriver;
  store?: Store;
  publisher?: MessagePublisher;
  governor?: Governor;
  clock?: Clock;
  logger?: Logger;
  /** Aborted at shutdown: waiting calls give up and in-flight calls see their signal abort. */
  signal?: AbortSignal;
}

export class ConnectorRuntime {
  readonly config: ConnectorRuntimeConfig;
  readonly driver: ConnectorDriver;
  readonly governor: Governor;
  /** Inbox consumer name: one reply per command message. */
  readonly consumer: string;
  readonly source: string;
  private readonly store: Store | undefined;
  private readonly publisher: MessagePublisher | undefined;
  private readonly clock: Clock;
  private readonly logger: Logger | undefined;
  private readonly signal: AbortSignal | undefined;
  private readonly replies: GroupCommit<PendingReply, HandleOutcome> | undefined;

  constructor(opts: ConnectorRuntimeOptions) {
    this.config = opts.config;
    this.driver = opts.driver;
    this.store = opts.store;
    this.publisher = opts.publisher;
    this.clock = opts.clock ?? systemClock;
    this.logger = opts.logger;
    this.signal = opts.signal;
    this.governor =
      opts.governor ??
      new Governor(governorLimits(opts.config), this.clock, (state) =>
        this.logger?.warn({ connector: opts.config.name, circuit: state }, `circuit ${state}`),
      );
    this.consumer = `connector.${opts.config.name}`;
    this.source = `o2c/${opts.config.namespace ?? 'default'}/connector/${opts.config.name}`;
    if (!this.store && !this.publisher)
      throw new Error('connector runtime needs a store (outbox) or a publisher');
    const store = this.store;
    this.replies = store ? new GroupCommit((batch) => this.writeReplies(store, batch)) : undefined;
    this.originate = this.store
      ? storeOriginator({
          store: this.store,
          source: this.source,
          consumer: `originated.${opts.config.name}`,
          now: () => this.clock.now(),
          onCommitted: (messages) => {
            for (const m of messages) this.onReply?.(m);
          },
        })
      : this.publishOriginated;
  }

  /**
   * Handles one delivery of a command envelope. Throws a retryable ConnectorFailure to ask for a
   * retry, a PoisonMessageError for a body that is no command (never to be retried or answered).
   */
  async handleMessage(body: Uint8Array, delivery: DeliveryInfo = {}): Promise<HandleOutcome> {
    const decoded = decodeEnvelope({ body, messageId: delivery.messageId }, [COMMAND_TYPE]);
    if ('poison' in decoded) throw decoded.poison;
    return this.handleEnvelope(decoded.envelope, delivery);
  }

  /** Handles one decoded command envelope (the bus Consumer decodes it). Throws like handleMessage. */
  async handleEnvelope(envelope: Envelope, delivery: DeliveryInfo = {}): Promise<HandleOutcome> {
    const [outcome] = await this.handleEnvelopes([{ envelope, delivery }]);
    if (outcome === undefined || typeof outcome !== 'string') throw outcome?.error;
    return outcome;
  }

  /**
   * Handles a batch of command envelopes at once: the driver calls run concurrently (the governor
   * admits them under its limits), and each reply joins the next group commit as soon as its call
   * returned, so a slow call does not hold back the others' replies. Never rejects: one outcome per
   * command, in order.
   */
  handleEnvelopes(commands: readonly CommandDelivery[]): Promise<CommandOutcome[]> {
    return Promise.all(commands.map((c) => this.handleOne(c.envelope, c.delivery ?? {})));
  }

  private async handleOne(envelope: Envelope, delivery: DeliveryInfo): Promise<CommandOutcome> {
    try {
      if (envelope.payload.case !== 'connectorCommand') {
        throw new PoisonMessageError(
          'PayloadTypeMismatch',
          `envelope ${envelope.id} carries ${envelope.payload.case ?? 'no payload'}, not an o2c.v1.ConnectorCommand`,
        );
      }
      const command = envelope.payload.value;
      const reply = await this.execute(command, envelope, delivery);
      const message = replyMessage(envelope, command, reply, this.source, this.clock.now());
      return await this.deliver(delivery.messageId || envelope.id, message);
    } catch (error) {
      return { error };
    }
  }

  /**
   * Runs a command and returns its reply; a permanent failure becomes a reply with ConnectorError.
   * A retryable failure is thrown unless this is the final attempt.
   */
  async execute(
    command: ConnectorCommand,
    envelope: Envelope,
    delivery: DeliveryInfo = {},
  ): Promise<ConnectorReply> {
    const reply = emptyReply(command, this.config.name);
    const started = this.clock.now();
    try {
      const result = await this.call(command, envelope);
      reply.result = result as ConnectorReply['result'];
    } catch (err) {
      const failure = toConnectorFailure(err);
      if (failure.retryable && !delivery.finalAttempt) throw failure;
      this.logger?.info(
        {
          orderId: command.orderId,
          correlationId: envelope.correlationId,
          operation: command.operation,
          errorClass: ErrorClass[failure.errorClass],
          code: failure.code,
        },
        `connector call failed: ${failure.message}`,
      );
      reply.result = { case: 'error', value: failure.toProto() };
    }
    reply.durationMs = Math.max(0, Math.round(this.clock.now() - started));
    return reply;
  }

  private async call(command: ConnectorCommand, envelope: Envelope): Promise<ConnectorReply['result']> {
    const method = methodForOperation(command.operation);
    if (!method) {
      throw new ConnectorFailure(
        ErrorClass.VALIDATION,
        `unknown operation ${JSON.stringify(command.operation)}`,
        {
          code: 'UNKNOWN_OPERATION',
        },
      );
    }
    if (command.request.case !== method.localName) {
      throw new ConnectorFailure(
        ErrorClass.VALIDATION,
        `operation ${command.operation} needs request ${method.localName}, got ${command.request.case ?? 'none'}`,
        { code: 'REQUEST_MISMATCH' },
      );
    }
    checkOwnership(this.config.name, this.config.owns, command.operation);
    const fn = this.driver[method.localName] as DriverMethod<MethodName> | undefined;
    if (!fn) {
      throw new ConnectorFailure(
        ErrorClass.VALIDATION,
        `driver ${this.driver.driverName} of connector ${this.config.name} does not support ${command.operation}`,
        { code: 'UNSUPPORTED_OPERATION' },
      );
    }
    const request = command.request.value;
    const response = await this.governor.run((signal) => {
      const ctx: CallContext = {
        signal,
        idempotencyKey: envelope.idempotencyKey || `${command.orderId}:${command.step}:${command.operation}`,
        correlationId: envelope.correlationId,
      };
      return fn.call(this.driver, request as never, ctx);
    }, this.signal);
    return { case: method.localName, value: response } as ConnectorReply['result'];
  }

  private async deliver(messageId: string, message: OutboxMessage): Promise<HandleOutcome> {
    if (this.replies) return this.replies.submit({ messageId, message });
    await this.publisher?.publish(message);
    this.onReply?.(message);
    return 'replied';
  }

  /**
   * One transaction for a group of replies: their inbox claims in one statement, the fresh replies
   * in one outbox insert. A command seen twice (a redelivery, a second publish of it) is answered
   * once: by an earlier transaction, or by its first occurrence in this group.
   */
  private async writeReplies(store: Store, batch: PendingReply[]): Promise<HandleOutcome[]> {
    const ids = batch.map((r) => ({ id: r.messageId }));
    const fresh = await handleBatchOnce(store, this.consumer, ids, async (tx, fresh) => {
      const written = batch.filter((_, i) => fresh[i]).map((r) => r.message);
      if (written.length > 0) await tx.enqueueOutbox(written);
      return fresh;
    });
    return batch.map((r, i): HandleOutcome => {
      if (!fresh[i]) return 'duplicate';
      this.onReply?.(r.message);
      return 'replied';
    });
  }

  /** Notified after every reply written or published (tests, the relay's wake-up). */
  onReply?: (message: OutboxMessage) => void;

  /**
   * Events about work done inside the external system (a dispatch, a payment, a master-data change):
   * with a store, written to its outbox in one transaction with `alsoInTx` (a watermark advance);
   * without one (tests), published directly.
   */
  readonly originate: OriginateEvents;

  private publishOriginated: OriginateEvents = async (events, alsoInTx) => {
    if (alsoInTx) throw new Error(`connector ${this.config.name} has no store to advance a watermark in`);
    for (const e of events) {
      const message = originatedMessage(this.source, e, this.clock.now());
      await this.publisher?.publish(message);
      this.onReply?.(message);
    }
  };
}
