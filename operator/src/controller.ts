// The one reconcile loop for all three kinds: fetch from the cache, finalizer and deletion, gather
// references (Secrets by name, never a cluster-wide Secret cache), render and apply children,
// declare the broker topology, derive conditions from what is actually there, write status only when
// it changed, and emit a Warning Event per new failure — a refused write included.
import { createHash } from 'node:crypto';
import type { Logger } from 'pino';
import { systemOffers } from '../../crds/operations.js';
import type { ResourceBroker } from './broker.js';
import type { KubeClient, KubeObject } from './kube.js';
import { connectorHandler } from './reconcile/connector.js';
import type { KindHandler } from './reconcile/kind.js';
import { pipelineHandler } from './reconcile/pipeline.js';
import { workflowHandler } from './reconcile/workflow.js';
import { renderConfigMap } from './render/configmap.js';
import { CONNECTIONS_SUFFIX, renderConnectionsSecret } from './render/connections-secret.js';
import { DATA_SUFFIX, renderDataVolumeClaim } from './render/data-volume-claim.js';
import { desiredReplicas, renderDeployment } from './render/deployment.js';
import { childName, childNameOf, type roleOf, selectorString } from './render/names.js';
import { renderPodDisruptionBudget } from './render/pdb.js';
import { renderRuntimeConfig } from './render/runtime-config.js';
import { renderService } from './render/service.js';
import {
  type AnyResource,
  type Connector,
  FINALIZER,
  isKind,
  type Kind,
  type O2cStatus,
  parseKey,
  resourceKey,
} from './resources.js';
import type { ResilientInformer } from './runtime/informer.js';
import {
  type ComputedCondition,
  conditionsDiffer,
  mergeConditions,
  newFailures,
} from './status/condition.js';
import { credentialsResolved, type SecretReferenceCheck } from './status/credentials-resolved.js';
import {
  DEPLOYMENT_PROGRESS_REASONS,
  type DeploymentState,
  deploymentAvailable,
} from './status/deployment-available.js';
import { ready } from './status/ready.js';
import { failedConditions, reconciled } from './status/reconciled.js';
import { type ConnectorReferenceCheck, referencesResolved } from './status/references-resolved.js';
import { specValid } from './status/spec-valid.js';
import { topologyReady } from './status/topology-ready.js';

export const HANDLERS: Record<Kind, KindHandler> = {
  Connector: connectorHandler as KindHandler,
  Pipeline: pipelineHandler as KindHandler,
  Workflow: workflowHandler as KindHandler,
};

/** Children kept in label-selected caches. Connection Secrets are not watched (no list/watch on Secrets). */
export const CHILD_KINDS = [
  'ConfigMap',
  'Deployment',
  'Service',
  'PodDisruptionBudget',
  'PersistentVolumeClaim',
] as const;
export type ChildKind = (typeof CHILD_KINDS)[number];

export interface Secret extends KubeObject {
  data?: Record<string, string>;
  stringData?: Record<string, string>;
}

export interface Caches {
  resources: Record<Kind, ResilientInformer<AnyResource>>;
  children: Record<ChildKind, ResilientInformer<KubeObject>>;
}

/** Where runtime pods get the broker URL: a Secret named in the operator's configuration, or a URL (dev, tests). */
export type BrokerSource =
  | { secret: { namespace: string; name: string; key: string }; url?: undefined }
  | { url: string; secret?: undefined };

export interface ControllerSettings {
  image: string;
  broker: BrokerSource;
  identity: string;
}

/** While a referenced Secret is missing, look again this often (Secrets are read by name, not watched). */
export const SECRET_RECHECK_MS = 5_000;
const BROKER_SECRET_TTL_MS = 1_000;

/** Told what the controller does with the broker (metrics). */
export interface ControllerObserver {
  /** A topology declared (with how long it took) or known declared this resync period. */
  topology?(outcome: 'declared' | 'unchanged', seconds?: number): void;
}

export interface ReconcileResult {
  requeueAfterMs?: number;
}

/** Retry with backoff: thrown after status has been written. */
export class RetryableError extends Error {}

const secretKeys = (secret: Secret | undefined): string[] | undefined =>
  secret ? [...Object.keys(secret.data ?? {}), ...Object.keys(secret.stringData ?? {})] : undefined;

