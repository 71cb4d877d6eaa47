// The o2c image in every role, against the real services on this machine: the operator container
// (the chart's command and environment) reconciles resources on a real API server, and each role's
// container is created from the Deployment, ConfigMap and Secrets that operator rendered.
import { execFileSync } from 'node:child_process';
import { chmodSync, copyFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { KubeClient, KubeObject } from '../../../operator/src/kube.js';
import { type ControlPlane, freePort } from '../../envtest/controlplane.js';
import { AMQP_URL, waitForCondition } from '../operator-harness.js';
import { type DeploymentObject, type DockerPod, dockerPod, type VolumeSources } from './docker-pod.js';

const REPO = join(import.meta.dirname, '../../..');

/** `make image` (cached layers make a repeat quick); returns the versioned tag. */
export function buildImage(): string {
  return execFileSync('bash', [join(REPO, 'scripts/image/build.sh')], {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'ignore'],
    timeout: 1_500_000,
  }).trim();
}

export const BROKER_SECRET = 'o2c-broker';

/** The flags the chart's restricted security context amounts to under Docker. */
export const RESTRICTED = ['--read-only', '--cap-drop', 'ALL', '--security-opt', 'no-new-privileges'];

/** `docker create` arguments of the operator as the chart runs it, pointed at `plane`. */
export async function operatorContainer(
  plane: ControlPlane,
  image: string,
  namespace: string,
  name: string,
  dir: string,
): Promise<{ args: string[]; healthPort: number }> {
  // The envtest kubeconfig embeds its certificates; the copy is readable by the image's user.
  const kubeconfig = join(dir, 'kubeconfig');
  mkdirSync(dir, { recursive: true });
  chmodSync(dir, 0o755);
  copyFileSync(plane.kubeconfigPath, kubeconfig);
  chmodSync(kubeconfig, 0o644);
  const healthPort = await freePort();
  const args = [
    '--name',
    name,
    '--network',
    'host',
    ...RESTRICTED,
    '--tmpfs',
    '/tmp:rw,uid=65532,gid=65532',
    '--mount',
    `type=bind,src=${kubeconfig},dst=/etc/o2c-operator/kubeconfig,readonly`,
    '-e',
    'KUBECONFIG=/etc/o2c-operator/kubeconfig',
    '-e',
    `POD_NAMESPACE=${namespace}`,
    '-e',
    `POD_NAME=${name}`,
    '-e',
    `O2C_BROKER_SECRET=${BROKER_SECRET}`,
    '-e',
    `O2C_RUNTIME_IMAGE=${image}`,
    '-e',
    `O2C_HEALTH_PORT=${healthPort}`,
    '-e',
    'LOG_LEVEL=warn',
    image,
  ];
  return { args, healthPort };
}

export interface RoleResource {
  role: 'connector' | 'pipeline' | 'workflow';
  kind: 'Connector' | 'Pipeline' | 'Workflow';
  name: string;
  /** The operator's child objects' name (Deployment, ConfigMap). */
  child: string;
  /** The Workflow's order API port (host network). */
  apiPort?: number;
}

export interface RoleScenario {
  resources: RoleResource[];
  /** Every Connector, Pipeline and Workflow by kind, for deleteBrokerTopology. */
  names: { Connector: string[]; Pipeline: string[]; Workflow: string[] };
}

const stepsToBooked = [
  { name: 'validate-customer', call: { connector: 'erp', operation: 'ValidateCustomer' } },
  { name: 'sales-order', call: { connector: 'erp', operation: 'CreateSalesOrder' } },
];

/** The Secret the operator reads its broker URL from (the chart's brokerSecret), before it starts. */
export async function applyBrokerSecret(client: KubeClient, namespace: string): Promise<void> {
  await client.apply(
    {
      apiVersion: 'v1',
      kind: 'Secret',
      metadata: { name: BROKER_SECRET, namespace },
      stringData: { url: AMQP_URL },
    } as KubeObject,
    'kubectl',
  );
}

/**
 * Applies, as kubectl would: two simulator Connectors, an ordered Pipeline, a
 * Workflow on the embedded store and one on PostgreSQL (`postgresUrl`), then waits until the
 * operator reconciled each one.
 */
