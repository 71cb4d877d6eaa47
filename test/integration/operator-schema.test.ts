// Every schema rule, against a real kube-apiserver: an invalid manifest is rejected with a message
// that names the field, the way `kubectl apply` would show it.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { KubeClient, type KubeObject } from '../../operator/src/kube.js';
import { type ControlPlane, startControlPlane } from '../envtest/controlplane.js';
import { applyAll, createNamespace, EXAMPLES, readManifests } from './operator-harness.js';

let plane: ControlPlane;
let client: KubeClient;
const ns = 'schema';

beforeAll(async () => {
  plane = await startControlPlane();
  client = new KubeClient(plane.kubeConfig());
  await createNamespace(client, ns);
});

afterAll(async () => {
  client?.close();
  await plane?.stop();
});

const connector = (spec: Record<string, unknown>, name = 'erp'): KubeObject => ({
  apiVersion: 'o2c.dev/v1alpha1',
  kind: 'Connector',
  metadata: { name, namespace: ns },
  spec: { system: 'erp', driver: 'simulator', ...spec },
});
const pipeline = (spec: Record<string, unknown>): KubeObject => ({
  apiVersion: 'o2c.dev/v1alpha1',
  kind: 'Pipeline',
  metadata: { name: 'items', namespace: ns },
  spec: {
    source: { connector: 'erp', events: ['o2c.v1.ItemUpserted'] },
    sink: { connector: 'crm', operation: 'UpsertItem' },
    ...spec,
  },
});
const step = (s: Record<string, unknown>) => ({
  name: 'validate',
  call: { connector: 'erp', operation: 'ValidateCustomer' },
  ...s,
});
const workflow = (spec: Record<string, unknown>): KubeObject => ({
  apiVersion: 'o2c.dev/v1alpha1',
  kind: 'Workflow',
  metadata: { name: 'o2c', namespace: ns },
  spec: { store: { embedded: {} }, steps: [step({})], ...spec },
});

async function rejection(obj: KubeObject): Promise<string> {
  try {
    await client.create(obj);
  } catch (err) {
    return (err as Error).message;
  }
  await client.delete(obj.kind!, ns, obj.metadata.name);
  throw new Error('the apiserver accepted the manifest');
}

