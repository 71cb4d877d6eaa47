// The distributor's simulator connectors in a process of their own, for bench/workflow.ts. Prints
// "ready" once every command queue is consumed. Over its IPC channel it answers { type: 'counts' }
// with what the simulated ERP holds: the sales orders CreateSalesOrder created per o2c order id
// (counted as each call returns, so a second sales order for one order is seen even though the
// simulator keys its own map by order id), and how often CreateSalesOrder was called.
import { BusConnection } from '../runtime/src/bus/connection.js';
import { type ConnectorRole, startConnectorRole } from '../runtime/src/connectors/role.js';
import { SimulatorDriver } from '../runtime/src/connectors/simulator/driver.js';
import { stackFromManifests } from '../runtime/src/local/stack.js';
import { loadManifests } from '../runtime/src/manifests.js';
import { createLogger } from '../runtime/src/observability/logger.js';

/** The answer to { type: 'counts' } (bench/workflow.ts reads it). */
export interface SimulatorCounts {
  type: 'counts';
  /** o2c order id -> sales orders created for it (CreateSalesOrder answers with existed: false). */
  salesOrdersCreated: Record<string, number>;
  /** CreateSalesOrder calls that reached the simulated ERP, repeats included. */
  createSalesOrderCalls: number;
  /** Sales order records the simulated ERP holds. */
  salesOrderRecords: number;
}

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
const created = new Map<string, number>();
let createCalls = 0;
const simulators: SimulatorDriver[] = [];
for (const config of parsed.connectors) {
  const options = { ...(config.options ?? {}), dispatchAfterMs: 0, payAfterMs: 0, defaultStock: 10_000_000 };
  if ('stock' in options) options.stock = {};
  const role = await startConnectorRole({
    config: {
      ...config,
      namespace,
      options,
      limits: { ...config.limits, requestsPerSecond: 100_000, maxConcurrency: 256, burst: 10_000 },
    },
    connection: bus,
    logger,
    prefetch: 256,
  });
  roles.push(role);
  const driver = role.runtime.driver;
  if (!(driver instanceof SimulatorDriver)) continue;
  simulators.push(driver);
  // The runtime looks the method up on the driver at each call: wrapping it here sees every call.
  const createSalesOrder = driver.createSalesOrder;
  driver.createSalesOrder = async (req, ctx) => {
    const res = await createSalesOrder(req, ctx);
    createCalls++;
    const id = req.order?.id ?? '';
    if (!res.existed) created.set(id, (created.get(id) ?? 0) + 1);
    return res;
  };
}
process.on('message', (m: { type?: string }) => {
  if (m?.type !== 'counts') return;
  const answer: SimulatorCounts = {
    type: 'counts',
    salesOrdersCreated: Object.fromEntries(created),
    createSalesOrderCalls: createCalls,
    salesOrderRecords: simulators.reduce((n, d) => n + d.salesOrderCount(), 0),
  };
  process.send?.(answer);
});
process.stdout.write('ready\n');
process.on('SIGTERM', async () => {
  for (const r of roles) await r.stop();
  await bus.close();
  process.exit(0);
});
