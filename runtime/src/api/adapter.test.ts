import { Code, ConnectError } from '@connectrpc/connect';
import { encodeEnvelope, type UniversalServerResponse } from '@connectrpc/connect/protocol';
import {
  endStreamFlag,
  endStreamFromJson,
  endStreamToJson,
  errorToJsonBytes,
} from '@connectrpc/connect/protocol-connect';
import { findTrailerError, setTrailerStatus } from '@connectrpc/connect/protocol-grpc';
import { trailerFlag, trailerParse, trailerSerialize } from '@connectrpc/connect/protocol-grpc-web';
import { describe, expect, it } from 'vitest';
import { repairResponse } from './adapter.js';
import type { CallOutcome } from './interceptors.js';

async function* chunks(...parts: Uint8Array[]): AsyncIterable<Uint8Array> {
  yield* parts;
}

async function drain(body: AsyncIterable<Uint8Array> | undefined): Promise<Uint8Array[]> {
  const out: Uint8Array[] = [];
  if (body) for await (const c of body) out.push(c);
  return out;
}

/** Each protocol's response for `err`, shaped as connect-es hands it to the Node writer. */
const RESPONSES: Record<string, (err: ConnectError) => UniversalServerResponse> = {
  'Connect unary': (err) => ({
    status: 500,
    header: new Headers({ 'content-type': 'application/json' }),
    body: chunks(errorToJsonBytes(err, {})),
  }),
  gRPC: (err) => ({
    status: 200,
    header: new Headers({ 'content-type': 'application/grpc+proto' }),
    body: chunks(),
    trailer: setTrailerStatus(new Headers(), err),
  }),
  'gRPC-Web': (err) => ({
    status: 200,
    header: new Headers({ 'content-type': 'application/grpc-web+proto' }),
    body: chunks(encodeEnvelope(trailerFlag, trailerSerialize(setTrailerStatus(new Headers(), err)))),
  }),
  'Connect streaming': (err) => ({
    status: 200,
    header: new Headers({ 'content-type': 'application/connect+proto' }),
    body: chunks(
      encodeEnvelope(
        endStreamFlag,
        new TextEncoder().encode(JSON.stringify(endStreamToJson(new Headers(), err, {}))),
      ),
    ),
  }),
};

/** The code the client reads from a repaired response. */
async function codeSeen(
  protocol: string,
  res: UniversalServerResponse,
): Promise<{ code: Code; status: number }> {
  const body = await drain(res.body);
  switch (protocol) {
    case 'Connect unary': {
      const json = JSON.parse(new TextDecoder().decode(body[0])) as { code: string };
      return {
        code: Code[
          json.code.replace(/(^|_)(.)/g, (_m, _u, c: string) => c.toUpperCase()) as keyof typeof Code
        ],
        status: res.status,
      };
    }
    case 'gRPC':
      return { code: findTrailerError(res.trailer!)?.code ?? Code.Unknown, status: res.status };
    case 'gRPC-Web':
      return {
        code: findTrailerError(trailerParse(body[0]!.subarray(5)))?.code ?? Code.Unknown,
        status: res.status,
      };
    default:
      return {
        code: endStreamFromJson(body[0]!.subarray(5)).error?.code ?? Code.Unknown,
        status: res.status,
      };
  }
}

const cases = Object.keys(RESPONSES).flatMap((protocol) => [
  {
    protocol,
    what: 'an undecodable body',
    err: new ConnectError('parse binary: premature EOF', Code.Internal),
    code: Code.InvalidArgument,
  },
  {
    protocol,
    what: 'a truncated gzip body',
    err: new ConnectError('decompression failed', Code.Internal),
    code: Code.InvalidArgument,
  },
  {
    protocol,
    what: 'a compressed flag without an encoding',
    err: new ConnectError('received compressed envelope, but do not know how to decompress', Code.Internal),
    code: Code.Internal,
  },
  {
    protocol,
    what: 'an oversized body',
    err: new ConnectError('too big', Code.ResourceExhausted),
    code: Code.ResourceExhausted,
  },
]);

describe('repairResponse', () => {
  it.each(cases)('answers $what over $protocol with $code', async ({ protocol, err, code }) => {
    const outcomes: CallOutcome[] = [];
    const res = await repairResponse(RESPONSES[protocol]!(err), (o) => outcomes.push(o));
    const seen = await codeSeen(protocol, res);
    expect(seen.code).toBe(code);
    // A repaired Connect unary error carries the HTTP status of its new code.
    if (protocol === 'Connect unary' && code === Code.InvalidArgument) expect(seen.status).toBe(400);
    expect(outcomes).toHaveLength(1);
    expect(outcomes[0]!.level).toBe('warn');
  });

  it('counts a plain 415 refusal as the caller’s fault', async () => {
    const outcomes: CallOutcome[] = [];
    await repairResponse({ status: 415, header: new Headers() }, (o) => outcomes.push(o));
    expect(outcomes).toEqual([{ code: 'http_415', level: 'warn', reason: 'HTTP 415' }]);
  });

  it('passes a successful unary response through untouched', async () => {
    const outcomes: CallOutcome[] = [];
    const body = new Uint8Array([1, 2, 3]);
    const res = await repairResponse(
      { status: 200, header: new Headers({ 'content-type': 'application/proto' }), body: chunks(body) },
      (o) => outcomes.push(o),
    );
    expect(await drain(res.body)).toEqual([body]);
    expect(outcomes).toEqual([{ code: 'ok', level: 'debug' }]);
  });

  it('logs an Internal error that is not the caller’s at error level', async () => {
    const outcomes: CallOutcome[] = [];
    const res = await repairResponse(
      RESPONSES['Connect unary']!(new ConnectError('serialize binary: x', Code.Internal)),
      (o) => outcomes.push(o),
    );
    await drain(res.body);
    expect(outcomes[0]).toMatchObject({ code: 'internal', level: 'error' });
  });
});
