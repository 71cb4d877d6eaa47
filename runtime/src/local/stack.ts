// The whole O2C flow in one process, the way `o2c dev`, `make demo`, the workflow tests and the
// workflow benchmark run it: a workflow role (order API, engine, store, outbox relay) and one
// connector role per Connector, all over the real RabbitMQ.
import amqp from 'amqplib';
import type { Registry } from 'prom-client';
import { BusConnection } from '../bus/connection.js';
import { deleteQueueTopology, type QueueSpec, type RetryPolicy } from '../bus/topology.js';
import { connectorMigrations } from '../connectors/bindings.js';
import type { ConnectorRuntimeConfig } from '../connectors/config.js';
import { type ConnectorRole, startConnectorRole } from '../connectors/role.js';
import type { Manifest } from '../manifests.js';
import { ofKind } from '../manifests.js';
import type { Logger } from '../observability/logger.js';
import { createRegistry } from '../observability/metrics.js';
import { startWorkflowRole, type WorkflowRole } from '../roles/workflow.js';
import { openStore, registerMigrations } from '../store/index.js';
import type { Store } from '../store/types.js';
import { awaitFallback } from '../workflow/await-fallback.js';
import type { WorkflowSpec } from '../workflow/spec.js';

export interface LocalStackOptions {
  namespace: string;
  workflowName: string;
  spec: WorkflowSpec;
  connectors: ConnectorRuntimeConfig[];
  storeUrl: string;
  /**
   * The connectors' store (outbox, inbox, bindings, watermarks), one for all of them; without it
   * connectors publish directly (tests). May be the workflow's PostgreSQL URL; for SQLite use another file.
   */
  connectorStoreUrl?: string;
  brokerUrl: string;
  host?: string;
  apiPort?: number;
  healthPort?: number;
  tokensFile?: string;
  logger: Logger;
  registry?: Registry;
  /** Retry policy of the connectors' command queues (tests shorten it). */
  connectorRetry?: RetryPolicy;
  timerPollMs?: number;
  generation?: number;
}

export interface LocalStack {
  workflow: WorkflowRole;
  connectors: Map<string, ConnectorRole>;
  connectorBus: BusConnection;
  /** The connectors' store, with connectorStoreUrl. */
  connectorStore?: Store;
  /** Stops everything; with deleteQueues the stack's queues go too (tests, the demo). */
  stop(options?: { deleteQueues?: boolean }): Promise<void>;
}

export async function startLocalStack(o: LocalStackOptions): Promise<LocalStack> {
  const registry = o.registry ?? createRegistry(false);
  // Connectors first: their command queues must exist before the workflow sends commands.
  const connectorBus = new BusConnection({
    url: o.brokerUrl,
    name: `o2c/${o.namespace}/connectors`,
    logger: o.logger,
  });
  await connectorBus.start();
  let connectorStore: Store | undefined;
  if (o.connectorStoreUrl) {
    // Two SQLite handles on one file would each run an outbox relay (the embedded lease is per handle).
    if (o.connectorStoreUrl === o.storeUrl && o.storeUrl.startsWith('sqlite:'))
      throw new Error('connectorStoreUrl: give the connectors a SQLite file of their own');
    registerMigrations(connectorMigrations);
    connectorStore = await openStore(o.connectorStoreUrl);
  }
  const connectors = new Map<string, ConnectorRole>();
  for (const config of o.connectors) {
    connectors.set(
      config.name,
      await startConnectorRole({
        config: { ...config, namespace: o.namespace },
        connection: connectorBus,
        // One store for all: its lease lets one of their outbox relays run at a time.
        store: connectorStore,
        logger: o.logger,
        retry: o.connectorRetry,
      }),
    );
  }
  const workflow = await startWorkflowRole({
    storeUrl: o.storeUrl,
    brokerUrl: o.brokerUrl,
    host: o.host ?? '127.0.0.1',
    apiPort: o.apiPort ?? 0,
    healthPort: o.healthPort,
    tokensFile: o.tokensFile,
    source: `o2c/${o.namespace}/workflow/${o.workflowName}`,
    workflowGeneration: o.generation ?? 1,
    workflow: { namespace: o.namespace, name: o.workflowName, spec: o.spec, timerPollMs: o.timerPollMs },
    logger: o.logger,
    registry,
  });
  return {
    workflow,
    connectors,
    connectorBus,
    connectorStore,
    async stop(options = {}) {
      const specs = [
        ...(workflow.engine?.queueSpecs() ?? []),
        ...[...connectors.values()].map((c) => c.consumer.spec),
      ];
      await workflow.stop();
      for (const c of connectors.values()) await c.stop();
      await connectorStore?.close();
      await connectorBus.close();
      if (options.deleteQueues) await deleteQueues(o.brokerUrl, specs);
    },
  };
}

/** Deletes the queues of `specs` (not the shared delay tiers); a queue already gone is fine. */
export async function deleteQueues(brokerUrl: string, specs: QueueSpec[]): Promise<void> {
  const conn = await amqp.connect(brokerUrl);
  try {
    for (const spec of specs) await deleteQueueTopology(conn, spec);
  } finally {
    await conn.close();
  }
}

/** Reads a Workflow and its Connectors from manifests into the stack's options. */
export function stackFromManifests(manifests: Manifest[]): {
  workflowName: string;
  spec: WorkflowSpec;
  connectors: ConnectorRuntimeConfig[];
} {
  const workflow = ofKind(manifests, 'Workflow')[0];
  if (!workflow) throw new Error('no Workflow among the manifests');
  const spec = workflow.spec as unknown as WorkflowSpec;
  const connectors = ofKind(manifests, 'Connector').map((m) => {
    const s = (m.spec ?? {}) as Omit<ConnectorRuntimeConfig, 'name'>;
    return { ...s, name: m.metadata.name } as ConnectorRuntimeConfig;
  });
  for (const [i, step] of spec.steps.entries()) {
    // The Connector a step calls, or an await asks after its quiet period.
    const target = step.call?.connector ?? awaitFallback(spec.steps, i)?.connector;
    if (target && !connectors.some((c) => c.name === target)) {
      throw new Error(
        `Workflow ${workflow.metadata.name} step ${step.name} ${step.call ? 'calls' : 'asks'} Connector ${target}, which is not among the manifests`,
      );
    }
  }
  return { workflowName: workflow.metadata.name, spec, connectors };
}
