// The runtime image's entry point: `main.js --role workflow|connector|pipeline --config
// /etc/o2c/config.json`. The operator renders the config (runtime/src/contract/runtime-config.ts:
// spec, resolved Connectors, queues and routing keys; secrets only as mounted file paths); this checks
// it, turns it into the role's options and runs the role until SIGTERM.
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import type { StoreSpec } from '../../crds/schema.js';
import { startHealthServer } from './api/health.js';
import {
  CONFIG_PATH,
  DATA_DIR,
  DEFAULT_API_PORT,
  HEALTH_PORT,
  parseRuntimeConfig,
  queueRoute,
  type RuntimeConfig,
  RuntimeConfigError,
} from './contract/runtime-config.js';
import { createLogger } from './observability/logger.js';
import { createRegistry } from './observability/metrics.js';

interface SecretKeyRef {
  name: string;
  key?: string;
}

function secretFile(config: RuntimeConfig, ref: SecretKeyRef, defaultKey: string): string {
  const dir = config.secrets[ref.name];
  if (!dir)
    throw new RuntimeConfigError(`Secret ${ref.name} is not mounted (config.secrets has no entry for it)`);
  return `${dir}/${ref.key ?? defaultKey}`;
}

/** The broker URL from the file the operator mounted; there is no default host to fall back to. */
function brokerUrl(config: RuntimeConfig): string {
  let url: string;
  try {
    url = readFileSync(config.broker.urlFile, 'utf8').trim();
  } catch (err) {
    throw new RuntimeConfigError(
      `broker URL file ${config.broker.urlFile} cannot be read (${(err as Error).message}): the operator mounts it from its broker Secret`,
    );
  }
  if (!url) throw new RuntimeConfigError(`broker URL file ${config.broker.urlFile} is empty`);
  return url;
}

/** The store URL of a Workflow or Connector: PostgreSQL from its Secret, else SQLite on the data volume. */
function storeUrl(config: RuntimeConfig, store: StoreSpec | undefined): string {
  if (store?.postgres)
    return readFileSync(secretFile(config, store.postgres.urlSecretRef, 'url'), 'utf8').trim();
  return `sqlite:${process.env.O2C_DATA_DIR ?? DATA_DIR}/${config.name}.sqlite`;
}

/** HEALTH_PORT in a pod (the probes point there); O2C_HEALTH_PORT only outside one, e.g. tests on a shared host. */
const healthPort = (): number => Number(process.env.O2C_HEALTH_PORT || HEALTH_PORT);

const commandRoutingKeys = (config: RuntimeConfig): Record<string, string> =>
  Object.fromEntries(Object.entries(config.connectors).map(([name, c]) => [name, c.routingKey]));

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: { role: { type: 'string' }, config: { type: 'string', default: CONFIG_PATH } },
  });
  const config = parseRuntimeConfig(readFileSync(values.config, 'utf8'), values.config);
  const role = values.role ?? config.role;
  if (role !== config.role)
    throw new RuntimeConfigError(`--role ${role} but the config is for ${config.role}`);
  const logger = createLogger(`o2c-${role}`).child({
    kind: role,
    namespace: config.namespace,
    name: config.name,
  });
  const registry = createRegistry();
  const source = `o2c/${config.namespace}/${role}/${config.name}`;
  const url = brokerUrl(config);
  let stop: () => Promise<void>;

  // Each role loads only its own modules: start-up time is mostly module loading (bench/image.ts).
  if (config.role === 'workflow') {
    const { spec } = config;
    const { startWorkflowRole } = await import('./roles/workflow.js');
    const running = await startWorkflowRole({
      storeUrl: storeUrl(config, spec.store),
      brokerUrl: url,
      apiPort: spec.api?.port ?? DEFAULT_API_PORT,
      healthPort: healthPort(),
      tokensFile: spec.api?.authSecretRef ? secretFile(config, spec.api.authSecretRef, 'tokens') : undefined,
      source,
      workflowGeneration: config.generation,
      workflow: {
        namespace: config.namespace,
        name: config.name,
        spec: { steps: spec.steps, notify: spec.notify },
        routes: {
          queues: config.broker.queues,
          replyRoutingKey:
            config.broker.replyRoutingKey ??
            (() => {
              throw new RuntimeConfigError(
                'broker.replyRoutingKey is missing from the Workflow runtime config',
              );
            })(),
          commandRoutingKeys: commandRoutingKeys(config),
        },
      },
      logger,
      registry,
    });
    stop = () => running.stop();
  } else {
    const { BusConnection } = await import('./bus/connection.js');
    const bus = new BusConnection({ url, name: source, logger });
    await bus.start();
    let stopRole: () => Promise<void>;
    if (config.role === 'connector') {
      const { spec } = config;
      const credentialsDir = spec.credentialsSecretRef
        ? config.secrets[spec.credentialsSecretRef.name]
        : undefined;
      const [{ connectorMigrations }, { startConnectorRole }, { openStore, registerMigrations }] =
        await Promise.all([
          import('./connectors/bindings.js'),
          import('./connectors/role.js'),
          import('./store/index.js'),
        ]);
      // Outbox (replies and the events it originates), inbox, ID bindings and change-feed watermarks.
      registerMigrations(connectorMigrations);
      const store = await openStore(storeUrl(config, spec.store));
      const running = await startConnectorRole({
        config: { ...spec, name: config.name, namespace: config.namespace, credentialsDir },
        route: queueRoute(config, 'commands'),
        connection: bus,
        store,
        logger,
      });
      stopRole = async () => {
        await running.stop();
        await store.close();
      };
    } else {
      const { spec } = config;
      const { startPipelineRole } = await import('./roles/pipeline.js');
      const sink = config.connectors[spec.sink.connector];
      if (!sink) throw new RuntimeConfigError(`connectors.${spec.sink.connector} (the sink) is missing`);
      const running = await startPipelineRole({
        namespace: config.namespace,
        name: config.name,
        spec,
        routes: {
          events: queueRoute(config, 'events'),
          deliveries: config.broker.queues.deliveries,
          sinkRoutingKey: sink.routingKey,
        },
        connection: bus,
        logger,
        registry,
      });
      stopRole = () => running.stop();
    }
    const health = await startHealthServer({
      port: healthPort(),
      registry,
      readiness: async () => (bus.connected ? undefined : 'broker not connected'),
    });
    stop = async () => {
      await health.close();
      await stopRole();
      await bus.close();
    };
  }
  logger.info('running');
  await new Promise<void>((resolve) => {
    process.once('SIGTERM', resolve);
    process.once('SIGINT', resolve);
  });
  logger.info('stopping: finishing in-flight work');
  await stop();
}

main().catch((err: unknown) => {
  // A config problem is one clear line; anything else with its stack.
  console.error(err instanceof RuntimeConfigError ? `o2c: ${err.message}` : err);
  process.exit(1);
});
