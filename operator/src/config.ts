// Operator settings from the environment (the Helm chart sets them on the Deployment).

import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';

export const OPERATOR_VERSION = '0.1.0';

export interface OperatorSettings {
  image: string;
  amqpUrl: string;
  brokerSecretName?: string;
  leaseNamespace: string;
  leaseName: string;
  identity: string;
  healthPort: number;
  workers: number;
  logLevel: string;
}

function inClusterNamespace(): string | undefined {
  try {
    return readFileSync('/var/run/secrets/kubernetes.io/serviceaccount/namespace', 'utf8').trim();
  } catch {
    return undefined;
  }
}

export function settingsFromEnv(env: NodeJS.ProcessEnv = process.env): OperatorSettings {
  return {
    image: env.O2C_RUNTIME_IMAGE ?? `ghcr.io/o2c-dev/o2c-runtime:${OPERATOR_VERSION}`,
    amqpUrl: env.O2C_AMQP_URL ?? 'amqp://guest:guest@127.0.0.1:5672',
    brokerSecretName: env.O2C_BROKER_SECRET || undefined,
    leaseNamespace: env.POD_NAMESPACE ?? inClusterNamespace() ?? 'default',
    leaseName: env.O2C_LEASE_NAME ?? 'o2c-operator',
    identity: env.POD_NAME ?? `${hostname()}-${process.pid}`,
    healthPort: Number(env.O2C_HEALTH_PORT ?? 8081),
    workers: Number(env.O2C_WORKERS ?? 8),
    logLevel: env.LOG_LEVEL ?? 'info',
  };
}
