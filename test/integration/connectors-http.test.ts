// The http driver and the governor against a local REST server that counts what reaches it: the
// rate limit and the concurrency cap hold under a burst; CEL mapping, auth and error classes; the
// inbound webhook verifies HMAC signatures.
import { createServer, type IncomingMessage, type Server } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { StaticCredentials } from '../../runtime/src/connectors/credentials.js';
import { type CallContext, ConnectorFailure } from '../../runtime/src/connectors/driver.js';
import { Governor } from '../../runtime/src/connectors/governor.js';
import { createHttpDriver, type HttpDriverConfig } from '../../runtime/src/connectors/http/driver.js';
import { signPayload, startWebhookReceiver } from '../../runtime/src/connectors/http/webhook.js';
import { formatDecimal } from '../../runtime/src/connectors/money.js';
import { ErrorClass } from '../../runtime/src/gen/o2c/v1/common_pb.js';

interface Seen {
  at: number;
  path: string;
  auth: string | undefined;
}

let server: Server;
let endpoint: string;
const seen: Seen[] = [];
let inFlight = 0;
let peakInFlight = 0;
let tokensIssued = 0;
let validToken = '';

async function readBody(req: IncomingMessage): Promise<string> {
  let s = '';
  for await (const c of req) s += c;
  return s;
}

