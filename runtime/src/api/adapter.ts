// The order API's Node request handler: connect-es's router behind a request id per call, body size
// limits, and the repair and accounting of the errors connect-es raises before any interceptor runs
// (an undecodable unary body, a body over the limit, a compressed frame without an encoding). Those
// reach the client with the code the specs name and an X-Request-Id, and are logged and counted.
import type { IncomingMessage, ServerResponse } from 'node:http';
import { type Http2ServerRequest, type Http2ServerResponse, constants as http2 } from 'node:http2';
import {
  Code,
  ConnectError,
  type ConnectRouter,
  createConnectRouter,
  createContextValues,
  type Interceptor,
} from '@connectrpc/connect';
import {
  encodeEnvelope,
  type UniversalHandler,
  type UniversalServerResponse,
} from '@connectrpc/connect/protocol';
import {
  codeFromHttpStatus,
  codeToHttpStatus,
  endStreamFlag,
  endStreamFromJson,
  endStreamToJson,
  errorFromJsonBytes,
  errorToJsonBytes,
  headerUnaryContentLength,
} from '@connectrpc/connect/protocol-connect';
import { findTrailerError, headerGrpcMessage, headerGrpcStatus } from '@connectrpc/connect/protocol-grpc';
import { trailerFlag, trailerParse, trailerSerialize } from '@connectrpc/connect/protocol-grpc-web';
import {
  compressionBrotli,
  compressionGzip,
  universalRequestFromNodeRequest,
  universalResponseToNodeResponse,
} from '@connectrpc/connect-node';
import type { Logger } from '../observability/logger.js';
import type { ApiMetrics } from '../observability/metrics.js';
import { repairWireError } from './errors.js';
import {
  type CallOutcome,
  type CallRecord,
  callKey,
  clip,
  failedOutcome,
  OK,
  recordCall,
  requestIdFrom,
} from './interceptors.js';
import type { ApiLimits } from './limits.js';

export type NodeRequest = IncomingMessage | Http2ServerRequest;
export type NodeResponse = ServerResponse | Http2ServerResponse;

export interface ApiHandlerOptions {
  routes: (router: ConnectRouter) => void;
  interceptors: Interceptor[];
  limits: ApiLimits;
  logger: Logger;
  metrics: ApiMetrics;
}

const COMPRESSED_FLAG = 0b1;
/** An error body larger than this is not a connect-es protocol error; it passes untouched. */
const MAX_ERROR_BODY_BYTES = 64 * 1024;

/** The whole body when it is at most `limit` bytes; else what was read and the unread rest. */
async function readUpTo(
  body: AsyncIterable<Uint8Array>,
  limit: number,
): Promise<{ bytes: Uint8Array; rest?: AsyncIterator<Uint8Array> }> {
  const chunks: Uint8Array[] = [];
  let length = 0;
  const it = body[Symbol.asyncIterator]();
  for (let next = await it.next(); !next.done; next = await it.next()) {
    chunks.push(next.value);
    length += next.value.byteLength;
    if (length > limit) return { bytes: Buffer.concat(chunks), rest: it };
  }
  return { bytes: Buffer.concat(chunks) };
}

async function* prefixed(head: Uint8Array, rest: AsyncIterator<Uint8Array>): AsyncIterable<Uint8Array> {
  yield head;
  for (let next = await rest.next(); !next.done; next = await rest.next()) yield next.value;
}

/**
 * A Connect unary error is a JSON body with an HTTP status: re-read it, repair the code, and
 * write it back with the status the Connect protocol gives the new code.
 */
async function repairConnectUnary(
  res: UniversalServerResponse,
  settle: (outcome: CallOutcome) => void,
): Promise<UniversalServerResponse> {
  const fallback = new ConnectError('', codeFromHttpStatus(res.status));
  if (!res.body || res.header?.has('content-encoding')) {
    settle(failedOutcome(fallback));
    return res;
  }
  const { bytes, rest } = await readUpTo(res.body, MAX_ERROR_BODY_BYTES);
  if (rest) {
    // Not a connect-es protocol error (those are small): pass it on untouched.
    settle(failedOutcome(fallback));
    return { ...res, body: prefixed(bytes, rest) };
  }
  let err: ConnectError;
  try {
    err = errorFromJsonBytes(bytes, undefined, fallback);
  } catch {
    settle(failedOutcome(fallback));
    return { ...res, body: oneChunk(bytes) };
  }
  const fixed = repairWireError(err);
  settle(failedOutcome(fixed));
  if (fixed === err) return { ...res, body: oneChunk(bytes) };
  const body = errorToJsonBytes(fixed, {});
  const header = new Headers(res.header);
  header.set(headerUnaryContentLength, String(body.byteLength));
  return { ...res, status: codeToHttpStatus(fixed.code), header, body: oneChunk(body) };
}

