// Captures Connectors, Pipelines and Workflows in the states Argo CD must tell apart, as a real
// kube-apiserver returns them after the operator reconciled them, into test/argocd/fixtures/. The
// health checks in examples/argocd are tested against these files (test/integration/argocd-health).
//
//   tsx test/argocd/capture.ts [--out DIR]
//     runs envtest and the operator and writes envtest-<kind>-<state>.json
//   tsx test/argocd/capture.ts --from-cluster --prefix e2e --namespace NS Kind/name=state...
//     copies resources as they are from the cluster KUBECONFIG names into <prefix>-<kind>-<state>.json
//
// Each new fixture needs its expected health in test/integration/argocd-health.test.ts, which fails
// on a fixture it has no row for.
import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { KubeConfig } from '@kubernetes/client-node';
import { pino } from 'pino';
import { KubeClient, type KubeObject } from '../../operator/src/kube.js';
import { Operator } from '../../operator/src/operator.js';
import type { AnyResource } from '../../operator/src/resources.js';
import { startControlPlane } from '../envtest/controlplane.js';
import {
  createNamespace,
  eventually,
  FAST_LEASE,
  markDeploymentAvailable,
  startOperator,
  waitForCondition,
} from '../integration/operator-harness.js';

const REPO = join(import.meta.dirname, '../..');
const { values: args, positionals } = parseArgs({
  options: {
    out: { type: 'string', default: join(import.meta.dirname, 'fixtures') },
    'from-cluster': { type: 'boolean', default: false },
    prefix: { type: 'string', default: 'e2e' },
    namespace: { type: 'string' },
  },
  allowPositionals: true,
});
const OUT = args.out;
/** Fixed, so the messages in the fixtures (which name the namespace) are the same on every run. */
const NS = 'argocd-capture';
/** Nothing listens on port 1: the operator sees the broker down, as in an outage. */
const NO_BROKER = 'amqp://guest:guest@127.0.0.1:1';

type Spec = Record<string, unknown>;
const resource = (kind: string, name: string, spec: Spec): KubeObject => ({
  apiVersion: 'o2c.dev/v1alpha1',
  kind,
  metadata: { name, namespace: NS },
  spec,
});
const connector = (name: string, system: string, extra: Spec = {}) =>
  resource('Connector', name, { system, driver: 'simulator', ...extra });
const pipeline = (name: string, sink: { connector: string; operation: string }, extra: Spec = {}) =>
  resource('Pipeline', name, {
    source: { connector: 'erp', events: ['o2c.v1.ItemUpserted'] },
    sink,
    ...extra,
  });
const workflow = (name: string, extra: Spec = {}) =>
  resource('Workflow', name, {
    api: { port: 8080, authSecretRef: { name: 'order-api-tokens' } },
    store: { postgres: { urlSecretRef: { name: 'o2c-db', key: 'url' } } },
    steps: [
      { name: 'validate-customer', call: { connector: 'erp', operation: 'ValidateCustomer' } },
      { name: 'sales-order', call: { connector: 'erp', operation: 'CreateSalesOrder' } },
    ],
    notify: [{ connector: 'crm', operation: 'UpdateOrderStatus' }],
    ...extra,
  });
const secret = (name: string, stringData: Record<string, string>): KubeObject => ({
  apiVersion: 'v1',
  kind: 'Secret',
  metadata: { name, namespace: NS },
  stringData,
});

const written: string[] = [];

async function capture(
  client: KubeClient,
  kind: string,
  name: string,
  file: string,
  where: { namespace: string; prefix: string } = { namespace: NS, prefix: 'envtest' },
): Promise<void> {
  const live = await client.get<AnyResource>(kind, where.namespace, name);
  if (!live) throw new Error(`${kind} ${where.namespace}/${name} not found`);
  // managedFields are bookkeeping of the API server, not part of what a health check reads.
  const { managedFields: _, ...metadata } = live.metadata as AnyResource['metadata'] & {
    managedFields?: unknown;
  };
  const path = join(OUT, `${where.prefix}-${file}.json`);
  writeFileSync(path, `${JSON.stringify({ ...live, metadata }, null, 2)}\n`);
  written.push(path);
  console.log(`captured ${kind} ${name} -> ${path}`);
}

/** What the Deployment controller writes while the pods of a rollout are not ready. */
async function markDeploymentUnavailable(client: KubeClient, name: string): Promise<void> {
  const d = await client.get('Deployment', NS, name);
  if (!d) throw new Error(`Deployment ${NS}/${name} not found`);
  await client.mergePatch(
    'Deployment',
    NS,
    name,
    {
      status: {
        observedGeneration: d.metadata.generation,
        replicas: 1,
        updatedReplicas: 1,
        readyReplicas: 0,
        availableReplicas: 0,
        unavailableReplicas: 1,
      },
    },
    'status',
  );
}

