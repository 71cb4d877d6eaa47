import { describe, expect, it } from 'vitest';
import { pipelineHandler } from '../reconcile/pipeline.js';
import type { Connector, Pipeline, Workflow } from '../resources.js';
import { renderConfigMap } from './configmap.js';
import { renderConnectionsSecret } from './connections-secret.js';
import { renderDataVolumeClaim } from './data-volume-claim.js';
import { renderDeployment } from './deployment.js';
import { renderPodDisruptionBudget } from './pdb.js';
import { renderRuntimeConfig } from './runtime-config.js';
import { renderService } from './service.js';

const aConnector = (spec: Partial<Connector['spec']> = {}): Connector => ({
  apiVersion: 'o2c.dev/v1alpha1',
  kind: 'Connector',
  metadata: { name: 'erp', namespace: 'shop', uid: 'u1', generation: 1 },
  spec: { system: 'erp', driver: 'tryton', endpoint: 'http://tryton:8000/', ...spec },
});

const config = (c: Connector) =>
  renderRuntimeConfig(c, {
    connectors: {},
    purposes: [{ purpose: 'commands', bindings: [] }],
    secretNames: ['tryton-credentials'],
  });

describe('renderers', () => {
  it('a config change changes the hash; a generation bump alone does not', () => {
    const a = renderConfigMap(aConnector(), config(aConnector()));
    const b = renderConfigMap(
      aConnector({ limits: { requestsPerSecond: 5 } }),
      config(aConnector({ limits: { requestsPerSecond: 5 } })),
    );
    const bumped = aConnector();
    bumped.metadata.generation = 7;
    expect(a.hash).not.toBe(b.hash);
    expect(renderConfigMap(bumped, config(bumped)).hash).toBe(a.hash);
  });

  it('the Deployment runs the connector role non-root with the Secret mounted and the config hash on the pods', () => {
    const d = renderDeployment(aConnector(), {
      image: 'img:1',
      configHash: 'abc',
      connectionsHash: 'def',
      secretNames: ['tryton-credentials'],
    }) as unknown as {
      spec: {
        template: {
          metadata: { annotations: Record<string, string> };
          spec: { containers: Array<Record<string, unknown>> };
        };
      };
    };
    expect(d.spec.template.metadata.annotations['o2c.dev/config-hash']).toBe('abc');
    expect(d.spec.template.spec.containers[0]).toMatchObject({
      image: 'img:1',
      command: [
        'node',
        '/app/dist/runtime/src/main.js',
        '--role',
        'connector',
        '--config',
        '/etc/o2c/config.json',
      ],
      securityContext: {
        readOnlyRootFilesystem: true,
        allowPrivilegeEscalation: false,
        capabilities: { drop: ['ALL'] },
      },
    });
    expect(JSON.stringify(d)).toContain('/etc/o2c/secrets/tryton-credentials');
  });

  it('a PodDisruptionBudget only above one replica', () => {
    expect(renderPodDisruptionBudget(aConnector())).toBeUndefined();
    expect(
      renderPodDisruptionBudget(
        aConnector({ replicas: 3, store: { postgres: { urlSecretRef: { name: 'db' } } } }),
      )?.spec,
    ).toMatchObject({ maxUnavailable: 1 });
  });

  it('a Workflow Service exposes the API with a cluster IP; a metrics-only Service is headless', () => {
    const wf = {
      ...aConnector(),
      kind: 'Workflow',
      spec: { store: { embedded: {} }, steps: [] },
    } as unknown as Workflow;
    expect(renderService(wf, { api: 8080 }).spec).toMatchObject({
      ports: [
        { name: 'api', port: 8080 },
        { name: 'metrics', port: 9090 },
      ],
    });
    expect(renderService(aConnector()).spec).toMatchObject({ clusterIP: 'None' });
  });
});

