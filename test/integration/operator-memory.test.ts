// The operator process under the chart's heap cap (--max-old-space-size=96) in a cluster full of big
// Secrets (60 of 700 KB, the size of Helm release Secrets, in another namespace): it starts, stays
// up and reconciles, because it never lists or watches Secrets.
import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { KubeClient } from '../../operator/src/kube.js';
import { type ControlPlane, freePort, startControlPlane } from '../envtest/controlplane.js';
import { createNamespace, deleteBrokerTopology, eventually, waitForCondition } from './operator-harness.js';
import { spawnOperatorProcess } from './support/operator-process.js';

const suffix = Date.now().toString(36);
const ns = `mem-${suffix}`;
const releases = `releases-${suffix}`;
const HEAP_MB = 96;

let plane: ControlPlane;
let client: KubeClient;
let operator: ChildProcess | undefined;
let healthPort: number;
let exit: { code: number | null; signal: string | null } | undefined;
const stderr: string[] = [];

beforeAll(async () => {
  plane = await startControlPlane();
  client = new KubeClient(plane.kubeConfig());
  await createNamespace(client, ns);
  await createNamespace(client, releases);
  // ~700 KB each once base64-encoded, like a Helm release Secret.
  for (let i = 0; i < 60; i++) {
    await client.create({
      apiVersion: 'v1',
      kind: 'Secret',
      metadata: { name: `sh.helm.release.v1.app.v${i}`, namespace: releases },
      type: 'helm.sh/release.v1',
      data: { release: randomBytes(520 * 1024).toString('base64') },
    });
  }
  healthPort = await freePort();
  operator = spawnOperatorProcess(plane, {
    namespace: ns,
    pod: 'op-memory',
    healthPort,
    logLevel: 'warn',
    nodeFlags: [`--max-old-space-size=${HEAP_MB}`],
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  operator.stderr!.on('data', (chunk: Buffer) => stderr.push(chunk.toString()));
  operator.once('exit', (code, signal) => {
    exit = { code, signal };
  });
}, 120_000);

afterAll(async () => {
  if (operator && !exit) {
    const exited = new Promise((r) => operator!.once('exit', r));
    operator.kill('SIGTERM');
    await exited;
  }
  client?.close();
  await plane?.stop();
  await deleteBrokerTopology(ns, { Connector: ['erp'] });
});

describe(`the operator with a ${HEAP_MB} MB heap and 42 MB of Secrets in the cluster`, () => {
  it('starts, becomes ready, reconciles a Connector and stays up', async () => {
    await eventually(
      'operator ready',
      async () => {
        if (exit) throw new Error(`operator exited ${JSON.stringify(exit)}: ${stderr.join('').slice(-2000)}`);
        const res = await fetch(`http://127.0.0.1:${healthPort}/readyz`).catch(() => undefined);
        return res?.status === 200;
      },
      60_000,
    );
    await client.apply(
      {
        apiVersion: 'o2c.dev/v1alpha1',
        kind: 'Connector',
        metadata: { name: 'erp', namespace: ns },
        spec: { system: 'erp', driver: 'simulator' },
      },
      'kubectl',
    );
    await waitForCondition(client, 'Connector', ns, 'erp', 'Reconciled', 'True', undefined, 30_000);
    const metrics = await (await fetch(`http://127.0.0.1:${healthPort}/metrics`)).text();
    const heapUsed = Number(/^nodejs_heap_size_used_bytes (\S+)$/m.exec(metrics)?.[1]);
    console.info(`operator heap used: ${(heapUsed / 2 ** 20).toFixed(1)} MB (cap ${HEAP_MB} MB)`);
    expect(heapUsed).toBeLessThan(HEAP_MB * 2 ** 20);
    expect(exit).toBeUndefined();
    // The API server's own count: not one LIST or WATCH of Secrets came from the operator.
    const served = await client.request<string>('GET', '/metrics');
    const secretReads = served
      .split('\n')
      .filter((l) => l.startsWith('apiserver_request_total{') && l.includes('resource="secrets"'))
      .filter((l) => /verb="(LIST|WATCH)"/.test(l));
    expect(served).toContain('apiserver_request_total{');
    expect(secretReads).toEqual([]);
    expect(stderr.join('')).not.toContain('heap out of memory');
  });
});
