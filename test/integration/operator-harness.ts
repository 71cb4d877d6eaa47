// Shared fixtures of the operator integration tests: a real control plane per file, the operator
// in-process, manifests applied as a user would, and the few things the missing controller-manager
// would do (mark a Deployment available).
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { type Channel, connect } from 'amqplib';
import { pino } from 'pino';
import { parseAllDocuments } from 'yaml';
import { AmqpResourceBroker } from '../../operator/src/broker.js';
import { HANDLERS } from '../../operator/src/controller.js';
import type { KubeClient, KubeObject } from '../../operator/src/kube.js';
import { Operator } from '../../operator/src/operator.js';
import type { AnyResource, Kind } from '../../operator/src/resources.js';
import type { LeaseTimings } from '../../operator/src/runtime/leader.js';
import type { Condition } from '../../operator/src/status/condition.js';
import type { ControlPlane } from '../envtest/controlplane.js';

export const AMQP_URL = process.env.O2C_AMQP_URL ?? 'amqp://guest:guest@127.0.0.1:5672';
export const EXAMPLES = join(import.meta.dirname, '../../examples/distributor');
export const FAST_LEASE: LeaseTimings = { leaseDurationMs: 3000, renewDeadlineMs: 2000, retryPeriodMs: 500 };

export function startOperator(
  plane: ControlPlane,
  identity: string,
  options: {
    leaseNamespace?: string;
    workers?: number;
    leaseTimings?: LeaseTimings;
    healthPort?: number;
    resyncMs?: number;
    brokerSecret?: { namespace: string; name: string; key: string };
  } = {},
): Operator {
  const operator = new Operator({
    kubeConfig: plane.kubeConfig(),
    resyncMs: options.resyncMs,
    brokerSecret: options.brokerSecret,
    log: pino({ level: process.env.O2C_TEST_LOG ?? 'silent' }),
    image: 'o2c-runtime:test',
    identity,
    amqpUrl: AMQP_URL,
    leaseNamespace: options.leaseNamespace ?? 'default',
    leaseTimings: options.leaseTimings ?? FAST_LEASE,
    workers: options.workers ?? 4,
    healthPort: options.healthPort,
    healthHost: '127.0.0.1',
  });
  return operator;
}

export async function createNamespace(client: KubeClient, name: string): Promise<void> {
  await client.apply({ apiVersion: 'v1', kind: 'Namespace', metadata: { name } }, 'o2c-test');
}

export function readManifests(file: string): KubeObject[] {
  return parseAllDocuments(readFileSync(file, 'utf8'))
    .map((d) => d.toJS() as KubeObject | null)
    .filter((d): d is KubeObject => d !== null);
}

/** Server-side apply as `kubectl apply --server-side` would, into the namespace. */
export async function applyAll(client: KubeClient, namespace: string, objects: KubeObject[]): Promise<void> {
  for (const o of objects) {
    await client.apply({ ...o, metadata: { ...o.metadata, namespace } }, 'kubectl');
  }
}

export async function eventually<T>(
  what: string,
  probe: () => Promise<T | undefined | false>,
  timeoutMs = 20_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const value = await probe();
      if (value !== undefined && value !== false) return value as T;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline)
      throw new Error(`timed out waiting for ${what}${last ? `: ${String(last)}` : ''}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

export const condition = (r: AnyResource | undefined, type: string): Condition | undefined =>
  r?.status?.conditions?.find((c) => c.type === type);

export async function waitForCondition(
  client: KubeClient,
  kind: string,
  namespace: string,
  name: string,
  type: string,
  status: 'True' | 'False',
  reason?: string,
  timeoutMs = 20_000,
): Promise<Condition> {
  return eventually(
    `${kind} ${namespace}/${name} ${type}=${status}${reason ? ` (${reason})` : ''}`,
    async () => {
      const r = await client.get<AnyResource>(kind, namespace, name);
      const c = condition(r, type);
      return c &&
        c.status === status &&
        (!reason || c.reason === reason) &&
        c.observedGeneration === r?.metadata.generation
        ? c
        : undefined;
    },
    timeoutMs,
  );
}

/** What the Deployment controller would write once the pods are up. */
export async function markDeploymentAvailable(
  client: KubeClient,
  namespace: string,
  name: string,
): Promise<void> {
  const d = await client.get<KubeObject & { spec: { replicas?: number } }>('Deployment', namespace, name);
  if (!d) throw new Error(`Deployment ${namespace}/${name} not found`);
  const replicas = d.spec.replicas ?? 1;
  await client.mergePatch(
    'Deployment',
    namespace,
    name,
    {
      status: {
        observedGeneration: d.metadata.generation,
        replicas,
        updatedReplicas: replicas,
        readyReplicas: replicas,
        availableReplicas: replicas,
        conditions: [
          {
            type: 'Available',
            status: 'True',
            reason: 'MinimumReplicasAvailable',
            message: 'test',
            lastUpdateTime: new Date().toISOString(),
            lastTransitionTime: new Date().toISOString(),
          },
        ],
      },
    },
    'status',
  );
}

/** checkQueue on a throwaway channel (a missing queue closes the channel). */
export function queueExists(queue: string): Promise<boolean> {
  return brokerEntityExists((ch) => ch.checkQueue(queue));
}

/** checkExchange on a throwaway channel (a missing exchange closes the channel). */
export function exchangeExists(exchange: string): Promise<boolean> {
  return brokerEntityExists((ch) => ch.checkExchange(exchange));
}

/** A passive declare answers 404 by closing the channel, so each check gets its own. */
async function brokerEntityExists(check: (ch: Channel) => Promise<unknown>): Promise<boolean> {
  const conn = await connect(AMQP_URL, { timeout: 5000 });
  try {
    const ch = await conn.createChannel();
    ch.on('error', () => {});
    try {
      await check(ch);
      await ch.close();
      return true;
    } catch (err) {
      if ((err as { code?: number }).code === 404) return false;
      throw err;
    }
  } finally {
    await conn.close().catch(() => {});
  }
}

/** How many consumers the broker counts on a queue (the queue must exist). */
export async function queueConsumers(queue: string): Promise<number> {
  const conn = await connect(AMQP_URL, { timeout: 5000 });
  try {
    const ch = await conn.createChannel();
    return (await ch.checkQueue(queue)).consumerCount;
  } finally {
    await conn.close().catch(() => {});
  }
}

export async function deleteQueues(queues: string[]): Promise<void> {
  const conn = await connect(AMQP_URL, { timeout: 5000 });
  try {
    for (const q of queues) {
      const ch = await conn.createChannel();
      ch.on('error', () => {});
      await ch.deleteQueue(q).catch(() => {});
      await ch.close().catch(() => {});
    }
  } finally {
    await conn.close().catch(() => {});
  }
}

/** Everything the operator may have declared for these resources (ordered partitions included). */
export async function deleteBrokerTopology(
  namespace: string,
  resources: Partial<Record<Kind, readonly string[]>>,
): Promise<void> {
  const broker = new AmqpResourceBroker(AMQP_URL);
  try {
    for (const [kind, names] of Object.entries(resources) as [Kind, string[]][]) {
      for (const name of names) {
        await broker.deleteResourceTopology(namespace, kind, name, HANDLERS[kind].allPurposes);
      }
    }
  } finally {
    await broker.close();
  }
}