beforeAll(async () => {
  server = createServer(async (req, res) => {
    const url = new URL(req.url ?? '/', 'http://x');
    const body = await readBody(req);
    const json = (status: number, v: unknown) => {
      res.writeHead(status, { 'Content-Type': 'application/json' });
      res.end(JSON.stringify(v));
    };
    if (url.pathname === '/oauth/token') {
      const form = new URLSearchParams(body);
      if (form.get('client_id') !== 'o2c' || form.get('client_secret') !== 's3cret')
        return json(401, { error: 'invalid_client' });
      validToken = `tok-${++tokensIssued}`;
      return json(200, { access_token: validToken, token_type: 'Bearer', expires_in: 3600 });
    }
    seen.push({ at: Date.now(), path: url.pathname, auth: req.headers.authorization });
    inFlight++;
    peakInFlight = Math.max(peakInFlight, inFlight);
    await new Promise((r) => setTimeout(r, 40));
    inFlight--;
    if (url.pathname.startsWith('/oauth-only') && req.headers.authorization !== `Bearer ${validToken}`) {
      return json(401, { message: 'token expired' });
    }
    if (url.pathname.startsWith('/credit/')) {
      const customer = url.pathname.split('/')[2];
      if (customer === 'blocked')
        return json(422, { code: 'CREDIT_HOLD', message: 'customer on credit hold' });
      if (customer === 'busy') {
        res.writeHead(429, { 'Retry-After': '1' });
        return res.end();
      }
      return json(200, { limit: 1000, open: 250, ok: true });
    }
    if (url.pathname === '/prices') {
      const req = JSON.parse(body) as { items: { sku: string; qty: number }[] };
      return json(200, {
        items: req.items.map((i) => ({
          sku: i.sku,
          qty: i.qty,
          unit: '2.50',
          total: (i.qty * 2.5).toFixed(2),
        })),
      });
    }
    json(200, {});
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const addr = server.address();
  endpoint = `http://127.0.0.1:${typeof addr === 'object' && addr ? addr.port : 0}`;
});

afterAll(() => new Promise<void>((r) => server.close(() => r())));

const ctx = (signal = AbortSignal.timeout(5000)): CallContext => ({
  signal,
  idempotencyKey: 'k',
  correlationId: 'c',
});

const config: HttpDriverConfig = {
  auth: { type: 'basic' },
  operations: {
    CheckCredit: {
      path: `'/credit/' + request.customerId`,
      response: `{"approved": response.ok, "creditLimit": {"currencyCode": "USD", "units": string(response.limit)},
                  "exposure": {"currencyCode": "USD", "units": string(response.open)}}`,
      errorClass: `status == 422 && response.code == "CREDIT_HOLD" ? "CREDIT" : ""`,
    },
    GetPrice: {
      method: 'POST',
      path: `'/prices'`,
      body: `{"items": request.lines.map(l, {"sku": l.sku, "qty": l.quantity})}`,
      response: `{"lines": response.items.map(i, {"sku": i.sku, "quantity": i.qty,
                  "lineTotal": money("USD", i.total)})}`,
    },
    ValidateCustomer: { path: `'/oauth-only/' + request.customerId`, response: `{"valid": true}` },
  },
};
const basic = new StaticCredentials({ username: 'svc', password: 'pw' });

describe('governor under a burst, counted at the server', () => {
  it('keeps requests per second and requests in flight within the limits', async () => {
    seen.length = 0;
    peakInFlight = 0;
    const governor = new Governor({ requestsPerSecond: 20, maxConcurrency: 3, timeoutMs: 5000 });
    const driver = createHttpDriver(endpoint, config, basic);
    const burst = Array.from({ length: 40 }, (_, i) =>
      governor.run(
        (signal) =>
          driver.checkCredit?.(
            { $typeName: 'o2c.v1.CheckCreditRequest', customerId: `c${i}`, orderId: '' },
            ctx(signal),
          ) ?? Promise.reject(),
      ),
    );
    await Promise.all(burst);
    expect(seen).toHaveLength(40);
    expect(peakInFlight).toBeLessThanOrEqual(3);
    // Any one-second window holds at most rate + burst (1) requests.
    const times = seen.map((s) => s.at).sort((a, b) => a - b);
    let worst = 0;
    for (let i = 0; i < times.length; i++) {
      const first = times[i] ?? 0;
      worst = Math.max(worst, times.filter((t) => t >= first && t < first + 1000).length);
    }
    expect(worst).toBeLessThanOrEqual(21);
    const seconds = ((times.at(-1) ?? 0) - (times[0] ?? 0)) / 1000;
    expect(seconds).toBeGreaterThanOrEqual(39 / 20 - 0.1);
  });
});

describe('http driver', () => {
  let driver: ReturnType<typeof createHttpDriver>;
  beforeAll(() => {
    driver = createHttpDriver(endpoint, config, basic);
  });

  it('maps the request and the response with CEL', async () => {
    const res = await driver.getPrice?.(
      {
        $typeName: 'o2c.v1.GetPriceRequest',
        customerId: 'c',
        currencyCode: 'USD',
        orderId: 'o',
        lines: [{ $typeName: 'o2c.v1.PriceRequestLine', sku: 'A', quantity: 3 }],
      },
      ctx(),
    );
    expect(res?.lines[0]?.sku).toBe('A');
    expect(formatDecimal(res?.lines[0]?.lineTotal)).toBe('7.50');
  });

  it('sends basic credentials from the mounted Secret', async () => {
    await driver.checkCredit?.(
      { $typeName: 'o2c.v1.CheckCreditRequest', customerId: 'ok', orderId: '' },
      ctx(),
    );
    expect(seen.at(-1)?.auth).toBe(`Basic ${Buffer.from('svc:pw').toString('base64')}`);
  });

  it.each([
    ['a business refusal the mapping names', 'blocked', ErrorClass.CREDIT, false],
    ['a 429 as retryable RATE_LIMITED with its Retry-After', 'busy', ErrorClass.RATE_LIMITED, true],
  ])('classifies %s', async (_name, customer, errorClass, retryable) => {
    const err = (await driver
      .checkCredit?.({ $typeName: 'o2c.v1.CheckCreditRequest', customerId: customer, orderId: '' }, ctx())
      .catch((e: unknown) => e)) as ConnectorFailure;
    expect(err).toBeInstanceOf(ConnectorFailure);
    expect(err.errorClass).toBe(errorClass);
    expect(err.retryable).toBe(retryable);
    if (customer === 'busy') expect(err.retryAfterMs).toBe(1000);
  });

  it('fetches an OAuth2 client-credentials token and fetches a new one after a 401', async () => {
    const oauth = createHttpDriver(
      endpoint,
      { ...config, auth: { type: 'oauth2', tokenUrl: `${endpoint}/oauth/token` } },
      new StaticCredentials({ client_id: 'o2c', client_secret: 's3cret' }),
    );
    const validate = () =>
      oauth.validateCustomer?.(
        { $typeName: 'o2c.v1.ValidateCustomerRequest', customerId: 'x', orderId: '' },
        ctx(),
      );
    const before = tokensIssued;
    expect((await validate())?.valid).toBe(true);
    expect((await validate())?.valid).toBe(true);
    expect(tokensIssued).toBe(before + 1);
    validToken = 'rotated-by-server';
    expect((await validate())?.valid).toBe(true);
    expect(tokensIssued).toBe(before + 2);
  });

  it('reports refused client credentials as AUTH', async () => {
    const oauth = createHttpDriver(
      endpoint,
      { ...config, auth: { type: 'oauth2', tokenUrl: `${endpoint}/oauth/token` } },
      new StaticCredentials({ client_id: 'o2c', client_secret: 'wrong' }),
    );
    const err = (await oauth
      .validateCustomer?.(
        { $typeName: 'o2c.v1.ValidateCustomerRequest', customerId: 'x', orderId: '' },
        ctx(),
      )
      .catch((e: unknown) => e)) as ConnectorFailure;
    expect(err.errorClass).toBe(ErrorClass.AUTH);
    expect(err.code).toBe('invalid_client');
  });
});

describe('webhook receiver', () => {
  it.each([
    ['accepts a body signed with the shared secret', (b: string) => signPayload('hook-secret', b), 202],
    ['refuses a body signed with another secret', (b: string) => signPayload('other', b), 401],
    ['refuses an unsigned body', () => '', 401],
  ])('%s', async (_name, sign, status) => {
    const events: unknown[] = [];
    const receiver = await startWebhookReceiver({
      port: 0,
      host: '127.0.0.1',
      secret: () => 'hook-secret',
      onEvent: async (b) => void events.push(b),
    });
    try {
      const body = JSON.stringify({ type: 'customer.updated', id: 'c-1' });
      const res = await fetch(`http://127.0.0.1:${receiver.port}/webhook`, {
        method: 'POST',
        headers: { 'Content-Type': 'application/json', 'X-Signature-256': sign(body) },
        body,
      });
      expect(res.status).toBe(status);
      expect(events).toHaveLength(status === 202 ? 1 : 0);
    } finally {
      await receiver.close();
    }
  });

  it('refuses a replayed delivery whose timestamp is too old', async () => {
    const receiver = await startWebhookReceiver({
      port: 0,
      host: '127.0.0.1',
      secret: () => 'hook-secret',
      timestampHeader: 'X-Timestamp',
      toleranceSec: 300,
      onEvent: async () => {},
    });
    try {
      const body = '{}';
      const old = String(Math.floor(Date.now() / 1000) - 3600);
      const res = await fetch(`http://127.0.0.1:${receiver.port}/webhook`, {
        method: 'POST',
        headers: { 'X-Timestamp': old, 'X-Signature-256': signPayload('hook-secret', body, old) },
        body,
      });
      expect(res.status).toBe(401);
    } finally {
      await receiver.close();
    }
  });
});
