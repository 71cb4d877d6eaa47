// GitOps needs the operator to leave what Git declares alone: on a real API server, Connectors,
// Pipelines and Workflows go through several generations (spec changes, child deletions, an operator
// restart) and the operator's field manager owns only status and its one finalizer, spec stays
// byte for byte what was applied, and re-applying the manifests (what Argo CD does on sync and
// self-heal) changes nothing.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { KubeClient, KubeObject } from '../../operator/src/kube.js';
import { FIELD_MANAGER, resourcePath } from '../../operator/src/kube.js';
import type { Operator } from '../../operator/src/operator.js';
import { type AnyResource, FINALIZER, isKind } from '../../operator/src/resources.js';
import { type ControlPlane, startControlPlane } from '../envtest/controlplane.js';
import {
  condition,
  createNamespace,
  EXAMPLES,
  eventually,
  markDeploymentAvailable,
  readManifests,
  startOperator,
} from './operator-harness.js';

/** The field manager Argo CD's application controller applies with (sync option ServerSideApply=true). */
const ARGOCD_MANAGER = 'argocd-controller';
const ns = `nodrift-${Date.now().toString(36)}`;

interface ManagedFieldsEntry {
  manager: string;
  operation: string;
  subresource?: string;
  fieldsV1?: Record<string, unknown>;
}
type Live = AnyResource & { metadata: AnyResource['metadata'] & { managedFields?: ManagedFieldsEntry[] } };

let plane: ControlPlane;
let operator: Operator;
let client: KubeClient;
/** Desired state as Git holds it, per "Kind/name". */
const desired = new Map<string, KubeObject>();
/** spec as the API server returned it from our last apply (with the schema's defaults filled in). */
const appliedSpec = new Map<string, string>();
let applies = 0;

const key = (o: KubeObject) => `${o.kind}/${o.metadata.name}`;
const manifests = () =>
  ['secrets.yaml', 'connectors.yaml', 'pipelines.yaml', 'workflow.yaml'].flatMap((f) =>
    readManifests(`${EXAMPLES}/${f}`),
  );
const resources = () => [...desired.values()].filter((o) => isKind(o.kind));
const getLive = (o: KubeObject) => client.get<Live>(o.kind!, ns, o.metadata.name);

/** Server-side apply as Argo CD's controller does it, remembering the spec the server answered with. */
async function applyAsArgoCd(o: KubeObject): Promise<void> {
  const obj = { ...o, metadata: { ...o.metadata, namespace: ns } };
  const result = await client.apply<KubeObject>(obj, ARGOCD_MANAGER);
  desired.set(key(o), o);
  if (isKind(o.kind)) appliedSpec.set(key(o), JSON.stringify(result.spec));
  applies++;
}

/** Plays the Deployment controller until every resource is Ready for its current generation. */
async function settle(): Promise<void> {
  await eventually(
    'every resource Ready for its current generation',
    async () => {
      let all = true;
      for (const o of resources()) {
        const r = await getLive(o);
        const child = `o2c-${o.kind!.toLowerCase()}-${o.metadata.name}`;
        if (await client.get('Deployment', ns, child)) await markDeploymentAvailable(client, ns, child);
        const ready = condition(r, 'Ready');
        if (!(ready?.status === 'True' && ready.observedGeneration === r?.metadata.generation)) all = false;
      }
      return all;
    },
    60_000,
  );
}

function change(kind: string, name: string, edit: (spec: Record<string, unknown>) => void): KubeObject {
  const o = structuredClone(desired.get(`${kind}/${name}`)!);
  edit(o.spec as Record<string, unknown>);
  return o;
}

beforeAll(async () => {
  plane = await startControlPlane();
  operator = startOperator(plane, 'op-nodrift');
  client = operator.client;
  await createNamespace(client, ns);
  await operator.start();
  await operator.waitUntilLeading();
  for (const o of manifests()) await applyAsArgoCd(o);
  await settle();

  // Generations 2 and 3 of one resource of each kind, as two Git commits would bring them.
  for (const step of [1, 2]) {
    await applyAsArgoCd(
      change('Connector', 'erp', (s) => {
        (s.limits as Record<string, unknown>).requestsPerSecond = 500 - 100 * step;
      }),
    );
    await applyAsArgoCd(
      change('Pipeline', 'items-to-crm', (s) => {
        s.concurrency = 16 - 4 * step;
      }),
    );
    await applyAsArgoCd(
      change('Workflow', 'distributor', (s) => {
        const steps = s.steps as Array<{ name: string; retry?: { maxAttempts: number } }>;
        steps.find((x) => x.name === 'tax')!.retry = { maxAttempts: 5 + step };
      }),
    );
    await settle();
  }

  // Children deleted behind the operator's back are put back; then the operator restarts and
  // reconciles everything once more from scratch.
  for (const child of ['o2c-connector-wms', 'o2c-pipeline-prices-to-crm', 'o2c-workflow-distributor'])
    await client.delete('Deployment', ns, child);
  await settle();
  await operator.stop();
  operator = startOperator(plane, 'op-nodrift-2');
  await operator.start();
  await operator.waitUntilLeading();
  await eventually(
    'the restarted operator reconciled every resource',
    async () => operator.reconciles >= resources().length,
  );
  await settle();
}, 240_000);

