// Two operator processes on a real kube-apiserver; the leader is SIGKILLed and, as kubelet would,
// started again at once with the same POD_NAME. The restarted process is a new candidate: the
// standby takes the Lease over after it expires and reconciles, the restarted one stands by.
import type { ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { KubeClient, type KubeObject } from '../../operator/src/kube.js';
import { DEFAULT_LEASE_TIMINGS, type LeaseSpec, podOfIdentity } from '../../operator/src/runtime/leader.js';
import { type ControlPlane, freePort, startControlPlane } from '../envtest/controlplane.js';
import { createNamespace, deleteBrokerTopology, eventually, waitForCondition } from './operator-harness.js';
import { spawnOperatorProcess } from './support/operator-process.js';

const ns = `lkill-${Date.now().toString(36)}`;

interface OperatorProcess {
  pod: string;
  child: ChildProcess;
  healthPort: number;
  /** The process identity it logged at start (`<pod>_<uuid>`). */
  identity: Promise<string>;
  exited(): string | undefined;
}

let plane: ControlPlane;
let client: KubeClient;
const processes: OperatorProcess[] = [];

async function launch(pod: string): Promise<OperatorProcess> {
  const healthPort = await freePort();
  const child = spawnOperatorProcess(plane, {
    namespace: ns,
    pod,
    healthPort,
    logLevel: 'info',
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let exit: string | undefined;
  child.once('exit', (code, signal) => {
    exit = `${pod} exited with ${code ?? signal}`;
  });
  const identity = new Promise<string>((resolve, reject) => {
    createInterface({ input: child.stdout! }).on('line', (line) => {
      try {
        const entry = JSON.parse(line) as { msg?: string; identity?: string };
        if (entry.msg === 'operator started' && entry.identity) resolve(entry.identity);
      } catch {
        // not a log line
      }
    });
    child.once('exit', () => reject(new Error(exit)));
  });
  identity.catch(() => {});
  const p = { pod, child, healthPort, identity, exited: () => exit };
  processes.push(p);
  return p;
}

const lease = async (): Promise<LeaseSpec> =>
  (await client.get<KubeObject & { spec: LeaseSpec }>('Lease', ns, 'o2c-operator'))?.spec ?? {};

const leaderGauge = async (p: OperatorProcess): Promise<number> => {
  const text = await (await fetch(`http://127.0.0.1:${p.healthPort}/metrics`)).text();
  return Number(/^o2c_operator_leader (\d)$/m.exec(text)?.[1]);
};

const readyz = async (p: OperatorProcess): Promise<number | undefined> =>
  (await fetch(`http://127.0.0.1:${p.healthPort}/readyz`).catch(() => undefined))?.status;

beforeAll(async () => {
  plane = await startControlPlane();
  client = new KubeClient(plane.kubeConfig());
  await createNamespace(client, ns);
}, 120_000);

afterAll(async () => {
  for (const p of processes) {
    if (p.exited()) continue;
    const gone = new Promise((r) => p.child.once('exit', r));
    p.child.kill('SIGTERM');
    await gone;
  }
  client?.close();
  await plane?.stop();
  await deleteBrokerTopology(ns, { Connector: ['after-kill'] });
});

describe('kill -9 of the leading operator process, restarted at once with the same pod name', () => {
  it('the standby takes the Lease over after expiry and reconciles; the restarted process stands by', async () => {
    const a = await launch('o2c-operator-a');
    const aIdentity = await a.identity;
    expect(podOfIdentity(aIdentity)).toBe('o2c-operator-a');
    await eventually('a to hold the Lease', async () => (await lease()).holderIdentity === aIdentity, 60_000);
    const b = await launch('o2c-operator-b');
    const bIdentity = await b.identity;
    await eventually('b ready as a standby', async () => (await readyz(b)) === 200, 60_000);
    expect(await leaderGauge(b)).toBe(0);
    // A standby is one that has watched the holder renew since it started (in a cluster: for minutes).
    const bUp = Date.now();
    const before = await eventually(
      'a to renew while b stands by',
      async () => {
        const l = await lease();
        return Date.parse(l.renewTime ?? '') > bUp ? l : undefined;
      },
      10_000,
    );

    const killed = new Promise((r) => a.child.once('exit', r));
    const killedAt = Date.now();
    a.child.kill('SIGKILL');
    await killed;
    const again = await launch('o2c-operator-a');
    const againIdentity = await again.identity;
    expect(podOfIdentity(againIdentity), 'same pod name').toBe('o2c-operator-a');
    expect(againIdentity, 'a new process identity').not.toBe(aIdentity);

    const after = await eventually(
      'the Lease to change hands',
      async () => {
        const l = await lease();
        return l.holderIdentity !== aIdentity ? l : undefined;
      },
      60_000,
    );
    const tookOverMs = Date.parse(after.acquireTime ?? '') - killedAt;
    console.info(
      `leader SIGKILLed and restarted at once: ${after.holderIdentity} took over ${(tookOverMs / 1000).toFixed(1)} s after the kill (lease ${DEFAULT_LEASE_TIMINGS.leaseDurationMs / 1000} s, retry ${DEFAULT_LEASE_TIMINGS.retryPeriodMs / 1000} s)`,
    );
    expect(after.holderIdentity, 'the standby, not the restarted process').toBe(bIdentity);
    expect(after.leaseTransitions).toBe((before.leaseTransitions ?? 0) + 1);
    // Not before the dead holder's Lease expired.
    expect(Date.parse(after.acquireTime ?? '')).toBeGreaterThanOrEqual(
      Date.parse(before.renewTime ?? '') + DEFAULT_LEASE_TIMINGS.leaseDurationMs,
    );

    await client.apply(
      {
        apiVersion: 'o2c.dev/v1alpha1',
        kind: 'Connector',
        metadata: { name: 'after-kill', namespace: ns },
        spec: { system: 'crm', driver: 'simulator' },
      },
      'kubectl',
    );
    await waitForCondition(client, 'Connector', ns, 'after-kill', 'Reconciled', 'True', undefined, 30_000);
    expect(await leaderGauge(b)).toBe(1);

    // Several retry periods later the restarted process still stands by, ready and alive.
    await new Promise((r) => setTimeout(r, 3 * DEFAULT_LEASE_TIMINGS.retryPeriodMs));
    expect((await lease()).holderIdentity).toBe(bIdentity);
    expect(await leaderGauge(again)).toBe(0);
    expect(await readyz(again)).toBe(200);
    expect(again.exited()).toBeUndefined();
    expect(b.exited()).toBeUndefined();
  }, 180_000);
});
