// `make bench-operator`: 1,000 Pipelines (and their Connectors) applied to a local kube-apiserver
// with the operator running as its own process against the real RabbitMQ. Prints the time until every
// Pipeline has its children and an up-to-date status, reconciles per second and the operator's peak
// RSS; writes bench/results/operator.json. Figures, not pass/fail.
import { spawn } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { connect } from 'amqplib';
import { KubeClient, type KubeObject } from '../operator/src/kube.js';
import type { AnyResource } from '../operator/src/resources.js';
import { freePort, startControlPlane } from '../test/envtest/controlplane.js';

const PIPELINES = Number(process.env.O2C_BENCH_PIPELINES ?? 1000);
const CONNECTOR_PAIRS = Number(process.env.O2C_BENCH_CONNECTOR_PAIRS ?? 10);
const WORKERS = process.env.O2C_WORKERS ?? '16';
const AMQP_URL = process.env.O2C_AMQP_URL ?? 'amqp://guest:guest@127.0.0.1:5672';
const ROOT = join(import.meta.dirname, '..');
const ns = `bench-${Date.now().toString(36)}`;

async function inParallel<T>(items: T[], limit: number, fn: (item: T) => Promise<unknown>): Promise<void> {
  let i = 0;
  await Promise.all(
    Array.from({ length: limit }, async () => {
      while (i < items.length) await fn(items[i++]!);
    }),
  );
}

function peakRssMb(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = Number(/VmHWM:\s+(\d+)/.exec(status)?.[1] ?? 0);
  return Math.round(kb / 1024);
}

async function metric(port: number, name: string): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  return text
    .split('\n')
    .filter((l) => l.startsWith(name))
    .reduce((sum, l) => sum + Number(l.split(' ').pop()), 0);
}

