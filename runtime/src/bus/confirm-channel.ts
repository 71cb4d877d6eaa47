// A confirm channel with per-message promises: resolves on basic.ack, rejects on basic.nack
// (PublishNackedError), on basic.return of a mandatory message (UnroutableError, which RabbitMQ sends
// before the ack) and on channel loss (ConnectionLostError). Shared by the publisher, the consumer's
// retry/DLQ republishing and DLQ replay.
import type { ConfirmChannel, Message, Options } from 'amqplib';
import { ConnectionLostError, PublishNackedError, UnroutableError } from './errors.js';

interface Pending {
  exchange: string;
  routingKey: string;
  returned?: string;
}

export class TrackedConfirmChannel {
  private readonly pendingById = new Map<string, Pending[]>();
  private closed = false;
  private drainWaiters: (() => void)[] = [];
  private needsDrain = false;

  constructor(readonly channel: ConfirmChannel) {
    channel.on('return', (msg: Message) => this.onReturn(msg));
    channel.on('drain', () => {
      this.needsDrain = false;
      for (const w of this.drainWaiters.splice(0)) w();
    });
    channel.on('close', () => {
      this.closed = true;
      this.needsDrain = false;
      for (const w of this.drainWaiters.splice(0)) w();
    });
  }

  get isClosed(): boolean {
    return this.closed;
  }

  /** True while the socket buffer is full: wait for `waitForDrain` before writing more. */
  get saturated(): boolean {
    return this.needsDrain;
  }

  waitForDrain(): Promise<void> {
    if (!this.needsDrain || this.closed) return Promise.resolve();
    return new Promise((resolve) => this.drainWaiters.push(resolve));
  }

  /** Publishes and resolves when the broker confirmed. `options.messageId` is required. */
  publish(exchange: string, routingKey: string, content: Buffer, options: Options.Publish): Promise<void> {
    const messageId = options.messageId;
    if (!messageId) return Promise.reject(new Error('publish needs a messageId'));
    if (this.closed) return Promise.reject(new ConnectionLostError('channel closed before publish'));
    const pending: Pending = { exchange, routingKey };
    const list = this.pendingById.get(messageId);
    if (list) list.push(pending);
    else this.pendingById.set(messageId, [pending]);
    return new Promise<void>((resolve, reject) => {
      const settle = (err: unknown) => {
        this.forget(messageId, pending);
        if (pending.returned !== undefined) {
          reject(new UnroutableError(exchange, routingKey, messageId, pending.returned));
        } else if (!err) {
          resolve();
        } else if ((err as Error).message === 'message nacked') {
          reject(new PublishNackedError(messageId));
        } else {
          reject(new ConnectionLostError(`broker did not confirm ${messageId}: ${(err as Error).message}`));
        }
      };
      try {
        const ok = this.channel.publish(exchange, routingKey, content, options, settle);
        if (!ok) this.needsDrain = true;
      } catch (err) {
        this.forget(messageId, pending);
        // amqplib throws IllegalOperationError when the channel is already closing
        reject(this.closed ? new ConnectionLostError((err as Error).message) : err);
      }
    });
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.channel.close().catch(() => {});
  }

  private onReturn(msg: Message): void {
    const id = msg.properties.messageId as string | undefined;
    if (!id) return;
    const first = this.pendingById.get(id)?.find((p) => p.returned === undefined);
    const fields = msg.fields as { replyCode?: number; replyText?: string };
    if (first) first.returned = `${fields.replyCode ?? 312} ${fields.replyText ?? 'NO_ROUTE'}`;
  }

  private forget(messageId: string, pending: Pending): void {
    const list = this.pendingById.get(messageId);
    if (!list) return;
    const i = list.indexOf(pending);
    if (i >= 0) list.splice(i, 1);
    if (list.length === 0) this.pendingById.delete(messageId);
  }
}