/** A Secret's value under `key`, decoded and trimmed; '' when the key is absent. */
export const secretValue = (secret: Secret | undefined, key: string): string => {
  const encoded = secret?.data?.[key];
  return encoded ? Buffer.from(encoded, 'base64').toString('utf8').trim() : '';
};

/** Whether `actual` holds every value of `desired` (extra fields, such as server defaults, allowed). */
function contains(actual: unknown, desired: unknown): boolean {
  if (Array.isArray(desired)) {
    return (
      Array.isArray(actual) &&
      actual.length === desired.length &&
      desired.every((d, i) => contains(actual[i], d))
    );
  }
  if (desired !== null && typeof desired === 'object') {
    if (actual === null || typeof actual !== 'object') return false;
    return Object.entries(desired).every(([k, v]) => contains((actual as Record<string, unknown>)[k], v));
  }
  return actual === desired;
}

/** What an apply would set is already there: labels, owner references and the content. */
function alreadyApplied(existing: KubeObject, desired: KubeObject): boolean {
  const { metadata, apiVersion: _a, kind: _k, ...content } = desired;
  return (
    contains(existing.metadata.labels ?? {}, metadata.labels ?? {}) &&
    contains(existing.metadata.ownerReferences ?? [], metadata.ownerReferences ?? []) &&
    contains(existing.metadata.annotations ?? {}, metadata.annotations ?? {}) &&
    contains(existing, content)
  );
}

/** What the controller remembers of its last apply of a child. */
interface AppliedChild {
  /** Hash of the desired object applied. */
  hash: string;
  /** The resourceVersion that apply produced (or found, when there was nothing to apply). */
  resourceVersion: string;
  /** The resync period it was applied or checked in (unwatched children are checked once per period). */
  epoch: number;
}

/** What the controller remembers of its last declaration of a resource's broker topology. */
interface DeclaredTopology {
  hash: string;
  queues: string[];
  epoch: number;
}

export class Controller {
  private brokerRead:
    | { at: number; result: Promise<{ url?: string; check?: SecretReferenceCheck }> }
    | undefined;
  /** child key -> what we last applied and the resourceVersion it produced; lets a no-op reconcile skip writes. */
  private readonly applied = new Map<string, AppliedChild>();
  /** resource key -> the topology declared for it; a reconcile within the same resync period skips the broker. */
  private readonly declared = new Map<string, DeclaredTopology>();
  /**
   * resource key -> the object our last write of it (finalizer, status) returned, and the version it
   * was made from: a reconcile that runs before the cache has caught up works on what we wrote.
   */
  private readonly written = new Map<string, { older: string[]; object: AnyResource }>();
  /** Bumped on every resync: what was declared or applied in an older period is checked again. */
  private epoch = 0;
  writes = 0;

  constructor(
    private readonly client: KubeClient,
    private readonly broker: ResourceBroker,
    private readonly caches: Caches,
    private readonly settings: ControllerSettings,
    private readonly log: Logger,
    private readonly now: () => Date = () => new Date(),
    private readonly observer: ControllerObserver = {},
  ) {}

  async reconcile(key: string): Promise<ReconcileResult> {
    const { kind, namespace, name } = parseKey(key);
    const cached = this.freshest(key, this.caches.resources[kind].get(namespace, name));
    if (!cached) {
      this.forgetChildren(kind, namespace, name);
      this.declared.delete(key);
      this.written.delete(key);
      return {};
    }
    const handler = HANDLERS[kind];
    const log = this.log.child({ kind, namespace, name });
    try {
      if (cached.metadata.deletionTimestamp) return await this.finalize(cached, handler, log);
      return await this.reconcileResource(cached, handler, log);
    } catch (err) {
      // Errors after which status was written are RetryableErrors; anything else reaches it here.
      if (!(err instanceof RetryableError)) await this.reportFailure(cached, err as Error, log);
      throw err;
    }
  }

