// The order API against hostile callers: undecodable bodies on every method and protocol, bodies
// over the size limit, silent, slow and idle connections, too many streams and connections, huge
// headers. A real server in its own process on PostgreSQL, so its memory and logs are its own.
import { once } from 'node:events';
import { request as httpRequest } from 'node:http';
import { connect as http2Connect } from 'node:http2';
import { connect as netConnect, type Socket } from 'node:net';
import { create, toBinary } from '@bufbuild/protobuf';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  CancelOrderRequestSchema,
  GetOrderHistoryRequestSchema,
  GetOrderRequestSchema,
  ListExceptionsRequestSchema,
  ListOrdersRequestSchema,
  ResolveExceptionRequestSchema,
  RetryStepRequestSchema,
  SubmitOrderRequestSchema,
  WatchOrderRequestSchema,
} from '../../runtime/src/gen/o2c/v1/order_service_pb.js';
import { createLogger } from '../../runtime/src/observability/logger.js';
import { createRegistry } from '../../runtime/src/observability/metrics.js';
import { startWorkflowRole } from '../../runtime/src/roles/workflow.js';
import { type ApiProcess, startApiProcess } from './support/api-process.js';
import { envelope, type Protocol, RawRpcClient } from './support/raw-rpc.js';
import { freshDatabase } from './support/services.js';

const LIMITS = {
  O2C_API_MAX_REQUEST_BYTES: String(1024 * 1024),
  O2C_API_HEADERS_TIMEOUT_MS: '1000',
  O2C_API_REQUEST_TIMEOUT_MS: '3000',
  O2C_API_IDLE_TIMEOUT_MS: '2000',
  O2C_API_MAX_STREAMS_PER_CONNECTION: '8',
  O2C_API_MAX_CONNECTIONS: '64',
  O2C_API_MAX_HEADER_BYTES: String(16 * 1024),
};

const anOrder = {
  customerId: 'ACME',
  currencyCode: 'USD',
  lines: [{ sku: 'WIDGET-1', quantity: 2, unitPrice: { currencyCode: 'USD', units: 10n } }],
};

/** A valid request per method, as binary. */
const VALID: Record<string, Uint8Array> = {
  SubmitOrder: toBinary(
    SubmitOrderRequestSchema,
    create(SubmitOrderRequestSchema, { idempotencyKey: 'hostile-1', order: anOrder }),
  ),
  GetOrder: toBinary(GetOrderRequestSchema, create(GetOrderRequestSchema, { id: 'ord_missing' })),
  ListOrders: toBinary(ListOrdersRequestSchema, create(ListOrdersRequestSchema, { pageSize: 5 })),
  CancelOrder: toBinary(CancelOrderRequestSchema, create(CancelOrderRequestSchema, { id: 'ord_missing' })),
  GetOrderHistory: toBinary(
    GetOrderHistoryRequestSchema,
    create(GetOrderHistoryRequestSchema, { id: 'ord_x' }),
  ),
  ListExceptions: toBinary(ListExceptionsRequestSchema, create(ListExceptionsRequestSchema, {})),
  RetryStep: toBinary(RetryStepRequestSchema, create(RetryStepRequestSchema, { exceptionId: 'exc_x' })),
  ResolveException: toBinary(
    ResolveExceptionRequestSchema,
    create(ResolveExceptionRequestSchema, { exceptionId: 'exc_x' }),
  ),
  WatchOrder: toBinary(WatchOrderRequestSchema, create(WatchOrderRequestSchema, { id: 'ord_missing' })),
};
const UNARY = Object.keys(VALID).filter((m) => m !== 'WatchOrder');
const NO_SIDE_EFFECTS = new Set(['GetOrder', 'ListOrders', 'GetOrderHistory', 'ListExceptions']);

