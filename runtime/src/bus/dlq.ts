// Dead-letter queue operations behind `o2c dlq list|show|replay|purge`. Messages are browsed with
// basic.get and left unacknowledged, so closing the channel puts back whatever was not replayed or
// purged. Replay republishes to the queue the message failed in, with attempts reset, and acks the
// DLQ copy after the broker confirmed; a crash in between duplicates, which the inbox absorbs.
import { fromBinary, type JsonValue, toJson } from '@bufbuild/protobuf';
import type { Channel, ChannelModel, GetMessage, Message, Options } from 'amqplib';
import { EnvelopeSchema } from '../gen/o2c/v1/events_pb.js';
import { TrackedConfirmChannel } from './confirm-channel.js';
import type { BusConnection } from './connection.js';
import { PoisonMessageError } from './errors.js';
import { dlqName, ORDERING_HEADER } from './topology.js';

/** Headers on messages in retry tiers and in the DLQ. */
export const FailureHeader = {
  reason: 'x-o2c-reason',
  errorClass: 'x-o2c-error-class',
  error: 'x-o2c-error',
  attempts: 'x-o2c-attempts',
  firstFailure: 'x-o2c-first-failure',
  lastFailure: 'x-o2c-last-failure',
  originalQueue: 'x-o2c-original-queue',
} as const;

/**
 * Why a message is in a DLQ: its attempts ran out, its handler failed for good, or it is poison (no
 * handler can ever take it: undecodable, an unknown type, a payload that is not its type).
 */
export type DeadLetterReason = 'max-attempts' | 'permanent' | 'poison';

const FAILURE_ERROR_MAX = 1_000;

/** The DLQ reason of a handler's permanent failure. */
export function deadLetterReasonOf(error: Error): Exclude<DeadLetterReason, 'max-attempts'> {
  return error instanceof PoisonMessageError ? 'poison' : 'permanent';
}

/** The failure headers after attempt `attempt` failed; broker dead-letter history is dropped. */
export function failureHeaders(
  previous: Record<string, unknown>,
  queue: string,
  error: Error,
  attempt: number,
  nowMs: number,
): Record<string, unknown> {
  const headers: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(previous)) {
    if (k === 'x-death' || k.startsWith('x-first-death-') || k.startsWith('x-last-death-')) continue;
    headers[k] = v;
  }
  const now = new Date(nowMs).toISOString();
  headers[FailureHeader.attempts] = attempt;
  headers[FailureHeader.errorClass] = error.name || error.constructor.name;
  headers[FailureHeader.error] = error.message.slice(0, FAILURE_ERROR_MAX);
  headers[FailureHeader.firstFailure] = previous[FailureHeader.firstFailure] ?? now;
  headers[FailureHeader.lastFailure] = now;
  headers[FailureHeader.originalQueue] = queue;
  return headers;
}

/** The headers of a message parked in a DLQ: the failure headers plus the reason. */
export function deadLetterHeaders(
  previous: Record<string, unknown>,
  queue: string,
  reason: DeadLetterReason,
  error: Error,
  attempts: number,
  nowMs: number,
): Record<string, unknown> {
  return { ...failureHeaders(previous, queue, error, attempts, nowMs), [FailureHeader.reason]: reason };
}

/** Publish options that keep a consumed message's properties, with new headers. */
export function copiedProperties(
  msg: Message,
  headers: Record<string, unknown>,
  fallbackMessageId: string,
): Options.Publish {
  const p = msg.properties;
  return {
    persistent: true,
    mandatory: true,
    contentType: p.contentType,
    messageId: p.messageId ?? fallbackMessageId,
    type: p.type,
    correlationId: p.correlationId,
    timestamp: p.timestamp,
    headers,
  };
}

/**
 * Copies a consumed message into `dlq` with the reason headers and resolves when the broker
 * confirmed; the caller acks the original after that. A message without message_id gets one, so
 * `o2c dlq show` can name it.
 */
export async function parkInDlq(
  channel: TrackedConfirmChannel,
  msg: Message,
  park: {
    queue: string;
    dlq: string;
    reason: DeadLetterReason;
    error: Error;
    attempts: number;
    headers?: Record<string, unknown>;
    nowMs: number;
  },
): Promise<void> {
  const headers = deadLetterHeaders(
    park.headers ?? msg.properties.headers ?? {},
    park.queue,
    park.reason,
    park.error,
    park.attempts,
    park.nowMs,
  );
  const fallbackId = `${park.queue}:${msg.fields.deliveryTag}:${park.nowMs}`;
  await channel.publish('', park.dlq, msg.content, copiedProperties(msg, headers, fallbackId));
}

