// /healthz, /readyz and /metrics of every role on the health port. Kept apart from the order API
// (server.ts) so that roles without one do not load connect-es and protovalidate at start-up.
import { createServer as createHttpServer, type Server as HttpServer } from 'node:http';
import type { Http2Server } from 'node:http2';
import type { AddressInfo, Server as NetServer } from 'node:net';
import type { Registry } from 'prom-client';
import { healthAddressFromEnv } from './limits.js';

export interface RunningServer {
  /** The address it listens on, e.g. 127.0.0.1. */
  address: string;
  port: number;
  close(): Promise<void>;
}

export function listen(
  server: HttpServer | Http2Server | NetServer,
  host: string,
  port: number,
): Promise<AddressInfo> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve(server.address() as AddressInfo);
    });
  });
}

export interface HealthServerOptions {
  /** Defaults to healthAddressFromEnv (limits.ts): O2C_HEALTH_ADDRESS, the pod's address, or loopback. */
  host?: string;
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
    } catch {
      res.writeHead(500).end('health check failed\n');
    }
  });
  server.headersTimeout = 10_000;
  server.requestTimeout = 10_000;
  const { address, port } = await listen(
    server,
    options.host ?? healthAddressFromEnv(process.env),
    options.port,
  );
  return {
    address,
    port,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
