// `make bench-operator`: 1,000 Pipelines (and their Connectors) applied to a local kube-apiserver
// with the operator running as its own process against the real RabbitMQ. Prints the time until every
// Pipeline has its children and an up-to-date status, the time per Pipeline (p50, p99), reconciles per
// second, the API calls the operator made per Pipeline and its peak RSS, beside the aims and the
// machine; writes bench/results/operator.json. Figures, not pass/fail.
//
// The operator runs as the image runs it: the tsc build (tsconfig.build.json) under plain node with
// the chart's node options (charts/o2c/values.yaml operator.nodeOptions). O2C_BENCH_OPERATOR=source
// runs it through tsx instead; O2C_BENCH_NODE_FLAGS replaces the chart's flags ('' for none);
// O2C_BENCH_PROFILE_DIR=<dir> adds --cpu-prof and takes a heap snapshot once all are Ready;
// O2C_BENCH_OPERATOR_ROOT=<checkout> builds and runs that checkout's operator (a baseline).
import { execFileSync, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdirSync, readdirSync, readFileSync, realpathSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, totalmem } from 'node:os';
import { join } from 'node:path';
import { connect } from 'amqplib';
import { parse } from 'yaml';
import { KubeClient, type KubeObject } from '../operator/src/kube.js';
import type { AnyResource } from '../operator/src/resources.js';
import { freePort, startControlPlane } from '../test/envtest/controlplane.js';

const PIPELINES = Number(process.env.O2C_BENCH_PIPELINES ?? 1000);
const CONNECTOR_PAIRS = Number(process.env.O2C_BENCH_CONNECTOR_PAIRS ?? 10);
const WORKERS = process.env.O2C_WORKERS ?? '16';
const AMQP_URL = process.env.O2C_AMQP_URL ?? 'amqp://guest:guest@127.0.0.1:5672';
const MODE = process.env.O2C_BENCH_OPERATOR === 'source' ? 'source' : 'compiled';
const PROFILE_DIR = process.env.O2C_BENCH_PROFILE_DIR;
const ROOT = join(import.meta.dirname, '..');
const ns = `bench-${Date.now().toString(36)}`;
const AIM = { allReadySeconds: 30, operatorPeakRssMb: 150 };

async function inParallel<T>(items: T[], limit: number, fn: (item: T) => Promise<unknown>): Promise<void> {
  let i = 0;
  await Promise.all(
    Array.from({ length: limit }, async () => {
      while (i < items.length) await fn(items[i++]!);
    }),
  );
}

/** VmRSS (now) and VmHWM (peak) of a process, in MB. */
function rssMb(pid: number): { now: number; peak: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (field: string) => Number(new RegExp(`${field}:\\s+(\\d+)`).exec(status)?.[1] ?? 0);
  return { now: Math.round(kb('VmRSS') / 1024), peak: Math.round(kb('VmHWM') / 1024) };
}

/** Sum of a Prometheus metric's samples whose line matches `filter` (labels), 0 when absent. */
async function metric(port: number, name: string, filter: (line: string) => boolean = () => true) {
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  return text
    .split('\n')
    .filter((l) => (l.startsWith(`${name}{`) || l.startsWith(`${name} `)) && filter(l))
    .reduce((sum, l) => sum + Number(l.split(' ').pop()), 0);
}

/** The operator's API requests by `VERB resource`, from o2c_operator_api_requests_total. */
async function apiRequests(port: number): Promise<Record<string, number>> {
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  const out: Record<string, number> = {};
  for (const line of text.split('\n')) {
    if (!line.startsWith('o2c_operator_api_requests_total{')) continue;
    const verb = /verb="([^"]+)"/.exec(line)?.[1];
    const resource = /resource="([^"]+)"/.exec(line)?.[1];
    const key = `${verb} ${resource}`;
    out[key] = (out[key] ?? 0) + Number(line.split(' ').pop());
  }
  return out;
}

const percentile = (sorted: number[], p: number): number =>
  sorted.length ? sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]! : 0;

/** The node options the chart gives the operator's container. */
function chartNodeOptions(): string {
  const values = parse(readFileSync(join(ROOT, 'charts/o2c/values.yaml'), 'utf8')) as {
    operator?: { nodeOptions?: string };
  };
  return values.operator?.nodeOptions ?? '';
}

/**
 * The image's build of the operator: tsc with tsconfig.build.json, into a directory of its own. The
 * sources are this tree's, or O2C_BENCH_OPERATOR_ROOT's (another checkout, with node_modules: a
 * before/after comparison in the same minute on a shared machine).
 */
