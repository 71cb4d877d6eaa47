// A deliberately low-level order API client for hostile tests: it sends any bytes, framed or not,
// with any headers, over Connect (unary JSON/binary, GET, streaming), gRPC (HTTP/2) and gRPC-Web
// (HTTP/1.1), and reports the code the server answered, read the way each protocol carries it.
import { Agent, request as httpRequest } from 'node:http';
import { type ClientHttp2Session, connect as http2Connect } from 'node:http2';
import { brotliDecompressSync, gunzipSync } from 'node:zlib';
import { Code, ConnectError } from '@connectrpc/connect';
import {
  codeFromHttpStatus,
  codeToString,
  endStreamFromJson,
  errorFromJsonBytes,
} from '@connectrpc/connect/protocol-connect';
import { findTrailerError } from '@connectrpc/connect/protocol-grpc';
import { trailerParse } from '@connectrpc/connect/protocol-grpc-web';

export const PROTOCOLS = [
  'connect-proto',
  'connect-json',
  'connect-get',
  'connect-stream',
  'grpc',
  'grpc-web',
] as const;
export type Protocol = (typeof PROTOCOLS)[number];

export interface RawRequest {
  protocol: Protocol;
  /** e.g. "SubmitOrder". */
  method: string;
  /** The message bytes (JSON text for connect-json); framed here unless `framed`. */
  body: Uint8Array;
  /** The body is already enveloped (or deliberately broken framing). */
  framed?: boolean;
  headers?: Record<string, string>;
}

export interface RawResult {
  /** `ok`, a Connect code name (`invalid_argument`), `http_<status>`, or `transport:<error>`. */
  code: string;
  httpStatus: number;
  message: string;
  requestId?: string;
}

/** gRPC-style envelope: flags, 4-byte big-endian length, message. */
export function envelope(data: Uint8Array, flags = 0): Uint8Array {
  const out = new Uint8Array(5 + data.byteLength);
  out[0] = flags;
  new DataView(out.buffer).setUint32(1, data.byteLength);
  out.set(data, 5);
  return out;
}

function frames(body: Uint8Array): { flags: number; data: Uint8Array }[] {
  const out: { flags: number; data: Uint8Array }[] = [];
  let offset = 0;
  while (offset + 5 <= body.byteLength) {
    const length = new DataView(body.buffer, body.byteOffset + offset + 1, 4).getUint32(0);
    out.push({ flags: body[offset]!, data: body.subarray(offset + 5, offset + 5 + length) });
    offset += 5 + length;
  }
  return out;
}

const PATH = '/o2c.v1.OrderService/';
const DEADLINE_MS = 5_000;

function codeString(code: Code): string {
  return codeToString(code);
}

export class RawRpcClient {
  private readonly agent = new Agent({ keepAlive: true, maxSockets: 32 });
  private h2?: ClientHttp2Session;

  constructor(readonly baseUrl: string) {}

  private session(): ClientHttp2Session {
    if (!this.h2 || this.h2.closed || this.h2.destroyed) {
      this.h2 = http2Connect(this.baseUrl);
      this.h2.on('error', () => {});
    }
    return this.h2;
  }

  close(): void {
    this.agent.destroy();
    this.h2?.destroy();
  }

  async send(req: RawRequest): Promise<RawResult> {
    try {
      if (req.protocol === 'grpc') return await this.grpc(req);
      return await this.http1(req);
    } catch (err) {
      return {
        code: `transport:${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`,
        httpStatus: 0,
        message: String(err),
      };
    }
  }