async function main(): Promise<void> {
  const plane = await startControlPlane();
  const client = new KubeClient(plane.kubeConfig(), 64);
  await client.apply({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: ns } }, 'bench');
  const healthPort = await freePort();
  // O2C_BENCH_NODE_FLAGS, e.g. --max-old-space-size=96, to see what a heap cap does to RSS and speed.
  const nodeFlags = (process.env.O2C_BENCH_NODE_FLAGS ?? '').split(' ').filter(Boolean);
  const operator = spawn(
    process.execPath,
    [...nodeFlags, '--import', 'tsx', join(ROOT, 'operator/src/main.ts')],
    {
      cwd: ROOT,
      env: {
        ...process.env,
        KUBECONFIG: plane.kubeconfigPath,
        POD_NAMESPACE: ns,
        POD_NAME: 'bench-operator',
        O2C_HEALTH_PORT: String(healthPort),
        O2C_WORKERS: WORKERS,
        O2C_AMQP_URL: AMQP_URL,
        // Required by the operator; no pod runs here.
        O2C_RUNTIME_IMAGE: 'o2c:bench',
        LOG_LEVEL: process.env.LOG_LEVEL ?? 'warn',
      },
      stdio: ['ignore', 'inherit', 'inherit'],
    },
  );
  process.once('exit', () => operator.kill('SIGKILL'));
  try {
    // Leader and caches synced.
    for (;;) {
      const ok = await fetch(`http://127.0.0.1:${healthPort}/metrics`)
        .then((r) => r.text())
        .then((t) => /o2c_operator_leader 1/.test(t))
        .catch(() => false);
      if (ok) break;
      await new Promise((r) => setTimeout(r, 200));
    }
    const connectors: KubeObject[] = [];
    for (let i = 0; i < CONNECTOR_PAIRS; i++) {
      for (const system of ['erp', 'crm']) {
        connectors.push({
          apiVersion: 'o2c.dev/v1alpha1',
          kind: 'Connector',
          metadata: { name: `${system}-${i}`, namespace: ns },
          spec: { system, driver: 'simulator' },
        });
      }
    }
    const pipelines: KubeObject[] = Array.from({ length: PIPELINES }, (_, i) => ({
      apiVersion: 'o2c.dev/v1alpha1',
      kind: 'Pipeline',
      metadata: { name: `items-${i}`, namespace: ns },
      spec: {
        source: { connector: `erp-${i % CONNECTOR_PAIRS}`, events: ['o2c.v1.ItemUpserted'] },
        transform: { sku: 'event.item.sku' },
        sink: { connector: `crm-${i % CONNECTOR_PAIRS}`, operation: 'UpsertItem' },
      },
    }));

    const started = performance.now();
    const reconcilesBefore = await metric(healthPort, 'o2c_operator_reconciles_total');
    await inParallel([...connectors, ...pipelines], 16, (o) => client.apply(o, 'bench'));
    const appliedMs = performance.now() - started;

    let done = 0;
    for (;;) {
      const list = await client.list<AnyResource>('Pipeline', ns);
      done = list.items.filter(
        (p) =>
          p.status?.observedGeneration === p.metadata.generation &&
          p.status?.conditions?.find((c) => c.type === 'TopologyReady')?.status === 'True' &&
          p.status?.conditions?.find((c) => c.type === 'ReferencesResolved')?.status === 'True' &&
          p.status?.configHash,
      ).length;
      if (done >= PIPELINES) {
        const deployments = await client.list('Deployment', ns);
        const configMaps = await client.list('ConfigMap', ns, 'o2c.dev/kind=pipeline');
        const services = await client.list('Service', ns, 'o2c.dev/kind=pipeline');
        const pipelineDeployments = deployments.items.filter((d) =>
          d.metadata.name.startsWith('o2c-pipeline-'),
        ).length;
        if (
          pipelineDeployments >= PIPELINES &&
          configMaps.items.length >= PIPELINES &&
          services.items.length >= PIPELINES
        )
          break;
      }
      if (performance.now() - started > 600_000)
        throw new Error(`only ${done}/${PIPELINES} done after 10 minutes`);
      await new Promise((r) => setTimeout(r, 250));
    }
    const totalMs = performance.now() - started;
    const reconciles = (await metric(healthPort, 'o2c_operator_reconciles_total')) - reconcilesBefore;
    const errors = await metric(healthPort, 'o2c_operator_reconcile_errors_total');
    const result = {
      benchmark: 'operator',
      date: new Date().toISOString(),
      pipelines: PIPELINES,
      connectors: connectors.length,
      workers: Number(WORKERS),
      applySeconds: +(appliedMs / 1000).toFixed(2),
      allReadySeconds: +(totalMs / 1000).toFixed(2),
      reconciles,
      reconcileErrors: errors,
      reconcilesPerSecond: +(reconciles / (totalMs / 1000)).toFixed(1),
      operatorPeakRssMb: peakRssMb(operator.pid!),
      operatorNodeFlags: nodeFlags.join(' '),
      aim: { allReadySeconds: 30, operatorPeakRssMb: 150 },
      machine: { cpus: (await import('node:os')).cpus().length },
    };
    console.log(JSON.stringify(result, null, 2));
    mkdirSync(join(ROOT, 'bench/results'), { recursive: true });
    writeFileSync(join(ROOT, 'bench/results/operator.json'), `${JSON.stringify(result, null, 2)}\n`);
  } finally {
    if (operator.exitCode === null) {
      const exited = new Promise((r) => operator.once('exit', r));
      operator.kill('SIGTERM');
      await Promise.race([exited, new Promise((r) => setTimeout(r, 10_000))]);
    }
    client.close();
    await plane.stop();
    await deleteBenchQueues();
  }
}

async function deleteBenchQueues(): Promise<void> {
  const conn = await connect(AMQP_URL, { timeout: 5000 });
  const channels = await Promise.all([0, 1, 2, 3].map(() => conn.createChannel()));
  const names: string[] = [];
  // The operator's purpose name for a Pipeline's source queue (reconcile/pipeline.ts).
  for (let i = 0; i < PIPELINES; i++) names.push(`o2c.${ns}.pipeline.items-${i}.events`);
  for (let i = 0; i < CONNECTOR_PAIRS; i++)
    for (const s of ['erp', 'crm']) names.push(`o2c.${ns}.connector.${s}-${i}.commands`);
  await Promise.all(
    names.flatMap((q, i) =>
      [q, `${q}.dlq`].map((n) => channels[i % channels.length]!.deleteQueue(n).catch(() => {})),
    ),
  );
  await conn.close();
}

// Ctrl-C or a timeout: exit through process.exit so the control plane's exit hook kills its children.
for (const signal of ['SIGINT', 'SIGTERM'] as const) process.once(signal, () => process.exit(130));

main().then(
  () => process.exit(0),
  (err) => {
    console.error(err);
    process.exit(1);
  },
);
