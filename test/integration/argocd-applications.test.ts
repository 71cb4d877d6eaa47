// The Argo CD objects of examples/argocd, checked on a real API server against Argo CD's own CRDs
// (from the argo-cd Go module) with strict field validation, and against this repository: every
// path, values file and sync wave they rely on exists and orders what it must.
import { execFile } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { HANDLERS } from '../../operator/src/controller.js';
import { KubeClient, type KubeObject } from '../../operator/src/kube.js';
import { type AnyResource, isKind } from '../../operator/src/resources.js';
import { type ControlPlane, startControlPlane } from '../envtest/controlplane.js';
import { createNamespace, eventually, readManifests } from './operator-harness.js';

const run = promisify(execFile);
const REPO = join(import.meta.dirname, '../..');
const ARGOCD = join(REPO, 'examples/argocd');
const DISTRIBUTOR = join(REPO, 'examples/distributor');
const CHART = join(REPO, 'charts/o2c');
/** The Argo CD release whose Application and AppProject schemas the examples are checked against. */
const ARGOCD_VERSION = 'v3.5.7';
const ENVIRONMENTS = ['dev', 'staging', 'prod'] as const;
const WAVE = 'argocd.argoproj.io/sync-wave';

interface Application extends KubeObject {
  spec: {
    project: string;
    source: {
      repoURL: string;
      path: string;
      targetRevision: string;
      helm?: { releaseName?: string; valueFiles?: string[] };
      directory?: { exclude?: string; include?: string };
    };
    destination: { name?: string; server?: string; namespace: string };
    syncPolicy?: { automated?: unknown; syncOptions?: string[] };
  };
}
interface AppProject extends KubeObject {
  spec: {
    sourceRepos: string[];
    destinations: Array<{ name?: string; server?: string; namespace: string }>;
    clusterResourceWhitelist: Array<{ group: string; kind: string }>;
  };
}

const applications = (env: string): Application[] =>
  readdirSync(join(ARGOCD, env))
    .filter((f) => f.endsWith('.yaml'))
    .flatMap((f) => readManifests(join(ARGOCD, env, f)) as Application[]);
const project = readManifests(join(ARGOCD, 'project.yaml'))[0] as AppProject;
const waveOf = (o: KubeObject): number => Number(o.metadata.annotations?.[WAVE] ?? '0');

let plane: ControlPlane;
let client: KubeClient;

/** Argo CD's CRDs as its release ships them, from the Go module cache (the Go module proxy). */
async function argocdCrds(): Promise<KubeObject[]> {
  const { stdout } = await run(
    'go',
    ['mod', 'download', '-json', `github.com/argoproj/argo-cd/v3@${ARGOCD_VERSION}`],
    {
      env: { ...process.env, GOFLAGS: `${process.env.GOFLAGS ?? ''} -mod=mod`.trim() },
      cwd: join(REPO, 'test/argocd'),
      maxBuffer: 1 << 20,
    },
  );
  const { Dir, Error: error } = JSON.parse(stdout) as { Dir?: string; Error?: string };
  if (!Dir) throw new Error(`argo-cd ${ARGOCD_VERSION}: ${error}`);
  return ['application-crd.yaml', 'appproject-crd.yaml'].map(
    (f) => parse(readFileSync(join(Dir, 'manifests/crds', f), 'utf8')) as KubeObject,
  );
}

/** Server-side dry run of a create, refusing unknown fields as `kubectl apply --validate=strict` does. */
async function dryRunCreate(o: KubeObject): Promise<unknown> {
  const plural = o.kind === 'Application' ? 'applications' : 'appprojects';
  return client.request(
    'POST',
    `/apis/argoproj.io/v1alpha1/namespaces/${o.metadata.namespace}/${plural}?dryRun=All&fieldValidation=Strict`,
    o,
  );
}

beforeAll(async () => {
  plane = await startControlPlane();
  client = new KubeClient(plane.kubeConfig());
  const crds = await argocdCrds();
  for (const crd of crds) await client.apply(crd, 'o2c-test');
  for (const crd of crds) {
    await eventually(`CRD ${crd.metadata.name} established`, async () => {
      const live = await client.get<
        KubeObject & { status?: { conditions?: Array<{ type: string; status: string }> } }
      >('CustomResourceDefinition', '', crd.metadata.name);
      return live?.status?.conditions?.some((c) => c.type === 'Established' && c.status === 'True');
    });
  }
  await createNamespace(client, 'argocd');
  // Established is not yet served everywhere: wait until both kinds answer a list.
  for (const plural of ['applications', 'appprojects'])
    await eventually(`${plural} served`, async () => {
      await client.request('GET', `/apis/argoproj.io/v1alpha1/namespaces/argocd/${plural}`);
      return true;
    });
});

afterAll(async () => {
  client?.close();
  await plane?.stop();
});

