// The Helm chart as a platform engineer meets it: helm lint and helm template for every environment,
// the values schema refusing wrong values by name, every rendered object accepted by a real
// kube-apiserver (server-side apply, dryRun=All, strict field validation), the operator pod admitted
// by the restricted Pod Security level, and install / upgrade / uninstall keeping CRDs and resources.
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { KubeApiError, KubeClient, type KubeObject } from '../../operator/src/kube.js';
import { type ControlPlane, startControlPlane } from '../envtest/controlplane.js';
import { CHART_DIR, helm, REPO_ROOT, renderChart } from './support/helm.js';

const CHART = parse(readFileSync(join(CHART_DIR, 'Chart.yaml'), 'utf8')) as {
  appVersion: string;
  kubeVersion: string;
};
const OPERATOR_COMMAND = ['node', '/app/dist/operator/src/main.js'];
const ENVIRONMENTS = ['values.yaml', 'values-dev.yaml', 'values-staging.yaml', 'values-prod.yaml'] as const;
type Environment = (typeof ENVIRONMENTS)[number];

const valuesArgs = (file: Environment): string[] => ['-f', join(CHART_DIR, file)];
const releaseNamespace = (file: Environment): string =>
  `chart-${file === 'values.yaml' ? 'defaults' : file.slice('values-'.length, -'.yaml'.length)}`;

function rendered(file: Environment, extra: string[] = []): KubeObject[] {
  const r = renderChart('o2c', releaseNamespace(file), [...valuesArgs(file), ...extra]);
  if ('error' in r) throw new Error(`helm template with ${file} failed:\n${r.error}`);
  return r.objects;
}

const ofKind = (objects: KubeObject[], kind: string): KubeObject[] => objects.filter((o) => o.kind === kind);

interface PodSpec {
  securityContext?: Record<string, unknown>;
  containers: Array<{
    name: string;
    image: string;
    command?: string[];
    env?: Array<{ name: string; value?: string; valueFrom?: unknown }>;
    securityContext?: Record<string, unknown>;
    volumeMounts?: Array<{ name: string; mountPath: string }>;
  }>;
  volumes?: Array<{ name: string; emptyDir?: unknown }>;
}
const operatorDeployment = (objects: KubeObject[]) => {
  const [d] = ofKind(objects, 'Deployment');
  if (!d) throw new Error('no Deployment rendered');
  return d as KubeObject & {
    spec: {
      replicas: number;
      template: { metadata: { annotations?: Record<string, string> }; spec: PodSpec };
    };
  };
};
const envOf = (objects: KubeObject[]): Record<string, string | undefined> =>
  Object.fromEntries(
    (operatorDeployment(objects).spec.template.spec.containers[0]?.env ?? []).map((e) => [e.name, e.value]),
  );

