// A whole O2C stack in the test process: workflow role + simulator connectors over real RabbitMQ.

import { type Client, createClient } from '@connectrpc/connect';
import { createConnectTransport } from '@connectrpc/connect-node';
import type { ConnectorRuntimeConfig } from '../../../runtime/src/connectors/config.js';
import { OrderState } from '../../../runtime/src/gen/o2c/v1/entities_pb.js';
import { OrderService } from '../../../runtime/src/gen/o2c/v1/order_service_pb.js';
import { type LocalStack, stackFromManifests, startLocalStack } from '../../../runtime/src/local/stack.js';
import { loadManifests } from '../../../runtime/src/manifests.js';
import { createLogger } from '../../../runtime/src/observability/logger.js';
import type { WorkflowSpec } from '../../../runtime/src/workflow/spec.js';
import { type StoreKind, storeUrlFor } from './api.js';
import { BROKER_URL } from './services.js';

export interface StackHarness {
  stack: LocalStack;
  connectors: ConnectorRuntimeConfig[];
  client: Client<typeof OrderService>;
  stop(): Promise<void>;
}

/** The reference manifests with test tweaks applied. */
export function distributor(tweak?: (spec: WorkflowSpec, connectors: ConnectorRuntimeConfig[]) => void) {
  const parsed = stackFromManifests(loadManifests(['examples/distributor/']));
  const spec = structuredClone(parsed.spec);
  const connectors = structuredClone(parsed.connectors);
  for (const c of connectors) {
    c.options ??= {};
    const o = c.options;
    if ('dispatchAfterMs' in o) o.dispatchAfterMs = 50;
    if ('payAfterMs' in o) o.payAfterMs = 50;
  }
  tweak?.(spec, connectors);
  return { spec, connectors };
}

export async function startStack(options: {
  name: string;
  store?: StoreKind;
  spec: WorkflowSpec;
  connectors: ConnectorRuntimeConfig[];
  storeUrl?: string;
  generation?: number;
  /** Connectors keep their outbox, inbox and watermarks in the workflow's database too. */
  connectorStore?: boolean;
}): Promise<StackHarness> {
  const storeUrl =
    options.storeUrl ?? (await storeUrlFor(options.store ?? 'postgres', options.name.replace(/-/g, '_')));
  const stack = await startLocalStack({
    namespace: options.name.replace(/[^a-z0-9]/g, '-'),
    workflowName: 'distributor',
    spec: options.spec,
    connectors: options.connectors,
    storeUrl,
    connectorStoreUrl: options.connectorStore ? storeUrl : undefined,
    brokerUrl: BROKER_URL,
    logger: createLogger('test', process.env.O2C_TEST_LOG ?? 'warn'),
    connectorRetry: { maxAttempts: 3, backoff: { initialMs: 100, maxMs: 500, multiplier: 2 } },
    timerPollMs: 50,
    generation: options.generation,
  });
  const client = createClient(
    OrderService,
    createConnectTransport({ baseUrl: `http://127.0.0.1:${stack.workflow.api.port}`, httpVersion: '1.1' }),
  );
  return {
    stack,
    client,
    connectors: options.connectors,
    stop: () => stack.stop({ deleteQueues: true }),
  };
}

export async function waitForState(
  client: Client<typeof OrderService>,
  id: string,
  states: OrderState[],
  timeoutMs = 30_000,
): Promise<import('../../../runtime/src/gen/o2c/v1/entities_pb.js').Order> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const { order } = await client.getOrder({ id });
    if (order && states.includes(order.state)) return order;
    if (Date.now() > deadline) {
      throw new Error(
        `order ${id} is ${OrderState[order?.state ?? 0]} (${order?.currentStep}: ${order?.statusReason}), expected ${states.map((s) => OrderState[s]).join(' or ')}`,
      );
    }
    await new Promise((r) => setTimeout(r, 50));
  }
}
