// What a cluster demands of the operator, on a real kube-apiserver and RabbitMQ: the broker URL comes
// from a Secret in the operator's namespace, the pods pass the restricted Pod Security Standard,
// names the CRD allows fit, a refused write reaches status and Events, the embedded store gets a
// PersistentVolumeClaim, an ordered Pipeline leaves nothing on the broker, and the resync puts back
// a queue deleted behind the operator's back.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { KubeApiError, KubeClient, type KubeObject } from '../../operator/src/kube.js';
import type { Operator } from '../../operator/src/operator.js';
import type { AnyResource } from '../../operator/src/resources.js';
import { type ControlPlane, startControlPlane } from '../envtest/controlplane.js';
import {
  AMQP_URL,
  condition,
  createNamespace,
  deleteQueues,
  eventually,
  exchangeExists,
  queueExists,
  startOperator,
  waitForCondition,
} from './operator-harness.js';

const suffix = Date.now().toString(36);
const ns = `cluster-${suffix}`;
const operatorNs = `o2c-system-${suffix}`;
const RESYNC_MS = 1500;
const longName = `c${'x'.repeat(44)}${suffix.slice(-5)}`.slice(0, 50);

let plane: ControlPlane;
let client: KubeClient;
let operator: Operator;
const queuesToClean: string[] = [];

interface PodTemplate {
  metadata: { labels: Record<string, string> };
  spec: { containers: Array<Record<string, unknown>> } & Record<string, unknown>;
}
type Deployment = KubeObject & {
  spec: { replicas: number; strategy: { type: string }; template: PodTemplate };
};

const connector = (name: string, spec: Record<string, unknown> = {}) => ({
  apiVersion: 'o2c.dev/v1alpha1',
  kind: 'Connector',
  metadata: { name, namespace: ns },
  spec: { system: 'erp', driver: 'simulator', ...spec },
});

beforeAll(async () => {
  plane = await startControlPlane();
  client = new KubeClient(plane.kubeConfig());
  await createNamespace(client, operatorNs);
  await client.apply(
    {
      apiVersion: 'v1',
      kind: 'Namespace',
      metadata: {
        name: ns,
        labels: {
          'pod-security.kubernetes.io/enforce': 'restricted',
          'pod-security.kubernetes.io/enforce-version': 'latest',
        },
      },
    },
    'o2c-test',
  );
  // The broker Secret lives only in the operator's namespace, as the chart creates it.
  await client.create({
    apiVersion: 'v1',
    kind: 'Secret',
    metadata: { name: 'o2c-broker', namespace: operatorNs },
    stringData: { url: AMQP_URL },
  });
  operator = startOperator(plane, 'op-cluster', {
    leaseNamespace: operatorNs,
    resyncMs: RESYNC_MS,
    brokerSecret: { namespace: operatorNs, name: 'o2c-broker', key: 'url' },
  });
  await operator.start();
  await operator.waitUntilLeading();
});

afterAll(async () => {
  await operator?.stop();
  client?.close();
  await plane?.stop();
  await deleteQueues(queuesToClean.flatMap((q) => [q, `${q}.dlq`]));
});

describe('in a namespace of its own, away from the broker Secret', () => {
  it('gives the pods the broker URL through a connection Secret the resource owns', async () => {
    await client.apply(connector('erp'), 'kubectl');
    queuesToClean.push(`o2c.${ns}.connector.erp.commands`);
    await waitForCondition(client, 'Connector', ns, 'erp', 'Reconciled', 'True');
    const secret = await client.get<KubeObject & { data: Record<string, string> }>(
      'Secret',
      ns,
      'o2c-connector-erp-conn',
    );
    expect(Buffer.from(secret!.data['broker-url']!, 'base64').toString()).toBe(AMQP_URL);
    expect(secret!.metadata.ownerReferences?.[0]).toMatchObject({ kind: 'Connector', name: 'erp' });
    const cm = await client.get<KubeObject & { data: Record<string, string> }>(
      'ConfigMap',
      ns,
      'o2c-connector-erp',
    );
    const config = JSON.parse(cm!.data['config.json']!);
    expect(config.apiVersion).toBe('o2c.dev/runtime/v1');
    expect(config.broker.urlFile).toBe('/etc/o2c/connections/broker-url');
    expect(cm!.data['config.json']).not.toContain('guest');
  });

  it('renders pods the restricted Pod Security Standard admits (server-side dry-run as a Pod)', async () => {
    const d = await eventually('Deployment', () =>
      client.get<Deployment>('Deployment', ns, 'o2c-connector-erp'),
    );
    const pod = {
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: { name: 'o2c-connector-erp-dry-run', namespace: ns, labels: d.spec.template.metadata.labels },
      spec: d.spec.template.spec,
    };
    const created = await client.request<KubeObject>('POST', `/api/v1/namespaces/${ns}/pods?dryRun=All`, pod);
    expect(created.metadata.name).toBe('o2c-connector-erp-dry-run');
    // The namespace does enforce: the same pod without its security context is refused.
    const { securityContext: _s, ...container } = d.spec.template.spec.containers[0]!;
    const loose = { ...pod, spec: { ...pod.spec, securityContext: {}, containers: [container] } };
    const refused = await client.request('POST', `/api/v1/namespaces/${ns}/pods?dryRun=All`, loose).then(
      () => undefined,
      (err: unknown) => err,
    );
    expect(refused).toBeInstanceOf(KubeApiError);
    expect((refused as KubeApiError).message).toContain('violates PodSecurity "restricted');
  });

  it('reports a broker Secret without its key on every resource, naming Secret and setting', async () => {
    await client.mergePatch('Secret', operatorNs, 'o2c-broker', { data: { url: null, other: 'eA==' } });
    const c = await waitForCondition(
      client,
      'Connector',
      ns,
      'erp',
      'CredentialsResolved',
      'False',
      'SecretKeyMissing',
    );
    expect(c.message).toContain(
      `Secret ${operatorNs}/o2c-broker has no key 'url' (the operator setting O2C_BROKER_SECRET)`,
    );
    await client.mergePatch('Secret', operatorNs, 'o2c-broker', {
      stringData: { url: AMQP_URL },
    });
    await waitForCondition(client, 'Connector', ns, 'erp', 'CredentialsResolved', 'True');
  });
});

