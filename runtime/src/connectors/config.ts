// The connector role's runtime config: the Connector spec as the operator renders it into the
// ConfigMap, plus driver options. Durations arrive as "10s"/"250ms"/"1m".
import type { GovernorLimits } from './governor.js';

export interface ConnectorRuntimeConfig {
  /** The Connector's name; its command queue's routing key on o2c.commands. */
  name: string;
  namespace?: string;
  system: string;
  driver: string;
  endpoint?: string;
  owns?: string[];
  limits?: { requestsPerSecond?: number; maxConcurrency?: number; timeout?: string; burst?: number };
  circuitBreaker?: { consecutiveFailures?: number; openFor?: string };
  /** Where the credentials Secret is mounted; default /etc/o2c/secrets/<credentialsSecretRef.name>. */
  credentialsDir?: string;
  credentialsSecretRef?: { name: string; key?: string };
  /** Driver-specific settings: SimulatorConfig, HttpDriverConfig, SalesforceConfig, ConnectDriverConfig. */
  options?: Record<string, unknown>;
}

export function parseDurationMs(value: string | number | undefined, fallbackMs: number): number {
  if (value === undefined || value === '') return fallbackMs;
  if (typeof value === 'number') return value;
  let total = 0;
  let rest = value.trim();
  const re = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)/;
  if (!re.test(rest))
    throw new Error(`invalid duration ${JSON.stringify(value)}: use e.g. 250ms, 10s, 5m, 1h`);
  const unit: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };
  while (rest) {
    const m = re.exec(rest);
    if (!m) throw new Error(`invalid duration ${JSON.stringify(value)}`);
    total += Number(m[1]) * (unit[m[2] as string] ?? 1);
    rest = rest.slice(m[0].length);
  }
  return total;
}

export function governorLimits(config: ConnectorRuntimeConfig): Partial<GovernorLimits> {
  return {
    requestsPerSecond: config.limits?.requestsPerSecond ?? 20,
    maxConcurrency: config.limits?.maxConcurrency ?? 4,
    burst: config.limits?.burst,
    timeoutMs: parseDurationMs(config.limits?.timeout, 10_000),
    consecutiveFailures: config.circuitBreaker?.consecutiveFailures ?? 5,
    openForMs: parseDurationMs(config.circuitBreaker?.openFor, 30_000),
  };
}

export function credentialsDirOf(config: ConnectorRuntimeConfig): string | undefined {
  if (config.credentialsDir) return config.credentialsDir;
  return config.credentialsSecretRef ? `/etc/o2c/secrets/${config.credentialsSecretRef.name}` : undefined;
}