function buildOperator(): string {
  const root = process.env.O2C_BENCH_OPERATOR_ROOT ?? ROOT;
  const tag = createHash('sha256').update(realpathSync(root)).digest('hex').slice(0, 8);
  // Under node_modules so the build resolves the repository's packages, as /app/dist does in the image.
  const out = join(root, `node_modules/.cache/o2c-bench-operator-${tag}`);
  const started = performance.now();
  try {
    execFileSync(join(ROOT, 'node_modules/.bin/tsc'), ['-p', 'tsconfig.build.json', '--outDir', out], {
      cwd: root,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
  } catch (err) {
    // tsc still emits on a type error elsewhere in the tree; say so and go on with what it emitted.
    const text = String((err as { stdout?: Buffer }).stdout ?? '').slice(0, 2000);
    console.warn(`bench-operator: tsc reported errors (the build is used as emitted):\n${text}`);
  }
  // The tree's package.json makes these ES modules; a build under node_modules needs its own.
  writeFileSync(join(out, 'package.json'), '{"type":"module"}\n');
  console.info(
    `bench-operator: operator built with tsc in ${((performance.now() - started) / 1000).toFixed(1)} s`,
  );
  // The real path: main.js runs only when it is the script node was given (its own check).
  return realpathSync(join(out, 'operator/src/main.js'));
}

async function main(): Promise<void> {
  const nodeFlagsText = process.env.O2C_BENCH_NODE_FLAGS ?? chartNodeOptions();
  const nodeFlags = nodeFlagsText.split(' ').filter(Boolean);
  const entry =
    MODE === 'compiled' ? [buildOperator()] : ['--import', 'tsx', join(ROOT, 'operator/src/main.ts')];
  const profileFlags = PROFILE_DIR
    ? ['--cpu-prof', `--cpu-prof-dir=${PROFILE_DIR}`, '--heapsnapshot-signal=SIGUSR2']
    : [];
  if (PROFILE_DIR) mkdirSync(PROFILE_DIR, { recursive: true });
  const loadBefore = loadavg()[0]!;

  const plane = await startControlPlane();
  const client = new KubeClient(plane.kubeConfig(), 64);
  await client.apply({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: ns } }, 'bench');
  const healthPort = await freePort();
  const operator = spawn(process.execPath, [...nodeFlags, ...profileFlags, ...entry], {
    cwd: PROFILE_DIR ?? ROOT,
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
  });
  process.once('exit', () => operator.kill('SIGKILL'));
  const rssSamples: Array<{ t: number; mb: number; heapTotalMb?: number; externalMb?: number }> = [];
  // The V8 heap's committed size and the memory outside it, once a second from the operator's metrics.
  let heapNow: { heapTotalMb?: number; externalMb?: number } = {};
  const heapSampler = setInterval(async () => {
    try {
      const mb = async (name: string) => +((await metric(healthPort, name)) / 2 ** 20).toFixed(1);
      heapNow = {
        heapTotalMb: await mb('nodejs_heap_size_total_bytes'),
        externalMb: await mb('nodejs_external_memory_bytes'),
      };
    } catch {}
  }, 1000);
  let sampler: NodeJS.Timeout | undefined;
  try {
    // Leader and caches synced (readyz answers 200 once a leader's informers have their first list).
    for (;;) {
      const leader = await fetch(`http://127.0.0.1:${healthPort}/metrics`)
        .then((r) => r.text())
        .then((t) => /o2c_operator_leader 1/.test(t))
        .catch(() => false);
      const ok =
        leader &&
        (await fetch(`http://127.0.0.1:${healthPort}/readyz`)
          .then((r) => r.status === 200)
          .catch(() => false));
      if (ok) break;
      if (operator.exitCode !== null) throw new Error(`operator exited with ${operator.exitCode}`);
      await new Promise((r) => setTimeout(r, 200));
    }
    const idleRssMb = rssMb(operator.pid!).now;
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

    // A Pipeline is done once its status is current with TopologyReady, ReferencesResolved and a config
    // hash (no controller-manager runs here, so no Deployment ever becomes available). A watch sees the
    // moment each one gets there without listing 1,000 objects every few hundred milliseconds.
    const appliedAt = new Map<string, number>();
    const doneAt = new Map<string, number>();
    const isDone = (p: AnyResource) =>
      p.status?.observedGeneration === p.metadata.generation &&
      p.status?.conditions?.find((c) => c.type === 'TopologyReady')?.status === 'True' &&
      p.status?.conditions?.find((c) => c.type === 'ReferencesResolved')?.status === 'True' &&
      !!p.status?.configHash;
    let allDone: () => void = () => {};
    const allDonePromise = new Promise<void>((r) => {
      allDone = r;
    });
    const see = (p: AnyResource) => {
      if (p.metadata.namespace !== ns || doneAt.has(p.metadata.name) || !isDone(p)) return;
      doneAt.set(p.metadata.name, performance.now());
      if (doneAt.size >= PIPELINES) allDone();
    };
    // A watch the server (or a loaded machine) ends is taken up again after a list catches up.
    const stopWatching = new AbortController();
    const following = (async () => {
      while (!stopWatching.signal.aborted) {
        try {
          const list = await client.listAll<AnyResource>('Pipeline');
          for (const p of list.items) see(p);
          await client.watch<AnyResource>('Pipeline', list.resourceVersion, undefined, (e) => see(e.object), {
            signal: stopWatching.signal,
          });
        } catch {
          await new Promise((r) => setTimeout(r, 200));
        }
      }
    })();

    const started = performance.now();
    sampler = setInterval(() => {
      if (operator.exitCode === null)
        rssSamples.push({
          t: +((performance.now() - started) / 1000).toFixed(2),
          mb: rssMb(operator.pid!).now,
          ...heapNow,
        });
    }, 250);
    const reconcilesBefore = await metric(healthPort, 'o2c_operator_reconciles_total');
    const requestsBefore = await apiRequests(healthPort);
    await inParallel([...connectors, ...pipelines], 16, async (o) => {
      appliedAt.set(o.metadata.name, performance.now());
      await client.apply(o, 'bench');
    });
    const appliedMs = performance.now() - started;

    const timeout = setTimeout(() => allDone(), 600_000);
    await allDonePromise;
    clearTimeout(timeout);
    if (doneAt.size < PIPELINES) throw new Error(`only ${doneAt.size}/${PIPELINES} done after 10 minutes`);
    // Every child is there, too.
    for (;;) {
      const deployments = await client.list('Deployment', ns, 'o2c.dev/kind=pipeline');
      const configMaps = await client.list('ConfigMap', ns, 'o2c.dev/kind=pipeline');
      const services = await client.list('Service', ns, 'o2c.dev/kind=pipeline');
      if (
        deployments.items.length >= PIPELINES &&
        configMaps.items.length >= PIPELINES &&
        services.items.length >= PIPELINES
      )
        break;
      if (performance.now() - started > 600_000) throw new Error('children missing after 10 minutes');
      await new Promise((r) => setTimeout(r, 250));
    }
    const totalMs = Math.max(...doneAt.values()) - started;
    stopWatching.abort();
    await following;
    // Whatever the operator still does once all are done (echoes of its own writes) counts as well.
    await new Promise((r) => setTimeout(r, 2000));
    clearInterval(sampler);
    if (PROFILE_DIR) {
      operator.kill('SIGUSR2');
      await new Promise((r) => setTimeout(r, 3000));
    }
    const perPipeline = pipelines
      .map((p) => doneAt.get(p.metadata.name)! - appliedAt.get(p.metadata.name)!)
      .sort((a, b) => a - b);
    const reconciles = (await metric(healthPort, 'o2c_operator_reconciles_total')) - reconcilesBefore;
    const errors = await metric(healthPort, 'o2c_operator_reconcile_errors_total');
    const requestsAfter = await apiRequests(healthPort);
    const requests: Record<string, number> = {};
    for (const [k, v] of Object.entries(requestsAfter)) {
      const d = v - (requestsBefore[k] ?? 0);
      if (d > 0) requests[k] = d;
    }
    // Lease renewals are not the Pipelines' doing.
    const reconcileRequests = Object.entries(requests)
      .filter(([k]) => !k.endsWith(' leases'))
      .reduce((s, [, v]) => s + v, 0);
    const declared = await metric(healthPort, 'o2c_operator_topology_declarations_total', (l) =>
      l.includes('outcome="declared"'),
    );
    const rss = rssMb(operator.pid!);
    const peakSampled = Math.max(0, ...rssSamples.map((s) => s.mb));
    const heapUsedMb = (await metric(healthPort, 'nodejs_heap_size_used_bytes')) / 2 ** 20;
    const machine = {
      cpus: cpus().length,
      cpu: cpus()[0]?.model ?? 'unknown',
      memoryGb: +(totalmem() / 2 ** 30).toFixed(1),
      node: process.version,
      loadAverageBefore: +loadBefore.toFixed(2),
      loadAverageAfter: +loadavg()[0]!.toFixed(2),
      note: 'kube-apiserver, etcd, RabbitMQ, the operator and this load generator on the same host',
    };
    const result = {
      benchmark: 'operator',
      date: new Date().toISOString(),
      pipelines: PIPELINES,
      connectors: connectors.length,
      workers: Number(WORKERS),
      operatorBuild:
        MODE === 'compiled' ? 'tsc (tsconfig.build.json), plain node, as in the image' : 'source through tsx',
      ...(process.env.O2C_BENCH_OPERATOR_ROOT ? { operatorSources: 'another checkout (baseline)' } : {}),
      applySeconds: +(appliedMs / 1000).toFixed(2),
      allReadySeconds: +(totalMs / 1000).toFixed(2),
      perPipelineSeconds: {
        p50: +(percentile(perPipeline, 50) / 1000).toFixed(2),
        p99: +(percentile(perPipeline, 99) / 1000).toFixed(2),
        max: +(perPipeline[perPipeline.length - 1]! / 1000).toFixed(2),
      },
      reconciles,
      reconcileErrors: errors,
      reconcilesPerSecond: +(reconciles / (totalMs / 1000)).toFixed(1),
      reconcilesPerPipeline: +(reconciles / PIPELINES).toFixed(2),
      apiCallsPerPipeline: +(reconcileRequests / PIPELINES).toFixed(2),
      apiCalls: requests,
      topologyDeclarationsPerPipeline: +(declared / PIPELINES).toFixed(2),
      operatorPeakRssMb: rss.peak,
      operatorIdleRssMb: idleRssMb,
      operatorRssAtEndMb: rss.now,
      operatorHeapUsedAtEndMb: +heapUsedMb.toFixed(1),
      operatorRssSamplesMb: rssSamples.filter((_, i) => i % 4 === 0),
      operatorNodeFlags: nodeFlags.join(' '),
      aim: AIM,
      machine,
    };
    const mark = (ok: boolean) => (ok ? 'meets' : 'misses');
    console.log(
      [
        `bench-operator: ${PIPELINES} Pipelines + ${connectors.length} Connectors, ${WORKERS} workers, operator ${result.operatorBuild}, node flags '${result.operatorNodeFlags}'`,
        `machine: ${machine.cpus} cores (${machine.cpu}), ${machine.memoryGb} GB, Node ${machine.node}; ${machine.note}; load ${machine.loadAverageBefore} before, ${machine.loadAverageAfter} after`,
        `  all Ready            ${result.allReadySeconds.toFixed(2).padStart(8)} s    aim <= ${AIM.allReadySeconds} s (${mark(result.allReadySeconds <= AIM.allReadySeconds)})`,
        `  operator peak RSS    ${String(result.operatorPeakRssMb).padStart(8)} MB   aim < ${AIM.operatorPeakRssMb} MB (${mark(result.operatorPeakRssMb < AIM.operatorPeakRssMb)}); idle ${idleRssMb} MB, sampled peak ${peakSampled} MB, heap used at end ${result.operatorHeapUsedAtEndMb} MB`,
        `  per Pipeline         p50 ${result.perPipelineSeconds.p50} s, p99 ${result.perPipelineSeconds.p99} s (apply to Ready; applies took ${result.applySeconds} s)`,
        `  reconciles           ${reconciles} (${result.reconcilesPerPipeline} per Pipeline, ${result.reconcilesPerSecond}/s), errors ${errors}`,
        `  API calls            ${result.apiCallsPerPipeline} per Pipeline (Connectors' included, Lease renewals not): ${JSON.stringify(requests)}`,
        `  queue declarations   ${result.topologyDeclarationsPerPipeline} per Pipeline`,
      ].join('\n'),
    );
    mkdirSync(join(ROOT, 'bench/results'), { recursive: true });
    writeFileSync(join(ROOT, 'bench/results/operator.json'), `${JSON.stringify(result, null, 2)}\n`);
  } finally {
    if (sampler) clearInterval(sampler);
    clearInterval(heapSampler);
    if (operator.exitCode === null) {
      const exited = new Promise((r) => operator.once('exit', r));
      operator.kill('SIGTERM');
      await Promise.race([exited, new Promise((r) => setTimeout(r, 10_000))]);
    }
    if (PROFILE_DIR)
      console.info(`bench-operator: profiles in ${PROFILE_DIR}: ${readdirSync(PROFILE_DIR).join(', ')}`);
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
