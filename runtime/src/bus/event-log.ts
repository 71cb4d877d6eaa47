// The event log: every domain event published to o2c.events (routing key
// `<namespace>.<kind>.<name>.<type>`) is also appended to the RabbitMQ stream `o2c.events.log`, kept
// by age and size, so a consumer can be rebuilt from an offset or a point in time. Connector replies
// are not logged (EVENT_LOG_BINDING_KEYS, addressing.ts). Read over AMQP 0-9-1 with the
// `x-stream-offset` consumer argument.
import { fromBinary } from '@bufbuild/protobuf';
import type { ChannelModel, ConsumeMessage } from 'amqplib';
import { type Envelope, EnvelopeSchema } from '../gen/o2c/v1/events_pb.js';
import { EVENT_LOG_BINDING_KEYS, RETIRED_EVENT_LOG_BINDING_KEYS } from './addressing.js';
import type { BusConnection } from './connection.js';
import { declareTopology, EVENTS_EXCHANGE, withChannel } from './topology.js';

export const EVENT_LOG_STREAM = 'o2c.events.log';

export interface EventLogRetention {
  /** Stream x-max-age, e.g. '7D', '24h'. Whole segments older than this are dropped. */
  maxAge: string;
  /** Stream x-max-length-bytes. */
  maxLengthBytes: number;
  /** Stream x-stream-max-segment-size-bytes: retention drops whole segments of this size. */
  maxSegmentSizeBytes: number;
}

export const DEFAULT_EVENT_LOG_RETENTION: EventLogRetention = {
  maxAge: '7D',
  maxLengthBytes: 20 * 1024 ** 3,
  maxSegmentSizeBytes: 100 * 1024 ** 2,
};

/**
 * Declares the stream, binds it to o2c.events for the domain events and removes the bindings earlier
 * versions declared (`#`, which also logged every reply), so an upgraded broker converges; unbinding
 * an absent binding is a no-op in RabbitMQ. Retention is part of the declaration, so a differing
 * existing stream raises TopologyConflictError (change it with a policy instead).
 */
export async function declareEventLog(
  target: BusConnection | ChannelModel,
  retention: EventLogRetention = DEFAULT_EVENT_LOG_RETENTION,
): Promise<void> {
  const plan = {
    exchanges: [{ name: EVENTS_EXCHANGE, type: 'topic' }],
    queues: [
      {
        name: EVENT_LOG_STREAM,
        arguments: {
          'x-queue-type': 'stream',
          'x-max-age': retention.maxAge,
          'x-max-length-bytes': retention.maxLengthBytes,
          'x-stream-max-segment-size-bytes': retention.maxSegmentSizeBytes,
        },
      },
    ],
    queueBindings: EVENT_LOG_BINDING_KEYS.map((routingKey) => ({
      queue: EVENT_LOG_STREAM,
      exchange: EVENTS_EXCHANGE,
      routingKey,
    })),
    exchangeBindings: [],
  };
  const declare = async (model: ChannelModel) => {
    await declareTopology(model, plan);
    await withChannel(model, async (ch) => {
      for (const key of RETIRED_EVENT_LOG_BINDING_KEYS)
        await ch.unbindQueue(EVENT_LOG_STREAM, EVENTS_EXCHANGE, key);
    });
  };
  if ('declareWith' in target) {
    await target.declareWith(`topology:${EVENT_LOG_STREAM}`, declare);
  } else {
    await declare(target);
  }
}

/** Where to start reading: the stream's start or end, an offset, or a point in time. */
export type StreamStart = 'first' | 'last' | 'next' | { offset: number } | { since: Date };

export interface EventLogRecord {
  offset: number;
  routingKey: string;
  messageId: string;
  type: string;
  /** AMQP timestamp (second precision) or the Envelope time. */
  time: Date | undefined;
  body: Buffer;
  envelope?: Envelope;
  decodeError?: string;
}

export interface ReadEventLogOptions {
  from: StreamStart;
  /** Stop at the first record newer than this; default: when reading started. */
  until?: Date;
  /** Stop when nothing arrived for this long (the end of the stream). Default 1,000 ms. */
  idleMs?: number;
  limit?: number;
  /** Only records whose type is in this list. */
  types?: string[];
  /** Stream credit; default 500. */
  prefetch?: number;
}

