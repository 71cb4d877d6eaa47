// Operator settings from the environment (the Helm chart sets them on the Deployment).

import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { DEFAULT_RESYNC_MS } from './operator.js';
import { candidateIdentity } from './runtime/leader.js';

export interface OperatorSettings {
  image: string;
  /** The operator's own connection; unset with a broker Secret: read from that Secret at start. */
  amqpUrl?: string;
  /** Secret with the broker URL the runtime pods get (copied into each resource's connection Secret). */
  brokerSecret?: { namespace: string; name: string; key: string };
  leaseNamespace: string;
  leaseName: string;
  identity: string;
  healthPort: number;
  workers: number;
  resyncMs: number;
  logLevel: string;
}

export class SettingsError extends Error {
  override readonly name = 'SettingsError';
}

function inClusterNamespace(): string | undefined {
  try {
    return readFileSync('/var/run/secrets/kubernetes.io/serviceaccount/namespace', 'utf8').trim();
  } catch {
    return undefined;
  }
}

const positive = (env: NodeJS.ProcessEnv, name: string, fallback: number): number => {
  const raw = env[name];
  if (raw === undefined || raw === '') return fallback;
  const n = Number(raw);
  if (!Number.isFinite(n) || n <= 0) throw new SettingsError(`${name}=${raw}: expected a positive number`);
  return n;
};

export function settingsFromEnv(
  env: NodeJS.ProcessEnv = process.env,
  ownNamespace: () => string | undefined = inClusterNamespace,
): OperatorSettings {
  const leaseNamespace = env.POD_NAMESPACE || ownNamespace() || 'default';
  const secretName = env.O2C_BROKER_SECRET || undefined;
  const amqpUrl = env.O2C_AMQP_URL || undefined;
  if (!secretName && !amqpUrl) {
    throw new SettingsError(
      'no broker configured: set O2C_BROKER_SECRET (a Secret holding the RabbitMQ URL; key O2C_BROKER_SECRET_KEY, default url; namespace O2C_BROKER_SECRET_NAMESPACE, default the operator namespace) or O2C_AMQP_URL',
    );
  }
  if (!env.O2C_RUNTIME_IMAGE) {
    throw new SettingsError('O2C_RUNTIME_IMAGE is not set: the image runtime pods run (e.g. o2c:0.1.0)');
  }
  return {
    image: env.O2C_RUNTIME_IMAGE,
    amqpUrl,
    brokerSecret: secretName
      ? {
          namespace: env.O2C_BROKER_SECRET_NAMESPACE || leaseNamespace,
          name: secretName,
          key: env.O2C_BROKER_SECRET_KEY || 'url',
        }
      : undefined,
    leaseNamespace,
    leaseName: env.O2C_LEASE_NAME ?? 'o2c-operator',
    // One per process: a restarted container is a new candidate, not the Lease holder it replaced.
    identity: candidateIdentity(env.POD_NAME || hostname()),
    healthPort: Number(env.O2C_HEALTH_PORT ?? 8081),
    workers: positive(env, 'O2C_WORKERS', 8),
    resyncMs: positive(env, 'O2C_RESYNC_SECONDS', DEFAULT_RESYNC_MS / 1000) * 1000,
    logLevel: env.LOG_LEVEL ?? 'info',
  };
}
