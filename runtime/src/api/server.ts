// Serves the order API with connect-node on one port (HTTP/1.1 and cleartext HTTP/2; Connect, gRPC
// and gRPC-Web), and health and metrics on a second port.
import { createServer as createHttpServer, type Server as HttpServer } from 'node:http';
import { createServer as createHttp2Server, type Http2Server } from 'node:http2';
import {
  type AddressInfo,
  createServer as createNetServer,
  type Server as NetServer,
  type Socket,
} from 'node:net';
import type { ConnectRouter, Interceptor } from '@connectrpc/connect';
import { connectNodeAdapter } from '@connectrpc/connect-node';
import type { Registry } from 'prom-client';
import type { Logger } from '../observability/logger.js';
import { createApiMetrics } from '../observability/metrics.js';
import { bearerAuthInterceptor, TokenFile } from './auth.js';
import { observeInterceptor } from './interceptors.js';

export interface ApiServerOptions {
  host: string;
  port: number;
  routes: (router: ConnectRouter) => void;
  logger: Logger;
  registry: Registry;
  /** A file of bearer tokens; without one, authentication is off. */
  tokensFile?: string;
}

export interface RunningServer {
  port: number;
  close(): Promise<void>;
}

function listen(server: HttpServer | Http2Server | NetServer, host: string, port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve((server.address() as AddressInfo).port);
    });
  });
}

const HTTP2_PREFACE = Buffer.from('PRI * HTTP/2.0');

/**
 * Node's cleartext HTTP/2 server speaks only HTTP/2, so one listening socket looks at the first
 * bytes of each connection: the HTTP/2 preface goes to the HTTP/2 server (gRPC, Connect over h2c),
 * anything else to an HTTP/1.1 server (curl, Connect and gRPC-Web over HTTP/1.1).
 */
export async function startApiServer(options: ApiServerOptions): Promise<RunningServer> {
  const interceptors: Interceptor[] = [
    observeInterceptor(options.logger, createApiMetrics(options.registry)),
  ];
  if (options.tokensFile) interceptors.push(bearerAuthInterceptor(new TokenFile(options.tokensFile)));
  const handler = connectNodeAdapter({ routes: options.routes, interceptors });
  const h2 = createHttp2Server(handler);
  const h1 = createHttpServer(handler);
  h1.keepAliveTimeout = 65_000;
  const sockets = new Set<Socket>();
  const front = createNetServer((socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
    socket.once('readable', () => {
      const head: Buffer | null = socket.read();
      if (head === null) {
        socket.destroy();
        return;
      }
      socket.unshift(head);
      const isHttp2 = head
        .subarray(0, HTTP2_PREFACE.length)
        .equals(HTTP2_PREFACE.subarray(0, Math.min(head.length, HTTP2_PREFACE.length)));
      (isHttp2 ? h2 : h1).emit('connection', socket);
    });
  });
  const port = await listen(front, options.host, options.port);
  return {
    port,
    close: () =>
      new Promise<void>((resolve) => {
        front.close(() => resolve());
        h1.closeIdleConnections();
        h2.close();
        setTimeout(() => {
          for (const s of sockets) s.destroy();
          resolve();
        }, 1000).unref();
      }),
  };
}

export interface HealthServerOptions {
  host: string;
  port: number;
  registry: Registry;
  /** Resolves with a reason when the process is not ready to serve. */
  readiness: () => Promise<string | undefined>;
}

export async function startHealthServer(options: HealthServerOptions): Promise<RunningServer> {
  const server = createHttpServer(async (req, res) => {
    try {
      if (req.url === '/healthz') {
        res.writeHead(200, { 'content-type': 'text/plain' }).end('ok\n');
      } else if (req.url === '/readyz') {
        const reason = await options.readiness();
        res
          .writeHead(reason ? 503 : 200, { 'content-type': 'text/plain' })
          .end(reason ? `${reason}\n` : 'ready\n');
      } else if (req.url === '/metrics') {
        const body = await options.registry.metrics();
        res.writeHead(200, { 'content-type': options.registry.contentType }).end(body);
      } else {
        res.writeHead(404).end();
      }
    } catch (err) {
      res.writeHead(500).end(String(err));
    }
  });
  const port = await listen(server, options.host, options.port);
  return {
    port,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