async function startLeading(op: Operator): Promise<Operator> {
  await op.start();
  await op.waitUntilLeading();
  return op;
}

/** Copies the named resources, in whatever state they are, from the cluster KUBECONFIG points at. */
async function fromCluster(): Promise<void> {
  if (!args.namespace || positionals.length === 0)
    throw new Error('usage: --from-cluster --prefix P --namespace NS Kind/name=state...');
  const kc = new KubeConfig();
  kc.loadFromDefault();
  const client = new KubeClient(kc);
  try {
    for (const spec of positionals) {
      const m = /^(Connector|Pipeline|Workflow)\/([a-z0-9-]+)=([a-z0-9-]+)$/.exec(spec);
      if (!m) throw new Error(`${spec}: expected Kind/name=state, e.g. Connector/erp=ready`);
      const [, kind, name, state] = m as unknown as [string, string, string, string];
      await capture(client, kind, name, `${kind.toLowerCase()}-${state}`, {
        namespace: args.namespace,
        prefix: args.prefix!,
      });
    }
  } finally {
    client.close();
  }
}

async function fromEnvtest(): Promise<void> {
  const plane = await startControlPlane();
  let op: Operator | undefined;
  try {
    op = await startLeading(startOperator(plane, 'capture'));
    const client = op.client;
    await createNamespace(client, NS);
    const apply = (o: KubeObject) => client.apply(o, 'kubectl');
    const ready = (kind: string, name: string) => waitForCondition(client, kind, NS, name, 'Ready', 'True');
    const failing = (kind: string, name: string, reason: string) =>
      waitForCondition(client, kind, NS, name, 'Ready', 'False', reason);

    for (const s of [
      secret('order-api-tokens', { tokens: 'capture-token\n' }),
      secret('o2c-db', { url: 'postgres://o2c@127.0.0.1:5432/o2c' }),
      secret('ledger-credentials', { user: 'o2c' }),
    ])
      await apply(s);
    const erp = connector('erp', 'erp');
    const itemsToCrm = pipeline('items-to-crm', { connector: 'crm', operation: 'UpsertItem' });
    const orders = workflow('orders');
    for (const r of [
      erp,
      connector('crm', 'crm'),
      connector('tax', 'tax'),
      connector('wms', 'wms'),
      connector('returns', 'wms'),
      connector('billing', 'payment', { credentialsSecretRef: { name: 'billing-credentials' } }),
      connector('ledger', 'erp', { credentialsSecretRef: { name: 'ledger-credentials', key: 'password' } }),
      itemsToCrm,
      pipeline('items-to-marketing', { connector: 'marketing', operation: 'UpsertItem' }),
      pipeline('items-to-tax', { connector: 'tax', operation: 'UpsertItem' }),
      pipeline(
        'active-items',
        { connector: 'crm', operation: 'UpsertItem' },
        { filter: 'event.item.active &&' },
      ),
      orders,
      workflow('orders-shipping', {
        steps: [{ name: 'ship', call: { connector: 'shipping', operation: 'ReleaseFulfillment' } }],
      }),
      workflow('orders-no-tokens', { api: { port: 8080, authSecretRef: { name: 'missing-tokens' } } }),
    ])
      await apply(r);

    // Ready: the Deployment controller reports the pods available.
    for (const [kind, name, child] of [
      ['Connector', 'erp', 'o2c-connector-erp'],
      ['Connector', 'crm', 'o2c-connector-crm'],
      ['Pipeline', 'items-to-crm', 'o2c-pipeline-items-to-crm'],
      ['Workflow', 'orders', 'o2c-workflow-orders'],
    ] as const) {
      await eventually(`Deployment ${child}`, () => client.get('Deployment', NS, child));
      await markDeploymentAvailable(client, NS, child);
      await ready(kind, name);
    }
    await capture(client, 'Connector', 'erp', 'connector-ready');
    await capture(client, 'Pipeline', 'items-to-crm', 'pipeline-ready');
    await capture(client, 'Workflow', 'orders', 'workflow-ready');

    // Rolling out: a Deployment the Deployment controller has not reported on yet, and one whose pods
    // are not ready.
    await failing('Connector', 'wms', 'RollingOut');
    await capture(client, 'Connector', 'wms', 'connector-rolling-out');
    await eventually('Deployment o2c-connector-returns', () =>
      client.get('Deployment', NS, 'o2c-connector-returns'),
    );
    await markDeploymentUnavailable(client, 'o2c-connector-returns');
    await failing('Connector', 'returns', 'ReplicasUnavailable');
    await capture(client, 'Connector', 'returns', 'connector-replicas-unavailable');

    // What a person must fix.
    await failing('Connector', 'billing', 'SecretNotFound');
    await capture(client, 'Connector', 'billing', 'connector-credentials-missing');
    await failing('Connector', 'ledger', 'SecretKeyMissing');
    await capture(client, 'Connector', 'ledger', 'connector-credentials-key-missing');
    await failing('Pipeline', 'items-to-marketing', 'ConnectorNotFound');
    await capture(client, 'Pipeline', 'items-to-marketing', 'pipeline-connector-missing');
    await failing('Pipeline', 'items-to-tax', 'OperationNotOffered');
    await capture(client, 'Pipeline', 'items-to-tax', 'pipeline-operation-not-offered');
    await failing('Pipeline', 'active-items', 'InvalidSpec');
    await capture(client, 'Pipeline', 'active-items', 'pipeline-invalid-cel');
    await failing('Workflow', 'orders-shipping', 'ConnectorNotFound');
    await capture(client, 'Workflow', 'orders-shipping', 'workflow-connector-missing');
    await failing('Workflow', 'orders-no-tokens', 'SecretNotFound');
    await capture(client, 'Workflow', 'orders-no-tokens', 'workflow-credentials-missing');

    // The operator is away (an upgrade, a crash loop): specs change and resources appear that it has
    // not seen. The status still describes the previous generation, or does not exist.
    await op.stop();
    op = undefined;
    const changed = (r: KubeObject, spec: Spec) => ({ ...r, spec: { ...(r.spec as Spec), ...spec } });
    await apply(changed(erp, { limits: { requestsPerSecond: 50 } }));
    await apply(changed(itemsToCrm, { concurrency: 4 }));
    await apply(changed(orders, { api: { port: 8081, authSecretRef: { name: 'order-api-tokens' } } }));
    await apply(connector('crm-eu', 'crm'));
    await apply(pipeline('items-to-crm-eu', { connector: 'crm-eu', operation: 'UpsertItem' }));
    await apply(workflow('orders-eu'));
    await capture(client, 'Connector', 'erp', 'connector-generation-ahead');
    await capture(client, 'Pipeline', 'items-to-crm', 'pipeline-generation-ahead');
    await capture(client, 'Workflow', 'orders', 'workflow-generation-ahead');
    await capture(client, 'Connector', 'crm-eu', 'connector-no-status');
    await capture(client, 'Pipeline', 'items-to-crm-eu', 'pipeline-no-status');
    await capture(client, 'Workflow', 'orders-eu', 'workflow-no-status');

    // The operator is back but the broker is not.
    const outage = await startLeading(
      new Operator({
        kubeConfig: plane.kubeConfig(),
        log: pino({ level: 'silent' }),
        image: 'o2c:dev',
        identity: 'capture-no-broker',
        amqpUrl: NO_BROKER,
        leaseNamespace: 'default',
        leaseTimings: FAST_LEASE,
      }),
    );
    try {
      await failing('Connector', 'erp', 'BrokerUnreachable');
      await capture(outage.client, 'Connector', 'erp', 'connector-broker-unreachable');
      await failing('Pipeline', 'items-to-crm', 'BrokerUnreachable');
      await capture(outage.client, 'Pipeline', 'items-to-crm', 'pipeline-broker-unreachable');
      await failing('Workflow', 'orders', 'BrokerUnreachable');
      await capture(outage.client, 'Workflow', 'orders', 'workflow-broker-unreachable');
    } finally {
      await outage.stop();
    }

    // Clean up the broker: the operator's finalizer deletes each resource's queues.
    op = await startLeading(startOperator(plane, 'capture-cleanup'));
    for (const kind of ['Workflow', 'Pipeline', 'Connector']) {
      for (const r of (await op.client.list<AnyResource>(kind, NS)).items)
        await op.client.delete(kind, NS, r.metadata.name);
      await eventually(
        `${kind}s deleted`,
        async () => (await op!.client.list(kind, NS)).items.length === 0,
        60_000,
      );
    }
  } finally {
    await op?.stop();
    await plane.stop();
  }
}

async function main(): Promise<void> {
  mkdirSync(OUT, { recursive: true });
  await (args['from-cluster'] ? fromCluster() : fromEnvtest());
  // The repository's formatter owns the layout of committed JSON; it runs in the tree the files are in.
  const root = execFileSync('git', ['-C', OUT, 'rev-parse', '--show-toplevel'], { encoding: 'utf8' }).trim();
  execFileSync(join(REPO, 'node_modules/.bin/biome'), ['format', '--write', ...written], {
    cwd: root,
    stdio: 'inherit',
  });
}

await main();