export interface DlqEntry {
  messageId: string;
  type: string;
  correlationId: string;
  orderingKey: string;
  /** max-attempts | permanent | poison, or the broker's reason (e.g. delivery_limit). */
  reason: string;
  errorClass: string;
  error: string;
  attempts: number;
  firstFailure: string;
  lastFailure: string;
  originalQueue: string;
  sizeBytes: number;
  headers: Record<string, unknown>;
}

export interface DlqFilter {
  type?: string;
  orderingKey?: string;
  messageId?: string;
}

export interface DlqMessage {
  entry: DlqEntry;
  /** The decoded Envelope as protobuf JSON; undefined when the body does not decode. */
  envelope?: JsonValue;
  decodeError?: string;
  /** The first bytes of a body that does not decode, in hex, to see what arrived. */
  bodyPreview?: string;
}

/** How many bytes of an undecodable body `showDlq` quotes. */
const BODY_PREVIEW_BYTES = 64;

type Target = BusConnection | ChannelModel;

/** Accepts a work queue name or its DLQ name. */
export function toDlqName(queue: string): string {
  return queue.endsWith('.dlq') ? queue : dlqName(queue);
}

/** The first `limit` messages of the DLQ, oldest first; nothing is removed. */
export async function listDlq(
  target: Target,
  queue: string,
  options: { limit?: number } & DlqFilter = {},
): Promise<DlqEntry[]> {
  const dlq = toDlqName(queue);
  const limit = options.limit ?? 100;
  const entries: DlqEntry[] = [];
  await browse(target, dlq, async (msg) => {
    const entry = describe(msg, dlq);
    if (matches(entry, options)) entries.push(entry);
    return entries.length >= limit ? 'stop' : 'keep';
  });
  return entries;
}

/** One DLQ message with its decoded Envelope. */
export async function showDlq(
  target: Target,
  queue: string,
  messageId: string,
): Promise<DlqMessage | undefined> {
  const dlq = toDlqName(queue);
  let found: DlqMessage | undefined;
  await browse(target, dlq, async (msg) => {
    if (msg.properties.messageId !== messageId) return 'keep';
    const entry = describe(msg, dlq);
    try {
      found = { entry, envelope: toJson(EnvelopeSchema, fromBinary(EnvelopeSchema, msg.content)) };
    } catch (err) {
      const preview = msg.content
        .subarray(0, BODY_PREVIEW_BYTES)
        .toString('hex')
        .replace(/(..)(?!$)/g, '$1 ');
      found = {
        entry,
        decodeError: (err as Error).message,
        bodyPreview: msg.content.length > BODY_PREVIEW_BYTES ? `${preview} …` : preview,
      };
    }
    return 'stop';
  });
  return found;
}

/**
 * Moves matching DLQ messages back to the queue they failed in, attempts reset; the others stay.
 * Returns the replayed entries.
 */
export async function replayDlq(
  target: Target,
  queue: string,
  options: { limit?: number } & DlqFilter = {},
): Promise<DlqEntry[]> {
  const dlq = toDlqName(queue);
  const limit = options.limit ?? Number.POSITIVE_INFINITY;
  const replayed: DlqEntry[] = [];
  await browse(target, dlq, async (msg, channel) => {
    const entry = describe(msg, dlq);
    if (!matches(entry, options)) return 'keep';
    const p = msg.properties;
    await channel.publish('', entry.originalQueue, msg.content, {
      persistent: true,
      mandatory: true,
      contentType: p.contentType,
      messageId: p.messageId,
      type: p.type,
      correlationId: p.correlationId,
      timestamp: p.timestamp,
      headers: replayHeaders(p.headers ?? {}),
    });
    channel.channel.ack(msg);
    replayed.push(entry);
    return replayed.length >= limit ? 'stop' : 'keep';
  });
  return replayed;
}

