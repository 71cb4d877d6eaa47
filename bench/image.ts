// `make bench-image`: the o2c image's size and, per role, the time from `docker start` of an already
// created container to /readyz answering 200 (median of O2C_BENCH_RUNS starts), each container made
// from what the operator (itself the image, on a local kube-apiserver) rendered, against the real
// RabbitMQ and PostgreSQL. Writes bench/results/image.json. Figures, not pass/fail.
// O2C_BENCH_IMAGE=<image> measures that image instead of building one (e.g. to compare two builds).
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { mkdtemp } from 'node:fs/promises';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { KubeClient } from '../operator/src/kube.js';
import { startControlPlane } from '../test/envtest/controlplane.js';
import { createNamespace, deleteBrokerTopology } from '../test/integration/operator-harness.js';
import { createDockerPod, docker, dockerLogs, waitReady } from '../test/integration/support/docker-pod.js';
import {
  applyBrokerSecret,
  applyRoleResources,
  buildImage,
  operatorContainer,
  type RoleResource,
  rolePod,
} from '../test/integration/support/image-roles.js';

const RUNS = Number(process.env.O2C_BENCH_RUNS ?? 7);
const ROOT = join(import.meta.dirname, '..');
const PG_ADMIN = 'postgres://postgres@127.0.0.1:5432/postgres';
const id = Date.now().toString(36);
const ns = `bench-image-${id}`;
const db = `o2c_bench_image_${id}`;
const prefix = `o2c-bench-image-${id}`;

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};

/**
 * CPU time the container used since it started (its cgroup is made at each start): the work a start
 * costs, which — unlike wall time — hardly moves with what else runs on a shared machine.
 */
function containerCpuMs(id: string): number | undefined {
  const sources: [string, (text: string) => number][] = [
    [`/sys/fs/cgroup/cpuacct/docker/${id}/cpuacct.usage`, (t) => Number(t) / 1e6],
    [
      `/sys/fs/cgroup/system.slice/docker-${id}.scope/cpu.stat`,
      (t) => Number(/usage_usec (\d+)/.exec(t)?.[1]) / 1e3,
    ],
  ];
  for (const [file, parse] of sources) {
    try {
      return Math.round(parse(readFileSync(file, 'utf8')));
    } catch {}
  }
  return undefined;
}

interface Starts {
  medianMs: number;
  runsMs: number[];
  cpuMedianMs?: number;
}

/** Median and spread of `docker start` → /readyz 200 over RUNS starts of one created container. */
async function startToReady(container: string, healthPort: number): Promise<Starts> {
  const id = await docker('inspect', '--format', '{{.Id}}', container);
  const runsMs: number[] = [];
  const cpuMs: number[] = [];
  for (let i = 0; i < RUNS; i++) {
    const t0 = performance.now();
    await docker('start', container);
    try {
      await waitReady(healthPort, 60_000);
    } catch (err) {
      throw new Error(`${container}: ${(err as Error).message}\n${await dockerLogs(container)}`);
    }
    runsMs.push(Math.round(performance.now() - t0));
    const cpu = containerCpuMs(id);
    if (cpu !== undefined) cpuMs.push(cpu);
    await docker('stop', '--time', '10', container);
  }
  return { medianMs: median(runsMs), runsMs, ...(cpuMs.length ? { cpuMedianMs: median(cpuMs) } : {}) };
}

async function main(): Promise<void> {
  const image = process.env.O2C_BENCH_IMAGE || buildImage();
  const sizeBytes = Number(await docker('image', 'inspect', '--format', '{{.Size}}', image));
  const dir = await mkdtemp(join(tmpdir(), 'o2c-bench-image-'));
  const containers: string[] = [];
  const admin = new pg.Client({ connectionString: PG_ADMIN });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${db}`);
  const plane = await startControlPlane();
  const client = new KubeClient(plane.kubeConfig());
  let names: Parameters<typeof deleteBrokerTopology>[1] | undefined;
  try {
    await createNamespace(client, ns);
    await applyBrokerSecret(client, ns);
    const operatorName = `${prefix}-operator`;
    const op = await operatorContainer(plane, image, ns, operatorName, join(dir, 'operator'));
    containers.push(await docker('create', ...op.args));
    const roles: Record<string, Starts> = {};
    // The operator first: it must be up to render the others; it is measured like them afterwards.
    await docker('start', operatorName);
    await waitReady(op.healthPort, 60_000);
    const scenario = await applyRoleResources(client, ns, `postgres://postgres@127.0.0.1:5432/${db}`);
    names = scenario.names;
    await docker('stop', '--time', '10', operatorName);
    roles.operator = await startToReady(operatorName, op.healthPort);

    const measured: [string, RoleResource][] = [
      ['connector', scenario.resources.find((r) => r.name === 'erp')!],
      ['pipeline', scenario.resources.find((r) => r.name === 'items')!],
      ['workflow-embedded', scenario.resources.find((r) => r.name === 'orders')!],
      ['workflow-postgres', scenario.resources.find((r) => r.name === 'ledger')!],
    ];
    for (const [label, r] of measured) {
      const name = `${prefix}-${r.kind.toLowerCase()}-${r.name}`;
      const { pod, healthPort } = await rolePod(client, ns, r, name, join(dir, r.child));
      containers.push(await createDockerPod(pod));
      roles[label] = await startToReady(name, healthPort);
      const m = roles[label]!;
      console.log(
        `${label}: median ${m.medianMs} ms (${m.runsMs.join(', ')}), CPU to ready ${m.cpuMedianMs} ms`,
      );
    }
    const o = roles.operator!;
    console.log(
      `operator: median ${o.medianMs} ms (${o.runsMs.join(', ')}), CPU to ready ${o.cpuMedianMs} ms`,
    );
    const result = {
      benchmark: 'image',
      date: new Date().toISOString(),
      image,
      sizeMb: Math.round(sizeBytes / 1e5) / 10,
      runs: RUNS,
      startToReadyMs: Object.fromEntries(Object.entries(roles).map(([k, v]) => [k, v.medianMs])),
      runsMs: Object.fromEntries(Object.entries(roles).map(([k, v]) => [k, v.runsMs])),
      cpuToReadyMs: Object.fromEntries(Object.entries(roles).map(([k, v]) => [k, v.cpuMedianMs])),
      what: 'docker start of a created container until GET /readyz answers 200 (host network, real RabbitMQ and PostgreSQL on 127.0.0.1); median of runs. cpuToReadyMs: CPU time the container used by then (its cgroup), the figure that load on a shared machine hardly moves',
      loadAverage: loadavg().map((l) => Math.round(l * 10) / 10),
      aim: { sizeMb: 250, startToReadyMs: 1000 },
      machine: { cpus: cpus().length },
    };
    console.log(`image ${image}: ${result.sizeMb} MB`);
    mkdirSync(join(ROOT, 'bench/results'), { recursive: true });
    writeFileSync(
      join(ROOT, process.env.O2C_BENCH_IMAGE ? `bench/results/image-${id}.json` : 'bench/results/image.json'),
      `${JSON.stringify(result, null, 2)}\n`,
    );
  } finally {
    for (const c of containers) await docker('rm', '-f', c).catch(() => {});
    client.close();
    await plane.stop();
    if (names) await deleteBrokerTopology(ns, names);
    await admin.query(`DROP DATABASE IF EXISTS ${db} WITH (FORCE)`);
    await admin.end();
    rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
