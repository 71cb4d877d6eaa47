// A seeded fuzz run against a real order API process on PostgreSQL: thousands of generated requests
// (valid, hostile values, mutated and random bytes, broken framing, odd headers) over Connect JSON
// and binary (POST, GET, streaming), gRPC and gRPC-Web. Asserts that no answer is `unknown`, none is
// `internal` except where the gRPC spec demands it (a compressed flag without an encoding), no call
// is logged at error level, and the server's memory stays bounded. O2C_FUZZ_SEED replays a run.
import { gzipSync } from 'node:zlib';
import { create, type DescMessage, toBinary, toJsonString } from '@bufbuild/protobuf';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { OrderState } from '../../runtime/src/gen/o2c/v1/entities_pb.js';
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
import { type ApiProcess, startApiProcess } from './support/api-process.js';
import { envelope, PROTOCOLS, type Protocol, type RawRequest, RawRpcClient } from './support/raw-rpc.js';
import { freshDatabase } from './support/services.js';

const SEED = Number(process.env.O2C_FUZZ_SEED ?? 20_261_201);
const REQUESTS = Number(process.env.O2C_FUZZ_REQUESTS ?? 12_000);
const TIME_BUDGET_MS = 60_000;
const CONCURRENCY = 16;

/** mulberry32: small, fast, and the same sequence for the same seed. */
function prng(seed: number) {
  let a = seed >>> 0;
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const int = (n: number) => Math.floor(next() * n);
  return {
    next,
    int,
    pick: <T>(xs: readonly T[]): T => xs[int(xs.length)]!,
    chance: (p: number) => next() < p,
    bytes: (n: number) => Uint8Array.from({ length: n }, () => int(256)),
  };
}
type Rng = ReturnType<typeof prng>;

const HOSTILE_STRINGS = [
  '',
  'ACME',
  'AC\u0000ME',
  'line\nbreak',
  'tab\there',
  '\u0007bell',
  '\u0085next-line',
  'del\u007f',
  'Müller & Söhne',
  '🧾💸',
  '\ud800lone-surrogate',
  "'; DROP TABLE orders; --",
  '%s%n%x',
  '../../etc/passwd',
  'x'.repeat(65),
  'y'.repeat(300),
  ' leading-space',
];

function aString(r: Rng): string {
  return r.chance(0.7)
    ? r.pick(HOSTILE_STRINGS)
    : String.fromCharCode(...Array.from({ length: r.int(40) }, () => r.int(0x3000)));
}

function aMoney(r: Rng) {
  return {
    currencyCode: r.pick(['USD', 'EUR', 'usd', 'XXX', '', 'U\u0000D']),
    units: BigInt(r.pick([0, 1, 10, -1, -1_000_000, 1_000_000_000_001, 2 ** 40])),
    nanos: r.pick([0, 5, -5, 999_999_999, 1_000_000_000]),
  };
}

