// The whole chain on a real cluster (make e2e-local: make cluster's node here; make e2e: kind):
// helm install with values-dev, the reference manifests, Ready from real Deployments, 200 orders
// from outside the cluster over the README's curl and gRPC while pods are deleted and the leading
// operator is killed, then helm upgrade, Connector deletion and helm uninstall.
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { type Client, createClient, type Interceptor } from '@connectrpc/connect';
import { createGrpcTransport } from '@connectrpc/connect-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { podOfIdentity } from '../../operator/src/runtime/leader.js';
import { queueName } from '../../runtime/src/bus/addressing.js';
import { OrderState } from '../../runtime/src/gen/o2c/v1/entities_pb.js';
import { OrderService } from '../../runtime/src/gen/o2c/v1/order_service_pb.js';
import {
  Cluster,
  changed,
  clusterEnvFrom,
  type Forward,
  type KubeObject,
  templateRevision,
} from './cluster.js';

const REPO = join(import.meta.dirname, '../..');
const RELEASE = 'o2c';
const OPS = 'o2c-dev'; // the release namespace; values-dev's broker URL points at RabbitMQ there
const APP = 'o2c-e2e'; // where examples/distributor/ is applied
const TOKEN = 'dev-token-change-me'; // examples/distributor/secrets.yaml
const KINDS = ['connectors', 'pipelines', 'workflows'] as const;
const execFileP = promisify(execFile);

const cluster = new Cluster(clusterEnvFrom(process.env));
const k = (...args: string[]) => cluster.kubectl(args);
let api: Forward | undefined;
let grpc: Client<typeof OrderService>;

async function eventually<T>(
  what: string,
  probe: () => T | undefined | false | Promise<T | undefined | false>,
  timeoutMs = 180_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < deadline) {
    try {
      const v = await probe();
      if (v) return v;
    } catch (err) {
      last = err;
    }
    await new Promise((r) => setTimeout(r, 1000));
  }
  throw new Error(`timed out waiting for ${what}${last ? `: ${(last as Error).message}` : ''}`);
}

const condition = (o: KubeObject, type: string) =>
  (
    (o.status as { conditions?: Array<{ type: string; status: string; observedGeneration?: number }> })
      ?.conditions ?? []
  ).find((c) => c.type === type);

/** True when every resource is Ready for its generation; else throws naming those that are not. */
function allReady(): boolean {
  const waiting: string[] = [];
  for (const kind of KINDS) {
    for (const o of cluster.list(['-n', APP, 'get', kind])) {
      const ready = condition(o, 'Ready') as
        | { status: string; observedGeneration?: number; message?: string }
        | undefined;
      if (ready?.status !== 'True' || ready.observedGeneration !== o.metadata.generation) {
        waiting.push(`${kind}/${o.metadata.name}: ${ready?.message ?? 'no Ready condition'}`);
      }
    }
  }
  if (waiting.length) throw new Error(`not Ready: ${waiting.join('; ')}`);
  return true;
}

/** The Deployment a resource owns (by owner reference, as the operator renders it). */
function ownedDeployment(o: KubeObject): KubeObject {
  const d = cluster
    .list(['-n', APP, 'get', 'deployments'])
    .find((x) => x.metadata.ownerReferences?.some((r) => r.uid === o.metadata.uid));
  if (!d) throw new Error(`${o.metadata.name} owns no Deployment`);
  return d;
}

/** The Lease holder: its process identity (`<pod>_<uuid>`) and its pod. */
function leader(): {
  holder: string;
  pod: string;
  acquired: string;
  renewed: string;
  transitions: number;
  restarts: number;
} {
  const lease = cluster.json(['-n', OPS, 'get', 'lease', 'o2c-operator']);
  const spec = lease.spec as {
    holderIdentity?: string;
    acquireTime?: string;
    renewTime?: string;
    leaseTransitions?: number;
  };
  const holder = spec.holderIdentity ?? '';
  const podName = podOfIdentity(holder);
  const pod = cluster.list(['-n', OPS, 'get', 'pods']).find((p) => p.metadata.name === podName);
  const restarts =
    (pod?.status as { containerStatuses?: Array<{ restartCount: number }> } | undefined)
      ?.containerStatuses?.[0]?.restartCount ?? 0;
  return {
    holder,
    pod: podName,
    acquired: spec.acquireTime ?? '',
    renewed: spec.renewTime ?? '',
    transitions: spec.leaseTransitions ?? 0,
    restarts,
  };
}

