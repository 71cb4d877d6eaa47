// One runtime role in a process of its own, for tests that restart services under it and assert it
// never exits: O2C_ROLE=workflow (the distributor Workflow: API, engine, relay), connectors (every
// distributor Connector on simulator drivers, replies and events through a store's outbox when
// O2C_STORE_URL is set) or pipeline (items-to-crm, with a store inbox when O2C_STORE_URL is set).
// Prints "ready <json>" on stdout, then its pino lines; answers the IPC message "stats" with what
// its simulators and workers did (see RoleStats).
import type { Registry } from 'prom-client';
import { BusConnection } from '../../../runtime/src/bus/connection.js';
import { connectorMigrations } from '../../../runtime/src/connectors/bindings.js';
import type { ConnectorRuntimeConfig } from '../../../runtime/src/connectors/config.js';
import {
  type DriverMethod,
  METHODS_BY_OPERATION,
  type MethodName,
} from '../../../runtime/src/connectors/driver.js';
import { type ConnectorRole, startConnectorRole } from '../../../runtime/src/connectors/role.js';
import type { SimulatorDriver } from '../../../runtime/src/connectors/simulator/driver.js';
import { stackFromManifests } from '../../../runtime/src/local/stack.js';
import { loadManifests, ofKind } from '../../../runtime/src/manifests.js';
import { createLogger } from '../../../runtime/src/observability/logger.js';
import { createRegistry } from '../../../runtime/src/observability/metrics.js';
import type { PipelineSpec } from '../../../runtime/src/pipeline/spec.js';
import { startPipelineRole } from '../../../runtime/src/roles/pipeline.js';
import { startWorkflowRole } from '../../../runtime/src/roles/workflow.js';
import { openStore, registerMigrations, type Store } from '../../../runtime/src/store/index.js';

/** What a role process reports on the IPC message "stats". */
export interface RoleStats {
  /** connectors: the ERP simulator's sales orders (one per order id by construction). */
  salesOrders?: number;
  /** connectors: calls that reached each simulator, `<connector>.<method>` -> count. */
  calls?: Record<string, number>;
  /** connectors: every UpsertItem the CRM simulator received, as [sku, epoch ms]. */
  crmUpserts?: [string, number][];
  /** pipeline: the worker's outcome counts. */
  pipeline?: Record<string, number>;
  /** connectors: calls per `<connector>:<idempotency key>` (one order step) that came more than once. */
  repeatedKeys?: Record<string, number>;
  /** connectors: keys with a call made while another call with that key was still running. */
  overlappingKeys?: string[];
  /** workflow: deliveries its engine consumed, per queue. */
  consumed?: Record<string, number>;
}

const role = process.env.O2C_ROLE;
const namespace = process.env.O2C_NAMESPACE ?? 'restart';
const brokerUrl = process.env.O2C_BROKER_URL ?? '';
const storeUrl = process.env.O2C_STORE_URL || undefined;
const logger = createLogger(`o2c-${role}`, process.env.O2C_LOG_LEVEL ?? 'warn');
const registry: Registry = createRegistry(false);
const manifests = loadManifests(['examples/distributor/']);
const distributor = stackFromManifests(manifests);

let stats: () => RoleStats | Promise<RoleStats> = () => ({});
let stop: () => Promise<void>;
let ready: Record<string, unknown> = {};

