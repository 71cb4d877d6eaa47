// The generated ClusterRole is enough: the operator, authenticated as a user bound only to
// OPERATOR_RULES (what charts/o2c/templates/clusterrole.yaml holds), reconciles, records Events,
// holds its Lease, reads its broker Secret and finalizes without a single 403 — on an API server
// with OwnerReferencesPermissionEnforcement (OpenShift's default), which needs update on */finalizers.
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { KubeClient, type KubeObject } from '../../operator/src/kube.js';
import { Operator } from '../../operator/src/operator.js';
import { OPERATOR_RULES } from '../../operator/src/permissions.js';
import { type ControlPlane, startControlPlane } from '../envtest/controlplane.js';
import {
  AMQP_URL,
  applyAll,
  createNamespace,
  deleteBrokerTopology,
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
  plane = await startControlPlane({
    apiserverArgs: ['--enable-admission-plugins=OwnerReferencesPermissionEnforcement'],
  });
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
  await admin.create({
    apiVersion: 'v1',
    kind: 'Secret',
    metadata: { name: 'o2c-broker', namespace: ns },
    stringData: { url: AMQP_URL },
  });
  operator = new Operator({
    kubeConfig: plane.userKubeConfig('o2c-operator'),
    brokerSecret: { namespace: ns, name: 'o2c-broker', key: 'url' },
    // Every warning the operator logs, to find any 403 among them.
    log: pino({ level: 'warn' }, { write: (line: string) => void logged.push(line) }),
    image: 'o2c-runtime:test',
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
  const queues = ['erp', 'crm', 'wms', 'tax', 'payment'].map((c) => `o2c.${ns}.connector.${c}.commands`);
  queues.push(
    ...['items-to-crm', 'prices-to-crm', 'customers-to-erp'].map((p) => `o2c.${ns}.pipeline.${p}.events`),
    ...['events', 'orders', 'replies'].map((p) => `o2c.${ns}.workflow.distributor.${p}`),
    `o2c.${ns}.connector.unbound.commands`,
  );
  await deleteQueues(queues.flatMap((q) => [q, `${q}.dlq`]));
  // The example Pipelines are ordered: their partitions and ordering exchanges too.
  await deleteBrokerTopology(ns, {
    Pipeline: ['items-to-crm', 'prices-to-crm', 'customers-to-erp'],
    Connector: ['locked'],
  });
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
          // More than one replica needs a shared store (the embedded default runs one).
          store: { postgres: { urlSecretRef: { name: 'nope' } } },
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
      stringData: { a: 'b', url: 'postgres://db.example/o2c' },
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

  it('never lists or watches Secrets', () => {
    const verbs = OPERATOR_RULES.filter((r) => r.resources.includes('secrets')).flatMap((r) => r.verbs);
    expect(verbs).not.toContain('list');
    expect(verbs).not.toContain('watch');
  });

  it('needs update on the finalizers: without it the API server refuses every owned child', async () => {
    const weaker = OPERATOR_RULES.filter((r) => !r.resources.some((x) => x.endsWith('/finalizers')));
    await admin.apply(
      {
        apiVersion: 'rbac.authorization.k8s.io/v1',
        kind: 'ClusterRole',
        metadata: { name: 'o2c-no-finalizers' },
        rules: weaker,
      },
      'test',
    );
    await admin.apply(
      {
        apiVersion: 'rbac.authorization.k8s.io/v1',
        kind: 'ClusterRoleBinding',
        metadata: { name: 'o2c-no-finalizers' },
        roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: 'o2c-no-finalizers' },
        subjects: [{ apiGroup: 'rbac.authorization.k8s.io', kind: 'User', name: 'no-finalizers' }],
      },
      'test',
    );
    const owner = await admin.get<KubeObject>('Connector', ns, 'erp');
    const weak = new KubeClient(plane.userKubeConfig('no-finalizers'));
    try {
      const err = await weak
        .apply({
          apiVersion: 'v1',
          kind: 'ConfigMap',
          metadata: {
            name: 'owned-by-erp',
            namespace: ns,
            ownerReferences: [
              {
                apiVersion: 'o2c.dev/v1alpha1',
                kind: 'Connector',
                name: 'erp',
                uid: owner!.metadata.uid!,
                controller: true,
                blockOwnerDeletion: true,
              },
            ],
          },
        })
        .then(
          () => undefined,
          (e: unknown) => e,
        );
      expect((err as Error | undefined)?.message).toContain('cannot set blockOwnerDeletion');
    } finally {
      weak.close();
    }
  });

  it('puts a refused read into status and a Warning Event: a ClusterRole without get on Secrets', async () => {
    await operator.stop();
    const noSecrets = OPERATOR_RULES.filter((r) => !r.resources.includes('secrets'));
    await admin.apply(
      {
        apiVersion: 'rbac.authorization.k8s.io/v1',
        kind: 'ClusterRole',
        metadata: { name: 'o2c-no-secrets' },
        rules: noSecrets,
      },
      'test',
    );
    await admin.apply(
      {
        apiVersion: 'rbac.authorization.k8s.io/v1',
        kind: 'ClusterRoleBinding',
        metadata: { name: 'o2c-no-secrets' },
        roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: 'o2c-no-secrets' },
        subjects: [{ apiGroup: 'rbac.authorization.k8s.io', kind: 'User', name: 'no-secrets' }],
      },
      'test',
    );
    operator = new Operator({
      kubeConfig: plane.userKubeConfig('no-secrets'),
      log: pino({ level: 'silent' }),
      image: 'o2c-runtime:test',
      identity: 'op-no-secrets',
      amqpUrl: AMQP_URL,
      leaseNamespace: ns,
      leaseTimings: FAST_LEASE,
    });
    await operator.start();
    await operator.waitUntilLeading();
    await admin.apply(
      {
        apiVersion: 'o2c.dev/v1alpha1',
        kind: 'Connector',
        metadata: { name: 'locked', namespace: ns },
        spec: { system: 'erp', driver: 'simulator', credentialsSecretRef: { name: 'nope' } },
      },
      'kubectl',
    );
    const c = await waitForCondition(admin, 'Connector', ns, 'locked', 'Reconciled', 'False', 'ApplyFailed');
    expect(c.message).toContain('403');
    expect(c.message).toContain('secrets "nope" is forbidden');
    await eventually('Warning Event', async () => {
      const events = await admin.request<{
        items: Array<{ reason: string; type: string; involvedObject: { name: string } }>;
      }>('GET', `/api/v1/namespaces/${ns}/events`);
      return events.items.some(
        (e) => e.involvedObject.name === 'locked' && e.type === 'Warning' && e.reason === 'ApplyFailed',
      );
    });
  });
});
