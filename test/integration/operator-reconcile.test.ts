// The operator against a real kube-apiserver and RabbitMQ: children of the reference manifests,
// rollouts on config change, self-healing children, Secret and Connector references, deletion.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { KubeClient, KubeObject } from '../../operator/src/kube.js';
import type { Operator } from '../../operator/src/operator.js';
import type { AnyResource } from '../../operator/src/resources.js';
import { type ControlPlane, startControlPlane } from '../envtest/controlplane.js';
import {
  applyAll,
  condition,
  createNamespace,
  deleteBrokerTopology,
  deleteQueues,
  EXAMPLES,
  eventually,
  markDeploymentAvailable,
  queueExists,
  readManifests,
  startOperator,
  waitForCondition,
} from './operator-harness.js';

let plane: ControlPlane;
let client: KubeClient;
let operator: Operator;
const ns = `rec-${Date.now().toString(36)}`;
const queuesToClean: string[] = [];

type Deployment = KubeObject & {
  spec: {
    replicas: number;
    template: {
      metadata: { annotations: Record<string, string> };
      spec: {
        securityContext: Record<string, unknown>;
        containers: Array<{
          image: string;
          command: string[];
          securityContext: Record<string, unknown>;
          volumeMounts: Array<{ mountPath: string }>;
          readinessProbe: unknown;
        }>;
      };
    };
  };
};
type ConfigMap = KubeObject & { data: Record<string, string> };
type Service = KubeObject & { spec: { ports: Array<{ name: string; port: number }> } };

const connector = (name: string, spec: Record<string, unknown>): KubeObject => ({
  apiVersion: 'o2c.dev/v1alpha1',
  kind: 'Connector',
  metadata: { name, namespace: ns },
  spec: { system: 'erp', driver: 'simulator', ...spec },
});

const child = <T extends KubeObject>(kind: string, name: string) =>
  eventually(`${kind} ${ns}/${name}`, () => client.get<T>(kind, ns, name));

beforeAll(async () => {
  plane = await startControlPlane();
  operator = startOperator(plane, 'op-reconcile');
  client = operator.client;
  await createNamespace(client, ns);
  await operator.start();
  await operator.waitUntilLeading();
  await applyAll(
    client,
    ns,
    ['secrets.yaml', 'connectors.yaml', 'pipelines.yaml', 'workflow.yaml'].flatMap((f) =>
      readManifests(`${EXAMPLES}/${f}`),
    ),
  );
});

afterAll(async () => {
  await operator?.stop();
  await plane?.stop();
  await deleteQueues(queuesToClean);
  // The example Pipelines are ordered: their partitions and ordering exchanges too.
  await deleteBrokerTopology(ns, { Pipeline: ['items-to-crm', 'prices-to-crm', 'customers-to-erp'] });
});

