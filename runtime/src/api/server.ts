// Serves the order API with connect-node on one port (HTTP/1.1 and cleartext HTTP/2; Connect, gRPC
// and gRPC-Web). Health and metrics are on a second port (health.ts).
import { createServer as createHttpServer } from 'node:http';
import { createServer as createHttp2Server, type Http2Server, type ServerHttp2Session } from 'node:http2';
import { createServer as createNetServer, type Socket } from 'node:net';
import type { ConnectRouter, Interceptor } from '@connectrpc/connect';
import type { Registry } from 'prom-client';
import type { Logger } from '../observability/logger.js';
import { createApiMetrics } from '../observability/metrics.js';
import { createApiHandler } from './adapter.js';
import { bearerAuthInterceptor, TokenFile } from './auth.js';
import { listen, type RunningServer } from './health.js';
import { observeInterceptor } from './interceptors.js';
import { type ApiLimits, apiLimitsFromEnv } from './limits.js';

export interface ApiServerOptions {
  host: string;
  port: number;
  routes: (router: ConnectRouter) => void;
  logger: Logger;
  registry: Registry;
  /** A file of bearer tokens; without one, authentication is off. */
  tokensFile?: string;
  /** What one caller may cost; defaults to the O2C_API_* environment (limits.ts). */
  limits?: ApiLimits;
}

const HTTP2_PREFACE = Buffer.from('PRI * HTTP/2.0');

/**
 * Closes an HTTP/2 connection that has had no open stream for `idleMs`. Node's session timeout
 * counts frames, so a quiet WatchOrder stream would trip it: only a session without streams goes.
 */
function closeIdleSessions(h2: Http2Server, idleMs: number): void {
  h2.on('session', (session: ServerHttp2Session) => {
    let open = 0;
    session.on('stream', (stream) => {
      open++;
      stream.once('close', () => {
        open--;
      });
    });
    session.setTimeout(idleMs, () => {
      if (open === 0) session.close();
    });
  });
}

/**
 * Node's cleartext HTTP/2 server speaks only HTTP/2, so one listening socket looks at the first
 * bytes of each connection: the HTTP/2 preface goes to the HTTP/2 server (gRPC, Connect over h2c),
 * anything else to an HTTP/1.1 server (curl, Connect and gRPC-Web over HTTP/1.1).
 */
export async function startApiServer(options: ApiServerOptions): Promise<RunningServer> {
  const limits = options.limits ?? apiLimitsFromEnv(process.env);
  const metrics = createApiMetrics(options.registry);
  const interceptors: Interceptor[] = [observeInterceptor(options.logger, metrics)];
  if (options.tokensFile) interceptors.push(bearerAuthInterceptor(new TokenFile(options.tokensFile)));
  const handler = createApiHandler({
    routes: options.routes,
    interceptors,
    limits,
    logger: options.logger,
    metrics,
  });
  const h2 = createHttp2Server(
    {
      settings: {
        maxConcurrentStreams: limits.maxStreamsPerConnection,
        maxHeaderListSize: limits.maxHeaderBytes,
      },
      maxHeaderListPairs: 128,
      // Megabytes of nghttp2 buffers per connection before Node refuses new streams.
      maxSessionMemory: 10,
    },
    handler,
  );
  closeIdleSessions(h2, limits.idleTimeoutMs);
  const h1 = createHttpServer(
    {
      maxHeaderSize: limits.maxHeaderBytes,
      headersTimeout: limits.headersTimeoutMs,
      requestTimeout: limits.requestTimeoutMs,
      keepAliveTimeout: limits.idleTimeoutMs,
      connectionsCheckingInterval: Math.min(1_000, limits.headersTimeoutMs),
    },
    handler,
  );
  // Node checks headersTimeout and requestTimeout only for servers that emitted 'listening'; this
  // one never listens (the front socket hands it connections), so start its connection checks.
  h1.emit('listening');
  // Do not invite a body that will be refused: no 100 Continue past the size limit.
  h1.on('checkContinue', (req, res) => {
    if (Number(req.headers['content-length'] ?? 0) <= limits.maxRequestBytes) res.writeContinue();
    handler(req, res);
  });
  const sockets = new Set<Socket>();
  const front = createNetServer((socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
    // A connection that sends nothing is closed, not kept (the HTTP servers take over from here).
    socket.setTimeout(limits.headersTimeoutMs, () => socket.destroy());
    socket.once('readable', () => {
      const head: Buffer | null = socket.read();
      if (head === null) {
        socket.destroy();
        return;
      }
      socket.setTimeout(0);
      socket.unshift(head);
      const isHttp2 = head
        .subarray(0, HTTP2_PREFACE.length)
        .equals(HTTP2_PREFACE.subarray(0, Math.min(head.length, HTTP2_PREFACE.length)));
      (isHttp2 ? h2 : h1).emit('connection', socket);
    });
  });
  front.maxConnections = limits.maxConnections;
  const { address, port } = await listen(front, options.host, options.port);
  return {
    address,
    port,
    close: () =>
      new Promise<void>((resolve) => {
        front.close(() => resolve());
        h1.closeIdleConnections();
        h1.close();
        h2.close();
        setTimeout(() => {
          for (const s of sockets) s.destroy();
          resolve();
        }, 1000).unref();
      }),
  };
}