/** A structurally valid request with random, often hostile, field values. */
const MESSAGES: Record<string, { schema: DescMessage; make: (r: Rng) => object }> = {
  SubmitOrder: {
    schema: SubmitOrderRequestSchema,
    make: (r) => ({
      idempotencyKey: r.chance(0.8) ? `fuzz-${SEED}-${r.int(1e9)}` : aString(r),
      order: r.chance(0.95)
        ? {
            customerId: aString(r),
            currencyCode: r.pick(['USD', 'EUR', 'JPY', 'usd', 'ABC', '']),
            purchaseOrderNumber: r.chance(0.3) ? aString(r) : '',
            notes: r.chance(0.3) ? aString(r) : '',
            channel: r.chance(0.2) ? aString(r) : '',
            shipTo: r.chance(0.2)
              ? { name: aString(r), lines: [aString(r)], countryCode: r.pick(['US', 'us', 'X']) }
              : undefined,
            lines: Array.from({ length: r.pick([0, 1, 1, 2, 3, 501]) }, () => ({
              sku: aString(r),
              quantity: r.pick([0, 1, 2, 1_000_001, 4_294_967_295]),
              unitPrice: r.chance(0.6) ? aMoney(r) : undefined,
              description: r.chance(0.2) ? aString(r) : '',
            })),
          }
        : undefined,
    }),
  },
  GetOrder: { schema: GetOrderRequestSchema, make: (r) => ({ id: aString(r) }) },
  ListOrders: {
    schema: ListOrdersRequestSchema,
    make: (r) => ({
      pageSize: r.pick([0, 1, 50, 500, 501, -1]),
      pageToken: r.chance(0.3) ? aString(r) : '',
      states: r.chance(0.3) ? [r.pick([OrderState.SUBMITTED, OrderState.PAID, 99 as OrderState])] : [],
      customerId: r.chance(0.4) ? aString(r) : '',
      createdAfter: r.chance(0.2)
        ? { seconds: BigInt(r.pick([0, -62_135_596_801, 1e11, 1e15])), nanos: 0 }
        : undefined,
      createdBefore: r.chance(0.1)
        ? { seconds: BigInt(r.pick([1, 253_402_300_800, -1])), nanos: r.pick([0, -1, 2e9]) }
        : undefined,
    }),
  },
  CancelOrder: { schema: CancelOrderRequestSchema, make: (r) => ({ id: aString(r), reason: aString(r) }) },
  WatchOrder: { schema: WatchOrderRequestSchema, make: (r) => ({ id: aString(r) }) },
  GetOrderHistory: { schema: GetOrderHistoryRequestSchema, make: (r) => ({ id: aString(r) }) },
  ListExceptions: {
    schema: ListExceptionsRequestSchema,
    make: (r) => ({
      status: r.pick(['', 'open', 'all', 'bogus']),
      orderId: r.chance(0.3) ? aString(r) : '',
      step: r.chance(0.3) ? aString(r) : '',
      pageSize: r.pick([0, 10, 500, 501]),
    }),
  },
  RetryStep: { schema: RetryStepRequestSchema, make: (r) => ({ exceptionId: aString(r) }) },
  ResolveException: {
    schema: ResolveExceptionRequestSchema,
    make: (r) => ({ exceptionId: aString(r), resolution: aString(r), skipStep: r.chance(0.5) }),
  },
};
const METHODS = Object.keys(MESSAGES);
const NO_SIDE_EFFECTS = new Set(['GetOrder', 'ListOrders', 'GetOrderHistory', 'ListExceptions']);

function validBinary(r: Rng, method: string): Uint8Array {
  const { schema, make } = MESSAGES[method]!;
  return toBinary(schema, create(schema, make(r) as never));
}

/** Message bytes: valid, mutated, random, or one of the classic decoder killers. */
function messageBytes(r: Rng, method: string): { bytes: Uint8Array; kind: string } {
  const valid = validBinary(r, method);
  switch (r.int(9)) {
    case 0:
    case 1:
    case 2:
      return { bytes: valid, kind: 'valid' };
    case 3: {
      const b = Uint8Array.from(valid);
      for (let i = 0; i < 1 + r.int(4) && b.length > 0; i++) b[r.int(b.length)]! ^= 1 << r.int(8);
      return { bytes: b, kind: 'bit flips' };
    }
    case 4:
      return { bytes: valid.subarray(0, r.int(valid.length + 1)), kind: 'truncated' };
    case 5:
      return { bytes: Uint8Array.from([...valid, ...r.bytes(1 + r.int(16))]), kind: 'trailing garbage' };
    case 6:
      return { bytes: r.bytes(r.int(2048)), kind: 'random bytes' };
    case 7:
      return {
        bytes: r.pick([
          Uint8Array.from([0x08, ...new Array(10 + r.int(5)).fill(0xff), 0x01]),
          new Uint8Array(1_000 + r.int(100_000)).fill(0x7b),
          Uint8Array.from([0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f, 0x41]),
          Uint8Array.from([0x12, 0x80, 0x80, 0x80, 0x80, 0x10]),
        ]),
        kind: 'decoder killer',
      };
    default: {
      const at = r.int(valid.length + 1);
      return {
        bytes: Uint8Array.from([...valid.subarray(0, at), ...r.bytes(1 + r.int(8)), ...valid.subarray(at)]),
        kind: 'inserted bytes',
      };
    }
  }
}

