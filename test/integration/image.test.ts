// The built image, run the way a cluster runs it: as uid 65532 with a read-only root filesystem, no
// capabilities and no privilege escalation. The operator container reconciles on a real API server;
// each runtime role's container is created from the Deployment, ConfigMap and Secrets that operator
// rendered, and must answer /readyz 200 against the real RabbitMQ and PostgreSQL — and carry orders.
import { readFileSync, rmSync } from 'node:fs';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { KubeClient } from '../../operator/src/kube.js';
import { type ControlPlane, startControlPlane } from '../envtest/controlplane.js';
import { createNamespace, deleteBrokerTopology, eventually, queueConsumers } from './operator-harness.js';
import { createDockerPod, docker, dockerLogs, waitReady } from './support/docker-pod.js';
import {
  applyBrokerSecret,
  applyRoleResources,
  buildImage,
  operatorContainer,
  RESTRICTED,
  type RoleResource,
  type RoleScenario,
  rolePod,
} from './support/image-roles.js';

const PG_ADMIN = 'postgres://postgres@127.0.0.1:5432/postgres';
const id = Date.now().toString(36);
const ns = `image-${id}`;
const db = `o2c_image_${id}`;
const prefix = `o2c-image-test-${id}`;

let image: string;
let plane: ControlPlane;
let client: KubeClient;
let dir: string;
let scenario: RoleScenario;
const containers: string[] = [];

async function running(container: string): Promise<boolean> {
  return (
    (await docker('inspect', '--format', '{{.State.Running}}', container).catch(() => 'false')) === 'true'
  );
}

/** uid and gid of the container's main process, read from the host's /proc. */
async function processIds(container: string): Promise<{ uid: string; gid: string }> {
  const pid = await docker('inspect', '--format', '{{.State.Pid}}', container);
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const field = (name: string) => status.match(new RegExp(`^${name}:\\s+(\\d+)`, 'm'))?.[1] ?? '';
  return { uid: field('Uid'), gid: field('Gid') };
}

async function startChecked(container: string, healthPort: number): Promise<void> {
  await docker('start', container);
  try {
    await waitReady(healthPort, 60_000, () => running(container));
  } catch (err) {
    throw new Error(`${container}: ${(err as Error).message}\n${await dockerLogs(container)}`);
  }
}

const started = new Map<string, { container: string; healthPort: number }>();

async function startRole(r: RoleResource): Promise<{ container: string; healthPort: number }> {
  const container = `${prefix}-${r.kind.toLowerCase()}-${r.name}`;
  const { pod, deployment, healthPort } = await rolePod(client, ns, r, container, join(dir, r.child));
  // What the operator rendered is what makes these flags right for a pod.
  const c = deployment.spec.template.spec.containers[0]!;
  expect(c.image).toBe(image);
  expect(c.securityContext).toMatchObject({
    readOnlyRootFilesystem: true,
    allowPrivilegeEscalation: false,
    capabilities: { drop: ['ALL'] },
  });
  expect(pod.args).toEqual(expect.arrayContaining(RESTRICTED));
  containers.push(await createDockerPod(pod));
  await startChecked(container, healthPort);
  const handle = { container, healthPort };
  started.set(r.name, handle);
  return handle;
}

async function orderApi(port: number, method: string, body: unknown): Promise<Record<string, unknown>> {
  const res = await fetch(`http://127.0.0.1:${port}/o2c.v1.OrderService/${method}`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify(body),
  });
  const json = (await res.json()) as Record<string, unknown>;
  if (res.status !== 200) throw new Error(`${method}: HTTP ${res.status} ${JSON.stringify(json)}`);
  return json;
}

/** An order through the Workflow container, the erp Connector container and the broker, to BOOKED. */
async function orderBooked(workflow: RoleResource): Promise<string> {
  const submitted = await orderApi(workflow.apiPort!, 'SubmitOrder', {
    idempotency_key: `po-${workflow.name}-${id}`,
    order: {
      customer_id: 'ACME',
      currency_code: 'USD',
      lines: [{ sku: 'WIDGET-1', quantity: 2, unit_price: { currency_code: 'USD', units: '10' } }],
    },
  });
  const orderId = (submitted.order as { id: string }).id;
  let last = '';
  try {
    return await eventually(
      `order ${orderId} BOOKED through ${workflow.name}`,
      async () => {
        const { order } = (await orderApi(workflow.apiPort!, 'GetOrder', { id: orderId })) as {
          order: { state: string };
        };
        last = JSON.stringify(order);
        return order.state === 'ORDER_STATE_BOOKED' ? orderId : undefined;
      },
      30_000,
    );
  } catch (err) {
    const logs = await dockerLogs(started.get(workflow.name)!.container, 10);
    throw new Error(`${(err as Error).message}; last seen ${last}\n${logs}`);
  }
}

const role = (name: string): RoleResource => {
  const r = scenario.resources.find((x) => x.name === name);
  if (!r) throw new Error(`no resource ${name}`);
  return r;
};

