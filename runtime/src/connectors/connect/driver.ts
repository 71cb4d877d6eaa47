// The connect driver: the connector is an external o2c.v1.ConnectorService server (any language),
// reached over the Connect protocol or gRPC. A server reports a classified failure by attaching an
// o2c.v1.ConnectorError to its error details; otherwise the status code decides the class.
import {
  type Client,
  Code,
  ConnectError,
  createClient,
  type Interceptor,
  type Transport,
} from '@connectrpc/connect';
import { createConnectTransport, createGrpcTransport } from '@connectrpc/connect-node';
import { ErrorClass } from '../../gen/o2c/v1/common_pb.js';
import { ConnectorErrorSchema, ConnectorService } from '../../gen/o2c/v1/connector_service_pb.js';
import type { CredentialSource } from '../credentials.js';
import { type ConnectorDriver, ConnectorFailure, type DriverMethod, type MethodName } from '../driver.js';

export interface ConnectDriverConfig {
  /** `connect` (HTTP/1.1 or HTTP/2, JSON or binary) or `grpc` (HTTP/2). Default connect. */
  protocol?: 'connect' | 'grpc';
  /** Use HTTP/2 for the Connect protocol (always for gRPC). Default 1.1 for connect. */
  httpVersion?: '1.1' | '2';
  /** Send JSON instead of binary protobuf (Connect protocol only). */
  useJson?: boolean;
}

const CODE_CLASS: Partial<Record<Code, ErrorClass>> = {
  [Code.InvalidArgument]: ErrorClass.VALIDATION,
  [Code.FailedPrecondition]: ErrorClass.VALIDATION,
  [Code.OutOfRange]: ErrorClass.VALIDATION,
  [Code.NotFound]: ErrorClass.NOT_FOUND,
  [Code.AlreadyExists]: ErrorClass.CONFLICT,
  [Code.Aborted]: ErrorClass.CONFLICT,
  [Code.Unauthenticated]: ErrorClass.AUTH,
  [Code.PermissionDenied]: ErrorClass.AUTH,
  [Code.ResourceExhausted]: ErrorClass.RATE_LIMITED,
  [Code.Unavailable]: ErrorClass.UNAVAILABLE,
  [Code.DeadlineExceeded]: ErrorClass.TIMEOUT,
  [Code.Canceled]: ErrorClass.TIMEOUT,
};

/** Turns a ConnectError into a ConnectorFailure, preferring the server's own ConnectorError detail. */
export function failureFromConnectError(err: unknown): unknown {
  if (!(err instanceof ConnectError)) return err;
  const [detail] = err.findDetails(ConnectorErrorSchema);
  if (detail) return ConnectorFailure.fromProto(detail);
  const errorClass = CODE_CLASS[err.code] ?? ErrorClass.UNKNOWN;
  return new ConnectorFailure(errorClass, err.rawMessage, { code: Code[err.code], cause: err });
}

export function connectTransport(
  endpoint: string,
  cfg: ConnectDriverConfig,
  credentials?: CredentialSource,
): Transport {
  const token = () => credentials?.get().token;
  const bearer: Interceptor = (next) => async (req) => {
    const t = token();
    if (t) req.header.set('Authorization', `Bearer ${t}`);
    return next(req);
  };
  const interceptors = [bearer];
  if (cfg.protocol === 'grpc') return createGrpcTransport({ baseUrl: endpoint, interceptors });
  return createConnectTransport({
    baseUrl: endpoint,
    httpVersion: cfg.httpVersion ?? '1.1',
    useBinaryFormat: !cfg.useJson,
    interceptors,
  });
}

/** Builds a driver whose every ConnectorService method is a call to the external server. */
export function createConnectDriver(transport: Transport): ConnectorDriver {
  const client: Client<typeof ConnectorService> = createClient(ConnectorService, transport);
  const driver: Record<string, unknown> = { driverName: 'connect' };
  for (const method of ConnectorService.methods) {
    const name = method.localName as MethodName;
    const call = client[name] as unknown as (
      req: unknown,
      opts: { signal: AbortSignal; headers: Record<string, string> },
    ) => Promise<unknown>;
    const fn: DriverMethod<MethodName> = async (req, ctx) => {
      try {
        return (await call(req, {
          signal: ctx.signal,
          headers: { 'Idempotency-Key': ctx.idempotencyKey, 'X-Correlation-Id': ctx.correlationId },
        })) as never;
      } catch (err) {
        throw failureFromConnectError(err);
      }
    };
    driver[name] = fn;
  }
  return driver as ConnectorDriver;
}