describe('names and failures', () => {
  it('gives a Connector with a 50-character name children whose names fit 63 characters', async () => {
    expect(longName).toHaveLength(50);
    await client.apply(connector(longName), 'kubectl');
    queuesToClean.push(`o2c.${ns}.connector.${longName}.commands`);
    await waitForCondition(client, 'Connector', ns, longName, 'Reconciled', 'True');
    const services = await client.list<KubeObject>('Service', ns);
    const svc = services.items.find((s) => s.metadata.labels?.['o2c.dev/name'] === longName);
    expect(svc?.metadata.name.length).toBeLessThanOrEqual(63);
    expect(svc?.metadata.name).toMatch(/^o2c-connector-c[x]+-[0-9a-f]{8}$/);
    const deployments = await client.list<KubeObject>('Deployment', ns);
    expect(deployments.items.some((d) => d.metadata.name === svc?.metadata.name)).toBe(true);
  });

  it('puts a write the API server refuses into status (reason and message) and a Warning Event', async () => {
    // A quota of no Services, its usage written as the controller-manager (absent here) would.
    const quotaNs = `quota-${suffix}`;
    await createNamespace(client, quotaNs);
    await client.create({
      apiVersion: 'v1',
      kind: 'ResourceQuota',
      metadata: { name: 'no-services', namespace: quotaNs },
      spec: { hard: { services: '0' } },
    });
    await client.mergePatch(
      'ResourceQuota',
      quotaNs,
      'no-services',
      { status: { hard: { services: '0' }, used: { services: '0' } } },
      'status',
    );
    await client.apply(
      { ...connector('wms', { system: 'wms' }), metadata: { name: 'wms', namespace: quotaNs } },
      'kubectl',
    );
    queuesToClean.push(`o2c.${quotaNs}.connector.wms.commands`);
    const c = await waitForCondition(
      client,
      'Connector',
      quotaNs,
      'wms',
      'Reconciled',
      'False',
      'ApplyFailed',
    );
    expect(c.message).toContain('services');
    const wms = await client.get<AnyResource>('Connector', quotaNs, 'wms');
    expect(condition(wms, 'Ready')).toMatchObject({ status: 'False', reason: 'ApplyFailed' });
    const events = await eventually('Warning Event', async () => {
      const list = await client.request<{
        items: Array<{ reason: string; message: string; type: string; involvedObject: { name: string } }>;
      }>('GET', `/api/v1/namespaces/${quotaNs}/events`);
      const found = list.items.filter((e) => e.involvedObject.name === 'wms' && e.reason === 'ApplyFailed');
      return found.length > 0 ? found : undefined;
    });
    expect(events[0]!.type).toBe('Warning');
    expect(events[0]!.message).toContain('services');
  });
});