describe('helm lint and helm template', () => {
  it('the helm binary is the v3.22.0 release build, not an unversioned go install', () => {
    const r = helm(['version', '--template', '{{.Version}}']);
    expect(r.stdout).toBe('v3.22.0');
  });

  it.each(ENVIRONMENTS)('helm lint --strict passes with %s', (file) => {
    const r = helm(['lint', '--strict', CHART_DIR, ...valuesArgs(file)]);
    expect(r.stdout + r.stderr).toContain('1 chart(s) linted, 0 chart(s) failed');
    expect(r.code).toBe(0);
  });

  it("helm template needs no --kube-version, yet the chart's kubeVersion constraint is enforced", () => {
    expect(rendered('values-dev.yaml').length).toBeGreaterThan(0);
    const old = renderChart('o2c', 'chart-dev', [
      ...valuesArgs('values-dev.yaml'),
      '--kube-version',
      '1.29.0',
    ]);
    expect('error' in old && old.error).toContain(`chart requires kubeVersion: ${CHART.kubeVersion}`);
  });

  it.each(ENVIRONMENTS)(
    'every container rendered with %s runs the one o2c image of the appVersion',
    (file) => {
      const objects = rendered(file);
      const images = objects.flatMap((o) =>
        o.kind === 'Deployment'
          ? operatorDeployment([o]).spec.template.spec.containers.map((c) => c.image)
          : [],
      );
      expect(images).toEqual([`o2c:${CHART.appVersion}`]);
      expect(envOf(objects).O2C_RUNTIME_IMAGE).toBe(`o2c:${CHART.appVersion}`);
      expect(operatorDeployment(objects).spec.template.spec.containers[0]?.command).toEqual(OPERATOR_COMMAND);
    },
  );

  it('a digest pins the operator and runtime image instead of the tag', () => {
    const digest = `sha256:${'a'.repeat(64)}`;
    const objects = rendered('values-prod.yaml', ['--set', `image.digest=${digest}`]);
    expect(operatorDeployment(objects).spec.template.spec.containers[0]?.image).toBe(`o2c@${digest}`);
    expect(envOf(objects).O2C_RUNTIME_IMAGE).toBe(`o2c@${digest}`);
  });

  it.each([
    {
      file: 'values.yaml',
      replicas: 2,
      logLevel: 'info',
      pdb: true,
      networkPolicy: false,
      serviceMonitor: false,
      chartSecrets: [],
      brokerSecret: 'o2c-broker',
    },
    {
      file: 'values-dev.yaml',
      replicas: 1,
      logLevel: 'debug',
      pdb: false,
      networkPolicy: false,
      serviceMonitor: false,
      chartSecrets: ['o2c-broker'],
      brokerSecret: 'o2c-broker',
    },
    {
      file: 'values-staging.yaml',
      replicas: 2,
      logLevel: 'info',
      pdb: true,
      networkPolicy: false,
      serviceMonitor: true,
      chartSecrets: [],
      brokerSecret: 'o2c-broker',
    },
    {
      file: 'values-prod.yaml',
      replicas: 2,
      logLevel: 'info',
      pdb: true,
      networkPolicy: true,
      serviceMonitor: true,
      chartSecrets: [],
      brokerSecret: 'o2c-broker',
    },
  ] as const)(
    '$file renders $replicas replica(s), PDB $pdb, NetworkPolicy $networkPolicy, ServiceMonitor $serviceMonitor',
    (c) => {
      const objects = rendered(c.file);
      expect(operatorDeployment(objects).spec.replicas).toBe(c.replicas);
      expect(ofKind(objects, 'PodDisruptionBudget').length).toBe(c.pdb ? 1 : 0);
      expect(ofKind(objects, 'NetworkPolicy').length).toBe(c.networkPolicy ? 1 : 0);
      expect(ofKind(objects, 'ServiceMonitor').length).toBe(c.serviceMonitor ? 1 : 0);
      expect(ofKind(objects, 'Secret').map((s) => s.metadata.name)).toEqual(c.chartSecrets);
      const env = envOf(objects);
      expect(env.LOG_LEVEL).toBe(c.logLevel);
      expect(env.O2C_BROKER_SECRET).toBe(c.brokerSecret);
      expect(env.O2C_BROKER_SECRET_KEY).toBe('url');
      expect(env.O2C_STORE_SECRET).toBeUndefined();
      const amqp = operatorDeployment(objects).spec.template.spec.containers[0]?.env?.find(
        (e) => e.name === 'O2C_AMQP_URL',
      );
      expect(amqp?.valueFrom).toEqual({ secretKeyRef: { name: c.brokerSecret, key: 'url' } });
    },
  );

  it.each(ENVIRONMENTS)(
    'the operator pod rendered with %s has the restricted security settings and a writable /tmp',
    (file) => {
      const pod = operatorDeployment(rendered(file)).spec.template.spec;
      expect(pod.securityContext).toMatchObject({
        runAsNonRoot: true,
        seccompProfile: { type: 'RuntimeDefault' },
      });
      expect(pod.containers[0]?.securityContext).toMatchObject({
        runAsNonRoot: true,
        allowPrivilegeEscalation: false,
        readOnlyRootFilesystem: true,
        capabilities: { drop: ['ALL'] },
      });
      expect(pod.containers[0]?.volumeMounts).toContainEqual({ name: 'tmp', mountPath: '/tmp' });
      expect(pod.volumes?.find((v) => v.name === 'tmp')?.emptyDir).toBeDefined();
    },
  );

  it('a changed development broker URL changes the pod template, so the operator restarts with it', () => {
    const annotations = (url: string) =>
      operatorDeployment(rendered('values-dev.yaml', ['--set', `broker.url=${url}`])).spec.template.metadata
        .annotations?.['checksum/broker'];
    expect(annotations('amqp://a:b@rabbitmq:5672')).not.toBe(annotations('amqp://a:c@rabbitmq:5672'));
  });
});