/** Removes matching DLQ messages (all when no filter is given); returns how many. */
export async function purgeDlq(target: Target, queue: string, filter: DlqFilter = {}): Promise<number> {
  const dlq = toDlqName(queue);
  if (!filter.type && !filter.orderingKey && !filter.messageId) {
    const ch = await openChannel(target);
    try {
      return (await ch.channel.purgeQueue(dlq)).messageCount;
    } finally {
      await ch.close();
    }
  }
  let purged = 0;
  await browse(target, dlq, async (msg, channel) => {
    if (!matches(describe(msg, dlq), filter)) return 'keep';
    channel.channel.ack(msg);
    purged++;
    return 'keep';
  });
  return purged;
}

export function describe(msg: GetMessage, dlq: string): DlqEntry {
  const h = (msg.properties.headers ?? {}) as Record<string, unknown>;
  const str = (v: unknown) =>
    v === undefined || v === null ? '' : Buffer.isBuffer(v) ? v.toString() : String(v);
  let orderingKey = '';
  try {
    orderingKey = fromBinary(EnvelopeSchema, msg.content).orderingKey;
  } catch {
    // undecodable: fall back to the header
  }
  return {
    messageId: str(msg.properties.messageId),
    type: str(msg.properties.type),
    correlationId: str(msg.properties.correlationId),
    orderingKey: orderingKey || str(h[ORDERING_HEADER]),
    reason: str(h[FailureHeader.reason] ?? h['x-first-death-reason']),
    errorClass: str(h[FailureHeader.errorClass]),
    error: str(h[FailureHeader.error]),
    attempts: Number(h[FailureHeader.attempts] ?? 0),
    firstFailure: str(h[FailureHeader.firstFailure]),
    lastFailure: str(h[FailureHeader.lastFailure]),
    originalQueue:
      str(h[FailureHeader.originalQueue] ?? h['x-first-death-queue']) || dlq.replace(/\.dlq$/, ''),
    sizeBytes: msg.content.length,
    headers: h,
  };
}

function matches(entry: DlqEntry, f: DlqFilter): boolean {
  return (
    (!f.type || entry.type === f.type) &&
    (!f.orderingKey || entry.orderingKey === f.orderingKey) &&
    (!f.messageId || entry.messageId === f.messageId)
  );
}

/** Headers for a replayed message: failure history and attempts removed, a replay count added. */
function replayHeaders(previous: Record<string, unknown>): Record<string, unknown> {
  const headers: Record<string, unknown> = {};
  const failure = new Set<string>(Object.values(FailureHeader));
  for (const [k, v] of Object.entries(previous)) {
    if (failure.has(k) || k === 'x-death' || k.startsWith('x-first-death-') || k.startsWith('x-last-death-'))
      continue;
    headers[k] = v;
  }
  headers['x-o2c-replays'] = Number(previous['x-o2c-replays'] ?? 0) + 1;
  headers['x-o2c-replayed-at'] = new Date().toISOString();
  return headers;
}

async function openChannel(target: Target): Promise<TrackedConfirmChannel> {
  const raw = await target.createConfirmChannel();
  raw.on('error', () => {}); // surfaced through the rejected operation
  return new TrackedConfirmChannel(raw);
}

/**
 * Gets messages one by one until the queue is empty or `visit` says stop; whatever `visit` did not
 * ack goes back to the queue when the channel closes. Counting first bounds the walk, so messages
 * that are put back or arrive meanwhile are not visited twice.
 */
async function browse(
  target: Target,
  queue: string,
  visit: (msg: GetMessage, channel: TrackedConfirmChannel) => Promise<'keep' | 'stop'>,
): Promise<void> {
  const channel = await openChannel(target);
  try {
    const raw: Channel = channel.channel;
    const messageCount = await settledMessageCount(raw, queue);
    for (let i = 0; i < messageCount; i++) {
      const msg = await raw.get(queue, { noAck: false });
      if (msg === false) break;
      if ((await visit(msg, channel)) === 'stop') break;
    }
  } finally {
    await channel.close();
  }
}

/**
 * The ready count once it stops changing: a quorum queue returns the messages of a browser that just
 * closed its channel (a `list` right before a `show`) a moment after the close, not with it.
 */
async function settledMessageCount(raw: Channel, queue: string): Promise<number> {
  let count = (await raw.checkQueue(queue)).messageCount;
  for (let i = 0; i < 10; i++) {
    await new Promise((r) => setTimeout(r, 30));
    const again = (await raw.checkQueue(queue)).messageCount;
    if (again === count) return count;
    count = again;
  }
  return count;
}