const aWorkflow = (spec: Partial<Workflow['spec']> = {}): Workflow => ({
  apiVersion: 'o2c.dev/v1alpha1',
  kind: 'Workflow',
  metadata: { name: 'distributor', namespace: 'shop', uid: 'u2', generation: 1 },
  spec: {
    store: { embedded: {} },
    steps: [{ name: 'a', await: { event: 'o2c.v1.PaymentReceived' } }],
    ...spec,
  },
});

const aPipeline = (delivery: Pipeline['spec']['delivery'] = {}): Pipeline => ({
  apiVersion: 'o2c.dev/v1alpha1',
  kind: 'Pipeline',
  metadata: { name: 'items', namespace: 'shop', uid: 'u3', generation: 1 },
  spec: {
    source: { connector: 'erp', events: ['o2c.v1.ItemUpserted'] },
    sink: { connector: 'crm', operation: 'UpsertItem' },
    delivery,
  },
});

type PodTemplate = {
  spec: {
    replicas: number;
    strategy: { type: string };
    template: {
      spec: {
        securityContext: Record<string, unknown>;
        containers: Array<{
          securityContext: Record<string, unknown>;
          volumeMounts: Array<Record<string, unknown>>;
        }>;
        volumes: Array<Record<string, unknown>>;
      };
    };
  };
};
const deploymentOf = (r: Connector | Workflow | Pipeline): PodTemplate =>
  renderDeployment(r, {
    image: 'img:1',
    configHash: 'a',
    connectionsHash: 'b',
    secretNames: [],
  }) as unknown as PodTemplate;

describe('the embedded store in a cluster', () => {
  it.each([
    ['the default size on the default class', {}, { resources: { requests: { storage: '1Gi' } } }],
    [
      'the size and StorageClass of the spec',
      { size: '5Gi', storageClassName: 'fast' },
      { resources: { requests: { storage: '5Gi' } }, storageClassName: 'fast' },
    ],
  ])('gets a PersistentVolumeClaim owned by the Workflow: %s', (_n, embedded, spec) => {
    const claim = renderDataVolumeClaim(aWorkflow({ store: { embedded } }));
    expect(claim).toMatchObject({
      kind: 'PersistentVolumeClaim',
      metadata: { name: 'o2c-workflow-distributor-data', ownerReferences: [{ kind: 'Workflow', uid: 'u2' }] },
      spec: { accessModes: ['ReadWriteOnce'], ...spec },
    });
  });

  it('mounts the claim at /var/lib/o2c, runs one replica and replaces the pod with Recreate', () => {
    const d = deploymentOf(aWorkflow({ replicas: 1 }));
    expect(d.spec.replicas).toBe(1);
    expect(d.spec.strategy.type).toBe('Recreate');
    expect(d.spec.template.spec.containers[0]!.volumeMounts).toContainEqual({
      name: 'data',
      mountPath: '/var/lib/o2c',
    });
    expect(d.spec.template.spec.volumes).toContainEqual({
      name: 'data',
      persistentVolumeClaim: { claimName: 'o2c-workflow-distributor-data' },
    });
  });

  it('a Connector keeps its outbox and watermarks on a claim by default, with one replica', () => {
    const c = aConnector({ replicas: 3 });
    expect(renderDataVolumeClaim(c)).toMatchObject({
      kind: 'PersistentVolumeClaim',
      spec: { resources: { requests: { storage: '1Gi' } } },
    });
    expect(deploymentOf(c).spec).toMatchObject({ replicas: 1, strategy: { type: 'Recreate' } });
  });

  it('a Connector on PostgreSQL gets no claim and runs its replicas', () => {
    const c = aConnector({ replicas: 2, store: { postgres: { urlSecretRef: { name: 'db' } } } });
    expect(renderDataVolumeClaim(c)).toBeUndefined();
    expect(deploymentOf(c).spec).toMatchObject({ replicas: 2, strategy: { type: 'RollingUpdate' } });
  });

  it('a Workflow on PostgreSQL gets no claim and rolls its pods', () => {
    const wf = aWorkflow({ store: { postgres: { urlSecretRef: { name: 'db' } } }, replicas: 3 });
    expect(renderDataVolumeClaim(wf)).toBeUndefined();
    expect(deploymentOf(wf).spec).toMatchObject({ replicas: 3, strategy: { type: 'RollingUpdate' } });
  });
});