async function* oneChunk(bytes: Uint8Array): AsyncIterable<Uint8Array> {
  yield bytes;
}

function setGrpcStatus(trailer: Headers, err: ConnectError): void {
  trailer.set(headerGrpcStatus, String(err.code));
  trailer.set(headerGrpcMessage, encodeURIComponent(err.rawMessage));
}

/** gRPC carries the status in HTTP trailers, complete once the body has been read. */
function repairGrpc(
  res: UniversalServerResponse,
  settle: (outcome: CallOutcome) => void,
): UniversalServerResponse {
  const trailer = res.trailer ?? new Headers();
  const source = res.body;
  async function* body(): AsyncIterable<Uint8Array> {
    if (source) yield* source;
    const err = findTrailerError(trailer);
    if (!err) return settle(OK);
    const fixed = repairWireError(err);
    if (fixed !== err) setGrpcStatus(trailer, fixed);
    settle(failedOutcome(fixed));
  }
  return { ...res, trailer, body: body() };
}

/**
 * gRPC-Web and Connect streaming end the body with a frame holding the status (a trailer block,
 * an end-stream JSON object); connect-es writes each frame as one chunk.
 */
function repairEndFrame(
  res: UniversalServerResponse,
  protocol: 'grpc-web' | 'connect',
  settle: (outcome: CallOutcome) => void,
): UniversalServerResponse {
  const source = res.body;
  if (!source) return res;
  const endFlag = protocol === 'grpc-web' ? trailerFlag : endStreamFlag;
  async function* body(): AsyncIterable<Uint8Array> {
    let settled = false;
    for await (const chunk of source as AsyncIterable<Uint8Array>) {
      const flags = chunk[0] ?? 0;
      if (chunk.byteLength < 5 || (flags & endFlag) === 0 || (flags & COMPRESSED_FLAG) !== 0) {
        yield chunk;
        continue;
      }
      settled = true;
      const data = chunk.subarray(5);
      if (protocol === 'grpc-web') {
        const trailer = trailerParse(data);
        const err = findTrailerError(trailer);
        const fixed = err && repairWireError(err);
        settle(fixed ? failedOutcome(fixed) : OK);
        if (!fixed || fixed === err) yield chunk;
        else {
          setGrpcStatus(trailer, fixed);
          yield encodeEnvelope(trailerFlag, trailerSerialize(trailer));
        }
      } else {
        const end = endStreamFromJson(data);
        const fixed = end.error && repairWireError(end.error);
        settle(fixed ? failedOutcome(fixed) : OK);
        if (!fixed || fixed === end.error) yield chunk;
        else {
          const json = JSON.stringify(endStreamToJson(end.metadata, fixed, {}));
          yield encodeEnvelope(endStreamFlag, new TextEncoder().encode(json));
        }
      }
    }
    if (!settled) settle(OK);
  }
  return { ...res, body: body() };
}

/** The response with connect-es's early errors repaired; `settle` learns the call's outcome. */
export async function repairResponse(
  res: UniversalServerResponse,
  settle: (outcome: CallOutcome) => void,
): Promise<UniversalServerResponse> {
  const contentType = res.header?.get('content-type') ?? '';
  if (contentType.startsWith('application/grpc-web')) return repairEndFrame(res, 'grpc-web', settle);
  if (contentType.startsWith('application/grpc')) return repairGrpc(res, settle);
  if (contentType.startsWith('application/connect+')) return repairEndFrame(res, 'connect', settle);
  if (res.status !== 200 && contentType.startsWith('application/json'))
    return repairConnectUnary(res, settle);
  // A plain HTTP refusal from connect-es (415 unsupported media type, 405 method not allowed, ...).
  settle(
    res.status === 200 ? OK : { code: `http_${res.status}`, level: 'warn', reason: `HTTP ${res.status}` },
  );
  return res;
}