describe('applying examples/distributor', () => {
  it.each([
    ['Connector', 'erp', 'connector'],
    ['Connector', 'payment', 'connector'],
    ['Pipeline', 'items-to-crm', 'pipeline'],
    ['Workflow', 'distributor', 'workflow'],
  ])('gives %s %s a ConfigMap, Deployment and Service owned by it', async (kind, name, role) => {
    const owner = await client.get<AnyResource>(kind, ns, name);
    const childName = `o2c-${role}-${name}`;
    for (const k of ['ConfigMap', 'Deployment', 'Service']) {
      const c = await child(k, childName);
      expect(c.metadata.ownerReferences).toEqual([
        {
          apiVersion: 'o2c.dev/v1alpha1',
          kind,
          name,
          uid: owner!.metadata.uid,
          controller: true,
          blockOwnerDeletion: true,
        },
      ]);
      expect(c.metadata.labels).toMatchObject({
        'app.kubernetes.io/managed-by': 'o2c-operator',
        'o2c.dev/name': name,
      });
    }
    const d = await child<Deployment>('Deployment', childName);
    const container = d.spec.template.spec.containers[0]!;
    expect(container.image).toBe('o2c-runtime:test');
    expect(container.command).toEqual([
      'node',
      '/app/dist/runtime/src/main.js',
      '--role',
      role,
      '--config',
      '/etc/o2c/config.json',
    ]);
    expect(container.securityContext).toMatchObject({
      readOnlyRootFilesystem: true,
      allowPrivilegeEscalation: false,
    });
    expect(d.spec.template.spec.securityContext).toMatchObject({ runAsNonRoot: true });
    expect(container.readinessProbe).toMatchObject({ httpGet: { path: '/readyz', port: 'metrics' } });
    // No PodDisruptionBudget for a single replica.
    expect(await client.get('PodDisruptionBudget', ns, childName)).toBeUndefined();
  });

  it('renders the Workflow config with resolved Connectors and mounts its Secret without copying it', async () => {
    const cm = await child<ConfigMap>('ConfigMap', 'o2c-workflow-distributor');
    const config = JSON.parse(cm.data['config.json']!);
    expect(config.role).toBe('workflow');
    expect(config.connectors.erp).toEqual({
      system: 'erp',
      driver: 'simulator',
      commandQueue: `o2c.${ns}.connector.erp.commands`,
      routingKey: `${ns}.erp`,
    });
    expect(config.secrets).toEqual({ 'order-api-tokens': '/etc/o2c/secrets/order-api-tokens' });
    expect(cm.data['config.json']).not.toContain('dev-token-change-me');
    const d = await child<Deployment>('Deployment', 'o2c-workflow-distributor');
    expect(d.spec.template.spec.containers[0]!.volumeMounts.map((m) => m.mountPath)).toContain(
      '/etc/o2c/secrets/order-api-tokens',
    );
    const wf = await eventually('workflow status', async () => {
      const w = await client.get<AnyResource>('Workflow', ns, 'distributor');
      return w?.status?.configHash ? w : undefined;
    });
    expect(d.spec.template.metadata.annotations['o2c.dev/config-hash']).toBe(wf.status!.configHash);
    const manifest = readManifests(`${EXAMPLES}/workflow.yaml`)[0] as KubeObject & {
      spec: { steps: unknown[] };
    };
    expect(wf.status!.steps).toBe(manifest.spec.steps.length);
    const svc = await child<Service>('Service', 'o2c-workflow-distributor');
    expect(svc.spec.ports.map((p) => [p.name, p.port])).toEqual([
      ['api', 8080],
      ['metrics', 9090],
    ]);
  });

  it('declares the RabbitMQ queues of each resource', async () => {
    for (const q of [
      `o2c.${ns}.connector.erp.commands`,
      `o2c.${ns}.pipeline.items-to-crm.events`,
      `o2c.${ns}.workflow.distributor.events`,
      `o2c.${ns}.workflow.distributor.orders`,
      `o2c.${ns}.workflow.distributor.replies`,
    ]) {
      queuesToClean.push(q, `${q}.dlq`);
    }
    for (const c of ['crm', 'wms', 'tax', 'payment'])
      queuesToClean.push(`o2c.${ns}.connector.${c}.commands`, `o2c.${ns}.connector.${c}.commands.dlq`);
    for (const p of ['prices-to-crm', 'customers-to-erp'])
      queuesToClean.push(`o2c.${ns}.pipeline.${p}.events`, `o2c.${ns}.pipeline.${p}.events.dlq`);
    await waitForCondition(client, 'Workflow', ns, 'distributor', 'TopologyReady', 'True', 'QueuesDeclared');
    for (const q of [
      `o2c.${ns}.connector.erp.commands`,
      `o2c.${ns}.connector.erp.commands.dlq`,
      `o2c.${ns}.pipeline.items-to-crm.events`,
      `o2c.${ns}.workflow.distributor.events`,
      `o2c.${ns}.workflow.distributor.orders`,
      `o2c.${ns}.workflow.distributor.replies`,
    ]) {
      expect(await queueExists(q), q).toBe(true);
    }
  });

  it('is not Ready until its Deployment is available, then Ready', async () => {
    const c = await waitForCondition(client, 'Connector', ns, 'wms', 'Ready', 'False');
    expect(c.reason).toMatch(/RollingOut|ReplicasUnavailable/);
    await markDeploymentAvailable(client, ns, 'o2c-connector-wms');
    const readyCondition = await waitForCondition(client, 'Connector', ns, 'wms', 'Ready', 'True', 'Ready');
    expect(readyCondition.message).toBe('All conditions are met.');
    const wms = await client.get<AnyResource>('Connector', ns, 'wms');
    expect(wms?.status).toMatchObject({ replicas: 1, selector: 'o2c.dev/kind=connector,o2c.dev/name=wms' });
    for (const type of [
      'ReferencesResolved',
      'CredentialsResolved',
      'TopologyReady',
      'DeploymentAvailable',
    ]) {
      expect(condition(wms, type)?.status, type).toBe('True');
    }
  });
});

