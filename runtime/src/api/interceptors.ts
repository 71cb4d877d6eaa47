// Per-request id, one structured log line and Prometheus figures for every RPC, and the one place
// where what a handler threw becomes what the client sees (errors.ts).
import { randomUUID } from 'node:crypto';
import {
  Code,
  type ConnectError,
  createContextKey,
  type Interceptor,
  type StreamResponse,
} from '@connectrpc/connect';
import type { Logger } from '../observability/logger.js';
import type { ApiMetrics } from '../observability/metrics.js';
import { handlerFailure, isClientFault } from './errors.js';
import { PRINTABLE_TOKEN } from './validation.js';

/** What the HTTP adapter knows about a call; the interceptor marks it observed. */
export interface CallRecord {
  requestId: string;
  /** Set once the interceptor saw the call: it then logs and counts it, the adapter does not. */
  observed: boolean;
}

export const callKey = createContextKey<CallRecord | undefined>(undefined, {
  description: 'o2c call record',
});

/** The client's X-Request-Id when it is a sane token (no spaces, no control bytes), else a new id. */
export function requestIdFrom(header: string | string[] | null | undefined): string {
  const value = Array.isArray(header) ? header[0] : header;
  return value && PRINTABLE_TOKEN.test(value) ? value : randomUUID();
}

export function codeName(code: Code): string {
  return (
    Code[code]?.replace(/[A-Z]/g, (c, i: number) => (i === 0 ? c.toLowerCase() : `_${c.toLowerCase()}`)) ??
    'unknown'
  );
}

export interface CallObserver {
  logger: Logger;
  metrics: ApiMetrics;
}

export interface CallOutcome {
  /** Result code as a metric label: `ok`, a Connect code name, or `http_<status>`. */
  code: string;
  /** debug for success, warn for the caller's faults, error for the server's. */
  level: 'debug' | 'warn' | 'error';
  /** What the client was told. */
  reason?: string;
  /** The original error, logged with its stack at error level. */
  err?: unknown;
}

export const OK: CallOutcome = { code: 'ok', level: 'debug' };

/**
 * The outcome of a call that failed with `error`; `expected` false (a defect or an outage) logs the
 * original error at error level, anything else (a refusal the API meant to give) at warn.
 */
export function failedOutcome(
  error: ConnectError,
  expected: boolean = isClientFault(error),
  cause?: unknown,
): CallOutcome {
  return {
    code: codeName(error.code),
    level: expected ? 'warn' : 'error',
    reason: error.rawMessage,
    err: expected ? undefined : (cause ?? error),
  };
}

/** Logs and counts one finished call. */
export function recordCall(
  o: CallObserver,
  call: { requestId: string; method: string; started: bigint },
  outcome: CallOutcome,
): void {
  const seconds = Number(process.hrtime.bigint() - call.started) / 1e9;
  o.metrics.requests.inc({ method: call.method, code: outcome.code });
  o.metrics.duration.observe({ method: call.method }, seconds);
  const entry = {
    requestId: call.requestId,
    method: call.method,
    code: outcome.code,
    ms: Math.round(seconds * 1e4) / 10,
  };
  if (outcome.level === 'debug') o.logger.debug(entry, 'request');
  else if (outcome.level === 'warn')
    o.logger.warn({ ...entry, reason: clip(outcome.reason) }, 'request refused');
  else o.logger.error({ ...entry, reason: clip(outcome.reason), err: outcome.err }, 'request failed');
}

/** A hostile request must not make a log line as large as itself. */
export function clip(text: string | undefined, max = 500): string | undefined {
  return text && text.length > max ? `${text.slice(0, max)}…` : text;
}

export function observeInterceptor(logger: Logger, metrics: ApiMetrics): Interceptor {
  const o = { logger, metrics };
  return (next) => async (req) => {
    const record = req.contextValues.get(callKey) ?? {
      requestId: requestIdFrom(req.header.get('x-request-id')),
      observed: false,
    };
    record.observed = true;
    const call = { requestId: record.requestId, method: req.method.name, started: process.hrtime.bigint() };
    const fail = (err: unknown): ConnectError => {
      const failure = handlerFailure(err, call);
      failure.error.metadata.set('x-request-id', call.requestId);
      recordCall(o, call, failedOutcome(failure.error, failure.expected, err));
      return failure.error;
    };
    let res: Awaited<ReturnType<typeof next>>;
    try {
      res = await next(req);
    } catch (err) {
      throw fail(err);
    }
    res.header.set('x-request-id', call.requestId);
    if (!res.stream) {
      recordCall(o, call, OK);
      return res;
    }
    // A stream fails while it is read, after next() resolved: map and count it there.
    const source = res.message;
    const message = (async function* () {
      let finished = false;
      try {
        yield* source;
        finished = true;
        recordCall(o, call, OK);
      } catch (err) {
        finished = true;
        throw fail(err);
      } finally {
        if (!finished) recordCall(o, call, { code: 'canceled', level: 'debug' });
      }
    })();
    return { ...res, message } as StreamResponse<typeof res.method.input, typeof res.method.output>;
  };
}