beforeAll(async () => {
  image = buildImage();
  dir = await mkdtemp(join(tmpdir(), 'o2c-image-'));
  const admin = new pg.Client({ connectionString: PG_ADMIN });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${db}`);
  await admin.end();
  plane = await startControlPlane();
  client = new KubeClient(plane.kubeConfig());
  await createNamespace(client, ns);
  await applyBrokerSecret(client, ns);
}, 1_800_000);

afterAll(async () => {
  for (const c of containers) await docker('rm', '-f', c).catch(() => {});
  client?.close();
  await plane?.stop();
  if (scenario) await deleteBrokerTopology(ns, scenario.names);
  const admin = new pg.Client({ connectionString: PG_ADMIN });
  await admin.connect();
  await admin.query(`DROP DATABASE IF EXISTS ${db} WITH (FORCE)`);
  await admin.end();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('the o2c image', () => {
  it('is one image that runs as uid 65532 with the operator as its default command', async () => {
    const config = JSON.parse(await docker('image', 'inspect', '--format', '{{json .Config}}', image)) as {
      User: string;
      Cmd: string[];
      WorkingDir: string;
    };
    expect(config.User).toBe('65532:65532');
    expect(config.WorkingDir).toBe('/app');
    expect(config.Cmd).toEqual(['node', '/app/dist/operator/src/main.js']);
    expect(await docker('image', 'inspect', '--format', '{{.Id}}', 'o2c:dev')).toBe(
      await docker('image', 'inspect', '--format', '{{.Id}}', image),
    );
  });

  it('holds no TypeScript loader, no dev dependency and no TypeScript source', async () => {
    const listing = await docker(
      'run',
      '--rm',
      '--read-only',
      '--entrypoint',
      'sh',
      image,
      '-c',
      'ls node_modules node_modules/.bin 2>/dev/null; find /app -name "*.ts" | head -5; command -v npm || true',
    );
    for (const dev of ['tsx', 'typescript', 'vitest', '@biomejs', 'node']) {
      expect(listing.split('\n')).not.toContain(dev);
    }
    expect(listing).not.toMatch(/\.ts$/m);
    expect(listing).not.toContain('npm');
  });

  it('runs the operator against the API server with a read-only root filesystem', async () => {
    const name = `${prefix}-operator`;
    const { args, healthPort } = await operatorContainer(plane, image, ns, name, join(dir, 'operator'));
    containers.push(await docker('create', ...args));
    await startChecked(name, healthPort);
    expect(await processIds(name)).toEqual({ uid: '65532', gid: '65532' });
    const host = JSON.parse(await docker('inspect', '--format', '{{json .HostConfig}}', name)) as {
      ReadonlyRootfs: boolean;
      CapDrop: string[];
      SecurityOpt: string[];
    };
    expect(host).toMatchObject({
      ReadonlyRootfs: true,
      CapDrop: ['ALL'],
      SecurityOpt: ['no-new-privileges'],
    });
    // The operator reconciles: every resource gets its children and its queues.
    const postgresUrl = `postgres://postgres@127.0.0.1:5432/${db}`;
    scenario = await applyRoleResources(client, ns, postgresUrl);
  });

  it('writes nowhere but its volumes: the root filesystem refuses a write', async () => {
    const out = await docker(
      'exec',
      `${prefix}-operator`,
      'node',
      '-e',
      "try { require('fs').writeFileSync('/app/x', ''); console.log('written') } catch (e) { console.log(e.code) }",
    );
    expect(out).toBe('EROFS');
  });

  it.each([
    ['a Connector on the simulator driver', 'erp'],
    ['a second Connector (the Pipeline sink)', 'crm'],
    ['an ordered Pipeline', 'items'],
    ['a Workflow on the embedded store at /var/lib/o2c', 'orders'],
    ['a Workflow on PostgreSQL', 'ledger'],
  ])('%s answers /readyz 200 as uid 65532', async (_what, name) => {
    const { container } = await startRole(role(name));
    expect(await processIds(container)).toEqual({ uid: '65532', gid: '65532' });
  });

  it('the roles consume the queues the operator declared', async () => {
    expect(await queueConsumers(`o2c.${ns}.connector.erp.commands`)).toBeGreaterThanOrEqual(1);
    expect(await queueConsumers(`o2c.${ns}.pipeline.items.events`)).toBeGreaterThanOrEqual(1);
    for (const i of [0, 1, 2, 3]) {
      expect(await queueConsumers(`o2c.${ns}.pipeline.items.deliveries.p${i}`)).toBeGreaterThanOrEqual(1);
    }
    for (const p of ['orders', 'replies', 'events']) {
      expect(await queueConsumers(`o2c.${ns}.workflow.orders.${p}`)).toBeGreaterThanOrEqual(1);
    }
  });

  it('an order reaches BOOKED through the embedded-store Workflow and its SQLite file is on the volume', async () => {
    await orderBooked(role('orders'));
    const files = await docker('exec', started.get('orders')!.container, 'ls', '/var/lib/o2c');
    expect(files.split('\n')).toContain('orders.sqlite');
  });

  it('an order reaches BOOKED through the PostgreSQL Workflow and is a row in its database', async () => {
    const orderId = await orderBooked(role('ledger'));
    const c = new pg.Client({ connectionString: `postgres://postgres@127.0.0.1:5432/${db}` });
    await c.connect();
    try {
      const { rows } = await c.query('SELECT id FROM orders WHERE id = $1', [orderId]);
      expect(rows).toHaveLength(1);
    } finally {
      await c.end();
    }
  });

  it('stops cleanly on SIGTERM (docker stop) within the grace period', async () => {
    const { container } = started.get('erp')!;
    const t0 = performance.now();
    await docker('stop', '--time', '10', container);
    const exit = await docker('inspect', '--format', '{{.State.ExitCode}}', container);
    expect(exit).toBe('0');
    expect(performance.now() - t0).toBeLessThan(10_000);
  });
});