export async function applyRoleResources(
  client: KubeClient,
  namespace: string,
  postgresUrl: string,
): Promise<RoleScenario> {
  const embeddedApi = await freePort();
  const postgresApi = await freePort();
  const objects: KubeObject[] = [
    {
      apiVersion: 'v1',
      kind: 'Secret',
      metadata: { name: 'ledger-db' },
      stringData: { url: postgresUrl },
    } as KubeObject,
    {
      kind: 'Connector',
      metadata: { name: 'erp' },
      spec: { system: 'erp', driver: 'simulator', owns: ['customer', 'item', 'order'] },
    },
    { kind: 'Connector', metadata: { name: 'crm' }, spec: { system: 'crm', driver: 'simulator' } },
    {
      kind: 'Pipeline',
      metadata: { name: 'items' },
      spec: {
        source: { connector: 'erp', events: ['o2c.v1.ItemUpserted'] },
        transform: { sku: 'event.item.sku' },
        sink: { connector: 'crm', operation: 'UpsertItem' },
        delivery: { orderingKey: 'event.item.sku' },
      },
    },
    {
      kind: 'Workflow',
      metadata: { name: 'orders' },
      spec: { api: { port: embeddedApi }, store: { embedded: {} }, steps: stepsToBooked },
    },
    {
      kind: 'Workflow',
      metadata: { name: 'ledger' },
      spec: {
        api: { port: postgresApi },
        store: { postgres: { urlSecretRef: { name: 'ledger-db', key: 'url' } } },
        steps: stepsToBooked,
      },
    },
  ].map((o) => ({ apiVersion: 'o2c.dev/v1alpha1', ...o }) as KubeObject);
  for (const o of objects) await client.apply({ ...o, metadata: { ...o.metadata, namespace } }, 'kubectl');
  const resources: RoleResource[] = [
    { role: 'connector', kind: 'Connector', name: 'erp', child: 'o2c-connector-erp' },
    { role: 'connector', kind: 'Connector', name: 'crm', child: 'o2c-connector-crm' },
    { role: 'pipeline', kind: 'Pipeline', name: 'items', child: 'o2c-pipeline-items' },
    {
      role: 'workflow',
      kind: 'Workflow',
      name: 'orders',
      child: 'o2c-workflow-orders',
      apiPort: embeddedApi,
    },
    {
      role: 'workflow',
      kind: 'Workflow',
      name: 'ledger',
      child: 'o2c-workflow-ledger',
      apiPort: postgresApi,
    },
  ];
  for (const r of resources) {
    await waitForCondition(client, r.kind, namespace, r.name, 'Reconciled', 'True', undefined, 60_000);
  }
  return {
    resources,
    names: { Connector: ['erp', 'crm'], Pipeline: ['items'], Workflow: ['orders', 'ledger'] },
  };
}

type WithData = KubeObject & { data?: Record<string, string> };

/** The role's container as its rendered Deployment describes it, with its own health port. */
export async function rolePod(
  client: KubeClient,
  namespace: string,
  resource: RoleResource,
  container: string,
  hostDir: string,
): Promise<{ pod: DockerPod; deployment: DeploymentObject; healthPort: number }> {
  const deployment = await client.get<DeploymentObject>('Deployment', namespace, resource.child);
  if (!deployment) throw new Error(`Deployment ${namespace}/${resource.child} was not rendered`);
  const sources: VolumeSources = { configMaps: {}, secrets: {} };
  for (const v of deployment.spec.template.spec.volumes ?? []) {
    if (v.configMap) {
      const cm = await client.get<WithData>('ConfigMap', namespace, v.configMap.name);
      if (cm?.data) sources.configMaps[v.configMap.name] = cm.data;
    }
    if (v.secret) {
      const s = await client.get<WithData>('Secret', namespace, v.secret.secretName);
      if (s?.data) sources.secrets[v.secret.secretName] = s.data;
    }
  }
  mkdirSync(hostDir, { recursive: true });
  chmodSync(hostDir, 0o755);
  // The one difference from a pod: containers share the host's network, so each gets its own port.
  const healthPort = await freePort();
  const pod = dockerPod(deployment, sources, {
    name: container,
    hostDir,
    env: { O2C_HEALTH_PORT: String(healthPort), LOG_LEVEL: process.env.O2C_POD_LOG_LEVEL ?? 'warn' },
  });
  return { pod, deployment, healthPort };
}