  private async reconcileResource(
    cached: AnyResource,
    handler: KindHandler,
    log: Logger,
  ): Promise<ReconcileResult> {
    const { kind } = cached;
    const namespace = cached.metadata.namespace!;
    const name = cached.metadata.name;
    const key = resourceKey(kind, namespace, name);
    let r = cached;
    // First sight: nothing of ours exists yet for it, so unwatched children are applied without a read.
    const firstSight = !(r.metadata.finalizers ?? []).includes(FINALIZER);
    if (firstSight) {
      r = await this.client.mergePatch<AnyResource>(kind, namespace, name, {
        metadata: {
          finalizers: [...(r.metadata.finalizers ?? []), FINALIZER],
          resourceVersion: r.metadata.resourceVersion,
        },
      });
      this.remember(key, cached, r);
      this.writes++;
    }

    // References and credentials, from the caches.
    const refChecks: ConnectorReferenceCheck[] = handler.connectorRefs(r).map((ref) => {
      const target = this.caches.resources.Connector.get(namespace, ref.connector) as Connector | undefined;
      const system = target?.spec.system;
      return {
        ...ref,
        system,
        offered: system !== undefined && (!ref.operation || systemOffers(system, ref.operation)),
      };
    });
    const refs = referencesResolved(namespace, refChecks);
    const valid = specValid(handler.validate?.(r) ?? []);
    const secretRefs = handler.secretRefs(r);
    // Each referenced Secret is read once (several fields may name the same one), all at a time.
    const names = [...new Set(secretRefs.map((s) => s.secret))];
    const secrets = new Map(
      await Promise.all(
        names.map(async (n) => [n, await this.client.get<Secret>('Secret', namespace, n)] as const),
      ),
    );
    const secretChecks: SecretReferenceCheck[] = secretRefs.map((s) => ({
      ...s,
      keys: secretKeys(secrets.get(s.secret)),
    }));
    const broker = await this.brokerUrl();
    if (broker.check) secretChecks.push(broker.check);
    const creds = credentialsResolved(namespace, secretChecks);

    // Broker topology.
    const purposes = handler.purposes(r);
    let topology: ComputedCondition;
    let brokerError: unknown;
    let applyError: Error | undefined;
    try {
      const queues = await this.declareTopology(key, namespace, kind, name, purposes);
      topology = topologyReady({ queues });
    } catch (err) {
      this.declared.delete(key);
      brokerError = err;
      topology = topologyReady({ error: (err as Error).message });
    }

    // Children, only when the pods could start; otherwise the running version stays as it is.
    let deployment = this.caches.children.Deployment.get(namespace, childName(r)) as
      | DeploymentState
      | undefined;
    let configHash = r.status?.configHash;
    let blockedBy: string | undefined;
    let applied: ComputedCondition;
    if (valid.status === 'True' && refs.status === 'True' && creds.status === 'True' && broker.url) {
      try {
        const children = this.renderChildren(r, handler, refChecks, secretRefs, purposes, broker.url);
        configHash = children.configHash;
        for (const child of children.desired) {
          const result = await this.applyChild(child, firstSight);
          if (child.kind === 'Deployment') deployment = result as unknown as DeploymentState;
        }
        if (!children.desired.some((c) => c.kind === 'PodDisruptionBudget'))
          await this.pruneChild('PodDisruptionBudget', namespace, childName(r));
        applied = reconciled({ applied: children.desired.map((c) => `${c.kind} ${c.metadata.name}`) });
      } catch (err) {
        // The API server refused a child (or it could not be rendered): say so on the resource, then
        // retry with backoff.
        applyError = err as Error;
        applied = reconciled({ error: applyError.message });
      }
    } else {
      blockedBy = [valid, refs, creds].find((c) => c.status !== 'True')?.message;
      applied = reconciled({ blocked: true });
    }

    const replicas = desiredReplicas(r);
    const computed = [
      valid,
      refs,
      creds,
      topology,
      applied,
      deploymentAvailable(deployment, replicas, blockedBy),
    ];
    const conditions = mergeConditions(
      r.status?.conditions,
      [ready(computed), ...computed],
      r.metadata.generation,
      this.now(),
    );
    const status: O2cStatus = {
      ...r.status,
      observedGeneration: r.metadata.generation,
      conditions,
      replicas: (deployment as DeploymentState | undefined)?.status?.availableReplicas ?? 0,
      selector: selectorString(r),
      ...(configHash ? { configHash } : {}),
      ...(handler.extraStatus?.(r) ?? {}),
    };
    if (this.statusChanged(r.status, status)) {
      const written = await this.client.mergePatch<AnyResource>(kind, namespace, name, { status }, 'status');
      this.remember(key, r, written);
      this.writes++;
      for (const failure of newFailures(
        r.status?.conditions,
        conditions.slice(1),
        DEPLOYMENT_PROGRESS_REASONS,
      )) {
        await this.warn(r, failure.reason, failure.message, log);
      }
      log.debug({ ready: conditions[0]?.status, reason: conditions[0]?.reason }, 'status written');
    }
    if (brokerError) throw new RetryableError(`broker: ${(brokerError as Error).message}`);
    if (applyError) throw new RetryableError(applyError.message);
    // Secrets are read by name, not watched: a missing one is looked for again soon.
    if (creds.status !== 'True') return { requeueAfterMs: SECRET_RECHECK_MS };
    return {};
  }

