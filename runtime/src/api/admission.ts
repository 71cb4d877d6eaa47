// Back-pressure for SubmitOrder: past a bound on the engine's backlog, new orders are refused with
// Unavailable and a retry delay (google.rpc.RetryInfo in the details, `retry-after` in the
// metadata) instead of queueing without limit. The decision is pure; the refusal is built here too.
import { create, createFileRegistry, type DescMessage } from '@bufbuild/protobuf';
import {
  DurationSchema,
  FieldDescriptorProto_Label,
  FieldDescriptorProto_Type,
  type FileDescriptorProto,
  FileDescriptorProtoSchema,
  file_google_protobuf_duration,
} from '@bufbuild/protobuf/wkt';
import { Code, ConnectError } from '@connectrpc/connect';

/** What the engine says about its load; read once per SubmitOrder. */
export interface AdmissionSignal {
  /** Work waiting for the engine (engine.backlog(): orders not yet started, work in flight, due timers). */
  backlog: number;
  /** How fast the backlog shrinks when nothing new arrives, if the engine knows; sizes the retry delay. */
  drainPerSecond?: number;
}

export type AdmissionDecision = { accept: true } | { accept: false; retryAfterMs: number };

/**
 * Default bound on the engine backlog; O2C_API_MAX_BACKLOG overrides it. 2,000 orders not yet
 * started are about 4 s of work for an engine at issue 11's aim (500 orders/s) and about 30 s at the
 * 63 orders/s bench-workflow measured on 2 busy cores: past that, a new order would wait longer to
 * start than a client retrying after a second or two. A 1,000-order burst passes untouched.
 */
export const DEFAULT_MAX_BACKLOG = 2_000;
export const MAX_BACKLOG_ENV = 'O2C_API_MAX_BACKLOG';
/** Without a drain rate, each multiple of the bound in the backlog asks for this much more wait. */
export const RETRY_PER_BOUND_MS = 1_000;
export const MIN_RETRY_MS = 250;
export const MAX_RETRY_MS = 30_000;
/** Retry delays are spread by up to this fraction so refused clients do not return all at once. */
export const RETRY_JITTER = 0.2;

/**
 * Accept while the backlog is below the bound. Past it, the delay is the time the engine needs to
 * work the backlog back under the bound at its drain rate, or (no rate known) one RETRY_PER_BOUND_MS
 * per multiple of the bound; kept within [MIN_RETRY_MS, MAX_RETRY_MS] and spread by up to
 * RETRY_JITTER (`random` in [0, 1)).
 */
export function admit(input: {
  backlog: number;
  bound: number;
  drainPerSecond?: number;
  random?: () => number;
}): AdmissionDecision {
  const { backlog, bound } = input;
  if (!(backlog >= bound)) return { accept: true };
  const excess = backlog - bound + 1;
  const base =
    input.drainPerSecond && input.drainPerSecond > 0
      ? (excess / input.drainPerSecond) * 1000
      : Math.ceil(backlog / Math.max(1, bound)) * RETRY_PER_BOUND_MS;
  const clamped = Math.min(MAX_RETRY_MS, Math.max(MIN_RETRY_MS, base));
  const jitter = 1 + RETRY_JITTER * (input.random ?? Math.random)();
  return { accept: false, retryAfterMs: Math.ceil(Math.min(MAX_RETRY_MS, clamped * jitter)) };
}

export class AdmissionConfigError extends Error {}

/** The bound from O2C_API_MAX_BACKLOG (a positive integer), else DEFAULT_MAX_BACKLOG. */
export function maxBacklogFromEnv(env: Record<string, string | undefined>): number {
  const raw = env[MAX_BACKLOG_ENV]?.trim();
  if (!raw) return DEFAULT_MAX_BACKLOG;
  if (!/^[0-9]+$/.test(raw) || Number(raw) < 1 || !Number.isSafeInteger(Number(raw)))
    throw new AdmissionConfigError(`${MAX_BACKLOG_ENV}=${JSON.stringify(raw)}: must be a positive integer`);
  return Number(raw);
}

/**
 * google.rpc.RetryInfo (google/rpc/error_details.proto), the detail gRPC and Connect clients read a
 * retry delay from. Described here rather than generated: it is the one message of that file o2c uses.
 */
export const RetryInfoSchema: DescMessage = (() => {
  const file: FileDescriptorProto = create(FileDescriptorProtoSchema, {
    name: 'google/rpc/error_details.proto',
    package: 'google.rpc',
    dependency: ['google/protobuf/duration.proto'],
    syntax: 'proto3',
    messageType: [
      {
        name: 'RetryInfo',
        field: [
          {
            name: 'retry_delay',
            jsonName: 'retryDelay',
            number: 1,
            label: FieldDescriptorProto_Label.OPTIONAL,
            type: FieldDescriptorProto_Type.MESSAGE,
            typeName: '.google.protobuf.Duration',
          },
        ],
      },
    ],
  });
  const registry = createFileRegistry(file, (name) =>
    name === 'google/protobuf/duration.proto' ? file_google_protobuf_duration : undefined,
  );
  const desc = registry.getMessage('google.rpc.RetryInfo');
  if (!desc) throw new Error('google.rpc.RetryInfo did not build');
  return desc;
})();

/** The refusal a SubmitOrder gets while the engine is saturated. */
export function saturated(backlog: number, bound: number, retryAfterMs: number): ConnectError {
  const seconds = Math.max(1, Math.ceil(retryAfterMs / 1000));
  return new ConnectError(
    `the workflow engine is saturated (${backlog} waiting, bound ${bound}); the order was not accepted; retry after ${retryAfterMs} ms with the same idempotency key`,
    Code.Unavailable,
    { 'retry-after': String(seconds) },
    [
      {
        desc: RetryInfoSchema,
        value: {
          retryDelay: create(DurationSchema, {
            seconds: BigInt(Math.floor(retryAfterMs / 1000)),
            nanos: (retryAfterMs % 1000) * 1_000_000,
          }),
        },
      },
    ],
  );
}
