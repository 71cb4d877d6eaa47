// One workflow replica for bench/workflow.ts, in a process of its own: the workflow role (order API,
// outbox relay, engine) of examples/distributor/ on the PostgreSQL database and Workflow the bench
// names. Sends { type: 'ready', port, queues } over its IPC channel once the API listens; stops on
// SIGTERM.
//   O2C_BENCH_STORE_URL  the workflow's PostgreSQL database (migrated by the first replica)
//   O2C_NAMESPACE        the Workflow's namespace
import type { QueueSpec } from '../runtime/src/bus/topology.js';
import { stackFromManifests } from '../runtime/src/local/stack.js';
import { loadManifests } from '../runtime/src/manifests.js';
import { createLogger } from '../runtime/src/observability/logger.js';
import { createRegistry } from '../runtime/src/observability/metrics.js';
import { startWorkflowRole } from '../runtime/src/roles/workflow.js';

/** What a replica sends once it serves (bench/workflow.ts reads it). */
export interface ReplicaReady {
  type: 'ready';
  port: number;
  queues: QueueSpec[];
}

const storeUrl = process.env.O2C_BENCH_STORE_URL;
const namespace = process.env.O2C_NAMESPACE;
if (!storeUrl || !namespace) throw new Error('O2C_BENCH_STORE_URL and O2C_NAMESPACE are required');
const parsed = stackFromManifests(loadManifests(['examples/distributor/']));
const role = await startWorkflowRole({
  storeUrl,
  brokerUrl: process.env.O2C_BROKER_URL ?? 'amqp://guest:guest@127.0.0.1:5672',
  host: '127.0.0.1',
  apiPort: 0,
  source: `o2c/${namespace}/workflow/distributor`,
  workflowGeneration: 1,
  workflow: { namespace, name: 'distributor', spec: parsed.spec, timerPollMs: 500 },
  logger: createLogger('bench-replica', 'warn'),
  registry: createRegistry(false),
});
const ready: ReplicaReady = {
  type: 'ready',
  port: role.api.port,
  queues: [...(role.engine?.queueSpecs() ?? [])],
};
process.send?.(ready);
process.once('SIGTERM', async () => {
  await role.stop();
  process.exit(0);
});
