// The runtime configuration a pod reads from /etc/o2c/config.json (its shape is the shared contract in
// runtime/src/contract/runtime-config.ts): the resource's spec plus what the operator resolved —
// referenced Connectors, every queue and routing key, where Secrets are mounted. Never a secret value.
import type { ConnectorSpec } from '../../../crds/connector.js';
import {
  BROKER_URL_KEY,
  CONNECTIONS_DIR,
  type QueueRoute,
  type ResolvedConnector,
  RUNTIME_CONFIG_API_VERSION,
  type RuntimeConfig,
  SECRETS_DIR,
} from '../../../runtime/src/contract/runtime-config.js';
import { replyRoutingKey } from '../../../runtime/src/workflow/queues.js';
import {
  COMMANDS_EXCHANGE,
  deadLetterQueueName,
  EVENTS_EXCHANGE,
  kindOf,
  queueName,
  type TopologyPurpose,
} from '../broker.js';
import type { AnyResource } from '../resources.js';
import { roleOf } from './names.js';

export { commandRoutingKey } from '../../../runtime/src/bus/addressing.js';
export { CONFIG_DIR, SECRETS_DIR } from '../../../runtime/src/contract/runtime-config.js';
export type { ResolvedConnector, RuntimeConfig };

import { commandRoutingKey } from '../../../runtime/src/bus/addressing.js';

export function resolveConnector(namespace: string, name: string, spec: ConnectorSpec): ResolvedConnector {
  return {
    system: spec.system,
    driver: spec.driver,
    commandQueue: queueName(namespace, 'connector', name, 'commands'),
    routingKey: commandRoutingKey(namespace, name),
  };
}

export interface RuntimeConfigInputs {
  connectors: Record<string, ConnectorSpec>;
  /** The queues the operator declares for this resource (handler.purposes). */
  purposes: readonly TopologyPurpose[];
  secretNames: readonly string[];
}

export function queueRouteOf(namespace: string, kind: string, name: string, p: TopologyPurpose): QueueRoute {
  const queue = queueName(namespace, kindOf(kind), name, p.purpose);
  return {
    queue,
    deadLetter: deadLetterQueueName(queue),
    bindings: p.bindings.map((b) => ({ exchange: b.exchange, routingKey: b.routingKey })),
    ...(p.partitions ? { partitions: p.partitions } : {}),
  };
}

export function renderRuntimeConfig(r: AnyResource, inputs: RuntimeConfigInputs): RuntimeConfig {
  const namespace = r.metadata.namespace!;
  const name = r.metadata.name;
  const connectors: Record<string, ResolvedConnector> = {};
  for (const [n, spec] of Object.entries(inputs.connectors).sort(([a], [b]) => a.localeCompare(b))) {
    connectors[n] = resolveConnector(namespace, n, spec);
  }
  const queues: Record<string, QueueRoute> = {};
  for (const p of inputs.purposes) queues[p.purpose] = queueRouteOf(namespace, r.kind, name, p);
  const secrets: Record<string, string> = {};
  for (const s of [...inputs.secretNames].sort()) secrets[s] = `${SECRETS_DIR}/${s}`;
  return {
    apiVersion: RUNTIME_CONFIG_API_VERSION,
    role: roleOf(r),
    namespace,
    name,
    generation: r.metadata.generation ?? 0,
    spec: r.spec,
    connectors,
    broker: {
      urlFile: `${CONNECTIONS_DIR}/${BROKER_URL_KEY}`,
      exchanges: { events: EVENTS_EXCHANGE, commands: COMMANDS_EXCHANGE },
      queues,
      ...(r.kind === 'Workflow' ? { replyRoutingKey: replyRoutingKey(namespace, name) } : {}),
    },
    secrets,
  } as RuntimeConfig;
}