if (role === 'workflow') {
  // A dispatch or payment whose event was lost (a connector's outbox write cut off by the database
  // restart) is asked for after a short quiet period, as an operator would configure pollAfter.
  const spec = structuredClone(distributor.spec);
  spec.steps = spec.steps.map((s) => (s.await ? { ...s, await: { ...s.await, pollAfter: '3s' } } : s));
  const running = await startWorkflowRole({
    storeUrl: storeUrl ?? '',
    brokerUrl,
    host: '127.0.0.1',
    apiPort: 0,
    source: `o2c/${namespace}/workflow/distributor`,
    workflowGeneration: 1,
    workflow: { namespace, name: 'distributor', spec, timerPollMs: 100 },
    logger,
    registry,
  });
  ready = { apiPort: running.api.port, pid: process.pid };
  stats = async () => {
    const metric = registry.getSingleMetric('o2c_bus_consumed_total');
    const consumed: Record<string, number> = {};
    for (const v of (await metric?.get())?.values ?? []) consumed[String(v.labels.queue)] = v.value;
    return { consumed };
  };
  stop = () => running.stop();
} else if (role === 'connectors' || role === 'pipeline') {
  const bus = new BusConnection({ url: brokerUrl, name: `o2c/${namespace}/${role}`, logger });
  await bus.start();
  let store: Store | undefined;
  if (storeUrl) {
    registerMigrations(connectorMigrations);
    store = await openStore(storeUrl);
  }
  if (role === 'connectors') {
    const roles: ConnectorRole[] = [];
    const crmUpserts: [string, number][] = [];
    // O2C_SIM_LATENCY_MS=min-max: simulated calls take that long, so two calls for one order step at
    // once would overlap and be seen.
    const latency = /^(\d+)-(\d+)$/.exec(process.env.O2C_SIM_LATENCY_MS ?? '');
    const callsByKey = new Map<string, number>();
    const inFlightKeys = new Set<string>();
    const overlappingKeys: string[] = [];
    for (const c of distributor.connectors) {
      const config: ConnectorRuntimeConfig = structuredClone(c);
      config.options ??= {};
      // Dispatch and payment happen inside the simulated systems soon after the commands (at once
      // with O2C_SIM_EVENTS_AFTER_MS=0: the event races the command's reply to the workflow).
      const eventsAfterMs = Number(process.env.O2C_SIM_EVENTS_AFTER_MS ?? 50);
      if ('dispatchAfterMs' in config.options) config.options.dispatchAfterMs = eventsAfterMs;
      if ('payAfterMs' in config.options) config.options.payAfterMs = eventsAfterMs;
      config.limits = { ...config.limits, requestsPerSecond: 10_000, maxConcurrency: 64 };
      if (latency) config.options.latencyMs = { min: Number(latency[1]), max: Number(latency[2]) };
      // items-to-crm writes items into the CRM, which the example's crm does not declare it owns.
      if (config.name === 'crm' && !config.owns?.includes('item'))
        config.owns = [...(config.owns ?? []), 'item'];
      const started = await startConnectorRole({
        config: { ...config, namespace },
        connection: bus,
        store,
        logger,
        retry: { maxAttempts: 10, backoff: { initialMs: 100, maxMs: 1_000, multiplier: 2 } },
      });
      roles.push(started);
      const methods = started.runtime.driver as unknown as Record<string, DriverMethod<MethodName>>;
      for (const { localName } of METHODS_BY_OPERATION.values()) {
        const call = methods[localName];
        if (!call) continue;
        methods[localName] = async (req, ctx) => {
          const key = `${config.name}:${ctx.idempotencyKey}`;
          callsByKey.set(key, (callsByKey.get(key) ?? 0) + 1);
          if (inFlightKeys.has(key)) overlappingKeys.push(key);
          inFlightKeys.add(key);
          try {
            return await call(req, ctx);
          } finally {
            inFlightKeys.delete(key);
          }
        };
      }
      if (config.name === 'crm') {
        const driver = started.runtime.driver as SimulatorDriver;
        const upsertItem = driver.upsertItem;
        driver.upsertItem = (req, ctx) => {
          crmUpserts.push([req.item?.sku ?? '', Date.now()]);
          return upsertItem(req, ctx);
        };
      }
    }
    stats = () => {
      const calls: Record<string, number> = {};
      for (const r of roles) {
        const driver = r.runtime.driver as SimulatorDriver;
        for (const [method, n] of driver.callCounts) calls[`${r.runtime.config.name}.${method}`] = n;
      }
      const erp = roles.find((r) => r.runtime.config.name === 'erp')?.runtime.driver as SimulatorDriver;
      const repeatedKeys = Object.fromEntries([...callsByKey].filter(([, n]) => n > 1));
      return { salesOrders: erp?.salesOrderCount(), calls, crmUpserts, repeatedKeys, overlappingKeys };
    };
    stop = async () => {
      for (const r of roles) await r.stop();
      await bus.close();
      await store?.close();
    };
  } else {
    const manifest = ofKind(manifests, 'Pipeline').find((m) => m.metadata.name === 'items-to-crm');
    const spec = structuredClone(manifest?.spec) as unknown as PipelineSpec;
    // Outages of a few seconds are retried within the attempts, not parked.
    spec.delivery = { ...spec.delivery, maxAttempts: 20, backoff: { initial: '200ms', max: '2s' } };
    const running = await startPipelineRole({
      namespace,
      name: 'items-to-crm',
      spec,
      connection: bus,
      store,
      logger,
      registry,
      partitions: 2,
      replyTimeoutMs: 5_000,
    });
    stats = () => ({ pipeline: { ...running.worker.counts } });
    stop = async () => {
      await running.stop();
      await bus.close();
      await store?.close();
    };
  }
} else {
  throw new Error(`O2C_ROLE must be workflow, connectors or pipeline, not ${role}`);
}

process.on('message', (m) => {
  if (m === 'stats') void Promise.resolve(stats()).then((s) => process.send?.({ stats: s }));
});
process.once('SIGTERM', () => {
  stop().then(
    () => process.exit(0),
    () => process.exit(1),
  );
});
process.stdout.write(`ready ${JSON.stringify(ready)}\n`);