describe('children follow their resource', () => {
  it("rolls a Connector's Deployment when its limits change (new config hash)", async () => {
    const before = await child<Deployment>('Deployment', 'o2c-connector-erp');
    const oldHash = before.spec.template.metadata.annotations['o2c.dev/config-hash'];
    await client.mergePatch('Connector', ns, 'erp', { spec: { limits: { requestsPerSecond: 7 } } });
    const after = await eventually('a new config hash', async () => {
      const d = await client.get<Deployment>('Deployment', ns, 'o2c-connector-erp');
      return d && d.spec.template.metadata.annotations['o2c.dev/config-hash'] !== oldHash ? d : undefined;
    });
    expect(after.spec.template.metadata.annotations['o2c.dev/config-hash']).toMatch(/^[0-9a-f]{16}$/);
    const cm = await client.get<ConfigMap>('ConfigMap', ns, 'o2c-connector-erp');
    expect(JSON.parse(cm!.data['config.json']!).spec.limits.requestsPerSecond).toBe(7);
  });

  it('puts back a Deployment edited by hand', async () => {
    await client.mergePatch('Deployment', ns, 'o2c-connector-tax', { spec: { replicas: 5 } });
    await eventually('replicas back to 1', async () => {
      const d = await client.get<Deployment>('Deployment', ns, 'o2c-connector-tax');
      return d?.spec.replicas === 1;
    });
  });

  it('puts back a ConfigMap edited by hand', async () => {
    const original = (await child<ConfigMap>('ConfigMap', 'o2c-connector-tax')).data['config.json'];
    await client.mergePatch('ConfigMap', ns, 'o2c-connector-tax', { data: { 'config.json': '{}' } });
    await eventually('config restored', async () => {
      const cm = await client.get<ConfigMap>('ConfigMap', ns, 'o2c-connector-tax');
      return cm?.data['config.json'] === original;
    });
  });

  it('recreates a Service deleted by hand', async () => {
    const old = await child<Service>('Service', 'o2c-connector-tax');
    await client.delete('Service', ns, 'o2c-connector-tax');
    const recreated = await eventually('Service recreated', async () => {
      const s = await client.get<Service>('Service', ns, 'o2c-connector-tax');
      return s && s.metadata.uid !== old.metadata.uid ? s : undefined;
    });
    expect(recreated.metadata.ownerReferences?.[0]?.name).toBe('tax');
  });

  it('scales through the scale subresource (kubectl scale)', async () => {
    await client.mergePatch('Connector', ns, 'payment', { spec: { replicas: 0 } }, 'scale');
    await eventually('Deployment scaled to 0', async () => {
      const d = await client.get<Deployment>('Deployment', ns, 'o2c-connector-payment');
      return d?.spec.replicas === 0;
    });
    await waitForCondition(client, 'Connector', ns, 'payment', 'DeploymentAvailable', 'True', 'ScaledToZero');
  });

  it('adds a PodDisruptionBudget above one replica and removes it again', async () => {
    // A Pipeline keeps no store, so nothing limits it to one replica.
    await client.mergePatch('Pipeline', ns, 'items-to-crm', { spec: { replicas: 2 } });
    await child('PodDisruptionBudget', 'o2c-pipeline-items-to-crm');
    expect((await child<Deployment>('Deployment', 'o2c-pipeline-items-to-crm')).spec.replicas).toBe(2);
    await client.mergePatch('Pipeline', ns, 'items-to-crm', { spec: { replicas: 1 } });
    await eventually(
      'PDB pruned',
      async () => (await client.get('PodDisruptionBudget', ns, 'o2c-pipeline-items-to-crm')) === undefined,
    );
  });
});