/** Bodies no decoder accepts. */
const UNDECODABLE: Record<string, (method: string) => Uint8Array> = {
  'random bytes': () => Uint8Array.from([0x0f, 0xde, 0xad, 0xbe, 0xef, 0x99, 0x01]),
  'a valid message followed by trailing garbage': (m) => Uint8Array.from([...VALID[m]!, 0xff]),
  'an over-long varint': () => Uint8Array.from([0x08, ...new Array(11).fill(0xff), 0x01]),
  '100k nested start-groups': () => new Uint8Array(100_000).fill(0x7b),
};

function protocolsFor(method: string): Protocol[] {
  if (method === 'WatchOrder') return ['connect-stream', 'grpc', 'grpc-web'];
  return ['connect-proto', 'grpc', 'grpc-web'];
}

const cases = Object.keys(VALID).flatMap((method) =>
  protocolsFor(method).flatMap((protocol) =>
    Object.keys(UNDECODABLE).map((kind) => ({ method, protocol, kind })),
  ),
);

function closedWithin(socket: Socket, ms: number): Promise<number> {
  const started = Date.now();
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`socket still open after ${ms} ms`)), ms);
    socket.once('close', () => {
      clearTimeout(timer);
      resolve(Date.now() - started);
    });
  });
}

function openSocket(port: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = netConnect(port, '127.0.0.1', () => resolve(s));
    s.on('error', reject);
  });
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('the order API against hostile requests', () => {
  let api: ApiProcess;
  let raw: RawRpcClient;

  beforeAll(async () => {
    api = await startApiProcess({ O2C_STORE_URL: await freshDatabase('o2c_test_hostile'), ...LIMITS });
    raw = new RawRpcClient(api.baseUrl);
  });
  afterAll(async () => {
    raw?.close();
    await api?.stop();
  });

  describe('undecodable bodies', () => {
    it.each(cases)('$kind to $method over $protocol is InvalidArgument with a request id', async (c) => {
      const result = await raw.send({
        protocol: c.protocol,
        method: c.method,
        body: UNDECODABLE[c.kind]!(c.method),
      });
      expect(result.code, result.message).toBe('invalid_argument');
      expect(result.message).toMatch(/^parse binary: /);
      expect(result.requestId).toMatch(/^[0-9a-f-]{36}$/);
    });

    it.each(UNARY.filter((m) => NO_SIDE_EFFECTS.has(m)))(
      'an undecodable Connect GET message to %s is InvalidArgument',
      async (method) => {
        const result = await raw.send({
          protocol: 'connect-get',
          method,
          body: UNDECODABLE['random bytes']!(method),
        });
        expect(result.code).toBe('invalid_argument');
      },
    );

    it.each<Protocol>(['grpc', 'grpc-web'])(
      'a compressed frame without grpc-encoding over %s is Internal, as gRPC requires, and logged as the caller’s fault',
      async (protocol) => {
        const requestId = `compressed-flag-${protocol}`;
        const result = await raw.send({
          protocol,
          method: 'GetOrder',
          body: envelope(VALID.GetOrder!, 1),
          framed: true,
          headers: { 'x-request-id': requestId },
        });
        // gRPC doc/compression.md, test case 6: "MUST fail with INTERNAL status".
        expect(result.code).toBe('internal');
        expect(result.message).toMatch(/compressed/);
        await sleep(50);
        const line = api.logs.find((l) => l.requestId === requestId);
        expect(line?.level).toBe(40);
      },
    );

    it('a compressed Connect stream frame without connect-content-encoding is Internal too', async () => {
      const result = await raw.send({
        protocol: 'connect-stream',
        method: 'WatchOrder',
        body: envelope(VALID.WatchOrder!, 1),
        framed: true,
      });
      expect(result.code).toBe('internal');
    });

    it.each<Protocol>(['grpc', 'grpc-web'])('corrupt gzip over %s is InvalidArgument', async (protocol) => {
      const result = await raw.send({
        protocol,
        method: 'GetOrder',
        body: envelope(Uint8Array.from([0x1f, 0x8b, 8, 0, 1, 2, 3]), 1),
        framed: true,
        headers: { 'grpc-encoding': 'gzip' },
      });
      expect(result.code).toBe('invalid_argument');
    });

    it('a Connect body with an encoding the server lacks is Unimplemented', async () => {
      const result = await raw.send({
        protocol: 'connect-proto',
        method: 'GetOrder',
        body: VALID.GetOrder!,
        headers: { 'content-encoding': 'zstd' },
      });
      expect(result.code).toBe('unimplemented');
    });

    it('an incomplete gRPC frame is InvalidArgument', async () => {
      const result = await raw.send({
        protocol: 'grpc',
        method: 'GetOrder',
        body: envelope(VALID.GetOrder!).subarray(0, 8),
        framed: true,
      });
      expect(result.code).toBe('invalid_argument');
    });

    it('logs every refusal at warn with its request id, none at error, and counts them', async () => {
      const requestId = 'hostile-trace-1';
      const result = await raw.send({
        protocol: 'connect-proto',
        method: 'ListOrders',
        body: UNDECODABLE['an over-long varint']!('ListOrders'),
        headers: { 'x-request-id': requestId },
      });
      expect(result.requestId).toBe(requestId);
      await sleep(50);
      const line = api.logs.find((l) => l.requestId === requestId);
      expect(line).toMatchObject({ level: 40, method: 'ListOrders', code: 'invalid_argument' });
      expect(api.logs.filter((l) => (l.level as number) >= 50)).toEqual([]);
      expect(api.logs.filter((l) => l.level === 40 && !l.requestId)).toEqual([]);
      const metrics = await (await fetch(`http://127.0.0.1:${api.healthPort}/metrics`)).text();
      expect(metrics).toMatch(/o2c_api_requests_total\{method="ListOrders",code="invalid_argument"\} [1-9]/);
    });

    it('replaces a request id that is not a plain token', async () => {
      const result = await raw.send({
        protocol: 'connect-proto',
        method: 'GetOrder',
        body: VALID.GetOrder!,
        headers: { 'x-request-id': 'two words' },
      });
      expect(result.requestId).toMatch(/^[0-9a-f-]{36}$/);
    });
  });

  describe('request size', () => {
    it('refuses a 50 MB Connect body from its Content-Length before reading it', async () => {
      const socket = await openSocket(api.apiPort);
      const response: Buffer[] = [];
      socket.on('data', (d: Buffer) => response.push(d));
      const started = Date.now();
      socket.write(
        'POST /o2c.v1.OrderService/SubmitOrder HTTP/1.1\r\nHost: x\r\nContent-Type: application/proto\r\n' +
          `Content-Length: ${50 * 1024 * 1024}\r\n\r\n`,
      );
      socket.write(Buffer.alloc(1024));
      await closedWithin(socket, 5_000);
      const text = Buffer.concat(response).toString();
      expect(text).toMatch(/^HTTP\/1.1 429/);
      expect(text).toMatch(/resource_exhausted/);
      expect(text.toLowerCase()).toMatch(/connection: close/);
      expect(Date.now() - started).toBeLessThan(2_000);
    });

    it('stops reading a chunked body once it passes the limit', async () => {
      let sent = 0;
      const { status, body } = await new Promise<{ status: number; body: string }>((resolve, reject) => {
        const req = httpRequest(
          `${api.baseUrl}/o2c.v1.OrderService/SubmitOrder`,
          {
            method: 'POST',
            headers: { 'content-type': 'application/proto', 'transfer-encoding': 'chunked' },
          },
          (res) => {
            const chunks: Buffer[] = [];
            res.on('data', (c: Buffer) => chunks.push(c));
            res.on('end', () =>
              resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString() }),
            );
          },
        );
        req.on('error', reject);
        const chunk = Buffer.alloc(64 * 1024, 0x0a);
        const pump = () => {
          while (sent < 50 * 1024 * 1024 && !req.destroyed) {
            sent += chunk.byteLength;
            if (!req.write(chunk)) return void req.once('drain', pump);
          }
          req.end();
        };
        pump();
      }).catch((err: Error) => ({ status: 0, body: err.message }));
      if (status !== 0) {
        expect(status).toBe(429);
        expect(body).toMatch(/larger than configured readMaxBytes/);
      }
      // Refused well before the 50 MB were taken in (the rest stays in socket buffers, or is refused).
      expect(sent).toBeLessThan(50 * 1024 * 1024);
    });

    it('refuses a gRPC message declared over the limit from its frame header', async () => {
      const header = new Uint8Array(5);
      new DataView(header.buffer).setUint32(1, 50 * 1024 * 1024);
      const result = await raw.send({
        protocol: 'grpc',
        method: 'SubmitOrder',
        body: Uint8Array.from([...header, ...new Uint8Array(1024)]),
        framed: true,
      });
      expect(result.code).toBe('resource_exhausted');
    });

    it('keeps its memory flat while four 50 MB uploads arrive at once over HTTP/1.1 and HTTP/2', async () => {
      const before = api.rssMiB();
      let peak = before;
      const sampler = setInterval(() => {
        peak = Math.max(peak, api.rssMiB());
      }, 20);
      const total = 50 * 1024 * 1024;
      const chunk = Buffer.alloc(256 * 1024, 0x0a);
      const h1Upload = () =>
        new Promise<number>((resolve) => {
          const req = httpRequest(`${api.baseUrl}/o2c.v1.OrderService/SubmitOrder`, {
            method: 'POST',
            headers: { 'content-type': 'application/json', 'content-length': String(total) },
          });
          let status = 0;
          req.on('response', (res) => {
            status = res.statusCode ?? 0;
            res.resume();
            res.on('end', () => resolve(status));
          });
          req.on('error', () => resolve(status));
          let sent = 0;
          const pump = () => {
            while (sent < total && !req.destroyed) {
              sent += chunk.byteLength;
              if (!req.write(chunk)) return void req.once('drain', pump);
            }
            req.end();
          };
          pump();
        });
      const h2Upload = () =>
        new Promise<string>((resolve) => {
          const session = http2Connect(api.baseUrl);
          session.on('error', () => {});
          const stream = session.request({
            ':method': 'POST',
            ':path': '/o2c.v1.OrderService/SubmitOrder',
            'content-type': 'application/grpc',
            te: 'trailers',
          });
          let status = '';
          stream.on('response', (h) => {
            status = String(h['grpc-status'] ?? '');
          });
          stream.on('trailers', (t) => {
            status = String(t['grpc-status'] ?? status);
          });
          stream.on('data', () => {});
          stream.on('error', () => {});
          stream.on('close', () => {
            session.destroy();
            resolve(status);
          });
          const head = new Uint8Array(5);
          new DataView(head.buffer).setUint32(1, total - 5);
          stream.write(head);
          let sent = 5;
          const pump = () => {
            while (sent < total && !stream.destroyed && !stream.closed) {
              sent += chunk.byteLength;
              if (!stream.write(chunk)) return void stream.once('drain', pump);
            }
            if (!stream.destroyed) stream.end();
          };
          pump();
        });
      const results = await Promise.all([
        h1Upload(),
        h1Upload(),
        h1Upload(),
        h1Upload(),
        h2Upload(),
        h2Upload(),
      ]);
      clearInterval(sampler);
      // HTTP/1.1: 429 (resource_exhausted) or a reset once the server closed; gRPC: 8 (resource_exhausted).
      for (const status of results.slice(0, 4)) expect([0, 429]).toContain(status);
      for (const status of results.slice(4)) expect(status).toBe('8');
      console.log(
        `server RSS ${before.toFixed(0)} MiB before, peak ${peak.toFixed(0)} MiB during 6 x 50 MB uploads`,
      );
      expect(peak - before).toBeLessThan(64);
    });
  });

  describe('connections', () => {
    it('closes 50 connections that never send a byte after the headers timeout', async () => {
      const sockets = await Promise.all(Array.from({ length: 50 }, () => openSocket(api.apiPort)));
      const closedAfter = await Promise.all(sockets.map((s) => closedWithin(s, 5_000)));
      expect(Math.max(...closedAfter)).toBeLessThan(3_000);
    });

    it('cuts off HTTP/1.1 headers that trickle in (slowloris)', async () => {
      const socket = await openSocket(api.apiPort);
      socket.on('error', () => {});
      socket.write('POST /o2c.v1.OrderService/GetOrder HTTP/1.1\r\nHost: x\r\n');
      const trickle = setInterval(() => socket.writable && socket.write('X'), 100);
      const ms = await closedWithin(socket, 6_000).finally(() => clearInterval(trickle));
      expect(ms).toBeLessThan(4_000);
    });

    it('cuts off a body sent a byte at a time after the request timeout, over HTTP/1.1', async () => {
      const socket = await openSocket(api.apiPort);
      socket.on('error', () => {});
      socket.write(
        'POST /o2c.v1.OrderService/GetOrder HTTP/1.1\r\nHost: x\r\nContent-Type: application/proto\r\nContent-Length: 1000\r\n\r\n',
      );
      const drip = setInterval(() => socket.writable && socket.write(Buffer.from([0x0a])), 100);
      const ms = await closedWithin(socket, 8_000).finally(() => clearInterval(drip));
      expect(ms).toBeGreaterThan(2_000);
      expect(ms).toBeLessThan(6_000);
    });

    it('resets an HTTP/2 stream whose body trickles past the request timeout', async () => {
      const session = http2Connect(api.baseUrl);
      session.on('error', () => {});
      const stream = session.request({
        ':method': 'POST',
        ':path': '/o2c.v1.OrderService/GetOrder',
        'content-type': 'application/grpc',
        te: 'trailers',
      });
      stream.on('error', () => {});
      stream.on('data', () => {});
      const started = Date.now();
      stream.write(Uint8Array.from([0, 0, 0, 0, 100]));
      const drip = setInterval(() => !stream.closed && stream.write(Uint8Array.from([0x0a])), 100);
      await once(stream, 'close');
      clearInterval(drip);
      session.destroy();
      const ms = Date.now() - started;
      expect(ms).toBeGreaterThan(2_000);
      expect(ms).toBeLessThan(6_000);
    });

    it('closes an idle keep-alive connection after the idle timeout', async () => {
      const socket = await openSocket(api.apiPort);
      socket.write(
        'GET /o2c.v1.OrderService/GetOrder?connect=v1&encoding=json&message=%7B%7D HTTP/1.1\r\nHost: x\r\n\r\n',
      );
      await once(socket, 'data');
      const ms = await closedWithin(socket, 6_000);
      expect(ms).toBeGreaterThan(1_000);
      expect(ms).toBeLessThan(4_500);
    });

    it('closes an idle HTTP/2 connection, but keeps a quiet WatchOrder stream open past the idle timeout', async () => {
      const idle = http2Connect(api.baseUrl);
      idle.on('error', () => {});
      await once(idle, 'remoteSettings');
      const started = Date.now();
      await once(idle, 'close');
      expect(Date.now() - started).toBeLessThan(4_500);

      const { order } = await submit('watch-quiet');
      const session = http2Connect(api.baseUrl);
      session.on('error', () => {});
      const stream = session.request({
        ':method': 'POST',
        ':path': '/o2c.v1.OrderService/WatchOrder',
        'content-type': 'application/grpc',
        te: 'trailers',
      });
      let messages = 0;
      stream.on('data', () => messages++);
      stream.on('error', () => {});
      stream.end(
        envelope(toBinary(WatchOrderRequestSchema, create(WatchOrderRequestSchema, { id: order.id }))),
      );
      await sleep(3_500);
      expect(messages).toBeGreaterThan(0);
      expect(stream.closed).toBe(false);
      expect(session.closed).toBe(false);
      session.destroy();
    });

    it('advertises and keeps to its stream limit per HTTP/2 connection', async () => {
      const { order } = await submit('watch-many');
      const session = http2Connect(api.baseUrl);
      session.on('error', () => {});
      await once(session, 'remoteSettings');
      expect(session.remoteSettings.maxConcurrentStreams).toBe(8);
      let started = 0;
      const body = envelope(
        toBinary(WatchOrderRequestSchema, create(WatchOrderRequestSchema, { id: order.id })),
      );
      for (let i = 0; i < 12; i++) {
        const stream = session.request({
          ':method': 'POST',
          ':path': '/o2c.v1.OrderService/WatchOrder',
          'content-type': 'application/grpc',
          te: 'trailers',
        });
        stream.once('data', () => started++);
        stream.on('error', () => {});
        stream.end(body);
      }
      await sleep(1_500);
      expect(started).toBe(8);
      session.destroy();
    });

    it('closes connections past the connection limit and serves again once they are gone', async () => {
      const sockets = await Promise.all(
        Array.from({ length: 74 }, () => openSocket(api.apiPort).catch(() => undefined)),
      );
      const open = sockets.filter((s): s is Socket => s !== undefined);
      let closed = 0;
      for (const s of open) s.once('close', () => closed++);
      await sleep(300);
      expect(closed + (sockets.length - open.length)).toBeGreaterThanOrEqual(10);
      for (const s of open) s.destroy();
      await sleep(100);
      const result = await raw.send({ protocol: 'connect-proto', method: 'GetOrder', body: VALID.GetOrder! });
      expect(result.code).toBe('not_found');
    });

    it('refuses oversized headers over HTTP/1.1 (431) and HTTP/2, and serves on', async () => {
      const big = 'x'.repeat(20 * 1024);
      const h1 = await fetch(`${api.baseUrl}/o2c.v1.OrderService/GetOrder`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'x-big': big },
        body: '{}',
      }).then(
        (r) => r.status,
        () => 0,
      );
      expect([0, 431]).toContain(h1);
      const h2 = await raw.send({
        protocol: 'grpc',
        method: 'GetOrder',
        body: VALID.GetOrder!,
        headers: { 'x-big': big },
      });
      expect(h2.code).toBe('http_431');
      const after = await raw.send({ protocol: 'grpc', method: 'GetOrder', body: VALID.GetOrder! });
      expect(after.code).toBe('not_found');
    });
  });

  async function submit(key: string) {
    const res = await fetch(`${api.baseUrl}/o2c.v1.OrderService/SubmitOrder`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        idempotencyKey: key,
        order: { customerId: 'ACME', currencyCode: 'USD', lines: [{ sku: 'W-1', quantity: 1 }] },
      }),
    });
    expect(res.status).toBe(200);
    return (await res.json()) as { order: { id: string } };
  }
});

describe('the health and metrics port', () => {
  it('listens on loopback unless O2C_HEALTH_ADDRESS says otherwise', async () => {
    const start = () =>
      startWorkflowRole({
        storeUrl: 'sqlite::memory:',
        host: '127.0.0.1',
        apiPort: 0,
        healthPort: 0,
        source: 'o2c/test/workflow/health-bind',
        logger: createLogger('test', 'warn'),
        registry: createRegistry(false),
      });
    const byDefault = await start();
    expect(byDefault.health?.address).toBe('127.0.0.1');
    await byDefault.stop();
    process.env.O2C_HEALTH_ADDRESS = '127.0.0.2';
    try {
      const configured = await start();
      expect(configured.health?.address).toBe('127.0.0.2');
      expect((await fetch(`http://127.0.0.2:${configured.health?.port}/healthz`)).status).toBe(200);
      await configured.stop();
    } finally {
      delete process.env.O2C_HEALTH_ADDRESS;
    }
  });
});