/** The Node request listener for both the HTTP/1.1 and the HTTP/2 server. */
export function createApiHandler(options: ApiHandlerOptions): (req: NodeRequest, res: NodeResponse) => void {
  const { limits, logger } = options;
  const router = createConnectRouter({
    interceptors: options.interceptors,
    readMaxBytes: limits.maxRequestBytes,
    writeMaxBytes: limits.maxResponseBytes,
    acceptCompression: [compressionGzip, compressionBrotli],
  });
  options.routes(router);
  const paths = new Map<string, UniversalHandler>(router.handlers.map((h) => [h.requestPath, h]));
  const observer = { logger, metrics: options.metrics };

  return (req, anyRes) => {
    // Both response classes share the calls used here; one type keeps TypeScript's overloads apart.
    const res = anyRes as ServerResponse;
    const record: CallRecord = { requestId: requestIdFrom(req.headers['x-request-id']), observed: false };
    const call = { requestId: record.requestId, method: 'unknown', started: process.hrtime.bigint() };
    let settled = false;
    const settle = (outcome: CallOutcome) => {
      if (settled || record.observed) return;
      settled = true;
      recordCall(observer, call, outcome);
    };
    res.setHeader('x-request-id', record.requestId);
    const isHttp2 = 'stream' in req;
    if (isHttp2) guardHttp2Request(req as Http2ServerRequest, anyRes as Http2ServerResponse, limits);
    if (isHttp2 && headerListSize(req.rawHeaders) > limits.maxHeaderBytes) {
      // Node advertises SETTINGS_MAX_HEADER_LIST_SIZE but does not refuse a larger list.
      call.method = 'unmatched';
      settle({ code: 'http_431', level: 'warn', reason: 'request headers too large' });
      res.writeHead(431).end();
      return;
    }
    const uHandler = paths.get(req.url?.split('?', 2)[0] ?? '');
    if (!uHandler) {
      call.method = 'unmatched';
      settle({ code: 'http_404', level: 'warn', reason: `no RPC at ${clip(req.url, 200) ?? ''}` });
      res.writeHead(404).end();
      return;
    }
    call.method = uHandler.method.name;
    let uReq: ReturnType<typeof universalRequestFromNodeRequest>;
    try {
      uReq = {
        ...universalRequestFromNodeRequest(
          req as IncomingMessage,
          res,
          undefined,
          createContextValues().set(callKey, record),
        ),
        body: requestBody(req),
      };
    } catch (err) {
      settle(failedOutcome(ConnectError.from(err, Code.InvalidArgument), true));
      res.writeHead(400).end();
      return;
    }
    // What follows the response hangs on the response's and stream's own events: connect-node's
    // writer never resolves (it waits for an 'end' a ServerResponse does not emit).
    if (isHttp2) endEarlyAnsweredStream(req as Http2ServerRequest);
    res.once('close', () => settle({ code: 'canceled', level: 'debug', reason: 'the client went away' }));
    uHandler(uReq)
      .then((uRes) => repairResponse(uRes, settle))
      .then((uRes) => {
        if (!req.complete && !isHttp2) {
          const header = new Headers(uRes.header);
          header.set('connection', 'close');
          uRes = { ...uRes, header };
        }
        return universalResponseToNodeResponse(uRes, res);
      })
      .catch((reason: unknown) => {
        logger.debug({ requestId: record.requestId, err: reason }, 'response not written');
        if (!res.headersSent) res.writeHead(500);
        res.end();
      });
  };
}

/** Time for the trailers of an early answer to leave before the stream is reset. */
const EARLY_ANSWER_RESET_DELAY_MS = 50;

/**
 * An HTTP/2 stream answered before its request body was read (refused early) is reset with CANCEL
 * once the response is out, so the client stops sending; nothing more is read. The reset waits a
 * moment: right away it can overtake the trailers that carry the status. (RFC 9113 8.1 suggests
 * NO_ERROR, but a Node client whose upload is blocked by flow control never closes on it.)
 * HTTP/1.1 closes the connection instead (Connection: close).
 */
function endEarlyAnsweredStream(req: Http2ServerRequest): void {
  const stream = req.stream;
  stream.once('finish', () => {
    if (req.complete || stream.destroyed || stream.closed) return;
    const timer = setTimeout(() => {
      if (!stream.closed && !stream.destroyed) stream.close(http2.NGHTTP2_CANCEL);
    }, EARLY_ANSWER_RESET_DELAY_MS);
    timer.unref();
    stream.once('close', () => clearTimeout(timer));
  });
}

/**
 * The request body for connect-es. Its own reader destroys the request when it stops early, which
 * resets an HTTP/2 stream with NO_ERROR before the response is out; this one leaves the request
 * alone, and endEarlyAnsweredStream (HTTP/2) or Connection: close (HTTP/1.1) ends it.
 */
async function* requestBody(req: NodeRequest): AsyncIterable<Uint8Array> {
  for await (const chunk of req.iterator({ destroyOnReturn: false })) yield chunk as Uint8Array;
}

/** Node enforces a whole-request deadline on HTTP/1.1 only; HTTP/2 streams get the same here. */
function guardHttp2Request(req: Http2ServerRequest, res: Http2ServerResponse, limits: ApiLimits): void {
  if (req.complete) return;
  const timer = setTimeout(() => {
    if (req.complete || req.stream.destroyed) return;
    req.stream.close(http2.NGHTTP2_CANCEL);
  }, limits.requestTimeoutMs);
  timer.unref();
  const clear = () => clearTimeout(timer);
  req.once('end', clear);
  res.once('close', clear);
}

/** A header list's size as HTTP/2 counts it (RFC 9113 6.5.2): name + value + 32 per field. */
function headerListSize(raw: string[]): number {
  let size = 0;
  for (let i = 0; i + 1 < raw.length; i += 2) size += (raw[i]?.length ?? 0) + (raw[i + 1]?.length ?? 0) + 32;
  return size;
}