describe('values.schema.json and the chart refuse wrong values by name', () => {
  it.each([
    ['a replica count given as a word', ['--set-string', 'operator.replicas=two'], "at '/operator/replicas'"],
    ['a negative replica count', ['--set', 'operator.replicas=-1'], "at '/operator/replicas'"],
    ['a misspelt top-level value', ['--set', 'operatr.replicas=1'], "additional properties 'operatr'"],
    ['a misspelt operator value', ['--set', 'operator.replica=1'], "additional properties 'replica'"],
    [
      'a resync period under ten seconds',
      ['--set', 'operator.resyncSeconds=1'],
      "at '/operator/resyncSeconds'",
    ],
    ['a log level pino does not know', ['--set', 'operator.logLevel=verbose'], "at '/operator/logLevel'"],
    ['a health port above 65535', ['--set', 'operator.healthPort=70000'], "at '/operator/healthPort'"],
    [
      'a memory request that is no quantity',
      ['--set', 'operator.resources.requests.memory=lots'],
      "at '/operator/resources/requests/memory'",
    ],
    [
      'an image pull policy Kubernetes does not know',
      ['--set', 'image.pullPolicy=Sometimes'],
      "at '/image/pullPolicy'",
    ],
    ['an image digest that is no sha256', ['--set', 'image.digest=latest'], "at '/image/digest'"],
    [
      'a broker Secret name that is no object name',
      ['--set', 'broker.existingSecret=My_Secret'],
      "at '/broker/existingSecret'",
    ],
    [
      'a broker URL that is not amqp:// or amqps://',
      ['--set', 'broker.existingSecret=', '--set', 'broker.url=http://rabbitmq:15672'],
      "at '/broker/url'",
    ],
    [
      'a default store the chart does not offer',
      ['--set', 'store.url=postgres://o2c@db/o2c'],
      'additional properties',
    ],
    [
      'a scrape interval that is no duration',
      ['--set', 'metrics.serviceMonitor.interval=30 seconds'],
      "at '/metrics/serviceMonitor/interval'",
    ],
    [
      'an API server address without a prefix length',
      ['--set', 'networkPolicy.apiServer.cidrs={10.0.0.1}'],
      "at '/networkPolicy/apiServer/cidrs/0'",
    ],
    [
      'both a broker Secret and a broker URL',
      ['--set', 'broker.existingSecret=o2c-broker', '--set', 'broker.url=amqp://guest:guest@rabbitmq:5672'],
      'broker: set either broker.existingSecret or broker.url, not both',
    ],
    [
      'neither a broker Secret nor a broker URL',
      ['--set', 'broker.existingSecret='],
      'broker: set broker.existingSecret (a Secret with the AMQP URL under broker.secretKey) or, for development, broker.url',
    ],
    [
      'a ServiceMonitor without the metrics Service it selects',
      ['--set', 'metrics.serviceMonitor.enabled=true', '--set', 'metrics.service.enabled=false'],
      'metrics.serviceMonitor.enabled needs metrics.service.enabled',
    ],
  ])('%s fails and the error names it', (_sentence, args, expected) => {
    // helm install and helm upgrade run the same checks before they talk to the cluster.
    const r = renderChart('o2c', 'chart-schema', args);
    expect('error' in r && r.error).toContain(expected);
  });
});

