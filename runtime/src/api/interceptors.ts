// Per-request id, structured access log and Prometheus figures for every RPC.
import { randomUUID } from 'node:crypto';
import { Code, ConnectError, type Interceptor } from '@connectrpc/connect';
import type { Logger } from '../observability/logger.js';
import type { ApiMetrics } from '../observability/metrics.js';

function codeName(code: Code): string {
  return Code[code]?.replace(/^./, (c) => c.toLowerCase()) ?? 'unknown';
}

export function observeInterceptor(logger: Logger, metrics: ApiMetrics): Interceptor {
  return (next) => async (req) => {
    const requestId = req.header.get('x-request-id') || randomUUID();
    const method = req.method.name;
    const started = process.hrtime.bigint();
    const finish = (code: string, err?: unknown) => {
      const seconds = Number(process.hrtime.bigint() - started) / 1e9;
      metrics.requests.inc({ method, code });
      metrics.duration.observe({ method }, seconds);
      const entry = { requestId, method, code, ms: Math.round(seconds * 1e4) / 10 };
      if (err && code === 'internal') logger.error({ ...entry, err }, 'request failed');
      else logger.debug(entry, 'request');
    };
    try {
      const res = await next(req);
      res.header.set('x-request-id', requestId);
      finish('ok');
      return res;
    } catch (err) {
      const connectErr = ConnectError.from(err);
      connectErr.metadata.set('x-request-id', requestId);
      finish(codeName(connectErr.code), err);
      throw connectErr;
    }
  };
}
