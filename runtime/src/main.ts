// The runtime image's entry point: `main.ts --role workflow|connector|pipeline --config
// /etc/o2c/config.json`. The operator renders the config (spec + resolved references; secrets only
// as mounted file paths); this turns it into the role's options and runs it until SIGTERM.
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { startHealthServer } from './api/server.js';
import { BusConnection } from './bus/connection.js';
import type { ConnectorRuntimeConfig } from './connectors/config.js';
import { startConnectorRole } from './connectors/role.js';
import { createLogger } from './observability/logger.js';
import { createRegistry } from './observability/metrics.js';
import { startPipelineRole } from './roles/pipeline.js';
import { startWorkflowRole } from './roles/workflow.js';
import type { WorkflowSpec } from './workflow/spec.js';

interface RuntimeConfig {
  role: 'workflow' | 'connector' | 'pipeline';
  namespace: string;
  name: string;
  generation: number;
  spec: unknown;
  broker: { urlFile?: string };
  /** Secret name -> directory where it is mounted. */
  secrets: Record<string, string>;
}

interface SecretKeyRef {
  name: string;
  key?: string;
}

const HEALTH_PORT = Number(process.env.O2C_HEALTH_PORT ?? 9090);

function readSecret(config: RuntimeConfig, ref: SecretKeyRef, defaultKey: string): string {
  const dir = config.secrets[ref.name];
  if (!dir) throw new Error(`Secret ${ref.name} is not mounted (config.secrets has no entry for it)`);
  return `${dir}/${ref.key ?? defaultKey}`;
}

function brokerUrl(config: RuntimeConfig): string {
  if (config.broker.urlFile) return readFileSync(config.broker.urlFile, 'utf8').trim();
  return process.env.O2C_BROKER_URL ?? 'amqp://guest:guest@rabbitmq:5672';
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: { role: { type: 'string' }, config: { type: 'string', default: '/etc/o2c/config.json' } },
  });
  const config = JSON.parse(readFileSync(values.config, 'utf8')) as RuntimeConfig;
  const role = values.role ?? config.role;
  if (role !== config.role) throw new Error(`--role ${role} but the config is for ${config.role}`);
  const logger = createLogger(`o2c-${role}`).child({
    kind: role,
    namespace: config.namespace,
    name: config.name,
  });
  const registry = createRegistry();
  const source = `o2c/${config.namespace}/${role}/${config.name}`;
  let stop: () => Promise<void>;

  if (role === 'workflow') {
    const spec = config.spec as {
      api?: { port?: number; authSecretRef?: SecretKeyRef };
      store: { postgres?: { urlSecretRef: SecretKeyRef }; embedded?: object };
    } & WorkflowSpec;
    const storeUrl = spec.store.postgres
      ? readFileSync(readSecret(config, spec.store.postgres.urlSecretRef, 'url'), 'utf8').trim()
      : `sqlite:${process.env.O2C_DATA_DIR ?? '/var/lib/o2c'}/${config.name}.sqlite`;
    const running = await startWorkflowRole({
      storeUrl,
      brokerUrl: brokerUrl(config),
      apiPort: spec.api?.port ?? 8080,
      healthPort: HEALTH_PORT,
      tokensFile: spec.api?.authSecretRef ? readSecret(config, spec.api.authSecretRef, 'tokens') : undefined,
      source,
      workflowGeneration: config.generation,
      workflow: {
        namespace: config.namespace,
        name: config.name,
        spec: { steps: spec.steps, notify: spec.notify },
      },
      logger,
      registry,
    });
    stop = () => running.stop();
  } else {
    const bus = new BusConnection({ url: brokerUrl(config), name: source, logger });
    await bus.start();
    let stopRole: () => Promise<void>;
    if (role === 'connector') {
      const spec = config.spec as Omit<ConnectorRuntimeConfig, 'name' | 'namespace'>;
      const credentialsDir = spec.credentialsSecretRef
        ? config.secrets[spec.credentialsSecretRef.name]
        : undefined;
      const running = await startConnectorRole({
        config: { ...spec, name: config.name, namespace: config.namespace, credentialsDir },
        connection: bus,
        logger,
      });
      stopRole = () => running.stop();
    } else {
      const running = await startPipelineRole({
        namespace: config.namespace,
        name: config.name,
        spec: config.spec as never,
        connection: bus,
        logger,
        registry,
      });
      stopRole = () => running.stop();
    }
    const health = await startHealthServer({
      host: '0.0.0.0',
      port: HEALTH_PORT,
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
  console.error(err);
  process.exit(1);
});
