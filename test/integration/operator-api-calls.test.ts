// What one Pipeline costs the API server and the broker: six calls to set it up (its finalizer, four
// children applied, its status), one declaration of its queues, nothing for the echoes of its own
// writes; and per resync period one read of its unwatched connection Secret and one declaration,
// writing nothing. Counted by the operator's own metrics.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { KubeClient } from '../../operator/src/kube.js';
import type { Operator } from '../../operator/src/operator.js';
import type { AnyResource } from '../../operator/src/resources.js';
import { type ControlPlane, startControlPlane } from '../envtest/controlplane.js';
import { createNamespace, deleteBrokerTopology, eventually, startOperator } from './operator-harness.js';

const ns = `calls-${Date.now().toString(36)}`;
const RESYNC_MS = 4000;
let plane: ControlPlane;
let client: KubeClient;
const running: Operator[] = [];

/** An operator started in this file's namespace, once it leads; stopped after all tests if still running. */
async function leadingOperator(identity: string, options: { resyncMs?: number } = {}): Promise<Operator> {
  const op = startOperator(plane, identity, { leaseNamespace: ns, ...options });
  running.push(op);
  await op.start();
  await op.waitUntilLeading();
  return op;
}

/** The operator's API requests, Lease traffic left out, by `VERB resource`. */
async function requests(op: Operator): Promise<Record<string, number>> {
  const { values } = await op.metrics.apiRequests.get();
  const out: Record<string, number> = {};
  for (const v of values) {
    if (v.labels.resource === 'leases') continue;
    const key = `${v.labels.verb} ${v.labels.resource}`;
    out[key] = (out[key] ?? 0) + v.value;
  }
  return out;
}

async function declarations(op: Operator): Promise<number> {
  const { values } = await op.metrics.topologyDeclarations.get();
  return values.filter((v) => v.labels.outcome === 'declared').reduce((s, v) => s + v.value, 0);
}

const since = (before: Record<string, number>, after: Record<string, number>) =>
  Object.fromEntries(
    Object.entries(after)
      .map(([k, v]) => [k, v - (before[k] ?? 0)] as const)
      .filter(([, d]) => d > 0),
  );

/** No reconcile for `quietMs`: the echoes of the last writes have come and gone. */
async function settled(op: Operator, quietMs = 1500): Promise<void> {
  let last = -1;
  let quietSince = Date.now();
  await eventually(
    'operator settled',
    async () => {
      if (op.reconciles !== last || op.queueDepth > 0) {
        last = op.reconciles;
        quietSince = Date.now();
        return false;
      }
      return Date.now() - quietSince >= quietMs;
    },
    30_000,
  );
}

const isSetUp = (p: AnyResource | undefined) =>
  p?.status?.observedGeneration === p?.metadata.generation &&
  p?.status?.conditions?.find((c) => c.type === 'TopologyReady')?.status === 'True' &&
  !!p?.status?.configHash;

beforeAll(async () => {
  plane = await startControlPlane();
  client = new KubeClient(plane.kubeConfig());
  await createNamespace(client, ns);
  for (const system of ['erp', 'crm']) {
    await client.apply(
      {
        apiVersion: 'o2c.dev/v1alpha1',
        kind: 'Connector',
        metadata: { name: system, namespace: ns },
        spec: { system, driver: 'simulator' },
      },
      'kubectl',
    );
  }
}, 120_000);

afterAll(async () => {
  for (const op of running) await op.stop();
  client?.close();
  await plane?.stop();
  await deleteBrokerTopology(ns, { Connector: ['erp', 'crm'], Pipeline: ['items'] });
});

describe('the calls a Pipeline costs', () => {
  it('six API calls and one queue declaration to set it up, none for the echoes of its own writes', async () => {
    const op = await leadingOperator('calls-a');
    await settled(op);
    const before = await requests(op);
    const declaredBefore = await declarations(op);
    await client.apply(
      {
        apiVersion: 'o2c.dev/v1alpha1',
        kind: 'Pipeline',
        metadata: { name: 'items', namespace: ns },
        spec: {
          source: { connector: 'erp', events: ['o2c.v1.ItemUpserted'] },
          transform: { sku: 'event.item.sku' },
          sink: { connector: 'crm', operation: 'UpsertItem' },
        },
      },
      'kubectl',
    );
    await eventually('Pipeline set up', async () =>
      isSetUp(await client.get<AnyResource>('Pipeline', ns, 'items')),
    );
    await settled(op);
    expect(since(before, await requests(op))).toEqual({
      'PATCH pipelines': 1,
      'PATCH secrets': 1,
      'PATCH configmaps': 1,
      'PATCH deployments': 1,
      'PATCH services': 1,
      'PATCH pipelines/status': 1,
    });
    expect((await declarations(op)) - declaredBefore).toBe(1);
    await op.stop();
    running.splice(running.indexOf(op), 1);
  });

  it('per resync period one read of its connection Secret and one declaration, and no write', async () => {
    const op = await leadingOperator('calls-b', { resyncMs: RESYNC_MS });
    // A new leader has no memory: it reads and declares once, then knows.
    await settled(op);
    const before = await requests(op);
    const declaredBefore = await declarations(op);
    await eventually(
      'a resync declared all three again',
      async () => (await declarations(op)) - declaredBefore >= 3,
      RESYNC_MS * 3,
    );
    await settled(op, 500);
    const calls = since(before, await requests(op));
    expect(calls).toEqual({ 'GET secrets': 3 });
    expect(op.writes).toBe(0);
  });
});