describe('references', () => {
  it('reports a missing Secret by name, and turns Ready once it exists with the key', async () => {
    await client.apply(
      connector('ledger', {
        driver: 'http',
        endpoint: 'http://ledger.example:8000/',
        credentialsSecretRef: { name: 'ledger-credentials', key: 'password' },
      }),
      'kubectl',
    );
    const missing = await waitForCondition(
      client,
      'Connector',
      ns,
      'ledger',
      'CredentialsResolved',
      'False',
      'SecretNotFound',
    );
    expect(missing.message).toContain(`Secret ${ns}/ledger-credentials not found`);
    const ledger = await client.get<AnyResource>('Connector', ns, 'ledger');
    expect(condition(ledger, 'Ready')).toMatchObject({ status: 'False', reason: 'SecretNotFound' });
    expect(await client.get('Deployment', ns, 'o2c-connector-ledger')).toBeUndefined();
    const events = await client.request<{
      items: Array<{ reason: string; type: string; involvedObject: { name: string } }>;
    }>('GET', `/api/v1/namespaces/${ns}/events`);
    expect(
      events.items.some(
        (e) => e.involvedObject.name === 'ledger' && e.type === 'Warning' && e.reason === 'SecretNotFound',
      ),
    ).toBe(true);

    await client.create({
      apiVersion: 'v1',
      kind: 'Secret',
      metadata: { name: 'ledger-credentials', namespace: ns },
      stringData: { username: 'o2c' },
    });
    const keyless = await waitForCondition(
      client,
      'Connector',
      ns,
      'ledger',
      'CredentialsResolved',
      'False',
      'SecretKeyMissing',
    );
    expect(keyless.message).toContain(`Secret ${ns}/ledger-credentials has no key 'password'`);

    await client.mergePatch('Secret', ns, 'ledger-credentials', { stringData: { password: 's3cret' } });
    await waitForCondition(client, 'Connector', ns, 'ledger', 'CredentialsResolved', 'True');
    await child('Deployment', 'o2c-connector-ledger');
    await markDeploymentAvailable(client, ns, 'o2c-connector-ledger');
    await waitForCondition(client, 'Connector', ns, 'ledger', 'Ready', 'True');
    const cm = await child<ConfigMap>('ConfigMap', 'o2c-connector-ledger');
    expect(cm.data['config.json']).not.toContain('s3cret');
    queuesToClean.push(`o2c.${ns}.connector.ledger.commands`, `o2c.${ns}.connector.ledger.commands.dlq`);
  });

  it('reports a Pipeline filter that does not compile as SpecValid=False naming the field, and runs nothing', async () => {
    await client.apply(
      {
        apiVersion: 'o2c.dev/v1alpha1',
        kind: 'Pipeline',
        metadata: { name: 'bad-cel', namespace: ns },
        spec: {
          source: { connector: 'erp', events: ['o2c.v1.ItemUpserted'] },
          filter: 'event.item.active &&',
          sink: { connector: 'crm', operation: 'UpsertItem' },
        },
      },
      'kubectl',
    );
    queuesToClean.push(`o2c.${ns}.pipeline.bad-cel.events`, `o2c.${ns}.pipeline.bad-cel.events.dlq`);
    const invalid = await waitForCondition(
      client,
      'Pipeline',
      ns,
      'bad-cel',
      'SpecValid',
      'False',
      'InvalidSpec',
    );
    expect(invalid.message).toContain('spec.filter');
    await waitForCondition(client, 'Pipeline', ns, 'bad-cel', 'Ready', 'False');
    expect(await client.get('Deployment', ns, 'o2c-pipeline-bad-cel')).toBeUndefined();
  });

  it('reports missing Connectors, and resolves the dependents once they are created', async () => {
    await client.apply(
      {
        apiVersion: 'o2c.dev/v1alpha1',
        kind: 'Pipeline',
        metadata: { name: 'orphan', namespace: ns },
        spec: {
          source: { connector: 'shop', events: ['o2c.v1.ItemUpserted'] },
          sink: { connector: 'pim', operation: 'UpsertItem' },
        },
      },
      'kubectl',
    );
    queuesToClean.push(`o2c.${ns}.pipeline.orphan.events`, `o2c.${ns}.pipeline.orphan.events.dlq`);
    const missing = await waitForCondition(
      client,
      'Pipeline',
      ns,
      'orphan',
      'ReferencesResolved',
      'False',
      'ConnectorNotFound',
    );
    expect(missing.message).toContain(`Connector ${ns}/shop, ${ns}/pim not found`);
    expect(missing.message).toContain('spec.source.connector');

    await client.apply(connector('shop', {}), 'kubectl');
    // A tax system cannot take UpsertItem.
    await client.apply(connector('pim', { system: 'tax' }), 'kubectl');
    queuesToClean.push(
      `o2c.${ns}.connector.shop.commands`,
      `o2c.${ns}.connector.shop.commands.dlq`,
      `o2c.${ns}.connector.pim.commands`,
      `o2c.${ns}.connector.pim.commands.dlq`,
    );
    const unsupported = await waitForCondition(
      client,
      'Pipeline',
      ns,
      'orphan',
      'ReferencesResolved',
      'False',
      'OperationNotOffered',
    );
    expect(unsupported.message).toContain(
      `spec.sink.connector: Connector ${ns}/pim is a tax system and does not offer UpsertItem`,
    );

    await client.mergePatch('Connector', ns, 'pim', { spec: { system: 'crm' } });
    await waitForCondition(client, 'Pipeline', ns, 'orphan', 'ReferencesResolved', 'True', 'Resolved');
    const cm = await child<ConfigMap>('ConfigMap', 'o2c-pipeline-orphan');
    expect(JSON.parse(cm.data['config.json']!).connectors.pim.system).toBe('crm');
  });
});

