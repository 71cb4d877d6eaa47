// Connector replies for one pipeline process: an exclusive, auto-deleted queue bound on o2c.events to
// this process's own reply key, so with several replicas each reply reaches the process that waits for
// it. Replies are matched to their command by the reply's causation_id (= the command envelope id).
// A reply nobody waits for any more (timed out, process restarted) is dropped: the event's retry sends
// a fresh command with the same idempotency key. Poison (no reply, or one that names no command) is
// parked in the pipeline's durable `o2c.<ns>.pipeline.<pipeline>.replies.dlq`, declared when the first arrives.
import { randomBytes } from 'node:crypto';
import type { ChannelModel, ConsumeMessage } from 'amqplib';
import type { Logger } from 'pino';
import { dlqName, EVENTS_EXCHANGE, queueName, replyRoutingKey } from '../bus/addressing.js';
import { TrackedConfirmChannel } from '../bus/confirm-channel.js';
import type { BusConnection } from '../bus/connection.js';
import { decodeEnvelope } from '../bus/decode-envelope.js';
import { parkInDlq } from '../bus/dlq.js';
import { PoisonMessageError } from '../bus/errors.js';
import { REPLY_TYPE } from '../connectors/commands.js';
import type { ConnectorReply } from '../gen/o2c/v1/connector_service_pb.js';

export class ReplyTimeoutError extends Error {
  override readonly name = 'ReplyTimeoutError';
}

interface Waiter {
  resolve: (reply: ConnectorReply) => void;
  reject: (err: Error) => void;
  timer: NodeJS.Timeout;
}

export interface ReplyWaiterOptions {
  connection: BusConnection;
  namespace: string;
  pipeline: string;
  /** Distinguishes replicas; default random. Lowercase letters and digits. */
  instance?: string;
  logger: Logger;
}

/** Where poison replies of every replica of Pipeline `pipeline` are parked; deleted with the Pipeline. */
export function pipelineRepliesDeadLetterQueue(namespace: string, pipeline: string): string {
  return dlqName(queueName(namespace, 'pipeline', pipeline, 'replies'));
}

export class ReplyWaiter {
  /** The reply_to of this process's commands: a routing key on o2c.events. */
  readonly routingKey: string;
  readonly queue: string;
  /** Where poison replies of every replica of this pipeline are parked. */
  readonly deadLetterQueue: string;
  private readonly connection: BusConnection;
  private readonly logger: Logger;
  private readonly waiters = new Map<string, Waiter>();
  private channel: TrackedConfirmChannel | undefined;
  private deadLetterDeclared = false;
  private removeSetup: (() => void) | undefined;
  private stopping = false;

  constructor(o: ReplyWaiterOptions) {
    const instance = o.instance ?? randomBytes(4).toString('hex');
    this.connection = o.connection;
    this.routingKey = replyRoutingKey(
      { namespace: o.namespace, kind: 'pipeline', name: o.pipeline },
      instance,
    );
    this.queue = queueName(o.namespace, 'pipeline', o.pipeline, `replies.${instance}`);
    this.deadLetterQueue = pipelineRepliesDeadLetterQueue(o.namespace, o.pipeline);
    this.logger = o.logger;
  }

  async start(): Promise<void> {
    this.stopping = false;
    let first: Promise<void> | undefined;
    this.removeSetup = this.connection.addSetup(`pipeline-replies:${this.queue}`, 'consumer', (model) => {
      const p = this.attach(model);
      first ??= p;
      return p;
    });
    if (first) await first;
  }

  /** Registers interest in the reply to command `commandId`; call before publishing the command. */
  expect(commandId: string, timeoutMs: number): Promise<ConnectorReply> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiters.delete(commandId);
        reject(new ReplyTimeoutError(`no connector reply within ${timeoutMs} ms`));
      }, timeoutMs);
      timer.unref();
      this.waiters.set(commandId, { resolve, reject, timer });
    });
  }

  /** Stops waiting for `commandId` (its command could not be published). */
  forget(commandId: string): void {
    const w = this.waiters.get(commandId);
    if (!w) return;
    clearTimeout(w.timer);
    this.waiters.delete(commandId);
  }

  async stop(): Promise<void> {
    this.stopping = true;
    this.removeSetup?.();
    for (const [id, w] of this.waiters) {
      clearTimeout(w.timer);
      w.reject(new Error('pipeline stopping'));
      this.waiters.delete(id);
    }
    await this.channel?.close();
    this.channel = undefined;
  }

  private async attach(model: ChannelModel): Promise<void> {
    if (this.stopping) return;
    const raw = await model.createConfirmChannel();
    const ch = new TrackedConfirmChannel(raw);
    raw.on('error', (err: Error) => this.logger.warn({ err }, 'reply channel error'));
    raw.on('close', () => {
      if (this.channel !== ch || this.stopping) return;
      this.channel = undefined;
      // The connection lives on (else its setup rerun re-attaches): re-open the channel.
      setTimeout(() => {
        if (!this.stopping && this.connection.model === model && !this.channel)
          this.attach(model).catch((err) => this.logger.warn({ err }, 're-attaching reply consumer failed'));
      }, 1_000).unref();
    });
    this.channel = ch;
    this.deadLetterDeclared = false;
    await raw.assertExchange(EVENTS_EXCHANGE, 'topic', { durable: true });
    // Transient by nature (a reply is only useful to the process waiting for it), so not a quorum queue.
    await raw.assertQueue(this.queue, { exclusive: true, autoDelete: true, durable: false });
    await raw.bindQueue(this.queue, EVENTS_EXCHANGE, this.routingKey);
    await raw.consume(
      this.queue,
      (msg) => {
        if (!msg) return;
        this.onReply(ch, msg).catch((err) =>
          // Unacked: the channel's close returns it, and the next attach sees it again.
          this.logger.warn({ err, messageId: msg.properties.messageId }, 'could not park a poison reply'),
        );
      },
      { noAck: false },
    );
  }

  private async onReply(ch: TrackedConfirmChannel, msg: ConsumeMessage): Promise<void> {
    const decoded = decodeEnvelope(
      { body: msg.content, messageId: msg.properties.messageId, type: msg.properties.type },
      [REPLY_TYPE],
    );
    const poison =
      'poison' in decoded
        ? decoded.poison
        : decoded.envelope.causationId
          ? undefined
          : new PoisonMessageError(
              'InvalidPayload',
              'o2c.v1.ConnectorReply names no causation_id (its command)',
            );
    if (poison) {
      this.logger.warn(
        { messageId: msg.properties.messageId, errorClass: poison.name, err: poison },
        'poison reply; parking in the DLQ',
      );
      if (!this.deadLetterDeclared) {
        await ch.channel.assertQueue(this.deadLetterQueue, {
          durable: true,
          arguments: { 'x-queue-type': 'quorum' },
        });
        this.deadLetterDeclared = true;
      }
      await parkInDlq(ch, msg, {
        queue: this.queue,
        dlq: this.deadLetterQueue,
        reason: 'poison',
        error: poison,
        attempts: 1,
        nowMs: Date.now(),
      });
      if (!ch.isClosed) ch.channel.ack(msg);
      return;
    }
    if (!ch.isClosed) ch.channel.ack(msg);
    if (!('envelope' in decoded)) return;
    const { causationId, payload } = decoded.envelope;
    const w = this.waiters.get(causationId);
    if (!w || payload.case !== 'connectorReply') return;
    clearTimeout(w.timer);
    this.waiters.delete(causationId);
    w.resolve(payload.value);
  }
}