  private renderChildren(
    r: AnyResource,
    handler: KindHandler,
    refChecks: readonly ConnectorReferenceCheck[],
    secretRefs: ReturnType<KindHandler['secretRefs']>,
    purposes: ReturnType<KindHandler['purposes']>,
    brokerUrl: string,
  ): { desired: KubeObject[]; configHash: string } {
    const { namespace } = r.metadata;
    const connectors: Record<string, Connector['spec']> = {};
    for (const c of refChecks) {
      const target = this.caches.resources.Connector.get(namespace!, c.connector) as Connector | undefined;
      if (target) connectors[c.connector] = target.spec;
    }
    const secretNames = [...new Set(secretRefs.map((s) => s.secret))];
    const config = renderRuntimeConfig(r, { connectors, purposes, secretNames });
    const { configMap, hash } = renderConfigMap(r, config);
    const connections = renderConnectionsSecret(r, { brokerUrl });
    const ports = handler.ports(r);
    const desired: KubeObject[] = [configMap, connections.secret];
    const claim = renderDataVolumeClaim(r);
    if (claim) desired.push(claim);
    desired.push(
      renderDeployment(r, {
        image: this.settings.image,
        configHash: hash,
        connectionsHash: connections.hash,
        secretNames,
        ports,
      }),
      renderService(r, ports),
    );
    const pdb = renderPodDisruptionBudget(r);
    if (pdb) desired.push(pdb);
    return { desired, configHash: hash };
  }

  /** The broker URL for the pods, and the check CredentialsResolved reports on it. */
  private async brokerUrl(): Promise<{ url?: string; check?: SecretReferenceCheck }> {
    const source = this.settings.broker;
    if (!source.secret) return { url: source.url };
    // One read serves the reconciles of the next second (a burst after start-up or a resync).
    const now = this.now().getTime();
    if (!this.brokerRead || now - this.brokerRead.at > BROKER_SECRET_TTL_MS) {
      this.brokerRead = { at: now, result: this.readBrokerSecret(source.secret) };
      this.brokerRead.result.catch(() => {
        this.brokerRead = undefined;
      });
    }
    return this.brokerRead.result;
  }

  private async readBrokerSecret(ref: {
    namespace: string;
    name: string;
    key: string;
  }): Promise<{ url?: string; check?: SecretReferenceCheck }> {
    const { namespace, name, key } = ref;
    const secret = await this.client.get<Secret>('Secret', namespace, name);
    const url = secretValue(secret, key);
    // An empty value counts as a missing key: the pods could not connect with it.
    const keys = secretKeys(secret)?.filter((k) => k !== key || url !== '');
    const check = { field: 'the operator setting O2C_BROKER_SECRET', secret: name, namespace, key, keys };
    return { url: url || undefined, check };
  }

  /** A reconcile that failed before writing status: Reconciled=False with the error, and a Warning. */
  private async reportFailure(r: AnyResource, err: Error, log: Logger): Promise<void> {
    const conditions = failedConditions(r.status?.conditions, err.message, r.metadata.generation, this.now());
    if (!conditionsDiffer(r.status?.conditions, conditions)) return;
    try {
      const written = await this.client.mergePatch<AnyResource>(
        r.kind,
        r.metadata.namespace!,
        r.metadata.name,
        { status: { observedGeneration: r.metadata.generation, conditions } },
        'status',
      );
      this.remember(resourceKey(r.kind, r.metadata.namespace!, r.metadata.name), r, written);
      this.writes++;
      for (const failure of newFailures(r.status?.conditions, conditions.slice(1))) {
        await this.warn(r, failure.reason, failure.message, log);
      }
    } catch (statusErr) {
      log.warn({ err: statusErr, cause: err.message }, 'could not write the failure into status');
    }
  }

