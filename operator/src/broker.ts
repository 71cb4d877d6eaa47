// The RabbitMQ topology a resource needs (its queues, their dead-letter queues, their bindings),
// behind a small interface so the operator does not depend on the broker client. Implemented with
// amqplib for now; the runtime bus module owns the message flow on these queues.
import { type Channel, type ChannelModel, connect } from 'amqplib';
import {
  COMMANDS_EXCHANGE,
  dlqName as deadLetterQueueName,
  EVENTS_EXCHANGE,
  kindOf,
  queueName,
} from '../../runtime/src/bus/addressing.js';
import {
  declareTopology,
  deleteQueueTopology,
  planQueueTopology,
  type QueueSpec,
} from '../../runtime/src/bus/topology.js';

// Names and exchanges come from the runtime's addressing module: the operator declares what the pods use.
export { COMMANDS_EXCHANGE, deadLetterQueueName, EVENTS_EXCHANGE, kindOf, queueName };

export interface TopologyBinding {
  exchange: typeof EVENTS_EXCHANGE | typeof COMMANDS_EXCHANGE;
  routingKey: string;
}

export interface TopologyPurpose {
  /** Short name of what the queue is for, e.g. commands, sync, events. */
  purpose: string;
  bindings: TopologyBinding[];
  /** Ordered: consistent-hash partitions `<queue>.p0..` behind the exchange `<queue>.ordering`. */
  partitions?: number;
}

/** A purpose to delete; `partitions` covers the ordered layout the queue may have had. */
export interface DeletablePurpose {
  purpose: string;
  partitions?: number;
}

export interface ResourceBroker {
  /** Declares exchanges, the queue and dead-letter queue per purpose, and bindings. Returns the queue names. */
  declareResourceTopology(
    namespace: string,
    kind: string,
    name: string,
    purposes: TopologyPurpose[],
  ): Promise<string[]>;
  /**
   * Deletes the queues, their dead-letter queues and, for ordered purposes, the partition queues and
   * the ordering exchange; what is already gone counts as deleted.
   */
  deleteResourceTopology(
    namespace: string,
    kind: string,
    name: string,
    purposes: readonly DeletablePurpose[],
  ): Promise<void>;
  close(): Promise<void>;
}

const NO_RETRY = { maxAttempts: 1, backoff: { initialMs: 0, maxMs: 0, multiplier: 1 } };

/** A broker that accepts TCP but never finishes the handshake (app stopped) must not hang a reconcile. */
export const BROKER_TIMEOUT_MS = 10_000;

export class AmqpResourceBroker implements ResourceBroker {
  private connection: Promise<ChannelModel> | undefined;
  /** A few channels: the broker handles one channel's methods in order, so queues declare in parallel. */
  private readonly channels: Array<Promise<Channel> | undefined>;
  private next = 0;

  constructor(
    private readonly url: string,
    channels = 4,
  ) {
    this.channels = new Array(channels).fill(undefined);
  }

  private async openChannel(): Promise<Channel> {
    if (!this.connection) {
      this.connection = connect(this.url, { timeout: 5000 }).then((conn) => {
        conn.on('error', () => {});
        conn.on('close', () => {
          this.connection = undefined;
          this.channels.fill(undefined);
        });
        return conn;
      });
      this.connection.catch(() => {
        this.connection = undefined;
      });
    }
    const slot = this.next++ % this.channels.length;
    let channel = this.channels[slot];
    if (!channel) {
      channel = this.connection.then(async (conn) => {
        const ch = await conn.createChannel();
        ch.on('error', () => {});
        ch.on('close', () => {
          if (this.channels[slot] === channel) this.channels[slot] = undefined;
        });
        await ch.assertExchange(EVENTS_EXCHANGE, 'topic', { durable: true });
        await ch.assertExchange(COMMANDS_EXCHANGE, 'direct', { durable: true });
        return ch;
      });
      this.channels[slot] = channel;
      channel.catch(() => {
        if (this.channels[slot] === channel) this.channels[slot] = undefined;
      });
    }
    return channel;
  }

  private async bounded<T>(what: string, work: () => Promise<T>): Promise<T> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        // Start over with a fresh connection next time.
        void this.close();
        reject(new Error(`${what}: RabbitMQ did not answer within ${BROKER_TIMEOUT_MS} ms`));
      }, BROKER_TIMEOUT_MS);
    });
    try {
      return await Promise.race([work(), timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  declareResourceTopology(
    namespace: string,
    kind: string,
    name: string,
    purposes: TopologyPurpose[],
  ): Promise<string[]> {
    return this.bounded('declare queues', () => this.declare(namespace, kind, name, purposes));
  }

  deleteResourceTopology(
    namespace: string,
    kind: string,
    name: string,
    purposes: readonly DeletablePurpose[],
  ): Promise<void> {
    return this.bounded('delete queues', () => this.delete(namespace, kind, name, purposes));
  }

  private async declare(
    namespace: string,
    kind: string,
    name: string,
    purposes: TopologyPurpose[],
  ): Promise<string[]> {
    const ch = await this.openChannel();
    const queues: string[] = [];
    for (const { purpose, bindings, partitions } of purposes) {
      const queue = queueName(namespace, kindOf(kind), name, purpose);
      // Exactly the arguments the runtime's bus declares (quorum, delivery limit, at-least-once
      // dead-lettering to the DLQ): a queue declared twice with different arguments is refused.
      // Delay tiers are shared and declared by the consumers that use them.
      await declareTopology(
        ch,
        planQueueTopology({
          name: queue,
          bindings,
          retry: NO_RETRY,
          ...(partitions ? { ordering: { partitions } } : {}),
        }),
      );
      queues.push(queue);
    }
    return queues;
  }

  private async delete(
    namespace: string,
    kind: string,
    name: string,
    purposes: readonly DeletablePurpose[],
  ): Promise<void> {
    await this.openChannel();
    const conn = await this.connection!;
    for (const { purpose, partitions } of purposes) {
      // The kind is in the name: a Pipeline's deletion never touches a same-named Workflow's queues.
      const base: QueueSpec = {
        name: queueName(namespace, kindOf(kind), name, purpose),
        bindings: [],
        retry: NO_RETRY,
      };
      // The plain layout, and the ordered one it may have had (partitions and the ordering exchange):
      // the runtime's bus removes each entity on its own channel, a 404 counting as gone.
      await deleteQueueTopology(conn, base);
      if (partitions) await deleteQueueTopology(conn, { ...base, ordering: { partitions } });
    }
  }

  async close(): Promise<void> {
    const conn = this.connection;
    this.connection = undefined;
    this.channels.fill(undefined);
    if (conn) await (await conn.catch(() => undefined))?.close().catch(() => {});
  }
}