const podsOf = (ns: string, selector: string) =>
  cluster
    .list(['-n', ns, 'get', 'pods', '-l', selector])
    .filter((p) => !(p.metadata as { deletionTimestamp?: string }).deletionTimestamp);

// --- order submission: the README's curl, and gRPC; both retry with the same idempotency key -----

const readmeBody = (key: string) =>
  JSON.stringify({
    idempotency_key: key,
    order: {
      customer_id: 'ACME',
      currency_code: 'USD',
      lines: [{ sku: 'WIDGET-1', quantity: 2, unit_price: { currency_code: 'USD', units: '10' } }],
    },
  });

async function submitCurl(key: string): Promise<string> {
  const { stdout } = await execFileP('curl', [
    '-sS',
    '--fail-with-body',
    '-m',
    '20',
    '-H',
    'Content-Type: application/json',
    '-H',
    `Authorization: Bearer ${TOKEN}`,
    '-d',
    readmeBody(key),
    `${api?.url}/o2c.v1.OrderService/SubmitOrder`,
  ]);
  const id = (JSON.parse(stdout) as { order?: { id?: string } }).order?.id;
  if (!id) throw new Error(`no order id in ${stdout}`);
  return id;
}

async function submitGrpc(key: string): Promise<string> {
  const { order } = await grpc.submitOrder(
    {
      idempotencyKey: key,
      order: {
        customerId: 'ACME',
        currencyCode: 'USD',
        lines: [
          {
            sku: 'GADGET-7',
            quantity: 1,
            unitPrice: { currencyCode: 'USD', units: 99n, nanos: 500_000_000 },
          },
        ],
      },
    },
    { timeoutMs: 20_000 },
  );
  if (!order?.id) throw new Error('no order id');
  return order.id;
}

/** Submits until accepted: a client that sees an error resends with the same idempotency key. */
async function submit(key: string, via: 'curl' | 'grpc'): Promise<string> {
  return eventually(
    `order ${key} to be accepted`,
    () => (via === 'curl' ? submitCurl(key) : submitGrpc(key)),
    240_000,
  );
}

async function submitBatch(prefix: string, n: number): Promise<Map<string, string>> {
  const keys = Array.from({ length: n }, (_, i) => `${prefix}-${i}`);
  const ids = new Map<string, string>();
  const queue = [...keys];
  await Promise.all(
    Array.from({ length: 8 }, async () => {
      for (let key = queue.shift(); key; key = queue.shift()) {
        ids.set(key, await submit(key, key.includes('curl') ? 'curl' : 'grpc'));
      }
    }),
  );
  return ids;
}

beforeAll(async () => {
  // A previous run that stopped half-way: start from nothing.
  try {
    cluster.helm(['uninstall', RELEASE, '-n', OPS, '--wait']);
  } catch {}
  dropApp();
  k('create', 'namespace', APP);
}, 600_000);

afterAll(() => {
  api?.close();
  if (process.env.O2C_E2E_KEEP !== '1') dropApp();
}, 600_000);

/** Removes the app namespace; once the operator is gone, its finalizers must be lifted by hand. */
function dropApp(): void {
  const exists = cluster.list(['get', 'namespaces']).some((n) => n.metadata.name === APP);
  if (!exists) return;
  for (const kind of KINDS) {
    try {
      for (const o of cluster.list(['-n', APP, 'get', kind])) {
        k(
          '-n',
          APP,
          'patch',
          kind,
          o.metadata.name,
          '--type=merge',
          '-p',
          '{"metadata":{"finalizers":null}}',
        );
      }
    } catch {}
  }
  k('delete', 'namespace', APP, '--wait=true', '--timeout=180s');
}

