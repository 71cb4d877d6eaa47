// The distributor's simulator connectors in a process of their own, for bench/workflow.ts.
// Prints "ready" once every command queue is consumed.
import { BusConnection } from '../runtime/src/bus/connection.js';
import { type ConnectorRole, startConnectorRole } from '../runtime/src/connectors/role.js';
import { stackFromManifests } from '../runtime/src/local/stack.js';
import { loadManifests } from '../runtime/src/manifests.js';
import { createLogger } from '../runtime/src/observability/logger.js';

const namespace = process.env.O2C_NAMESPACE ?? 'bench';
const logger = createLogger('bench-connectors', 'warn');
const parsed = stackFromManifests(loadManifests(['examples/distributor/']));
const bus = new BusConnection({
  url: process.env.O2C_BROKER_URL ?? 'amqp://guest:guest@127.0.0.1:5672',
  name: 'bench-connectors',
  logger,
});
await bus.start();
const roles: ConnectorRole[] = [];
for (const config of parsed.connectors) {
  const options = { ...(config.options ?? {}), dispatchAfterMs: 0, payAfterMs: 0, defaultStock: 10_000_000 };
  if ('stock' in options) options.stock = {};
  roles.push(
    await startConnectorRole({
      config: {
        ...config,
        namespace,
        options,
        limits: { ...config.limits, requestsPerSecond: 100_000, maxConcurrency: 256, burst: 10_000 },
      },
      connection: bus,
      logger,
      prefetch: 256,
    }),
  );
}
process.stdout.write('ready\n');
process.on('SIGTERM', async () => {
  for (const r of roles) await r.stop();
  await bus.close();
  process.exit(0);
});
