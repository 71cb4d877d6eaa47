// Inbound webhooks: an HTTP receiver that accepts a POST only when its HMAC-SHA256 signature over
// the raw body matches the shared secret (constant-time compare), optionally bound to a timestamp
// header against replays. Accepted bodies go to `onEvent`; a throw there answers 500 so the sender
// retries.
import { createHmac, timingSafeEqual } from 'node:crypto';
import { createServer, type IncomingMessage, type Server } from 'node:http';

export interface WebhookOptions {
  port: number;
  host?: string;
  path?: string;
  /** The shared secret; a function so a rotated Secret takes effect without a restart. */
  secret: () => string;
  /** Header carrying the signature: hex or base64, optionally prefixed "sha256=". Default X-Signature-256. */
  signatureHeader?: string;
  /** When set, the signed content is `${timestamp}.${body}` and the timestamp must be recent. */
  timestampHeader?: string;
  toleranceSec?: number;
  maxBodyBytes?: number;
  onEvent: (body: unknown, headers: IncomingMessage['headers']) => Promise<void>;
  now?: () => number;
}

export function signPayload(secret: string, payload: string | Buffer, timestamp?: string): string {
  const mac = createHmac('sha256', secret);
  if (timestamp !== undefined) mac.update(`${timestamp}.`);
  mac.update(payload);
  return `sha256=${mac.digest('hex')}`;
}

/** Checks a signature header value against the body; false for anything malformed. */
export function verifySignature(
  secret: string,
  body: Buffer,
  header: string | undefined,
  timestamp?: string,
): boolean {
  if (!header || !secret) return false;
  const value = header.startsWith('sha256=') ? header.slice(7) : header;
  const mac = createHmac('sha256', secret);
  if (timestamp !== undefined) mac.update(`${timestamp}.`);
  mac.update(body);
  const expected = mac.digest();
  const given = /^[0-9a-f]{64}$/i.test(value) ? Buffer.from(value, 'hex') : Buffer.from(value, 'base64');
  return given.length === expected.length && timingSafeEqual(given, expected);
}

export interface WebhookReceiver {
  server: Server;
  port: number;
  close(): Promise<void>;
}

export async function startWebhookReceiver(opts: WebhookOptions): Promise<WebhookReceiver> {
  const path = opts.path ?? '/webhook';
  const sigHeader = (opts.signatureHeader ?? 'X-Signature-256').toLowerCase();
  const tsHeader = opts.timestampHeader?.toLowerCase();
  const maxBytes = opts.maxBodyBytes ?? 1_048_576;
  const now = opts.now ?? Date.now;
  const server = createServer(async (req, res) => {
    const reply = (status: number, message: string) => {
      res.writeHead(status, { 'Content-Type': 'application/json' });
      res.end(JSON.stringify({ message }));
    };
    if (req.method !== 'POST' || (req.url ?? '').split('?')[0] !== path) return reply(404, 'not found');
    const chunks: Buffer[] = [];
    let size = 0;
    for await (const chunk of req) {
      size += (chunk as Buffer).length;
      if (size > maxBytes) return reply(413, 'body too large');
      chunks.push(chunk as Buffer);
    }
    const body = Buffer.concat(chunks);
    const timestamp = tsHeader ? String(req.headers[tsHeader] ?? '') : undefined;
    if (tsHeader) {
      const ts = Number(timestamp);
      if (!Number.isFinite(ts) || Math.abs(now() / 1000 - ts) > (opts.toleranceSec ?? 300)) {
        return reply(401, 'stale or missing timestamp');
      }
    }
    const header = req.headers[sigHeader];
    if (!verifySignature(opts.secret(), body, Array.isArray(header) ? header[0] : header, timestamp)) {
      return reply(401, 'signature mismatch');
    }
    let parsed: unknown;
    try {
      parsed = JSON.parse(body.toString('utf8'));
    } catch {
      return reply(400, 'body is not JSON');
    }
    try {
      await opts.onEvent(parsed, req.headers);
    } catch (err) {
      return reply(500, (err as Error).message);
    }
    reply(202, 'accepted');
  });
  await new Promise<void>((resolve) => server.listen(opts.port, opts.host ?? '0.0.0.0', resolve));
  const address = server.address();
  return {
    server,
    port: typeof address === 'object' && address ? address.port : opts.port,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}