describe(`o2c on a real cluster (${cluster.env.target})`, () => {
  it('helm install with values-dev runs two operator replicas, one of them leading', () => {
    cluster.helm([
      'install',
      RELEASE,
      join(REPO, 'charts/o2c'),
      '-n',
      OPS,
      '--create-namespace',
      '-f',
      join(REPO, 'charts/o2c/values-dev.yaml'),
      // A standby, so killing the leader shows the other taking over.
      '--set',
      'operator.replicas=2',
      '--wait',
      '--timeout',
      '5m',
    ]);
    const pods = podsOf(OPS, 'app.kubernetes.io/component=operator');
    expect(pods.map((p) => (p.status as { phase: string }).phase)).toEqual(['Running', 'Running']);
    return eventually('an operator to hold the Lease', () =>
      pods.some((p) => p.metadata.name === leader().pod),
    );
  });

  it('every Connector, Pipeline and Workflow of examples/distributor reaches Ready=True because its pods run', async () => {
    k('-n', APP, 'apply', '-f', join(REPO, 'examples/distributor/'));
    await eventually('every resource Ready=True for its generation', allReady, 300_000);
    for (const kind of KINDS) {
      for (const o of cluster.list(['-n', APP, 'get', kind])) {
        const d = ownedDeployment(o);
        const want = (d.spec as { replicas: number }).replicas;
        const st = d.status as { availableReplicas?: number; observedGeneration?: number };
        expect(st.availableReplicas, `${kind}/${o.metadata.name}: Deployment ${d.metadata.name}`).toBe(want);
        const pods = podsOf(
          APP,
          Object.entries(
            (d.spec as { selector: { matchLabels: Record<string, string> } }).selector.matchLabels,
          )
            .map(([a, b]) => `${a}=${b}`)
            .join(','),
        );
        expect(pods.length).toBe(want);
        for (const p of pods) expect(condition(p, 'Ready')?.status, p.metadata.name).toBe('True');
      }
    }
    console.log(`kubectl get o2c -n ${APP}\n${k('-n', APP, 'get', 'o2c')}`);
    if (process.env.O2C_E2E_CAPTURE === '1') {
      // The Argo CD health checks are tested against these (test/argocd/capture.ts --from-cluster).
      await execFileP(
        'tsx',
        [
          join(REPO, 'test/argocd/capture.ts'),
          '--from-cluster',
          '--prefix',
          'e2e',
          '--namespace',
          APP,
          'Connector/erp=ready',
          'Pipeline/items-to-crm=ready',
          'Workflow/distributor=ready',
        ],
        { env: { ...process.env, KUBECONFIG: cluster.env.kubeconfig }, cwd: REPO },
      );
    }
  });

  it('200 orders from outside the cluster (curl and gRPC) all reach PAID through pod deletions and a killed leader, each created once in the ERP', async () => {
    api = await cluster.serviceUrl(APP, 'o2c-workflow-distributor', 8080);
    const auth: Interceptor = (next) => (req) => {
      req.header.set('authorization', `Bearer ${TOKEN}`);
      return next(req);
    };
    grpc = createClient(OrderService, createGrpcTransport({ baseUrl: api.url, interceptors: [auth] }));

    const first = await submitBatch('e2e-a-curl', 50);
    for (const [key, id] of await submitBatch('e2e-a-grpc', 50)) first.set(key, id);

    // Disruptions while the second half is submitted: a connector pod, the workflow pod, the leader.
    // The tax connector: the simulators keep their systems' state (the ERP's sales orders, the WMS's
    // pending dispatches) in memory, so replacing those pods would lose simulated-system state, not
    // o2c state. Every order calls tax, so the replaced pod serves in-flight orders.
    const connectorPods = 'o2c.dev/kind=connector,o2c.dev/name=tax';
    const wfPods = 'o2c.dev/kind=workflow,o2c.dev/name=distributor';
    const connector = podsOf(APP, connectorPods)[0];
    const wf = podsOf(APP, wfPods)[0];
    expect(connector, 'the tax connector pod').toBeDefined();
    expect(wf, 'the workflow pod').toBeDefined();
    const before = leader();
    const second = submitBatch('e2e-b-curl', 50).then(async (m) => {
      for (const [key, id] of await submitBatch('e2e-b-grpc', 50)) m.set(key, id);
      return m;
    });
    k('-n', APP, 'delete', 'pod', connector?.metadata.name ?? '', wf?.metadata.name ?? '', '--wait=false');
    const killedAt = Date.now();
    cluster.killContainer(OPS, before.pod);
    const ids = new Map([...first, ...(await second)]);

    // ReplicaSets replaced both pods; another operator acquired the Lease; everything converged.
    await eventually('new tax connector and workflow pods to be Ready', () =>
      [podsOf(APP, connectorPods), podsOf(APP, wfPods)].every(
        (ps) =>
          ps.length === 1 &&
          ps[0]?.metadata.uid !== connector?.metadata.uid &&
          ps[0]?.metadata.uid !== wf?.metadata.uid &&
          condition(ps[0] as KubeObject, 'Ready')?.status === 'True',
      ),
    );
    // kubelet restarts the killed container within seconds, but that is a new process (a new
    // identity) that never saw its predecessor alive: it stands by one retry period longer than the
    // standby, which takes the Lease once it expires. The restarted container stands by.
    const after = await eventually(
      'the standby pod to take the Lease over',
      () => {
        const l = leader();
        return l.pod !== before.pod && l.holder !== '' && Date.parse(l.acquired) > killedAt ? l : undefined;
      },
      60_000,
    );
    const tookOverS = (Date.parse(after.acquired) - killedAt) / 1000;
    const live = podsOf(OPS, 'app.kubernetes.io/component=operator').map((p) => p.metadata.name);
    expect(live, 'the new holder is a running operator pod').toContain(after.pod);
    expect(after.transitions, 'the Lease changed hands').toBeGreaterThan(before.transitions);
    const restarted = await eventually(
      'the killed container to be restarted and ready (as a standby)',
      () => {
        const p = cluster.json(['-n', OPS, 'get', 'pod', before.pod]);
        const c = (p.status as { containerStatuses: Array<{ restartCount: number; ready: boolean }> })
          .containerStatuses[0];
        return c && c.restartCount > before.restarts && c.ready ? c : undefined;
      },
    );
    expect(leader().pod, 'the restarted container stands by').toBe(after.pod);
    console.log(
      `leader ${before.holder} killed with SIGKILL; its container restarted (restartCount ${restarted.restartCount}) and stands by; the standby ${after.holder} acquired the Lease ${tookOverS.toFixed(1)} s after the kill (leaseTransitions ${before.transitions} -> ${after.transitions})`,
    );
    await eventually('every resource Ready=True again', allReady, 300_000);

    expect(new Set(ids.values()).size, 'one order per idempotency key').toBe(200);
    const orders = await eventually(
      'all 200 orders to reach PAID',
      async () => {
        const got = await Promise.all(
          [...ids.values()].map(async (id) => (await grpc.getOrder({ id })).order),
        );
        const notPaid = got.filter((o) => o?.state !== OrderState.PAID);
        return notPaid.length === 0 ? got : undefined;
      },
      300_000,
    );
    // The ERP simulator numbers its sales orders SO000001, SO000002, ...: 200 orders, 200 numbers.
    const erp = orders.map((o) => o?.externalRefs.filter((r) => r.system === 'erp') ?? []);
    expect(
      erp.every((refs) => refs.length === 1),
      'exactly one ERP sales order per order',
    ).toBe(true);
    const numbers = erp.map((refs) => Number(/(\d+)$/.exec(refs[0]?.displayId ?? '')?.[1]));
    expect(new Set(numbers).size).toBe(200);
    expect(Math.max(...numbers), 'no sales order created twice').toBe(200);
  });

  it('helm upgrade with a changed value rolls the operator and nothing else', async () => {
    const snapshot = () =>
      new Map(
        [OPS, APP].flatMap((ns) =>
          cluster
            .list(['-n', ns, 'get', 'deployments'])
            .map((d) => [`${ns}/${d.metadata.name}`, templateRevision(d)] as const),
        ),
      );
    const runtimePods = () =>
      podsOf(APP, 'app.kubernetes.io/managed-by=o2c-operator')
        .map((p) => p.metadata.uid)
        .sort();
    const before = snapshot();
    const podsBefore = runtimePods();
    const operatorsBefore = podsOf(OPS, 'app.kubernetes.io/component=operator').map((p) => p.metadata.name);
    cluster.helm([
      'upgrade',
      RELEASE,
      join(REPO, 'charts/o2c'),
      '-n',
      OPS,
      '--reuse-values',
      '--set',
      'operator.logLevel=info',
      '--wait',
      '--timeout',
      '5m',
    ]);
    // The new operator pods re-reconcile every resource; give them time to (not) change anything.
    await eventually('every resource Ready=True after the upgrade', allReady, 180_000);
    await new Promise((r) => setTimeout(r, 15_000));
    expect(changed(before, snapshot())).toEqual([`${OPS}/o2c-operator`]);
    expect(runtimePods()).toEqual(podsBefore);
    // Both operator pods were replaced, so another process took over the Lease.
    const holder = await eventually('a new operator pod to lead', () => {
      const l = leader().pod;
      return (
        !operatorsBefore.includes(l) &&
        podsOf(OPS, 'app.kubernetes.io/component=operator').some((p) => p.metadata.name === l) &&
        l
      );
    });
    console.log(`after helm upgrade the Lease moved from ${operatorsBefore.join(', ')} to ${holder}`);
  });

  it('kubectl delete of a Connector removes its children by owner reference and its queues by finalizer', async () => {
    const payment = cluster.json(['-n', APP, 'get', 'connector', 'payment']);
    const owned = () =>
      ['deployments', 'services', 'configmaps', 'persistentvolumeclaims', 'secrets', 'replicasets', 'pods']
        .flatMap((kind) => cluster.list(['-n', APP, 'get', kind]).map((o) => ({ kind, o })))
        .filter(({ o }) => o.metadata.ownerReferences?.some((r) => r.uid === payment.metadata.uid))
        .map(({ kind, o }) => `${kind}/${o.metadata.name}`);
    // Every queue of the Connector starts like its commands queue, minus the purpose.
    const prefix = queueName(APP, 'connector', 'payment', 'commands').replace(/commands$/, '');
    const queues = () => cluster.queueNames(OPS).filter((q) => q.startsWith(prefix));
    expect(owned().length, 'children of Connector payment').toBeGreaterThan(0);
    expect(queues().length, 'queues of Connector payment').toBeGreaterThan(0);
    k('-n', APP, 'delete', 'connector', 'payment', '--wait=true', '--timeout=120s');
    await eventually('the children of payment to be garbage-collected', () => owned().length === 0);
    expect(queues()).toEqual([]);
  });

  it('helm uninstall leaves the CRDs and the custom resources', () => {
    cluster.helm(['uninstall', RELEASE, '-n', OPS, '--wait']);
    for (const kind of KINDS) {
      expect(k('get', 'crd', `${kind}.o2c.dev`, '-o', 'name')).toContain(kind);
    }
    expect(
      cluster
        .list(['-n', APP, 'get', 'connectors'])
        .map((c) => c.metadata.name)
        .sort(),
    ).toEqual(['crm', 'erp', 'tax', 'wms']);
    expect(cluster.list(['-n', APP, 'get', 'workflows']).map((c) => c.metadata.name)).toEqual([
      'distributor',
    ]);
  });
});