describe('examples/argocd', () => {
  it('gives every environment one Application for the operator and one for the resources', () => {
    for (const env of ENVIRONMENTS) {
      expect(
        applications(env)
          .map((a) => [a.metadata.name, a.spec.source.path])
          .sort(),
      ).toEqual([
        [`o2c-distributor-${env}`, 'examples/distributor'],
        [`o2c-operator-${env}`, 'charts/o2c'],
      ]);
    }
  });

  const argocdObjects: Array<[string, KubeObject]> = [
    ['project.yaml', project],
    ...ENVIRONMENTS.flatMap((env) =>
      applications(env).map((a): [string, KubeObject] => [`${env}: ${a.metadata.name}`, a]),
    ),
  ];
  it.each(argocdObjects)('%s is valid for Argo CD (strict server-side dry run)', async (_name, o) => {
    await expect(dryRunCreate(o)).resolves.toMatchObject({
      kind: o.kind,
      metadata: { name: o.metadata.name },
    });
  });

  it('the strict dry run refuses a misspelled field, so the check above can fail', async () => {
    const app = applications('dev')[0]!;
    const typo = { ...app, spec: { ...app.spec, syncPolicy: { automated: { selfheal: true } } } };
    await expect(dryRunCreate(typo)).rejects.toThrow(/selfheal/);
  });

  it.each(ENVIRONMENTS)('%s: the operator Application installs charts/o2c with values-%s.yaml', (env) => {
    const app = applications(env).find((a) => a.spec.source.path === 'charts/o2c')!;
    expect(app.spec.source.helm?.valueFiles).toEqual([`values-${env}.yaml`]);
    for (const f of app.spec.source.helm!.valueFiles!) expect(existsSync(join(CHART, f)), f).toBe(true);
    expect(existsSync(join(CHART, 'Chart.yaml'))).toBe(true);
    expect(app.spec.destination.namespace).toBe(`o2c-${env}`);
    expect(app.spec.syncPolicy?.syncOptions).toContain('CreateNamespace=true');
    // Deleting the Application must not delete the CRDs, and with them every resource.
    expect(app.metadata.finalizers ?? []).toEqual([]);
  });

  it.each(ENVIRONMENTS)(
    '%s: the resources Application syncs examples/distributor next to the operator',
    (env) => {
      const [operator, resources] = ['charts/o2c', 'examples/distributor'].map(
        (p) => applications(env).find((a) => a.spec.source.path === p)!,
      );
      expect(resources!.spec.destination).toEqual(operator!.spec.destination);
      expect(resources!.spec.source.targetRevision).toBe(operator!.spec.source.targetRevision);
      // Under an app of apps the operator (and its CRDs) comes first.
      expect(waveOf(operator!)).toBeLessThan(waveOf(resources!));
      const exclude = resources!.spec.source.directory?.exclude;
      if (env === 'dev') expect(exclude).toBeUndefined();
      else {
        // The development tokens stay out of staging and production.
        expect(exclude).toBe('secrets.yaml');
        expect(readManifests(join(DISTRIBUTOR, exclude!)).map((o) => o.kind)).toEqual(['Secret']);
      }
    },
  );

  it('the project admits every Application: its repository, its destination, the cluster-scoped kinds', () => {
    for (const app of ENVIRONMENTS.flatMap(applications)) {
      expect(app.spec.project).toBe(project.metadata.name);
      expect(project.spec.sourceRepos).toContain(app.spec.source.repoURL);
      expect(project.spec.destinations).toContainEqual(app.spec.destination);
    }
    const allowed = project.spec.clusterResourceWhitelist.map((r) => r.kind);
    // The chart's cluster-scoped objects: its CRDs and whatever cluster-wide kinds its templates make.
    const templateKinds = readdirSync(join(CHART, 'templates'))
      .filter((f) => f.endsWith('.yaml'))
      .flatMap((f) =>
        [...readFileSync(join(CHART, 'templates', f), 'utf8').matchAll(/^kind: (\w+)/gm)].map((m) => m[1]!),
      );
    const clusterScoped = templateKinds.filter((k) => k.startsWith('Cluster'));
    expect(clusterScoped.length).toBeGreaterThan(0);
    for (const k of [...clusterScoped, 'CustomResourceDefinition', 'Namespace'])
      expect(allowed, k).toContain(k);
  });

  it('every Connector syncs in an earlier wave than the Pipelines and Workflows that reference it', () => {
    const objects = readdirSync(DISTRIBUTOR)
      .filter((f) => f.endsWith('.yaml'))
      .flatMap((f) => readManifests(join(DISTRIBUTOR, f)));
    const byName = (kind: string, name: string) =>
      objects.find((o) => o.kind === kind && o.metadata.name === name);
    let checked = 0;
    for (const o of objects) {
      if (!isKind(o.kind) || o.kind === 'Connector') continue;
      const r = o as AnyResource;
      for (const ref of HANDLERS[r.kind].connectorRefs(r)) {
        const target = byName('Connector', ref.connector);
        expect(target, `${r.kind} ${r.metadata.name} -> Connector ${ref.connector}`).toBeDefined();
        expect(waveOf(target!), `${r.kind} ${r.metadata.name} ${ref.field}`).toBeLessThan(waveOf(r));
        checked++;
      }
    }
    for (const o of objects.filter((x) => isKind(x.kind))) {
      const r = o as AnyResource;
      for (const ref of HANDLERS[r.kind].secretRefs(r)) {
        const secret = byName('Secret', ref.secret);
        if (secret)
          expect(waveOf(secret), `${r.kind} ${r.metadata.name} ${ref.field}`).toBeLessThan(waveOf(r));
      }
    }
    expect(checked).toBeGreaterThan(5);
    expect(objects.filter((o) => o.kind === 'Connector').every((c) => waveOf(c) === 1)).toBe(true);
  });
});
