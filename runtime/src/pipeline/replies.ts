// Connector replies for one pipeline process: an exclusive, auto-deleted queue bound on o2c.events to
// this process's own reply key, so with several replicas each reply reaches the process that waits for
// it. Replies are matched to their command by the reply's causation_id (= the command envelope id).
// A reply nobody waits for any more (timed out, process restarted) is dropped: the event's retry sends
// a fresh command with the same idempotency key.
import { randomBytes } from 'node:crypto';
import { fromBinary } from '@bufbuild/protobuf';
import type { Channel, ChannelModel } from 'amqplib';
import type { Logger } from 'pino';
import type { BusConnection } from '../bus/connection.js';
import { EVENTS_EXCHANGE, queueName } from '../bus/topology.js';
import type { ConnectorReply } from '../gen/o2c/v1/connector_service_pb.js';
import { EnvelopeSchema } from '../gen/o2c/v1/events_pb.js';

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

export class ReplyWaiter {
  /** The reply_to of this process's commands: a routing key on o2c.events. */
  readonly routingKey: string;
  readonly queue: string;
  private readonly connection: BusConnection;
  private readonly logger: Logger;
  private readonly waiters = new Map<string, Waiter>();
  private channel: Channel | undefined;
  private removeSetup: (() => void) | undefined;
  private stopping = false;

  constructor(o: ReplyWaiterOptions) {
    const instance = o.instance ?? randomBytes(4).toString('hex');
    this.connection = o.connection;
    this.routingKey = `o2c.v1.ConnectorReply.${o.namespace}.${o.pipeline}.${instance}`;
    this.queue = queueName(o.namespace, o.pipeline, `replies.${instance}`);
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
    await this.channel?.close().catch(() => {});
    this.channel = undefined;
  }

  private async attach(model: ChannelModel): Promise<void> {
    if (this.stopping) return;
    const ch = await model.createChannel();
    ch.on('error', (err: Error) => this.logger.warn({ err }, 'reply channel error'));
    ch.on('close', () => {
      if (this.channel !== ch || this.stopping) return;
      this.channel = undefined;
      // The connection lives on (else its setup rerun re-attaches): re-open the channel.
      setTimeout(() => {
        if (!this.stopping && this.connection.model === model && !this.channel)
          this.attach(model).catch((err) => this.logger.warn({ err }, 're-attaching reply consumer failed'));
      }, 1_000).unref();
    });
    this.channel = ch;
    await ch.assertExchange(EVENTS_EXCHANGE, 'topic', { durable: true });
    // Transient by nature (a reply is only useful to the process waiting for it), so not a quorum queue.
    await ch.assertQueue(this.queue, { exclusive: true, autoDelete: true, durable: false });
    await ch.bindQueue(this.queue, EVENTS_EXCHANGE, this.routingKey);
    await ch.consume(
      this.queue,
      (msg) => {
        if (!msg) return;
        try {
          const envelope = fromBinary(EnvelopeSchema, msg.content);
          if (envelope.payload.case !== 'connectorReply') return;
          const w = this.waiters.get(envelope.causationId);
          if (!w) return;
          clearTimeout(w.timer);
          this.waiters.delete(envelope.causationId);
          w.resolve(envelope.payload.value);
        } catch (err) {
          this.logger.warn({ err }, 'undecodable connector reply dropped');
        }
      },
      { noAck: true },
    );
  }
}