  private http1(req: RawRequest): Promise<RawResult> {
    const headers: Record<string, string> = { ...req.headers };
    let path = PATH + req.method;
    let method = 'POST';
    let body: Uint8Array | undefined = req.body;
    switch (req.protocol) {
      case 'connect-proto':
        headers['content-type'] ??= 'application/proto';
        headers['connect-protocol-version'] ??= '1';
        headers['connect-timeout-ms'] ??= String(DEADLINE_MS);
        break;
      case 'connect-json':
        headers['content-type'] ??= 'application/json';
        headers['connect-protocol-version'] ??= '1';
        headers['connect-timeout-ms'] ??= String(DEADLINE_MS);
        break;
      case 'connect-get':
        method = 'GET';
        path += `?connect=v1&encoding=proto&base64=1&message=${Buffer.from(req.body).toString('base64url')}`;
        body = undefined;
        break;
      case 'connect-stream':
        headers['content-type'] ??= 'application/connect+proto';
        headers['connect-protocol-version'] ??= '1';
        headers['connect-timeout-ms'] ??= String(DEADLINE_MS);
        if (!req.framed) body = envelope(req.body);
        break;
      case 'grpc-web':
        headers['content-type'] ??= 'application/grpc-web+proto';
        headers['grpc-timeout'] ??= `${DEADLINE_MS}m`;
        if (!req.framed) body = envelope(req.body);
        break;
      default:
        throw new Error(`not an HTTP/1.1 protocol: ${req.protocol}`);
    }
    if (body) headers['content-length'] ??= String(body.byteLength);
    const url = new URL(path, this.baseUrl);
    return new Promise((resolve, reject) => {
      const r = httpRequest(url, { method, headers, agent: this.agent, timeout: DEADLINE_MS * 3 }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('error', reject);
        res.on('end', () => {
          // Never throw here: a throw in an event handler would leave the call unanswered.
          let bytes: Uint8Array = new Uint8Array(Buffer.concat(chunks));
          // A Connect unary answer may be compressed like the request was (Content-Encoding).
          const encoding = res.headers['content-encoding'];
          if (encoding === 'gzip') bytes = gunzipSync(bytes);
          if (encoding === 'br') bytes = brotliDecompressSync(bytes);
          const status = res.statusCode ?? 0;
          const requestId = res.headers['x-request-id'] as string | undefined;
          let read: { code: string; message: string };
          try {
            read = readHttp1(req.protocol, status, res.headers, bytes);
          } catch (err) {
            read = { code: 'unparsable_response', message: String(err) };
          }
          resolve({ ...read, httpStatus: status, requestId });
        });
      });
      r.on('timeout', () => r.destroy(new Error('client timeout')));
      r.on('error', reject);
      r.end(body ? Buffer.from(body) : undefined);
    });
  }

  private grpc(req: RawRequest): Promise<RawResult> {
    const body = req.framed ? req.body : envelope(req.body);
    return new Promise((resolve, reject) => {
      const stream = this.session().request({
        ':method': 'POST',
        ':path': PATH + req.method,
        'content-type': 'application/grpc+proto',
        te: 'trailers',
        'grpc-timeout': `${DEADLINE_MS}m`,
        ...req.headers,
      });
      stream.setTimeout(DEADLINE_MS * 3, () => stream.close());
      let status = 0;
      let requestId: string | undefined;
      let headers: Headers | undefined;
      let trailers: Headers | undefined;
      stream.on('response', (h) => {
        status = Number(h[':status']);
        requestId = h['x-request-id'] as string | undefined;
        headers = toHeaders(h);
      });
      stream.on('trailers', (t) => {
        trailers = toHeaders(t);
      });
      stream.on('data', () => {});
      stream.on('error', reject);
      stream.on('close', () => {
        const source = trailers ?? headers;
        if (!source?.has('grpc-status')) {
          resolve({
            code: status ? `http_${status}` : `transport:rst_${stream.rstCode}`,
            httpStatus: status,
            message: '',
            requestId,
          });
          return;
        }
        const err = findTrailerError(source);
        resolve({
          code: err ? codeString(err.code) : 'ok',
          httpStatus: status,
          message: err?.rawMessage ?? '',
          requestId,
        });
      });
      stream.end(Buffer.from(body));
    });
  }
}

function toHeaders(h: Record<string, string | string[] | undefined>): Headers {
  const out = new Headers();
  for (const [k, v] of Object.entries(h)) {
    if (k.startsWith(':') || v === undefined) continue;
    for (const one of Array.isArray(v) ? v : [v]) out.append(k, one);
  }
  return out;
}

function readHttp1(
  protocol: Protocol,
  status: number,
  rawHeaders: Record<string, string | string[] | undefined>,
  bytes: Uint8Array,
): { code: string; message: string } {
  const headers = toHeaders(rawHeaders);
  const contentType = headers.get('content-type') ?? '';
  // Frames may be compressed like the request was (grpc-encoding / connect-content-encoding).
  const inflate = (f: { flags: number; data: Uint8Array }, encoding: string | null) =>
    (f.flags & 0x01) === 0 ? f.data : encoding === 'br' ? brotliDecompressSync(f.data) : gunzipSync(f.data);
  if (protocol === 'grpc-web') {
    if (headers.has('grpc-status')) return fromError(findTrailerError(headers));
    const trailer = frames(bytes).find((f) => (f.flags & 0x80) !== 0);
    if (!trailer) return { code: `http_${status}`, message: 'no trailer frame' };
    return fromError(findTrailerError(trailerParse(inflate(trailer, headers.get('grpc-encoding')))));
  }
  if (status === 200 && contentType.startsWith('application/connect+')) {
    const end = frames(bytes).find((f) => (f.flags & 0x02) !== 0);
    if (!end) return { code: 'http_200', message: 'no end-stream frame' };
    return fromError(endStreamFromJson(inflate(end, headers.get('connect-content-encoding'))).error);
  }
  if (status === 200) return { code: 'ok', message: '' };
  if (!contentType.startsWith('application/json')) return { code: `http_${status}`, message: '' };
  try {
    return fromError(errorFromJsonBytes(bytes, undefined, new ConnectError('', codeFromHttpStatus(status))));
  } catch {
    return {
      code: `unparsable_error_body_${status}`,
      message: new TextDecoder().decode(bytes.subarray(0, 200)),
    };
  }
}

function fromError(err: ConnectError | undefined): { code: string; message: string } {
  return err ? { code: codeString(err.code), message: err.rawMessage } : { code: 'ok', message: '' };
}

export { Code };