/** Parses `--since`: '15m' / '2h' / '3d' ago, an ISO-8601 time, 'offset:N', 'first' or 'last'. */
export function parseStreamStart(text: string, now: Date = new Date()): StreamStart {
  if (text === 'first' || text === 'last' || text === 'next') return text;
  const offset = /^offset:(\d+)$/.exec(text);
  if (offset) return { offset: Number(offset[1]) };
  const ago = /^(\d+)(s|m|h|d)$/.exec(text);
  if (ago) {
    const unit = { s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 }[ago[2] as 's' | 'm' | 'h' | 'd'];
    return { since: new Date(now.getTime() - Number(ago[1]) * unit) };
  }
  const at = new Date(text);
  if (Number.isNaN(at.getTime())) {
    throw new Error(
      `cannot read '${text}' as a start: use 15m, 2h, 3d, an ISO-8601 time, offset:N, first or last`,
    );
  }
  return { since: at };
}

function offsetArgument(from: StreamStart): unknown {
  if (typeof from === 'string') return from;
  if ('offset' in from) return from.offset;
  // Stream timestamps have second precision and start at a chunk boundary: start a second early and
  // drop the older records client-side.
  return { '!': 'timestamp', value: Math.floor(from.since.getTime() / 1000) - 1 };
}

/** Reads the event log from `from` until the end (idle) or `until`, oldest first. */
export async function* readEventLog(
  target: BusConnection | ChannelModel,
  options: ReadEventLogOptions,
): AsyncGenerator<EventLogRecord> {
  const until = options.until ?? new Date();
  const idleMs = options.idleMs ?? 1_000;
  const since = typeof options.from === 'object' && 'since' in options.from ? options.from.since : undefined;
  const channel = await target.createChannel();
  channel.on('error', () => {});
  const buffer: ConsumeMessage[] = [];
  let wake: (() => void) | undefined;
  let ended = false;
  channel.on('close', () => {
    ended = true;
    wake?.();
  });
  try {
    await channel.prefetch(options.prefetch ?? 500); // streams require a prefetch
    await channel.consume(
      EVENT_LOG_STREAM,
      (msg) => {
        if (msg === null) ended = true;
        else buffer.push(msg);
        wake?.();
      },
      { noAck: false, arguments: { 'x-stream-offset': offsetArgument(options.from) } },
    );
    let yielded = 0;
    for (;;) {
      if (buffer.length === 0) {
        if (ended) return;
        const arrived = await new Promise<boolean>((resolve) => {
          const timer = setTimeout(() => resolve(false), idleMs);
          wake = () => {
            clearTimeout(timer);
            resolve(true);
          };
        });
        wake = undefined;
        if (!arrived && buffer.length === 0) return;
        continue;
      }
      const msg = buffer.shift()!;
      channel.ack(msg); // credit for the next chunk; streams keep the data regardless
      const record = toRecord(msg);
      if (since && record.time && record.time < since) continue;
      if (record.time && record.time > until) return;
      if (options.types && !options.types.includes(record.type)) continue;
      yield record;
      if (options.limit !== undefined && ++yielded >= options.limit) return;
    }
  } finally {
    await channel.close().catch(() => {});
  }
}

function toRecord(msg: ConsumeMessage): EventLogRecord {
  const p = msg.properties;
  const record: EventLogRecord = {
    offset: Number(p.headers?.['x-stream-offset'] ?? -1),
    routingKey: msg.fields.routingKey,
    messageId: String(p.messageId ?? ''),
    type: String(p.type ?? ''),
    time: typeof p.timestamp === 'number' ? new Date(p.timestamp * 1000) : undefined,
    body: msg.content,
  };
  try {
    record.envelope = fromBinary(EnvelopeSchema, msg.content);
    const t = record.envelope.time;
    if (t) record.time = new Date(Number(t.seconds) * 1000 + Math.floor(t.nanos / 1e6));
    if (!record.type) record.type = record.envelope.type;
  } catch (err) {
    record.decodeError = (err as Error).message;
  }
  return record;
}
