// The contract end to end: the operator renders ConfigMaps and connection Secrets on a real API
// server; runtime/src/main.ts started with exactly those files (as the pod would mount them) boots
// every role, becomes ready and consumes the queues the operator declared under the names it rendered.
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { KubeClient, type KubeObject } from '../../operator/src/kube.js';
import type { Operator } from '../../operator/src/operator.js';
import { type ControlPlane, freePort, startControlPlane } from '../envtest/controlplane.js';
import {
  createNamespace,
  deleteBrokerTopology,
  eventually,
  queueConsumers,
  startOperator,
  waitForCondition,
} from './operator-harness.js';

const REPO = join(import.meta.dirname, '../..');
const ns = `contract-${Date.now().toString(36)}`;

let plane: ControlPlane;
let client: KubeClient;
let operator: Operator;
const dir = mkdtempSync(join(tmpdir(), 'o2c-contract-'));
const pods: ChildProcess[] = [];

type WithData = KubeObject & { data: Record<string, string> };

/** Writes the ConfigMap and connection Secret as the pod's volumes would; returns the config path. */
async function mountLike(child: string): Promise<string> {
  const cm = await client.get<WithData>('ConfigMap', ns, child);
  const conn = await client.get<WithData>('Secret', ns, `${child}-conn`);
  const root = join(dir, child);
  mkdirSync(join(root, 'connections'), { recursive: true });
  mkdirSync(join(root, 'data'), { recursive: true });
  for (const [key, value] of Object.entries(conn!.data)) {
    writeFileSync(join(root, 'connections', key), Buffer.from(value, 'base64'));
  }
  const config = JSON.parse(cm!.data['config.json']!);
  // The one difference from a pod: the mount point lives under a temporary directory here.
  expect(config.broker.urlFile).toBe('/etc/o2c/connections/broker-url');
  config.broker.urlFile = join(root, 'connections', 'broker-url');
  writeFileSync(join(root, 'config.json'), JSON.stringify(config));
  return join(root, 'config.json');
}

async function startRuntime(role: string, child: string): Promise<number> {
  const config = await mountLike(child);
  const health = await freePort();
  const proc = spawn(
    process.execPath,
    ['--import', 'tsx', 'runtime/src/main.ts', '--role', role, '--config', config],
    {
      cwd: REPO,
      env: {
        PATH: process.env.PATH,
        HOME: process.env.HOME,
        O2C_HEALTH_PORT: String(health),
        O2C_DATA_DIR: join(dir, child, 'data'),
        LOG_LEVEL: 'warn',
      },
      stdio: ['ignore', 'ignore', 'inherit'],
    },
  );
  pods.push(proc);
  await eventually(
    `${role} ready`,
    async () => (await fetch(`http://127.0.0.1:${health}/readyz`).catch(() => undefined))?.status === 200,
    30_000,
  );
  return health;
}

beforeAll(async () => {
  plane = await startControlPlane();
  client = new KubeClient(plane.kubeConfig());
  await createNamespace(client, ns);
  operator = startOperator(plane, 'op-contract', { leaseNamespace: ns });
  await operator.start();
  await operator.waitUntilLeading();
  const apiPort = await freePort();
  for (const o of [
    { kind: 'Connector', metadata: { name: 'erp' }, spec: { system: 'erp', driver: 'simulator' } },
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
      spec: {
        api: { port: apiPort },
        store: { embedded: {} },
        steps: [{ name: 'validate', call: { connector: 'erp', operation: 'ValidateCustomer' } }],
      },
    },
  ]) {
    await client.apply(
      { apiVersion: 'o2c.dev/v1alpha1', ...o, metadata: { ...o.metadata, namespace: ns } },
      'kubectl',
    );
  }
  for (const [kind, name] of [
    ['Connector', 'erp'],
    ['Connector', 'crm'],
    ['Pipeline', 'items'],
    ['Workflow', 'orders'],
  ] as const) {
    await waitForCondition(client, kind, ns, name, 'Reconciled', 'True', undefined, 30_000);
  }
}, 120_000);

afterAll(async () => {
  for (const p of pods) {
    if (p.exitCode === null) {
      const exited = new Promise((r) => p.once('exit', r));
      p.kill('SIGTERM');
      await exited;
    }
  }
  await operator?.stop();
  client?.close();
  await plane?.stop();
  await deleteBrokerTopology(ns, { Connector: ['erp', 'crm'], Pipeline: ['items'], Workflow: ['orders'] });
  rmSync(dir, { recursive: true, force: true });
});

describe('runtime pods started from what the operator rendered', () => {
  it('a Connector consumes its rendered command queue', async () => {
    await startRuntime('connector', 'o2c-connector-erp');
    await startRuntime('connector', 'o2c-connector-crm');
    expect(await queueConsumers(`o2c.${ns}.connector.erp.commands`)).toBeGreaterThanOrEqual(1);
    // Its outbox, inbox and watermarks on the data volume: the CRD's embedded default.
    const erp = await client.get<KubeObject & { spec: { store?: unknown } }>('Connector', ns, 'erp');
    expect(erp?.spec.store).toEqual({ embedded: { size: '1Gi' } });
    expect(existsSync(join(dir, 'o2c-connector-erp', 'data', 'erp.sqlite'))).toBe(true);
  });

  it('an ordered Pipeline consumes its events queue and every rendered partition', async () => {
    await startRuntime('pipeline', 'o2c-pipeline-items');
    expect(await queueConsumers(`o2c.${ns}.pipeline.items.events`)).toBeGreaterThanOrEqual(1);
    for (const i of [0, 1, 2, 3]) {
      expect(await queueConsumers(`o2c.${ns}.pipeline.items.deliveries.p${i}`)).toBeGreaterThanOrEqual(1);
    }
  });

  it('a Workflow consumes its orders, replies and events queues', async () => {
    await startRuntime('workflow', 'o2c-workflow-orders');
    for (const p of ['orders', 'replies', 'events']) {
      expect(await queueConsumers(`o2c.${ns}.workflow.orders.${p}`)).toBeGreaterThanOrEqual(1);
    }
  });
});
