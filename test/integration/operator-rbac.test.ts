// The generated ClusterRole is enough: the operator, authenticated as a user bound only to
// OPERATOR_RULES (what charts/o2c/templates/clusterrole.yaml holds), reconciles, records Events,
// holds its Lease and finalizes without a single 403.
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { KubeClient } from '../../operator/src/kube.js';
import { Operator } from '../../operator/src/operator.js';
import { OPERATOR_RULES } from '../../operator/src/permissions.js';
import { type ControlPlane, startControlPlane } from '../envtest/controlplane.js';
import {
  AMQP_URL,
  applyAll,
  createNamespace,
  deleteQueues,
  EXAMPLES,
  eventually,
  FAST_LEASE,
  readManifests,
  waitForCondition,
} from './operator-harness.js';

let plane: ControlPlane;
let admin: KubeClient;
let operator: Operator;
const logged: string[] = [];
const ns = `rbac-${Date.now().toString(36)}`;

beforeAll(async () => {
  plane = await startControlPlane();
  admin = new KubeClient(plane.kubeConfig());
  await createNamespace(admin, ns);
  await admin.apply(
    {
      apiVersion: 'rbac.authorization.k8s.io/v1',
      kind: 'ClusterRole',
      metadata: { name: 'o2c-operator' },
      rules: OPERATOR_RULES,
    },
    'test',
  );
  await admin.apply(
    {
      apiVersion: 'rbac.authorization.k8s.io/v1',
      kind: 'ClusterRoleBinding',
      metadata: { name: 'o2c-operator' },
      roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: 'o2c-operator' },
      subjects: [{ apiGroup: 'rbac.authorization.k8s.io', kind: 'User', name: 'o2c-operator' }],
    },
    'test',
  );
  operator = new Operator({
    kubeConfig: plane.userKubeConfig('o2c-operator'),
    // Every warning the operator logs, to find any 403 among them.
    log: pino({ level: 'warn' }, { write: (line: string) => void logged.push(line) }),
    image: 'ghcr.io/o2c-dev/o2c-runtime:test',
    identity: 'op-rbac',
    amqpUrl: AMQP_URL,
    leaseNamespace: ns,
    leaseTimings: FAST_LEASE,
  });
  await operator.start();
  await operator.waitUntilLeading();
});

afterAll(async () => {
  await operator?.stop();
  admin?.close();
  await plane?.stop();
  const queues = ['erp', 'crm', 'wms', 'tax', 'payment'].map((c) => `o2c.${ns}.${c}.commands`);
  queues.push(
    ...['items-to-crm', 'prices-to-crm', 'customers-to-erp'].map((p) => `o2c.${ns}.${p}.events`),
    ...['events', 'orders', 'replies'].map((p) => `o2c.${ns}.distributor.${p}`),
    `o2c.${ns}.unbound.commands`,
  );
  await deleteQueues(queues.flatMap((q) => [q, `${q}.dlq`]));
});

describe('the least-privilege ClusterRole', () => {
  it('is all the operator needs for the reference manifests, Events, PDBs and finalizers', async () => {
    await applyAll(
      admin,
      ns,
      ['secrets.yaml', 'connectors.yaml', 'pipelines.yaml', 'workflow.yaml'].flatMap((f) =>
        readManifests(`${EXAMPLES}/${f}`),
      ),
    );
    await waitForCondition(admin, 'Workflow', ns, 'distributor', 'TopologyReady', 'True', undefined, 30_000);
    for (const name of ['items-to-crm', 'prices-to-crm', 'customers-to-erp']) {
      await waitForCondition(admin, 'Pipeline', ns, name, 'ReferencesResolved', 'True');
    }
    // A PDB (replicas 2), a Warning Event (missing Secret), then deletion through the finalizer.
    await admin.apply(
      {
        apiVersion: 'o2c.dev/v1alpha1',
        kind: 'Connector',
        metadata: { name: 'unbound', namespace: ns },
        spec: {
          system: 'crm',
          driver: 'http',
          endpoint: 'http://crm/',
          replicas: 2,
          credentialsSecretRef: { name: 'nope' },
        },
      },
      'kubectl',
    );
    await waitForCondition(
      admin,
      'Connector',
      ns,
      'unbound',
      'CredentialsResolved',
      'False',
      'SecretNotFound',
    );
    await eventually('Warning Event', async () => {
      const events = await admin.request<{
        items: Array<{ reason: string; involvedObject: { name: string } }>;
      }>('GET', `/api/v1/namespaces/${ns}/events`);
      return events.items.some((e) => e.involvedObject.name === 'unbound' && e.reason === 'SecretNotFound');
    });
    await admin.create({
      apiVersion: 'v1',
      kind: 'Secret',
      metadata: { name: 'nope', namespace: ns },
      stringData: { a: 'b' },
    });
    await eventually('PDB', () => admin.get('PodDisruptionBudget', ns, 'o2c-connector-unbound'));
    await admin.mergePatch('Connector', ns, 'unbound', { spec: { replicas: 1 } });
    await eventually(
      'PDB pruned',
      async () => (await admin.get('PodDisruptionBudget', ns, 'o2c-connector-unbound')) === undefined,
    );
    await admin.delete('Connector', ns, 'unbound');
    await eventually('finalized', async () => (await admin.get('Connector', ns, 'unbound')) === undefined);

    expect(logged.filter((l) => l.includes(' 403 '))).toEqual([]);
  });
});
