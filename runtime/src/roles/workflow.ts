// The workflow role: the order API, the store and the outbox relay (and, with the workflow engine,
// the O2C state machine) in one process.
import type { Registry } from 'prom-client';
import { type RunningServer, startHealthServer } from '../api/health.js';
import type { ApiLimits } from '../api/limits.js';
import { orderServiceRoutes } from '../api/order-service.js';
import { startApiServer } from '../api/server.js';
import { addressOfSource, sourceOf } from '../bus/addressing.js';
import { BusConnection } from '../bus/connection.js';
import { declareEventLog } from '../bus/event-log.js';
import { ConfirmPublisher } from '../bus/publisher.js';
import { connectorMigrations } from '../connectors/bindings.js';
import type { Logger } from '../observability/logger.js';
import { createRegistry } from '../observability/metrics.js';
import { OrderRepository } from '../orders/repository.js';
import { OutboxRelay } from '../outbox/relay.js';
import { openStore, registerMigrations } from '../store/index.js';
import type { Store } from '../store/types.js';
import { WorkflowEngine, type WorkflowRoutes } from '../workflow/engine.js';
import { workflowMigrations } from '../workflow/migrations.js';
import type { WorkflowSpec } from '../workflow/spec.js';

export interface WorkflowRoleOptions {
  /** postgres://... or sqlite:<path>. */
  storeUrl: string;
  /** amqp://...; without it the outbox keeps events until a broker is configured. */
  brokerUrl?: string;
  /** Where the order API listens (default every interface: it authenticates its callers). */
  host?: string;
  apiPort: number;
  healthPort?: number;
  /** Where health and metrics listen; default healthAddressFromEnv (api/limits.ts). */
  healthHost?: string;
  /** Request size, header, stream, connection and time limits; default the O2C_API_* environment. */
  apiLimits?: ApiLimits;
  tokensFile?: string;
  /** e.g. "o2c/default/workflow/distributor" */
  source: string;
  workflowGeneration?: number;
  /** The Workflow to run; without it (or without a broker) the role serves the order API only. */
  workflow?: {
    namespace: string;
    name: string;
    spec: WorkflowSpec;
    timerPollMs?: number;
    /** As the operator rendered them (runtime config); default computed from the names. */
    routes?: WorkflowRoutes;
  };
  logger: Logger;
  registry?: Registry;
}

export interface WorkflowRole {
  store: Store;
  orders: OrderRepository;
  api: RunningServer;
  health?: RunningServer;
  relay?: OutboxRelay;
  engine?: WorkflowEngine;
  bus?: BusConnection;
  stop(): Promise<void>;
}

export async function startWorkflowRole(options: WorkflowRoleOptions): Promise<WorkflowRole> {
  const { logger } = options;
  // The source is the routing key's prefix of every event the role publishes (bus/addressing.ts): it
  // must name a resource, and with an engine this Workflow, or its orders would never reach it.
  const address = addressOfSource(options.source);
  if (!address)
    throw new Error(`source '${options.source}' names no resource (o2c/<namespace>/<kind>/<name>)`);
  if (options.workflow) {
    const own = sourceOf({
      namespace: options.workflow.namespace,
      kind: 'workflow',
      name: options.workflow.name,
    });
    if (options.source !== own)
      throw new Error(`source '${options.source}' must be ${own}, the Workflow it runs`);
  }
  const registry = options.registry ?? createRegistry();
  registerMigrations([...workflowMigrations, ...connectorMigrations]);
  const store = await openStore(options.storeUrl);
  const orders = new OrderRepository(store, options.source);

  let bus: BusConnection | undefined;
  let relay: OutboxRelay | undefined;
  if (options.brokerUrl) {
    bus = new BusConnection({ url: options.brokerUrl, name: options.source, logger });
    await bus.start();
    // Every event is also kept in the o2c.events.log stream, which makes each event type routable.
    await declareEventLog(bus);
    const publisher = new ConfirmPublisher(bus, { maxUnconfirmed: 1000 });
    relay = new OutboxRelay({
      store,
      publisher,
      logger: logger.child({ component: 'outbox-relay' }),
      registry,
    });
    relay.start();
    // Every committed change wrote outbox rows: wake the relay rather than wait for its next poll.
    orders.onAnyChange(() => relay?.wake());
  }

  let engine: WorkflowEngine | undefined;
  if (bus && options.workflow) {
    engine = new WorkflowEngine({
      store,
      orders,
      connection: bus,
      namespace: options.workflow.namespace,
      workflow: options.workflow.name,
      generation: options.workflowGeneration ?? 1,
      spec: options.workflow.spec,
      source: options.source,
      logger: logger.child({ component: 'workflow-engine' }),
      registry,
      timerPollMs: options.workflow.timerPollMs,
      routes: options.workflow.routes,
      onCommitted: () => relay?.wake(),
    });
    await engine.start();
  }

  const running = engine;
  const api = await startApiServer({
    host: options.host ?? '0.0.0.0',
    port: options.apiPort,
    routes: orderServiceRoutes({
      orders,
      engine,
      workflowGeneration: () => options.workflowGeneration ?? 0,
      // Back-pressure: SubmitOrder answers Unavailable while the engine's backlog is past its bound.
      admission:
        running && (() => ({ backlog: running.backlog(), drainPerSecond: running.drainPerSecond() })),
    }),
    logger: logger.child({ component: 'api' }),
    registry,
    tokensFile: options.tokensFile,
    limits: options.apiLimits,
  });

  const health =
    options.healthPort !== undefined
      ? await startHealthServer({
          host: options.healthHost,
          port: options.healthPort,
          registry,
          readiness: async () => {
            try {
              await store.transaction((tx) => tx.query('SELECT 1'));
            } catch (err) {
              return `store unreachable: ${(err as Error).message}`;
            }
            return undefined;
          },
        })
      : undefined;

  return {
    store,
    orders,
    api,
    health,
    relay,
    engine,
    bus,
    async stop() {
      await api.close();
      await health?.close();
      await engine?.stop();
      await relay?.stop();
      await bus?.close();
      await store.close();
    },
  };
}
