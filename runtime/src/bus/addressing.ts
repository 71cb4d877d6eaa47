// How o2c addresses RabbitMQ, the one home of every queue name and routing key, shared by the
// operator (which declares queues and bindings) and the runtime (which publishes and consumes): a
// queue carries namespace, kind and name; an event's routing key the resource it comes from, a
// reply's the resource it goes to; so tenants, and a Pipeline and a Workflow of one name, never meet.

export const EVENTS_EXCHANGE = 'o2c.events';
export const COMMANDS_EXCHANGE = 'o2c.commands';
/** Event type of a connector reply; a reply's type and routing key are this plus its addressee. */
export const REPLY_TYPE = 'o2c.v1.ConnectorReply';

export const RESOURCE_KINDS = ['connector', 'pipeline', 'workflow'] as const;
export type ResourceKind = (typeof RESOURCE_KINDS)[number];

/** What sends and receives on the bus: a Connector, Pipeline or Workflow of one namespace. */
export interface ResourceAddress {
  namespace: string;
  kind: ResourceKind;
  name: string;
}

// A namespace is a DNS label (no dots), so the first word of every key is the namespace, whole.
const NAMESPACE = /^[a-z0-9]([a-z0-9-]*[a-z0-9])?$/;
// Resource names are DNS subdomains and may hold dots; bindings that match any name use `#`.
const NAME = /^[a-z0-9]([a-z0-9.-]*[a-z0-9])?$/;

function checked(a: ResourceAddress): ResourceAddress {
  if (!NAMESPACE.test(a.namespace))
    throw new Error(`namespace '${a.namespace}' must be a lowercase DNS label`);
  if (!RESOURCE_KINDS.includes(a.kind))
    throw new Error(`kind '${a.kind}' must be one of ${RESOURCE_KINDS.join(', ')}`);
  if (!NAME.test(a.name)) throw new Error(`${a.kind} name '${a.name}' must be a lowercase DNS-style name`);
  return a;
}

/** The bus kind of a Kubernetes kind: `Workflow` → `workflow`. */
export function kindOf(k8sKind: string): ResourceKind {
  const kind = k8sKind.toLowerCase() as ResourceKind;
  if (!RESOURCE_KINDS.includes(kind)) throw new Error(`kind '${k8sKind}' has no queues`);
  return kind;
}

/** `o2c.<namespace>.<kind>.<name>.<purpose>`, e.g. o2c.shop.workflow.distributor.orders. */
export function queueName(namespace: string, kind: ResourceKind, name: string, purpose: string): string {
  checked({ namespace, kind, name });
  if (!NAME.test(purpose)) throw new Error(`queue purpose '${purpose}' must be a lowercase DNS-style name`);
  return `o2c.${namespace}.${kind}.${name}.${purpose}`;
}

export const dlqName = (queue: string): string => `${queue}.dlq`;

/** The Envelope `source` of what a resource publishes: `o2c/<namespace>/<kind>/<name>`. */
export function sourceOf(a: ResourceAddress): string {
  const { namespace, kind, name } = checked(a);
  return `o2c/${namespace}/${kind}/${name}`;
}

/** The resource a `source` names; undefined when it names none. */
export function addressOfSource(source: string): ResourceAddress | undefined {
  const parts = source.split('/');
  if (parts.length !== 4 || parts[0] !== 'o2c') return undefined;
  const [, namespace, kind, name] = parts as [string, string, string, string];
  const a = { namespace, kind: kind as ResourceKind, name };
  try {
    return checked(a);
  } catch {
    return undefined;
  }
}

/**
 * Routing key of an event on o2c.events: `<namespace>.<kind>.<name>.<type>` of the resource that
 * published it (its Envelope source). The AMQP `type` stays the bare event type, so consumers and
 * the event log still filter by type.
 */
export function eventRoutingKey(source: string, type: string): string {
  const a = addressOfSource(source);
  if (!a) throw new Error(`event source '${source}' names no resource (o2c/<namespace>/<kind>/<name>)`);
  return `${a.namespace}.${a.kind}.${a.name}.${type}`;
}

/**
 * Binding key for events of `type` from one resource, or (name omitted) from every resource of that
 * kind in the namespace: a Connector serves the Workflows and Pipelines of its own namespace only.
 */
export function eventBindingKey(
  namespace: string,
  kind: ResourceKind,
  name: string | undefined,
  type: string,
): string {
  if (name === undefined) {
    checked({ namespace, kind, name: 'any' });
    return `${namespace}.${kind}.#.${type}`;
  }
  checked({ namespace, kind, name });
  return `${namespace}.${kind}.${name}.${type}`;
}

/**
 * Reply-to of the commands a resource sends: `o2c.v1.ConnectorReply.<namespace>.<kind>.<name>`, plus
 * `.<instance>` for a process-private reply queue (a Pipeline replica). Bound exactly, never with
 * wildcards, so a reply reaches only its sender.
 */
export function replyRoutingKey(a: ResourceAddress, instance?: string): string {
  const { namespace, kind, name } = checked(a);
  if (instance !== undefined && !NAME.test(instance))
    throw new Error(`reply instance '${instance}' is not a name`);
  return `${REPLY_TYPE}.${namespace}.${kind}.${name}${instance === undefined ? '' : `.${instance}`}`;
}

/** Routing key of a Connector's commands on the direct exchange o2c.commands. */
export function commandRoutingKey(namespace: string, connector: string): string {
  checked({ namespace, kind: 'connector', name: connector });
  return `${namespace}.${connector}`;
}

/** Whether `key` is a reply's routing key (`replyRoutingKey`, or the bare REPLY_TYPE of a command without reply-to). */
export function isReplyRoutingKey(key: string): boolean {
  return key === REPLY_TYPE || key.startsWith(`${REPLY_TYPE}.`);
}

/** RabbitMQ topic matching: `*` one word, `#` zero or more. */
export function topicMatches(bindingKey: string, routingKey: string): boolean {
  const b = bindingKey.split('.');
  const k = routingKey.split('.');
  const match = (i: number, j: number): boolean => {
    if (i === b.length) return j === k.length;
    if (b[i] === '#') return match(i + 1, j) || (j < k.length && match(i, j + 1));
    if (j === k.length) return false;
    return (b[i] === '*' || b[i] === k[j]) && match(i + 1, j + 1);
  };
  return match(0, 0);
}

/**
 * What the event log stream takes from o2c.events: the domain events, keyed
 * `<namespace>.<kind>.<name>.<type>` (eventRoutingKey), which `o2c events replay` rebuilds from.
 * Replies are not logged: their second word is `v1` (REPLY_TYPE), never a kind, and nobody replays
 * them.
 */
export const EVENT_LOG_BINDING_KEYS: readonly string[] = RESOURCE_KINDS.map((kind) => `*.${kind}.#`);

/** Bindings of the event log that earlier versions declared; removed on declaration so upgrades converge. */
export const RETIRED_EVENT_LOG_BINDING_KEYS: readonly string[] = ['#'];

/** Whether a message published to o2c.events with `routingKey` is appended to the event log. */
export function eventLogTakes(routingKey: string): boolean {
  return EVENT_LOG_BINDING_KEYS.some((binding) => topicMatches(binding, routingKey));
}
