// Operator lifecycle against a real kube-apiserver: a restart changes nothing that was already right,
// and of two operators only the Lease holder writes; the standby takes over when the leader stops.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { KubeClient, type KubeObject } from '../../operator/src/kube.js';
import type { Operator } from '../../operator/src/operator.js';
import type { AnyResource } from '../../operator/src/resources.js';
import { type ControlPlane, startControlPlane } from '../envtest/controlplane.js';
import {
  applyAll,
  createNamespace,
  deleteBrokerTopology,
  deleteQueues,
  EXAMPLES,
  eventually,
  markDeploymentAvailable,
  readManifests,
  startOperator,
  waitForCondition,
} from './operator-harness.js';

let plane: ControlPlane;
let client: KubeClient;
const ns = `life-${Date.now().toString(36)}`;
const running: Operator[] = [];
const queuesToClean: string[] = [];

const launch = async (identity: string): Promise<Operator> => {
  const op = startOperator(plane, identity, { leaseNamespace: ns, healthPort: 0 });
  running.push(op);
  await op.start();
  return op;
};

async function stopOperator(op: Operator): Promise<void> {
  await op.stop();
  running.splice(running.indexOf(op), 1);
}

/** resourceVersion of every o2c resource and child in the namespace. */
async function snapshot(): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const kind of [
    'Connector',
    'Pipeline',
    'Workflow',
    'ConfigMap',
    'Deployment',
    'Service',
    'PodDisruptionBudget',
  ]) {
    const list = await client.list<KubeObject>(kind, ns);
    for (const o of list.items) out[`${kind}/${o.metadata.name}`] = o.metadata.resourceVersion!;
  }
  return out;
}

/** Waits until the operator has nothing queued and nothing happened for a while. */
async function settled(op: Operator, quietMs = 1500): Promise<void> {
  let last = -1;
  let since = Date.now();
  await eventually(
    'operator settled',
    async () => {
      if (op.reconciles !== last || op.queueDepth > 0) {
        last = op.reconciles;
        since = Date.now();
        return false;
      }
      return Date.now() - since >= quietMs;
    },
    30_000,
  );
}

beforeAll(async () => {
  plane = await startControlPlane();
  client = new KubeClient(plane.kubeConfig());
  await createNamespace(client, ns);
  await applyAll(
    client,
    ns,
    ['secrets.yaml', 'connectors.yaml', 'pipelines.yaml', 'workflow.yaml'].flatMap((f) =>
      readManifests(`${EXAMPLES}/${f}`),
    ),
  );
  for (const name of ['erp', 'crm', 'wms', 'tax', 'payment'])
    queuesToClean.push(`o2c.${ns}.connector.${name}.commands`);
  for (const name of ['items-to-crm', 'prices-to-crm', 'customers-to-erp'])
    queuesToClean.push(`o2c.${ns}.pipeline.${name}.events`);
  for (const p of ['events', 'orders', 'replies']) queuesToClean.push(`o2c.${ns}.workflow.distributor.${p}`);
});

afterAll(async () => {
  for (const op of [...running]) await op.stop();
  client?.close();
  await plane?.stop();
  await deleteQueues(queuesToClean.flatMap((q) => [q, `${q}.dlq`]));
  // The example Pipelines are ordered: their partitions and ordering exchanges too.
  await deleteBrokerTopology(ns, { Pipeline: ['items-to-crm', 'prices-to-crm', 'customers-to-erp'] });
});

