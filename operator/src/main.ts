// The operator process: settings from the environment, kubeconfig from KUBECONFIG or the pod's
// service account, graceful shutdown on SIGTERM / SIGINT.
import { fileURLToPath } from 'node:url';
import { pino } from 'pino';
import { settingsFromEnv } from './config.js';
import { type Secret, secretValue } from './controller.js';
import { type KubeAccess, KubeClient } from './kube.js';
import { loadKubeAccess } from './kubeconfig.js';
import { Operator } from './operator.js';

/** The operator's own broker URL: O2C_AMQP_URL, else the broker Secret the pods get. */
async function ownBrokerUrl(kubeConfig: KubeAccess, settings: ReturnType<typeof settingsFromEnv>) {
  if (settings.amqpUrl) return settings.amqpUrl;
  const { namespace, name, key } = settings.brokerSecret!;
  const client = new KubeClient(kubeConfig);
  try {
    const secret = await client.get<Secret>('Secret', namespace, name);
    if (!secret?.data?.[key])
      throw new Error(`broker Secret ${namespace}/${name} has no key '${key}' (O2C_BROKER_SECRET)`);
    return secretValue(secret, key);
  } finally {
    client.close();
  }
}

export async function runOperator(
  env: NodeJS.ProcessEnv = process.env,
  afterStop: () => Promise<void> = async () => {},
): Promise<Operator> {
  const settings = settingsFromEnv(env);
  const log = pino({ level: settings.logLevel, base: { component: 'o2c-operator' } });
  const kubeConfig = await loadKubeAccess(env);
  const operator = new Operator({
    kubeConfig,
    log,
    image: settings.image,
    identity: settings.identity,
    amqpUrl: await ownBrokerUrl(kubeConfig, settings),
    brokerSecret: settings.brokerSecret,
    resyncMs: settings.resyncMs,
    leaseNamespace: settings.leaseNamespace,
    leaseName: settings.leaseName,
    healthPort: settings.healthPort,
    workers: settings.workers,
    // A replica that lost the Lease exits, so it comes back as a clean standby.
    onLostLeadership: () => process.exit(1),
  });
  let stopping = false;
  const shutdown = (signal: string) => {
    if (stopping) return;
    stopping = true;
    log.info({ signal }, 'shutting down');
    operator
      .stop()
      .then(afterStop)
      .then(
        () => process.exit(0),
        (err) => {
          log.error({ err }, 'shutdown failed');
          process.exit(1);
        },
      );
  };
  process.once('SIGTERM', () => shutdown('SIGTERM'));
  process.once('SIGINT', () => shutdown('SIGINT'));
  await operator.start();
  log.info(
    { identity: settings.identity, image: settings.image, healthPort: operator.healthPort },
    'operator started',
  );
  return operator;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  runOperator().catch((err) => {
    console.error(err);
    process.exit(1);
  });
}