  private statusChanged(old: O2cStatus | undefined, next: O2cStatus): boolean {
    if (!old) return true;
    if (conditionsDiffer(old.conditions, next.conditions ?? [])) return true;
    const { conditions: _a, ...o } = old;
    const { conditions: _b, ...n } = next;
    return JSON.stringify(o, Object.keys(o).sort()) !== JSON.stringify(n, Object.keys(n).sort());
  }

  private childKey(kind: string, namespace: string, name: string): string {
    return `${kind}/${namespace}/${name}`;
  }

  /**
   * Server-side apply of one child, unless it is known to hold what would be applied: the same
   * desired hash as our last apply, and the cache shows the version that apply produced. Unwatched children
   * (connection Secrets) are read by name once per resync period and applied only when they differ;
   * on a resource's first sight they cannot exist yet, so they are applied without the read.
   */
  private async applyChild(child: KubeObject, firstSight = false): Promise<KubeObject> {
    const { namespace, name } = child.metadata;
    const key = this.childKey(child.kind!, namespace!, name);
    const hash = createHash('sha256').update(JSON.stringify(child)).digest('hex');
    const last = this.applied.get(key);
    const cache = this.caches.children[child.kind as ChildKind] as ResilientInformer<KubeObject> | undefined;
    const remember = (resourceVersion: string) =>
      this.applied.set(key, { hash, resourceVersion, epoch: this.epoch });
    if (!cache) {
      if (last && last.hash === hash && last.epoch === this.epoch) return child;
      const existing = firstSight
        ? undefined
        : await this.client.get<KubeObject>(child.kind!, namespace!, name);
      if (existing && alreadyApplied(existing, child)) {
        remember(existing.metadata.resourceVersion!);
        return existing;
      }
      const result = await this.client.apply(child);
      this.writes++;
      this.log.debug({ child: key, existed: existing !== undefined }, 'applied');
      remember(result.metadata.resourceVersion!);
      return result;
    }
    const cached = cache.get(namespace!, name);
    // Unchanged desired state and nobody touched the object since our apply: nothing to write. An
    // object the cache does not show is applied, even right after our own apply: the cache may lag,
    // but the object may as well have been deleted while that apply was in flight.
    if (cached && last && last.hash === hash && last.resourceVersion === cached.metadata.resourceVersion)
      return cached;
    // A restarted operator has no memory: what the cache already holds needs no apply either (an
    // apply of an unchanged PersistentVolumeClaim still bumps its resourceVersion once).
    if (cached && !last && alreadyApplied(cached, child)) {
      remember(cached.metadata.resourceVersion!);
      return cached;
    }
    const result = await this.client.apply(child);
    if (result.metadata.resourceVersion !== cached?.metadata.resourceVersion) {
      this.writes++;
      this.log.debug({ child: key }, 'applied');
    }
    remember(result.metadata.resourceVersion!);
    return result;
  }

  /** Declares the resource's queues unless this resync period already declared the same ones. */
  private async declareTopology(
    key: string,
    namespace: string,
    kind: Kind,
    name: string,
    purposes: ReturnType<KindHandler['purposes']>,
  ): Promise<string[]> {
    const hash = JSON.stringify(purposes);
    const known = this.declared.get(key);
    if (known && known.hash === hash && known.epoch === this.epoch) {
      this.observer.topology?.('unchanged');
      return known.queues;
    }
    const started = performance.now();
    const queues = await this.broker.declareResourceTopology(namespace, kind, name, purposes);
    this.observer.topology?.('declared', (performance.now() - started) / 1000);
    this.declared.set(key, { hash, queues, epoch: this.epoch });
    return queues;
  }

  /**
   * A new resync period: every queue is declared again and every unwatched child read again on the
   * next reconcile (a queue deleted on the broker, a connection Secret edited by hand).
   */
  beginResyncPeriod(): void {
    this.epoch++;
  }