describe('deletion', () => {
  it('with deletionPolicy delete removes the broker queues, then the finalizer', async () => {
    await client.apply(connector('doomed', {}), 'kubectl');
    const queue = `o2c.${ns}.connector.doomed.commands`;
    queuesToClean.push(queue, `${queue}.dlq`);
    await waitForCondition(client, 'Connector', ns, 'doomed', 'TopologyReady', 'True');
    const live = await client.get<AnyResource>('Connector', ns, 'doomed');
    expect(live?.metadata.finalizers).toContain('o2c.dev/broker-topology');
    expect(await queueExists(queue)).toBe(true);

    await client.delete('Connector', ns, 'doomed');
    await eventually(
      'Connector gone',
      async () => (await client.get('Connector', ns, 'doomed')) === undefined,
    );
    expect(await queueExists(queue)).toBe(false);
    expect(await queueExists(`${queue}.dlq`)).toBe(false);
  });

  it('with deletionPolicy retain keeps the queues', async () => {
    await client.apply(connector('kept', { deletionPolicy: 'retain' }), 'kubectl');
    const queue = `o2c.${ns}.connector.kept.commands`;
    queuesToClean.push(queue, `${queue}.dlq`);
    await waitForCondition(client, 'Connector', ns, 'kept', 'TopologyReady', 'True');
    await client.delete('Connector', ns, 'kept');
    await eventually('Connector gone', async () => (await client.get('Connector', ns, 'kept')) === undefined);
    expect(await queueExists(queue)).toBe(true);
  });
});