function jsonBody(r: Rng, method: string): { bytes: Uint8Array; kind: string } {
  const { schema, make } = MESSAGES[method]!;
  const enc = new TextEncoder();
  switch (r.int(6)) {
    case 0:
    case 1:
    case 2:
      try {
        return {
          bytes: enc.encode(toJsonString(schema, create(schema, make(r) as never))),
          kind: 'valid json',
        };
      } catch {
        // Some generated values (a negative Timestamp nanos) have no JSON form: send binary as JSON.
        return { bytes: validBinary(r, method), kind: 'binary as json' };
      }
    case 3:
      return {
        bytes: enc.encode(
          r.pick([
            '{',
            '[]',
            'null',
            '{"id": 1}',
            '{"order": {"lines": [{"quantity": "-1"}]}}',
            '{"pageSize": 1e999}',
            `${'['.repeat(50_000)}${']'.repeat(50_000)}`,
            `{"unknownField": ${'{"a":'.repeat(2_000)}1${'}'.repeat(2_000)}}`,
          ]),
        ),
        kind: 'broken json',
      };
    case 4:
      return { bytes: r.bytes(r.int(512)), kind: 'random bytes as json' };
    default:
      return {
        bytes: Uint8Array.from([0x7b, 0x22, 0xc3, 0x28, 0x22, 0x3a, 0x31, 0x7d]),
        kind: 'invalid utf-8 json',
      };
  }
}

interface FuzzCase {
  req: RawRequest;
  kind: string;
  /** The gRPC spec makes this one Internal (doc/compression.md, test case 6). */
  specInternal: boolean;
}

function aCase(r: Rng): FuzzCase {
  const method = r.pick(METHODS);
  let protocol: Protocol = r.pick(PROTOCOLS);
  if (protocol === 'connect-get' && !NO_SIDE_EFFECTS.has(method)) protocol = 'connect-proto';
  const headers: Record<string, string> = {};
  if (r.chance(0.05)) headers['x-request-id'] = aString(r).replace(/[^\x20-\x7e]/g, '') || 'rid';
  if (r.chance(0.03))
    headers[protocol === 'grpc' || protocol === 'grpc-web' ? 'grpc-timeout' : 'connect-timeout-ms'] = r.pick([
      '-1',
      'abc',
      '99999999999',
      '1n',
      '0',
    ]);
  if (protocol === 'connect-json') {
    const { bytes, kind } = jsonBody(r, method);
    return { req: { protocol, method, body: bytes, headers }, kind, specInternal: false };
  }
  const { bytes, kind } = messageBytes(r, method);
  if (protocol === 'connect-get') {
    return { req: { protocol, method, body: bytes.subarray(0, 4_096), headers }, kind, specInternal: false };
  }
  if (protocol === 'connect-proto') {
    if (r.chance(0.1)) {
      headers['content-encoding'] = 'gzip';
      return {
        req: { protocol, method, body: r.chance(0.5) ? gzipSync(bytes) : bytes, headers },
        kind: `gzip ${kind}`,
        specInternal: false,
      };
    }
    return { req: { protocol, method, body: bytes, headers }, kind, specInternal: false };
  }
  // Enveloped protocols: framing mutations too.
  const encodingHeader = protocol === 'connect-stream' ? 'connect-content-encoding' : 'grpc-encoding';
  switch (r.int(8)) {
    case 0: // compressed flag, no encoding
      return {
        req: { protocol, method, body: envelope(bytes, 1), framed: true, headers },
        kind: 'compressed flag without encoding',
        specInternal: true,
      };
    case 1: // gzip, valid or garbage
      headers[encodingHeader] = 'gzip';
      return {
        req: {
          protocol,
          method,
          body: envelope(r.chance(0.5) ? gzipSync(bytes) : bytes, 1),
          framed: true,
          headers,
        },
        kind: `gzip frame ${kind}`,
        specInternal: false,
      };
    case 2: {
      // a length that lies
      const framed = envelope(bytes);
      new DataView(framed.buffer).setUint32(
        1,
        Math.max(0, bytes.length + r.pick([-3, -1, 1, 1000, 2 ** 31])),
      );
      return {
        req: { protocol, method, body: framed, framed: true, headers },
        kind: 'lying frame length',
        specInternal: false,
      };
    }
    case 3: // two messages for one, or none
      return {
        req: {
          protocol,
          method,
          body: r.chance(0.5) ? Uint8Array.from([...envelope(bytes), ...envelope(bytes)]) : new Uint8Array(0),
          framed: true,
          headers,
        },
        kind: 'wrong message count',
        specInternal: false,
      };
    case 4: // reserved or end-of-stream flags from a client
      return {
        req: {
          protocol,
          method,
          body: envelope(bytes, r.pick([0x02, 0x80, 0x40, 0x82])),
          framed: true,
          headers,
        },
        kind: 'odd frame flags',
        specInternal: false,
      };
    default:
      return { req: { protocol, method, body: bytes, headers }, kind, specInternal: false };
  }
}

