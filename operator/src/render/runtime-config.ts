// The runtime configuration a pod reads from /etc/o2c/config.json: the resource's spec plus what the
// operator resolved (referenced Connectors, queue names, where secrets are mounted). Never a secret value.
import type { ConnectorSpec } from '../../../crds/connector.js';
import { COMMANDS_EXCHANGE, deadLetterQueueName, EVENTS_EXCHANGE, queueName } from '../broker.js';
import type { AnyResource } from '../resources.js';
import { type Role, roleOf } from './names.js';

export const SECRETS_DIR = '/etc/o2c/secrets';
export const CONFIG_DIR = '/etc/o2c';

export interface ResolvedConnector {
  system: string;
  driver: string;
  /** Queue of the Connector's commands and the routing key on o2c.commands. */
  commandQueue: string;
  routingKey: string;
}

export interface RuntimeConfig {
  apiVersion: 'o2c.dev/runtime/v1';
  role: Role;
  namespace: string;
  name: string;
  generation: number;
  spec: unknown;
  connectors: Record<string, ResolvedConnector>;
  broker: {
    urlFile?: string;
    exchanges: { events: string; commands: string };
    queues: Record<string, { queue: string; deadLetter: string }>;
  };
  secrets: Record<string, string>;
}

export { commandRoutingKey } from '../../../runtime/src/connectors/commands.js';

import { commandRoutingKey } from '../../../runtime/src/connectors/commands.js';

export function resolveConnector(namespace: string, name: string, spec: ConnectorSpec): ResolvedConnector {
  return {
    system: spec.system,
    driver: spec.driver,
    commandQueue: queueName(namespace, name, 'commands'),
    routingKey: commandRoutingKey(namespace, name),
  };
}

export interface RuntimeConfigInputs {
  connectors: Record<string, ConnectorSpec>;
  purposes: readonly string[];
  secretNames: readonly string[];
  brokerSecretName?: string;
}

export function renderRuntimeConfig(r: AnyResource, inputs: RuntimeConfigInputs): RuntimeConfig {
  const namespace = r.metadata.namespace!;
  const name = r.metadata.name;
  const connectors: Record<string, ResolvedConnector> = {};
  for (const [n, spec] of Object.entries(inputs.connectors).sort(([a], [b]) => a.localeCompare(b))) {
    connectors[n] = resolveConnector(namespace, n, spec);
  }
  const queues: RuntimeConfig['broker']['queues'] = {};
  for (const purpose of inputs.purposes) {
    const queue = queueName(namespace, name, purpose);
    queues[purpose] = { queue, deadLetter: deadLetterQueueName(queue) };
  }
  const secrets: Record<string, string> = {};
  for (const s of [...inputs.secretNames].sort()) secrets[s] = `${SECRETS_DIR}/${s}`;
  return {
    apiVersion: 'o2c.dev/runtime/v1',
    role: roleOf(r),
    namespace,
    name,
    generation: r.metadata.generation ?? 0,
    spec: r.spec,
    connectors,
    broker: {
      ...(inputs.brokerSecretName ? { urlFile: `${SECRETS_DIR}/${inputs.brokerSecretName}/url` } : {}),
      exchanges: { events: EVENTS_EXCHANGE, commands: COMMANDS_EXCHANGE },
      queues,
    },
    secrets,
  };
}
