// The one contract between the operator and the runtime pods it renders: the shape and apiVersion of
// /etc/o2c/config.json, where config, Secrets and data are mounted, the entry point and the health port.
import type { ConnectorSpec } from '../../../crds/connector.js';
import type { PipelineSpec } from '../../../crds/pipeline.js';
import type { WorkflowSpec } from '../../../crds/workflow.js';
import { COMMANDS_EXCHANGE, EVENTS_EXCHANGE } from '../bus/addressing.js';

/** Bumped on any incompatible change; a runtime refuses a config it does not know. */
export const RUNTIME_CONFIG_API_VERSION = 'o2c.dev/runtime/v1';

export const CONFIG_DIR = '/etc/o2c';
export const CONFIG_FILE = 'config.json';
export const CONFIG_PATH = `${CONFIG_DIR}/${CONFIG_FILE}`;
/** User Secrets (credentials, API tokens, database URL) at `<SECRETS_DIR>/<secret name>/<key>`. */
export const SECRETS_DIR = `${CONFIG_DIR}/secrets`;
/** The connection Secret the operator renders for each resource (broker URL, database URL). */
export const CONNECTIONS_DIR = `${CONFIG_DIR}/connections`;
export const BROKER_URL_KEY = 'broker-url';
/** The embedded store's volume (a PersistentVolumeClaim in a cluster). */
export const DATA_DIR = '/var/lib/o2c';
/** /healthz, /readyz and /metrics of every role. */
export const HEALTH_PORT = 9090;
export const DEFAULT_API_PORT = 8080;
/** tsc output of runtime/src/main.ts in the image (WORKDIR /app); no TypeScript loader at run time. */
export const RUNTIME_ENTRYPOINT = '/app/dist/runtime/src/main.js';
/** Consistent-hash partitions of an ordered Pipeline's deliveries queue. */
export const ORDERING_PARTITIONS = 4;

export const ROLES = ['connector', 'pipeline', 'workflow'] as const;
export type Role = (typeof ROLES)[number];

/** The container command of a runtime pod. */
export const runtimeCommand = (role: Role): string[] => [
  'node',
  RUNTIME_ENTRYPOINT,
  '--role',
  role,
  '--config',
  CONFIG_PATH,
];

export interface RouteBinding {
  exchange: string;
  routingKey: string;
}

/** One queue the role consumes, as the operator declared it. */
export interface QueueRoute {
  queue: string;
  deadLetter: string;
  bindings: RouteBinding[];
  /** Ordered queues: consistent-hash partitions `<queue>.p0..` behind `<queue>.ordering`. */
  partitions?: number;
}

/** A Connector this resource calls: where its commands go. */
export interface ResolvedConnector {
  system: string;
  driver: string;
  commandQueue: string;
  /** Routing key on the commands exchange. */
  routingKey: string;
}

interface ConfigOf<R extends Role, S> {
  apiVersion: typeof RUNTIME_CONFIG_API_VERSION;
  role: R;
  namespace: string;
  name: string;
  generation: number;
  spec: S;
  connectors: Record<string, ResolvedConnector>;
  broker: {
    /** File holding the broker URL (the rendered connection Secret). */
    urlFile: string;
    exchanges: { events: string; commands: string };
    /** By purpose: commands (Connector), events/deliveries (Pipeline), orders/replies/events (Workflow). */
    queues: Record<string, QueueRoute>;
    /** Workflow: the routing key its connector replies come back on. */
    replyRoutingKey?: string;
  };
  /** Secret name -> directory where it is mounted. Never a value. */
  secrets: Record<string, string>;
}

export type ConnectorRuntimeConfigFile = ConfigOf<'connector', ConnectorSpec>;
export type PipelineRuntimeConfigFile = ConfigOf<'pipeline', PipelineSpec>;
export type WorkflowRuntimeConfigFile = ConfigOf<'workflow', WorkflowSpec>;
export type RuntimeConfig =
  | ConnectorRuntimeConfigFile
  | PipelineRuntimeConfigFile
  | WorkflowRuntimeConfigFile;

export class RuntimeConfigError extends Error {
  override readonly name = 'RuntimeConfigError';
}

const isRecord = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v);

/**
 * Checks what the runtime depends on before it starts: the apiVersion it was built for, the role,
 * the resource's identity, the broker connection and the queues. Throws a RuntimeConfigError that
 * names the file and the field.
 */
export function parseRuntimeConfig(text: string, source: string): RuntimeConfig {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw new RuntimeConfigError(`${source}: not JSON: ${(err as Error).message}`);
  }
  const fail = (what: string): never => {
    throw new RuntimeConfigError(`${source}: ${what}`);
  };
  if (!isRecord(raw)) return fail('expected a JSON object');
  if (raw.apiVersion !== RUNTIME_CONFIG_API_VERSION) {
    return fail(
      `apiVersion ${JSON.stringify(raw.apiVersion)} is not supported: this runtime reads ${RUNTIME_CONFIG_API_VERSION}. Run the runtime image that matches the operator's version.`,
    );
  }
  if (!ROLES.includes(raw.role as Role)) return fail(`role must be one of ${ROLES.join(', ')}`);
  for (const field of ['namespace', 'name'] as const) {
    if (typeof raw[field] !== 'string' || raw[field] === '') fail(`${field} is missing`);
  }
  if (!isRecord(raw.spec)) fail('spec is missing');
  const broker = raw.broker;
  if (!isRecord(broker) || typeof broker.urlFile !== 'string' || broker.urlFile === '') {
    fail(
      'broker.urlFile is missing: the operator renders the broker connection from the Secret named in its configuration (O2C_BROKER_SECRET)',
    );
  }
  if (!isRecord((broker as Record<string, unknown>).queues)) fail('broker.queues is missing');
  const exchanges = (broker as Record<string, unknown>).exchanges;
  if (!isRecord(exchanges)) return fail('broker.exchanges is missing');
  // The bus publishes and binds on these two names: a config naming others was rendered for a
  // different build, and its queues would never see a message.
  for (const [field, name] of [
    ['events', EVENTS_EXCHANGE],
    ['commands', COMMANDS_EXCHANGE],
  ] as const) {
    if (exchanges[field] !== name) {
      fail(`broker.exchanges.${field} is ${JSON.stringify(exchanges[field])}, but this runtime uses ${name}`);
    }
  }
  return raw as unknown as RuntimeConfig;
}

/** The queue of `purpose`, or an error naming what the operator did not render. */
export function queueRoute(config: RuntimeConfig, purpose: string): QueueRoute {
  const route = config.broker.queues[purpose];
  if (!route) throw new RuntimeConfigError(`broker.queues.${purpose} is missing from the runtime config`);
  return route;
}
