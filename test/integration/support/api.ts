// Starts the workflow role (order API + store + outbox relay) in process for a test.
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type Client, ConnectError, createClient } from '@connectrpc/connect';
import { createConnectTransport, createGrpcTransport } from '@connectrpc/connect-node';
import { OrderService } from '../../../runtime/src/gen/o2c/v1/order_service_pb.js';
import { createLogger } from '../../../runtime/src/observability/logger.js';
import { createRegistry } from '../../../runtime/src/observability/metrics.js';
import { startWorkflowRole, type WorkflowRole } from '../../../runtime/src/roles/workflow.js';
import { BROKER_URL, freshDatabase } from './services.js';

export type StoreKind = 'postgres' | 'sqlite';

/** The ConnectError a call must fail with; a call that succeeds fails the test. */
export async function rejection(p: Promise<unknown>): Promise<ConnectError> {
  try {
    await p;
  } catch (err) {
    return ConnectError.from(err);
  }
  throw new Error('expected the call to fail');
}

export interface ApiHarness {
  role: WorkflowRole;
  baseUrl: string;
  healthUrl: string;
  client: Client<typeof OrderService>;
  grpc: Client<typeof OrderService>;
  token?: string;
  stop(): Promise<void>;
}

export async function storeUrlFor(kind: StoreKind, name: string): Promise<string> {
  if (kind === 'postgres') return freshDatabase(name);
  return `sqlite:${join(mkdtempSync(join(tmpdir(), 'o2c-test-')), `${name}.sqlite`)}`;
}

export async function startApi(options: {
  store: StoreKind;
  name: string;
  broker?: boolean;
  /** Default the shared broker; a test that stops its broker passes a private one. */
  brokerUrl?: string;
  token?: string;
}): Promise<ApiHarness> {
  let tokensFile: string | undefined;
  if (options.token) {
    tokensFile = join(mkdtempSync(join(tmpdir(), 'o2c-tokens-')), 'tokens');
    writeFileSync(tokensFile, `# test tokens\n${options.token}\n`);
  }
  const role = await startWorkflowRole({
    storeUrl: await storeUrlFor(options.store, options.name),
    brokerUrl: options.broker === false ? undefined : (options.brokerUrl ?? BROKER_URL),
    host: '127.0.0.1',
    apiPort: 0,
    healthPort: 0,
    tokensFile,
    // A source names a resource (bus/addressing.ts): database names use `_`, resource names `-`.
    source: `o2c/test/workflow/${options.name.replace(/_/g, '-')}`,
    logger: createLogger('test', 'warn'),
    registry: createRegistry(false),
  });
  const baseUrl = `http://127.0.0.1:${role.api.port}`;
  const auth = options.token
    ? [
        (next: Parameters<import('@connectrpc/connect').Interceptor>[0]) =>
          (req: Parameters<Parameters<import('@connectrpc/connect').Interceptor>[0]>[0]) => {
            req.header.set('authorization', `Bearer ${options.token}`);
            return next(req);
          },
      ]
    : [];
  return {
    role,
    baseUrl,
    healthUrl: `http://127.0.0.1:${role.health?.port}`,
    token: options.token,
    client: createClient(
      OrderService,
      createConnectTransport({ baseUrl, httpVersion: '1.1', interceptors: auth }),
    ),
    grpc: createClient(OrderService, createGrpcTransport({ baseUrl, interceptors: auth })),
    stop: () => role.stop(),
  };
}