describe('every rendered pod', () => {
  it.each([
    ['a Connector', aConnector()],
    ['a Pipeline', aPipeline()],
    ['a Workflow', aWorkflow()],
  ] as const)('%s runs under the restricted Pod Security Standard with a writable /tmp', (_n, r) => {
    const pod = deploymentOf(r).spec.template.spec;
    expect(pod.securityContext).toMatchObject({
      runAsNonRoot: true,
      seccompProfile: { type: 'RuntimeDefault' },
    });
    expect(pod.containers[0]!.securityContext).toMatchObject({
      allowPrivilegeEscalation: false,
      readOnlyRootFilesystem: true,
      runAsNonRoot: true,
      capabilities: { drop: ['ALL'] },
      seccompProfile: { type: 'RuntimeDefault' },
    });
    expect(pod.containers[0]!.volumeMounts).toContainEqual({ name: 'tmp', mountPath: '/tmp' });
    expect(pod.volumes).toContainEqual({ name: 'tmp', emptyDir: { sizeLimit: '256Mi' } });
  });

  it('mounts its connection Secret where the config says the broker URL is', () => {
    const c = aConnector();
    const pod = deploymentOf(c).spec.template.spec;
    expect(pod.volumes).toContainEqual({
      name: 'connections',
      secret: { secretName: 'o2c-connector-erp-conn' },
    });
    expect(config(c).broker.urlFile).toBe('/etc/o2c/connections/broker-url');
    const { secret } = renderConnectionsSecret(c, { brokerUrl: 'amqp://u:p@rabbit:5672' });
    expect(secret).toMatchObject({
      metadata: { name: 'o2c-connector-erp-conn', ownerReferences: [{ uid: 'u1' }] },
    });
    expect(Buffer.from((secret.data as Record<string, string>)['broker-url']!, 'base64').toString()).toBe(
      'amqp://u:p@rabbit:5672',
    );
  });

  it('a rotated broker URL changes the connections hash, which rolls the pods', () => {
    const c = aConnector();
    expect(renderConnectionsSecret(c, { brokerUrl: 'amqp://a' }).hash).not.toBe(
      renderConnectionsSecret(c, { brokerUrl: 'amqp://b' }).hash,
    );
  });
});

describe('the runtime config names every queue and routing key', () => {
  it('an ordered Pipeline gets its partitioned deliveries queue, the sink its routing key', () => {
    const p = aPipeline({ orderingKey: 'event.item.sku' });
    const cfg = renderRuntimeConfig(p, {
      connectors: { crm: { system: 'crm', driver: 'http' } },
      purposes: pipelineHandler.purposes(p),
      secretNames: [],
    });
    expect(cfg.broker.queues).toEqual({
      events: {
        queue: 'o2c.shop.pipeline.items.events',
        deadLetter: 'o2c.shop.pipeline.items.events.dlq',
        bindings: [{ exchange: 'o2c.events', routingKey: 'shop.connector.erp.o2c.v1.ItemUpserted' }],
      },
      deliveries: {
        queue: 'o2c.shop.pipeline.items.deliveries',
        deadLetter: 'o2c.shop.pipeline.items.deliveries.dlq',
        bindings: [],
        partitions: 4,
      },
    });
    expect(cfg.connectors.crm).toMatchObject({
      commandQueue: 'o2c.shop.connector.crm.commands',
      routingKey: 'shop.crm',
    });
  });

  it('an unordered Pipeline has only its events queue', () => {
    expect(pipelineHandler.purposes(aPipeline()).map((p) => p.purpose)).toEqual(['events']);
  });
});