describe('a fuzz run against the order API on PostgreSQL', () => {
  let api: ApiProcess;
  let raw: RawRpcClient;

  beforeAll(async () => {
    api = await startApiProcess(
      { O2C_STORE_URL: await freshDatabase('o2c_test_fuzz') },
      process.env.O2C_FUZZ_NODE_ARGS ? process.env.O2C_FUZZ_NODE_ARGS.split(' ') : [],
    );
    raw = new RawRpcClient(api.baseUrl);
  });
  afterAll(async () => {
    raw?.close();
    await api?.stop();
  });

  it(`answers ${REQUESTS} generated requests without unknown or internal, logs none as a server error, and keeps its memory bounded`, async () => {
    console.log(`fuzz seed ${SEED} (replay with O2C_FUZZ_SEED=${SEED}), ${REQUESTS} requests`);
    const r = prng(SEED);
    const cases = Array.from({ length: REQUESTS }, () => aCase(r));
    // Warm up so the baseline holds the loaded code, not an empty heap.
    for (const c of cases.slice(0, 50)) await raw.send(c.req);
    const before = api.rssMiB();
    let peak = before;
    const sampler = setInterval(() => {
      peak = Math.max(peak, api.rssMiB());
    }, 100);
    const codes = new Map<string, number>();
    const offenders: { kind: string; protocol: string; method: string; code: string; message: string }[] = [];
    const started = Date.now();
    let done = 0;
    const run = async (batch: FuzzCase[]) => {
      let next = 0;
      const worker = async () => {
        while (next < batch.length && Date.now() - started < TIME_BUDGET_MS) {
          const c = batch[next++]!;
          const res = await raw.send(c.req);
          done++;
          codes.set(res.code, (codes.get(res.code) ?? 0) + 1);
          const bad =
            res.code === 'unknown' ||
            (res.code === 'internal' && !c.specInternal) ||
            res.code.startsWith('transport:') ||
            res.code.startsWith('unparsable') ||
            /^http_5/.test(res.code) ||
            (res.code !== 'ok' && !res.requestId && !res.code.startsWith('http_'));
          if (bad)
            offenders.push({
              kind: c.kind,
              protocol: c.req.protocol,
              method: c.req.method,
              code: res.code,
              message: res.message,
            });
        }
      };
      await Promise.all(Array.from({ length: CONCURRENCY }, worker));
    };
    // In thirds: memory that is bounded stops growing; a leak grows in the last third as well.
    const third = Math.floor(cases.length / 3);
    await run(cases.slice(0, 2 * third));
    const middle = api.rssMiB();
    await run(cases.slice(2 * third));
    clearInterval(sampler);
    const seconds = (Date.now() - started) / 1000;
    await new Promise((resolve) => setTimeout(resolve, 200));
    const after = api.rssMiB();
    const summary = [...codes.entries()]
      .sort((a, b) => b[1] - a[1])
      .map(([c, n]) => `${c}=${n}`)
      .join(' ');
    console.log(
      `fuzz: ${done} requests in ${seconds.toFixed(1)} s; codes ${summary}; server RSS ${before.toFixed(0)} MiB before, ${middle.toFixed(0)} MiB at two thirds, ${after.toFixed(0)} MiB after, ${peak.toFixed(0)} MiB peak`,
    );
    if (process.env.O2C_FUZZ_DUMP) {
      const { writeFileSync } = await import('node:fs');
      writeFileSync(process.env.O2C_FUZZ_DUMP, JSON.stringify({ offenders, logs: api.logs }));
    }
    expect(offenders.slice(0, 20)).toEqual([]);
    expect(done).toBeGreaterThanOrEqual(Math.min(REQUESTS, 3_000));
    expect(api.logs.filter((l) => (l.level as number) >= 50).slice(0, 5)).toEqual([]);
    // The first two thirds grow the heap and native pools (zlib, nghttp2, malloc arenas) to their
    // working size; the last third must not add to it, and the whole stays far from a pod's limit.
    expect(after - middle).toBeLessThan(48);
    expect(peak).toBeLessThan(512);
    // Still serves a plain order afterwards.
    const res = await fetch(`${api.baseUrl}/o2c.v1.OrderService/SubmitOrder`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        idempotencyKey: `after-fuzz-${SEED}`,
        order: { customerId: 'ACME', currencyCode: 'USD', lines: [{ sku: 'W-1', quantity: 1 }] },
      }),
    });
    expect(res.status).toBe(200);
  }, 150_000);
});