describe('the apiserver rejects invalid resources with a message naming the field', () => {
  it.each<[string, KubeObject, string[]]>([
    [
      'a Connector with an unknown system',
      connector({ system: 'mainframe' }),
      ['spec.system', 'Unsupported value'],
    ],
    [
      'a Connector with the http driver and no endpoint',
      connector({ driver: 'http' }),
      ['spec.endpoint', 'endpoint is required unless driver is simulator'],
    ],
    [
      'a Connector whose endpoint is not a URL',
      connector({ driver: 'http', endpoint: 'tryton:8000' }),
      ['spec.endpoint'],
    ],
    [
      'a Connector whose timeout is not a duration',
      connector({ limits: { timeout: '10 seconds' } }),
      ['spec.limits.timeout', 'should match'],
    ],
    [
      'a Connector whose circuit breaker opens for "soon"',
      connector({ circuitBreaker: { openFor: 'soon' } }),
      ['spec.circuitBreaker.openFor'],
    ],
    [
      'a Connector with the tryton driver for a CRM',
      connector({ system: 'crm', driver: 'tryton', endpoint: 'http://x' }),
      ['spec.driver', 'driver tryton serves system erp only'],
    ],
    [
      'a Connector with 500 replicas',
      connector({ replicas: 500 }),
      ['spec.replicas', 'less than or equal to 50'],
    ],
    [
      'a Connector on the embedded default store with two replicas',
      connector({ replicas: 2 }),
      ['spec.replicas', 'an embedded store (the default) allows at most one replica'],
    ],
    [
      'a Connector with both a postgres and an embedded store',
      connector({ store: { embedded: {}, postgres: { urlSecretRef: { name: 'db' } } } }),
      ['spec.store', 'store needs exactly one of postgres or embedded'],
    ],
    [
      'a Connector owning an unknown entity',
      connector({ owns: ['spaceship'] }),
      ['spec.owns[0]', 'Unsupported value'],
    ],
    [
      'a Connector owning an entity twice',
      connector({ owns: ['item', 'item'] }),
      ['spec.owns[1]', 'Duplicate value'],
    ],
    [
      'a Connector with an unknown deletionPolicy',
      connector({ deletionPolicy: 'archive' }),
      ['spec.deletionPolicy'],
    ],
    [
      'a Connector whose name is too long for its children',
      connector({}, 'x'.repeat(51)),
      ['metadata.name must be at most 50 characters'],
    ],
    [
      'a Pipeline whose sink operation is not a write operation',
      pipeline({ sink: { connector: 'crm', operation: 'CreateSalesOrder' } }),
      ['spec.sink.operation', 'Unsupported value'],
    ],
    [
      'a Pipeline whose sink is its source',
      pipeline({ sink: { connector: 'erp', operation: 'UpsertItem' } }),
      ['spec.sink.connector', 'sink.connector must differ from source.connector'],
    ],
    [
      'a Pipeline consuming a malformed event type',
      pipeline({ source: { connector: 'erp', events: ['ItemUpserted'] } }),
      ['spec.source.events[0]', 'should match'],
    ],
    [
      'a Pipeline consuming no events',
      pipeline({ source: { connector: 'erp', events: [] } }),
      ['spec.source.events', 'should have at least 1 items'],
    ],
    [
      'a Pipeline with a backoff of "fast"',
      pipeline({ delivery: { backoff: { initial: 'fast' } } }),
      ['spec.delivery.backoff.initial'],
    ],
    ['a Pipeline with concurrency 0', pipeline({ concurrency: 0 }), ['spec.concurrency']],
    [
      'a Workflow step with both call and await',
      workflow({ steps: [step({ await: { event: 'o2c.v1.ShipmentDispatched' } })] }),
      ['spec.steps[0]', 'a step has exactly one of call or await'],
    ],
    [
      'a Workflow step with neither call nor await',
      workflow({ steps: [{ name: 'nothing' }] }),
      ['spec.steps[0]', 'a step has exactly one of call or await'],
    ],
    [
      'a Workflow with two steps of the same name',
      workflow({ steps: [step({}), step({})] }),
      ['spec.steps[1]', 'Duplicate value'],
    ],
    [
      'a Workflow compensating an await step',
      workflow({
        steps: [
          {
            name: 'wait',
            await: { event: 'o2c.v1.ShipmentDispatched' },
            compensate: { operation: 'ReleaseInventory' },
          },
        ],
      }),
      ['spec.steps[0].compensate', 'compensate is only allowed on a call step'],
    ],
    [
      'a Workflow calling an operation that does not exist',
      workflow({ steps: [step({ call: { connector: 'erp', operation: 'Teleport' } })] }),
      ['spec.steps[0].call.operation', 'Unsupported value'],
    ],
    [
      'a Workflow awaiting with a timeout of "later"',
      workflow({ steps: [{ name: 'wait', await: { event: 'o2c.v1.PaymentReceived', timeout: 'later' } }] }),
      ['spec.steps[0].await.timeout'],
    ],
    [
      'a Workflow awaiting with a quiet period of "soon"',
      workflow({ steps: [{ name: 'wait', await: { event: 'o2c.v1.PaymentReceived', pollAfter: 'soon' } }] }),
      ['spec.steps[0].await.pollAfter'],
    ],
    [
      'a Workflow awaiting with a fallback Connector that is no object name',
      workflow({
        steps: [{ name: 'wait', await: { event: 'o2c.v1.PaymentReceived', connector: 'Payments!' } }],
      }),
      ['spec.steps[0].await.connector'],
    ],
    [
      'a Workflow with both a postgres and an embedded store',
      workflow({ store: { embedded: {}, postgres: { urlSecretRef: { name: 'db' } } } }),
      ['spec.store', 'store needs exactly one of postgres or embedded'],
    ],
    [
      'a Workflow with an embedded store and two replicas',
      workflow({ replicas: 2 }),
      ['spec.replicas', 'an embedded store allows at most one replica'],
    ],
    ['a Workflow with no steps', workflow({ steps: [] }), ['spec.steps', 'should have at least 1 items']],
    ['a Workflow serving its API on port 80', workflow({ api: { port: 80 } }), ['spec.api.port']],
  ])('%s', async (_name, manifest, fragments) => {
    const message = await rejection(manifest);
    for (const fragment of fragments) expect(message).toContain(fragment);
  });

  it('keeps deletionPolicy immutable once set', async () => {
    await client.create(connector({ deletionPolicy: 'retain' }, 'immutable'));
    const message = await client
      .mergePatch('Connector', ns, 'immutable', { spec: { deletionPolicy: 'delete' } })
      .then(
        () => 'accepted',
        (err: Error) => err.message,
      );
    expect(message).toContain('spec.deletionPolicy');
    expect(message).toContain('deletionPolicy is immutable');
  });

  it('accepts the reference manifests in examples/distributor and fills in defaults', async () => {
    const manifests = ['connectors.yaml', 'pipelines.yaml', 'workflow.yaml', 'secrets.yaml'].flatMap((f) =>
      readManifests(`${EXAMPLES}/${f}`),
    );
    await applyAll(client, 'default', manifests);
    const erp = await client.get<KubeObject & { spec: Record<string, unknown> }>(
      'Connector',
      'default',
      'erp',
    );
    expect(erp?.spec).toMatchObject({
      replicas: 1,
      deletionPolicy: 'delete',
      circuitBreaker: { openFor: '30s' },
      // The connector's outbox and watermarks live on a claim unless it names PostgreSQL.
      store: { embedded: { size: '1Gi' } },
    });
    const wf = await client.get<KubeObject & { spec: { steps: Array<Record<string, unknown>> } }>(
      'Workflow',
      'default',
      'distributor',
    );
    expect(wf?.spec.steps[0]).toMatchObject({ onFailure: 'hold' });
    expect(wf?.spec.steps.find((s) => s.name === 'await-dispatch')).toMatchObject({
      await: { event: 'o2c.v1.ShipmentDispatched', pollAfter: '10m' },
    });
  });
});