describe('the embedded store in a cluster', () => {
  it('gets a PersistentVolumeClaim owned by the Workflow, one replica and the Recreate strategy', async () => {
    await client.apply(
      {
        apiVersion: 'o2c.dev/v1alpha1',
        kind: 'Workflow',
        metadata: { name: 'orders', namespace: ns },
        spec: {
          store: { embedded: { size: '2Gi' } },
          steps: [{ name: 'wait', await: { event: 'o2c.v1.PaymentReceived' } }],
        },
      },
      'kubectl',
    );
    queuesToClean.push(...['orders', 'replies', 'events'].map((p) => `o2c.${ns}.workflow.orders.${p}`));
    const claim = await eventually('PersistentVolumeClaim', () =>
      client.get<KubeObject & { spec: Record<string, unknown> }>(
        'PersistentVolumeClaim',
        ns,
        'o2c-workflow-orders-data',
      ),
    );
    expect(claim.spec).toMatchObject({
      accessModes: ['ReadWriteOnce'],
      resources: { requests: { storage: '2Gi' } },
    });
    expect(claim.metadata.ownerReferences?.[0]).toMatchObject({
      kind: 'Workflow',
      name: 'orders',
      controller: true,
    });
    const d = await eventually('Deployment', () =>
      client.get<Deployment>('Deployment', ns, 'o2c-workflow-orders'),
    );
    expect(d.spec.replicas).toBe(1);
    expect(d.spec.strategy.type).toBe('Recreate');
    expect(d.spec.template.spec.volumes).toContainEqual({
      name: 'data',
      persistentVolumeClaim: { claimName: 'o2c-workflow-orders-data' },
    });
  });

  it('is refused by the API server with more than one replica, naming the field', async () => {
    const err = await client.mergePatch('Workflow', ns, 'orders', { spec: { replicas: 2 } }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(KubeApiError);
    expect((err as KubeApiError).message).toContain('spec.replicas');
    expect((err as KubeApiError).message).toContain('an embedded store allows at most one replica');
  });
});

describe('the broker', () => {
  it('deleting an ordered Pipeline removes its partition queues and the ordering exchange', async () => {
    await client.apply(connector('crm', { system: 'crm', driver: 'simulator' }), 'kubectl');
    queuesToClean.push(`o2c.${ns}.connector.crm.commands`);
    await client.apply(
      {
        apiVersion: 'o2c.dev/v1alpha1',
        kind: 'Pipeline',
        metadata: { name: 'items', namespace: ns },
        spec: {
          source: { connector: 'erp', events: ['o2c.v1.ItemUpserted'] },
          sink: { connector: 'crm', operation: 'UpsertItem' },
          transform: { sku: 'event.item.sku' },
          delivery: { orderingKey: 'event.item.sku' },
        },
      },
      'kubectl',
    );
    const deliveries = `o2c.${ns}.pipeline.items.deliveries`;
    const partitions = [0, 1, 2, 3].map((i) => `${deliveries}.p${i}`);
    queuesToClean.push(`o2c.${ns}.pipeline.items.events`, ...partitions, deliveries);
    await waitForCondition(client, 'Pipeline', ns, 'items', 'TopologyReady', 'True');
    for (const q of [...partitions, `${deliveries}.dlq`]) expect(await queueExists(q)).toBe(true);
    expect(await exchangeExists(`${deliveries}.ordering`)).toBe(true);

    await client.delete('Pipeline', ns, 'items');
    await eventually('finalized', async () => (await client.get('Pipeline', ns, 'items')) === undefined);
    for (const q of [...partitions, `${deliveries}.dlq`, `o2c.${ns}.pipeline.items.events`]) {
      expect(await queueExists(q)).toBe(false);
    }
    expect(await exchangeExists(`${deliveries}.ordering`)).toBe(false);
  });

  it('declares again, within the resync period, a queue deleted behind its back', async () => {
    const queue = `o2c.${ns}.connector.erp.commands`;
    await waitForCondition(client, 'Connector', ns, 'erp', 'TopologyReady', 'True');
    const started = Date.now();
    await deleteQueues([queue]);
    // No check that it is gone: a resync may fall between the delete and such a check and declare it
    // again at once, as it should (a CI run failed on that race).
    await eventually('queue declared again', () => queueExists(queue), RESYNC_MS * 4);
    expect(Date.now() - started).toBeLessThan(RESYNC_MS * 4);
  });
});

describe('Events', () => {
  it('records no Warning for a resource whose pods are merely rolling out', async () => {
    await waitForCondition(client, 'Connector', ns, 'crm', 'DeploymentAvailable', 'False', 'RollingOut');
    const events = await client.request<{
      items: Array<{ reason: string; type: string; involvedObject: { name: string } }>;
    }>('GET', `/api/v1/namespaces/${ns}/events`);
    expect(events.items.filter((e) => e.involvedObject.name === 'crm' && e.type === 'Warning')).toEqual([]);
  });
});

describe('kubectl get o2c', () => {
  it('shows columns a person can act on: Ready, Reason, Available, Age and the message', async () => {
    const table = await client.request<{
      columnDefinitions: Array<{ name: string }>;
      rows: Array<{ cells: unknown[]; object: { metadata: { name: string } } }>;
    }>(
      'GET',
      `/apis/o2c.dev/v1alpha1/namespaces/${ns}/connectors`,
      undefined,
      undefined,
      'application/json;as=Table;v=v1;g=meta.k8s.io',
    );
    const columns = table.columnDefinitions.map((c) => c.name);
    expect(columns).toEqual(['Name', 'System', 'Driver', 'Ready', 'Reason', 'Available', 'Age', 'Message']);
    const erp = table.rows.find((r) => r.cells[0] === 'erp')!;
    const cell = (name: string) => erp.cells[columns.indexOf(name)];
    expect(cell('Ready')).toBe('False');
    expect(cell('Reason')).toBe('RollingOut');
    expect(String(cell('Message'))).toContain(
      'DeploymentAvailable: Deployment o2c-connector-erp is rolling out',
    );
  });
});