describe('operator lifecycle', () => {
  it('changes nothing that was already right when restarted (resourceVersions unchanged)', async () => {
    const first = await launch('op-first');
    await first.waitUntilLeading();
    await waitForCondition(client, 'Workflow', ns, 'distributor', 'TopologyReady', 'True');
    for (const name of ['erp', 'crm', 'wms', 'tax', 'payment']) {
      await eventually(`Deployment of ${name}`, () => client.get('Deployment', ns, `o2c-connector-${name}`));
      await markDeploymentAvailable(client, ns, `o2c-connector-${name}`);
      await waitForCondition(client, 'Connector', ns, name, 'Ready', 'True');
    }
    await settled(first);
    const health = `http://127.0.0.1:${first.healthPort}`;
    expect((await fetch(`${health}/healthz`)).status).toBe(200);
    expect((await fetch(`${health}/readyz`)).status).toBe(200);
    const metrics = await (await fetch(`${health}/metrics`)).text();
    expect(metrics).toMatch(/o2c_operator_reconciles_total\{kind="Pipeline",result="success"\} [1-9]/);
    expect(metrics).toContain('o2c_operator_reconcile_duration_seconds_bucket');
    expect(metrics).toMatch(/o2c_operator_queue_depth 0/);
    expect(metrics).toMatch(/o2c_operator_leader 1/);
    const before = await snapshot();
    expect(Object.keys(before).length).toBeGreaterThanOrEqual(9 + 27);
    await stopOperator(first);

    const second = await launch('op-second');
    await second.waitUntilLeading();
    await settled(second);
    expect(second.reconciles).toBeGreaterThanOrEqual(9);
    expect(second.writes).toBe(0);
    expect(await snapshot()).toEqual(before);
    await stopOperator(second);
  });

  it('keeps reconciling after the API server was down (informers restart themselves)', async () => {
    const op = await launch('op-outage');
    await op.waitUntilLeading();
    await settled(op, 500);
    // Longer than a lease: the replica may lose and regain leadership, or keep it; either way it recovers.
    await plane.restartApiserver(1000);
    await client.apply(
      {
        apiVersion: 'o2c.dev/v1alpha1',
        kind: 'Connector',
        metadata: { name: 'after-outage', namespace: ns },
        spec: { system: 'erp', driver: 'simulator' },
      },
      'kubectl',
    );
    queuesToClean.push(`o2c.${ns}.connector.after-outage.commands`);
    await eventually(
      'child of after-outage',
      () => client.get('ConfigMap', ns, 'o2c-connector-after-outage'),
      60_000,
    );
    await waitForCondition(
      client,
      'Connector',
      ns,
      'after-outage',
      'TopologyReady',
      'True',
      undefined,
      30_000,
    );
    await stopOperator(op);
  });

  it('lets only the Lease holder write, and hands over when the leader stops', async () => {
    const a = await launch('op-a');
    await a.waitUntilLeading();
    const b = await launch('op-b');
    await new Promise((r) => setTimeout(r, 1500));
    expect(a.isLeader).toBe(true);
    expect(b.isLeader).toBe(false);

    await client.apply(
      {
        apiVersion: 'o2c.dev/v1alpha1',
        kind: 'Connector',
        metadata: { name: 'while-a-leads', namespace: ns },
        spec: { system: 'crm', driver: 'simulator' },
      },
      'kubectl',
    );
    queuesToClean.push(`o2c.${ns}.connector.while-a-leads.commands`);
    await eventually('child of while-a-leads', () =>
      client.get('ConfigMap', ns, 'o2c-connector-while-a-leads'),
    );
    expect(b.reconciles).toBe(0);
    expect(b.writes).toBe(0);
    const lease = await client.get<KubeObject & { spec: { holderIdentity: string } }>(
      'Lease',
      ns,
      'o2c-operator',
    );
    expect(lease?.spec.holderIdentity).toBe('op-a');

    await stopOperator(a);
    await b.waitUntilLeading(15_000);
    await client.apply(
      {
        apiVersion: 'o2c.dev/v1alpha1',
        kind: 'Connector',
        metadata: { name: 'while-b-leads', namespace: ns },
        spec: { system: 'crm', driver: 'simulator' },
      },
      'kubectl',
    );
    queuesToClean.push(`o2c.${ns}.connector.while-b-leads.commands`);
    await eventually('child of while-b-leads', () =>
      client.get('ConfigMap', ns, 'o2c-connector-while-b-leads'),
    );
    const after = await client.get<KubeObject & { spec: { holderIdentity: string } }>(
      'Lease',
      ns,
      'o2c-operator',
    );
    expect(after?.spec.holderIdentity).toBe('op-b');
    const r = await client.get<AnyResource>('Connector', ns, 'while-b-leads');
    expect(r?.metadata.finalizers).toContain('o2c.dev/broker-topology');
  });
});