  /**
   * The resourceVersion our own last write of an object produced (a finalizer or status for a
   * resource, an apply for a child): a watch event showing it is an echo of that write.
   */
  ownVersion(kind: string, namespace: string, name: string): string | undefined {
    return isKind(kind)
      ? this.written.get(resourceKey(kind, namespace, name))?.object.metadata.resourceVersion
      : this.applied.get(this.childKey(kind, namespace, name))?.resourceVersion;
  }

  /** The cache now shows this version of a resource: our copy of an older write can go. */
  cacheCaughtUp(kind: Kind, namespace: string, name: string, resourceVersion: string | undefined): void {
    const key = resourceKey(kind, namespace, name);
    if (this.written.get(key)?.object.metadata.resourceVersion === resourceVersion) this.written.delete(key);
  }

  /** A child was deleted (by hand, by the garbage collector): the next reconcile applies it again. */
  childDeleted(kind: string, namespace: string, name: string): void {
    this.applied.delete(this.childKey(kind, namespace, name));
  }

  private remember(key: string, before: AnyResource, object: AnyResource): void {
    // Writes in a row (finalizer, then status): every version before the last is stale.
    const previous = this.written.get(key);
    const chained = previous?.object.metadata.resourceVersion === before.metadata.resourceVersion;
    const older = [...(chained ? previous!.older : []), before.metadata.resourceVersion ?? ''];
    this.written.set(key, { older, object });
  }

  /**
   * The cached resource, or what our last write of it returned while the cache still shows the
   * version that write was made from (the watch event is on its way).
   */
  private freshest(key: string, cached: AnyResource | undefined): AnyResource | undefined {
    const w = this.written.get(key);
    if (!w || !cached) return cached;
    if (w.older.includes(cached.metadata.resourceVersion ?? '')) return w.object;
    this.written.delete(key);
    return cached;
  }

  private async pruneChild(kind: ChildKind, namespace: string, name: string): Promise<void> {
    if (!this.caches.children[kind].get(namespace, name)) return;
    await this.client.delete(kind, namespace, name);
    this.childDeleted(kind, namespace, name);
    this.writes++;
  }

  private forgetChildren(kind: Kind, namespace: string, name: string): void {
    const role = kind.toLowerCase() as ReturnType<typeof roleOf>;
    for (const k of [...CHILD_KINDS, 'Secret']) {
      for (const suffix of [undefined, CONNECTIONS_SUFFIX, DATA_SUFFIX]) {
        this.applied.delete(this.childKey(k, namespace, childNameOf(role, name, suffix)));
      }
    }
  }

  private async finalize(r: AnyResource, handler: KindHandler, log: Logger): Promise<ReconcileResult> {
    const finalizers = r.metadata.finalizers ?? [];
    if (!finalizers.includes(FINALIZER)) return {};
    const { namespace, name } = r.metadata;
    if ((r.spec.deletionPolicy ?? 'delete') === 'delete') {
      await this.broker.deleteResourceTopology(namespace!, r.kind, name, handler.allPurposes);
      log.info('broker queues deleted');
    } else {
      log.info('deletionPolicy retain: broker queues kept');
    }
    await this.client.mergePatch(r.kind, namespace!, name, {
      metadata: {
        finalizers: finalizers.filter((f) => f !== FINALIZER),
        resourceVersion: r.metadata.resourceVersion,
      },
    });
    this.writes++;
    return {};
  }

  private async warn(r: AnyResource, reason: string, message: string, log: Logger): Promise<void> {
    const now = this.now().toISOString();
    try {
      await this.client.create({
        apiVersion: 'v1',
        kind: 'Event',
        metadata: {
          generateName: `${r.metadata.name}.`,
          namespace: r.metadata.namespace,
        } as unknown as KubeObject['metadata'],
        involvedObject: {
          apiVersion: 'o2c.dev/v1alpha1',
          kind: r.kind,
          name: r.metadata.name,
          namespace: r.metadata.namespace,
          uid: r.metadata.uid,
        },
        type: 'Warning',
        reason,
        message,
        firstTimestamp: now,
        lastTimestamp: now,
        count: 1,
        source: { component: 'o2c-operator' },
        reportingComponent: 'o2c-operator',
        reportingInstance: this.settings.identity,
      });
    } catch (err) {
      log.warn({ err }, 'could not record event');
    }
  }
}