describe('against a real kube-apiserver', () => {
  let plane: ControlPlane;
  let client: KubeClient;
  const discovery = new Map<string, Array<{ name: string; kind: string; namespaced: boolean }>>();

  async function apiResource(obj: KubeObject) {
    const apiVersion = obj.apiVersion ?? 'v1';
    const base = apiVersion.includes('/') ? `/apis/${apiVersion}` : `/api/${apiVersion}`;
    if (!discovery.has(base)) {
      const list = await client.request<{
        resources: Array<{ name: string; kind: string; namespaced: boolean }>;
      }>('GET', base);
      discovery.set(base, list.resources);
    }
    const r = discovery.get(base)?.find((x) => x.kind === obj.kind && !x.name.includes('/'));
    if (!r) throw new Error(`the API server serves no ${obj.kind} in ${apiVersion}`);
    return { base, ...r };
  }

  /** `kubectl apply --server-side --dry-run=server --validate=strict`: admission and schema run, nothing is stored. */
  async function dryRunApply(obj: KubeObject, namespace: string): Promise<void> {
    const r = await apiResource(obj);
    const ns = r.namespaced ? `/namespaces/${obj.metadata.namespace ?? namespace}` : '';
    await client.request(
      'PATCH',
      `${r.base}${ns}/${r.name}/${obj.metadata.name}?dryRun=All&fieldManager=helm&fieldValidation=Strict&force=true`,
      obj,
      'application/apply-patch+yaml',
    );
  }

  async function dryRunFailures(objects: KubeObject[], namespace: string): Promise<string[]> {
    const failures: string[] = [];
    for (const o of objects) {
      await dryRunApply(o, namespace).catch((err: Error) =>
        failures.push(`${o.kind}/${o.metadata.name}: ${err.message}`),
      );
    }
    return failures;
  }

  async function applyCrd(file: string): Promise<void> {
    const crd = parse(readFileSync(file, 'utf8')) as KubeObject;
    await client.apply(crd, 'o2c-chart-test');
    const deadline = Date.now() + 30_000;
    for (;;) {
      const got = await client.get<
        KubeObject & { status?: { conditions?: Array<{ type: string; status: string }> } }
      >('CustomResourceDefinition', '', crd.metadata.name);
      if (got?.status?.conditions?.some((c) => c.type === 'Established' && c.status === 'True')) return;
      if (Date.now() > deadline) throw new Error(`CRD ${crd.metadata.name} not established`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  const namespace = async (name: string, labels: Record<string, string> = {}) =>
    client.apply({ apiVersion: 'v1', kind: 'Namespace', metadata: { name, labels } }, 'o2c-chart-test');

  beforeAll(async () => {
    plane = await startControlPlane({ installCrds: false });
    client = new KubeClient(plane.kubeConfig());
    // The chart's own crds/ first, as `kubectl apply --server-side -f charts/o2c/crds/` would.
    for (const f of readdirSync(join(CHART_DIR, 'crds')).filter((f) => f.endsWith('.yaml')))
      await applyCrd(join(CHART_DIR, 'crds', f));
    await applyCrd(join(REPO_ROOT, 'test/integration/fixtures/servicemonitor-crd.yaml'));
    for (const file of ENVIRONMENTS) await namespace(releaseNamespace(file));
  });

  afterAll(async () => {
    client?.close();
    await plane?.stop();
  });

  it.each(ENVIRONMENTS)(
    'every object rendered with %s passes a server-side dry-run with strict validation',
    async (file) => {
      const objects = rendered(file);
      expect(objects.length).toBeGreaterThanOrEqual(5);
      expect(await dryRunFailures(objects, releaseNamespace(file))).toEqual([]);
    },
  );

  it.each([
    [
      'values-prod.yaml with the NetworkPolicy narrowed as docs/operations.md shows',
      [
        '--set',
        'networkPolicy.apiServer.cidrs={10.0.0.10/32}',
        '--set',
        'networkPolicy.broker.to[0].namespaceSelector.matchLabels.kubernetes\\.io/metadata\\.name=rabbitmq-system',
        '--set',
        'networkPolicy.metrics.from[0].namespaceSelector.matchLabels.kubernetes\\.io/metadata\\.name=monitoring',
      ],
    ],
    [
      'values-prod.yaml with the ServiceMonitor in the monitoring namespace',
      [
        '--set',
        'metrics.serviceMonitor.namespace=chart-prod-monitoring',
        '--set',
        'metrics.serviceMonitor.labels.release=prometheus',
      ],
    ],
    [
      'values-prod.yaml with a pinned digest and a pull Secret',
      [
        '--set',
        `image.digest=sha256:${'b'.repeat(64)}`,
        '--set',
        'imagePullSecrets[0].name=registry-credentials',
      ],
    ],
  ])('every object rendered with %s passes the server-side dry-run', async (_sentence, args) => {
    await namespace('chart-prod-monitoring');
    const objects = rendered('values-prod.yaml', args);
    expect(await dryRunFailures(objects, releaseNamespace('values-prod.yaml'))).toEqual([]);
  });

  it('the dry-run refuses what the API server would refuse, so a broken template cannot pass', async () => {
    const deployment = operatorDeployment(rendered('values-prod.yaml'));
    const misspelt = { ...deployment, spec: { ...deployment.spec, replica: 2 } };
    const failures = await dryRunFailures([misspelt], releaseNamespace('values-prod.yaml'));
    expect(failures.join('\n')).toContain('.spec.replica: field not declared in schema');
    const [monitor] = ofKind(rendered('values-prod.yaml'), 'ServiceMonitor') as Array<
      KubeObject & { spec: Record<string, unknown> }
    >;
    if (!monitor) throw new Error('no ServiceMonitor rendered');
    const badInterval = {
      ...monitor,
      spec: { ...monitor.spec, endpoints: [{ port: 'metrics', interval: '30 seconds' }] },
    };
    const monitorFailures = await dryRunFailures([badInterval], releaseNamespace('values-prod.yaml'));
    expect(monitorFailures.join('\n')).toContain('spec.endpoints[0].interval');
  });

  it.each(ENVIRONMENTS)(
    'the operator pod rendered with %s is admitted where Pod Security enforces restricted',
    async (file) => {
      const ns = `pss-${releaseNamespace(file)}`;
      await namespace(ns, {
        'pod-security.kubernetes.io/enforce': 'restricted',
        'pod-security.kubernetes.io/enforce-version': 'latest',
      });
      const spec = operatorDeployment(rendered(file)).spec.template.spec;
      const pod: KubeObject = {
        apiVersion: 'v1',
        kind: 'Pod',
        metadata: { name: 'operator', namespace: ns },
        spec,
      };
      await expect(dryRunApply(pod, ns)).resolves.toBeUndefined();

      const [container] = spec.containers;
      const privileged = {
        ...pod,
        spec: {
          ...spec,
          containers: [
            {
              ...container,
              securityContext: { ...container?.securityContext, allowPrivilegeEscalation: true },
            },
          ],
        },
      };
      const refused = await dryRunApply(privileged, ns).catch((err: unknown) => err);
      expect(refused).toBeInstanceOf(KubeApiError);
      expect((refused as KubeApiError).message).toContain('violates PodSecurity "restricted:latest"');
    },
  );
});

describe('helm install, upgrade and uninstall on a fresh API server', () => {
  let plane: ControlPlane;
  let client: KubeClient;
  const ns = 'o2c-system';
  let kube: string[];
  const CRDS = ['connectors.o2c.dev', 'pipelines.o2c.dev', 'workflows.o2c.dev'];
  type Crd = KubeObject & {
    spec: { versions: Array<{ schema: { openAPIV3Schema: { description?: string } } }> };
  };
  const chartCrds = (): Crd[] =>
    readdirSync(join(CHART_DIR, 'crds'))
      .filter((f) => f.endsWith('.yaml'))
      .map((f) => parse(readFileSync(join(CHART_DIR, 'crds', f), 'utf8')) as Crd);
  /** `kubectl apply --server-side [--force-conflicts]` of one object. */
  const kubectlApply = (obj: KubeObject, forceConflicts: boolean) =>
    client.request(
      'PATCH',
      `/apis/apiextensions.k8s.io/v1/customresourcedefinitions/${obj.metadata.name}?fieldManager=kubectl${forceConflicts ? '&force=true' : ''}`,
      obj,
      'application/apply-patch+yaml',
    );
  const operatorReplicas = async () =>
    (await client.get<KubeObject & { spec: { replicas: number } }>('Deployment', ns, 'o2c-operator'))?.spec
      .replicas;

  beforeAll(async () => {
    // No CRDs yet: helm install brings them from the chart's crds/ as it does on a new cluster.
    plane = await startControlPlane({ installCrds: false });
    client = new KubeClient(plane.kubeConfig());
    kube = ['--kubeconfig', plane.kubeconfigPath, '--namespace', ns];
  });

  afterAll(async () => {
    client?.close();
    await plane?.stop();
  });

  it('helm install with values-prod.yaml where the Prometheus Operator is missing fails naming the ServiceMonitor kind', () => {
    const r = helm([
      'install',
      'o2c-prod',
      CHART_DIR,
      '--kubeconfig',
      plane.kubeconfigPath,
      '--namespace',
      'o2c-prod',
      '--create-namespace',
      ...valuesArgs('values-prod.yaml'),
    ]);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain('no matches for kind "ServiceMonitor" in version "monitoring.coreos.com/v1"');
  });

  it('helm install creates the CRDs and the operator with the values of the environment', async () => {
    const install = helm([
      'install',
      'o2c',
      CHART_DIR,
      ...kube,
      '--create-namespace',
      ...valuesArgs('values-dev.yaml'),
    ]);
    expect(install.stderr).toBe('');
    expect(install.code).toBe(0);
    // The NOTES a person reads after the install name the real Deployment and the CRD upgrade step.
    expect(install.stdout).toContain('kubectl -n o2c-system rollout status deployment/o2c-operator');
    expect(install.stdout).toContain('kubectl apply --server-side --force-conflicts -f charts/o2c/crds/');
    for (const crd of CRDS) expect(await client.get('CustomResourceDefinition', '', crd)).toBeDefined();
    expect(await operatorReplicas()).toBe(1);
    expect(await client.get('Secret', ns, 'o2c-broker')).toBeDefined();
    expect(await client.get('PodDisruptionBudget', ns, 'o2c-operator')).toBeUndefined();
  });

  it('helm upgrade applies a changed value and refuses a wrong one before touching the cluster', async () => {
    const upgrade = helm([
      'upgrade',
      'o2c',
      CHART_DIR,
      ...kube,
      ...valuesArgs('values-dev.yaml'),
      '--set',
      'operator.replicas=2',
    ]);
    expect(upgrade.code, upgrade.stderr).toBe(0);
    expect(await operatorReplicas()).toBe(2);
    expect(await client.get('PodDisruptionBudget', ns, 'o2c-operator')).toBeDefined();

    const refused = helm([
      'upgrade',
      'o2c',
      CHART_DIR,
      ...kube,
      ...valuesArgs('values-dev.yaml'),
      '--set-string',
      'operator.replicas=two',
    ]);
    expect(refused.code).not.toBe(0);
    expect(refused.stderr).toContain("at '/operator/replicas'");
    expect(await operatorReplicas()).toBe(2);
  });

  it('CRDs Helm installed are upgraded by kubectl apply --server-side --force-conflicts, as docs/operations.md says', async () => {
    const changed = chartCrds().map((crd) => {
      const copy = structuredClone(crd);
      const schema = copy.spec.versions[0]?.schema.openAPIV3Schema;
      if (schema) schema.description = `${schema.description ?? ''} (next chart version)`;
      return copy;
    });
    // Helm owns the fields it created; without --force-conflicts a changed field is a conflict.
    const conflict = await kubectlApply(changed[0] as Crd, false).catch((err: unknown) => err);
    expect(conflict).toBeInstanceOf(KubeApiError);
    expect((conflict as KubeApiError).status).toBe(409);
    for (const crd of changed) await kubectlApply(crd, true);
    const stored = await client.get<Crd>('CustomResourceDefinition', '', changed[0]?.metadata.name ?? '');
    expect(stored?.spec.versions[0]?.schema.openAPIV3Schema.description).toContain('(next chart version)');
  });

  it('helm uninstall removes the operator and keeps the CRDs and the resources users created', async () => {
    await client.create({
      apiVersion: 'o2c.dev/v1alpha1',
      kind: 'Connector',
      metadata: { name: 'erp', namespace: ns },
      spec: { system: 'erp', driver: 'simulator' },
    } as KubeObject);
    const uninstall = helm(['uninstall', 'o2c', ...kube]);
    expect(uninstall.code, uninstall.stderr).toBe(0);
    expect(await client.get('Deployment', ns, 'o2c-operator')).toBeUndefined();
    expect(await client.get('Secret', ns, 'o2c-broker')).toBeUndefined();
    for (const crd of CRDS) expect(await client.get('CustomResourceDefinition', '', crd)).toBeDefined();
    expect(await client.get('Connector', ns, 'erp')).toBeDefined();
  });
});