afterAll(async () => {
  // The operator's finalizer removes each resource's queues from the broker.
  if (client) {
    for (const o of resources()) await client.delete(o.kind!, ns, o.metadata.name).catch(() => {});
    await eventually(
      'resources deleted',
      async () => (await Promise.all(resources().map(getLive))).every((r) => r === undefined),
      60_000,
    ).catch(() => {});
  }
  await operator?.stop();
  await plane?.stop();
});

describe('the operator never writes spec', () => {
  it('went through several generations: spec changes reached status', async () => {
    for (const [k, generation] of [
      ['Connector/erp', 3],
      ['Pipeline/items-to-crm', 3],
      ['Workflow/distributor', 3],
      ['Connector/wms', 1],
      ['Pipeline/prices-to-crm', 1],
    ] as const) {
      const r = await getLive(desired.get(k)!);
      expect(r?.metadata.generation, k).toBe(generation);
      expect(r?.status?.observedGeneration, k).toBe(generation);
    }
    expect(applies).toBeGreaterThan(resources().length);
  });

  it('leaves every spec byte for byte as it was applied, so its generation moved only with Git', async () => {
    expect(new Set(resources().map((o) => o.kind))).toEqual(new Set(['Connector', 'Pipeline', 'Workflow']));
    for (const o of resources()) {
      const r = await getLive(o);
      expect(JSON.stringify(r?.spec), key(o)).toBe(appliedSpec.get(key(o)));
    }
  });

  it.each(['Connector', 'Pipeline', 'Workflow'])(
    'gives the o2c-operator field manager of every %s only status and its finalizer',
    async (kind) => {
      const own = resources().filter((o) => o.kind === kind);
      expect(own.length).toBeGreaterThan(0);
      for (const o of own) {
        const entries = (await getLive(o))?.metadata.managedFields ?? [];
        const managers = new Set(entries.map((e) => e.manager));
        // Nobody else writes these objects: no manager named after a client library's user agent.
        expect([...managers].sort(), key(o)).toEqual([ARGOCD_MANAGER, FIELD_MANAGER].sort());
        for (const e of entries.filter((x) => x.manager === FIELD_MANAGER)) {
          if (e.subresource === 'status') {
            expect(Object.keys(e.fieldsV1 ?? {}), key(o)).toEqual(['f:status']);
          } else {
            // The finalizer that removes the resource's broker queues on deletion, nothing else.
            expect(e.fieldsV1, key(o)).toEqual({
              'f:metadata': { 'f:finalizers': { '.': {}, [`v:"${FINALIZER}"`]: {} } },
            });
          }
        }
        for (const e of entries.filter((x) => x.manager === ARGOCD_MANAGER)) {
          expect(e.subresource, key(o)).toBeUndefined();
          expect(Object.keys(e.fieldsV1 ?? {}), key(o)).not.toContain('f:status');
          expect(Object.keys((e.fieldsV1?.['f:metadata'] as object) ?? {}), key(o)).not.toContain(
            'f:finalizers',
          );
        }
      }
    },
  );

  it('shows no diff when the manifests are applied again (an Argo CD sync or self-heal, server-side)', async () => {
    for (const o of [...desired.values()]) {
      const live = await getLive(o);
      const predicted = await client.request<Live>(
        'PATCH',
        `${resourcePath(o.kind!, ns, o.metadata.name)}?fieldManager=${ARGOCD_MANAGER}&force=true&dryRun=All`,
        { ...o, metadata: { ...o.metadata, namespace: ns } },
        'application/apply-patch+yaml',
      );
      // Argo CD's server-side diff compares exactly this prediction with the live object.
      expect(predicted.metadata.resourceVersion, key(o)).toBe(live?.metadata.resourceVersion);
      expect(predicted.metadata.generation, key(o)).toBe(live?.metadata.generation);
      expect(JSON.stringify(predicted.spec ?? (predicted as KubeObject).stringData), key(o)).toBe(
        JSON.stringify(live?.spec ?? (live as KubeObject | undefined)?.stringData),
      );
      // The operator's finalizer survives the apply: the manifests do not list it, and fields
      // another manager owns are not Argo CD's to remove.
      expect(predicted.metadata.finalizers, key(o)).toEqual(live?.metadata.finalizers);
      if (isKind(o.kind)) expect(live?.metadata.finalizers, key(o)).toEqual([FINALIZER]);
    }
  });
});
