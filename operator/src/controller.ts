// The one reconcile loop for all three kinds: fetch from the cache, finalizer and deletion, gather
// references, render and apply children, declare the broker topology, derive conditions from what
// is actually there, write status only when it changed, and emit a Warning Event per new failure.
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
import { desiredReplicas, renderDeployment } from './render/deployment.js';
import { childName, selectorString } from './render/names.js';
import { renderPodDisruptionBudget } from './render/pdb.js';
import { renderRuntimeConfig } from './render/runtime-config.js';
import { renderService } from './render/service.js';
import {
  type AnyResource,
  type Connector,
  FINALIZER,
  type Kind,
  type O2cStatus,
  parseKey,
} from './resources.js';
import type { ResilientInformer } from './runtime/informer.js';
import {
  type ComputedCondition,
  conditionsDiffer,
  mergeConditions,
  newFailures,
} from './status/condition.js';
import { credentialsResolved } from './status/credentials-resolved.js';
import { type DeploymentState, deploymentAvailable } from './status/deployment-available.js';
import { ready } from './status/ready.js';
import { type ConnectorReferenceCheck, referencesResolved } from './status/references-resolved.js';
import { specValid } from './status/spec-valid.js';
import { topologyReady } from './status/topology-ready.js';

export const HANDLERS: Record<Kind, KindHandler> = {
  Connector: connectorHandler as KindHandler,
  Pipeline: pipelineHandler as KindHandler,
  Workflow: workflowHandler as KindHandler,
};

export const CHILD_KINDS = ['ConfigMap', 'Deployment', 'Service', 'PodDisruptionBudget'] as const;
export type ChildKind = (typeof CHILD_KINDS)[number];

export interface Secret extends KubeObject {
  data?: Record<string, string>;
  stringData?: Record<string, string>;
}

export interface Caches {
  resources: Record<Kind, ResilientInformer<AnyResource>>;
  secrets: ResilientInformer<Secret>;
  children: Record<ChildKind, ResilientInformer<KubeObject>>;
}

export interface ControllerSettings {
  image: string;
  brokerSecretName?: string;
  identity: string;
}

export interface ReconcileResult {
  requeueAfterMs?: number;
}

/** Retry with backoff: thrown after status has been written. */
export class RetryableError extends Error {}

export class Controller {
  /** child key -> what we last applied and the resourceVersion it produced; lets a no-op reconcile skip writes. */
  private readonly applied = new Map<string, { hash: string; resourceVersion: string }>();
  writes = 0;

  constructor(
    private readonly client: KubeClient,
    private readonly broker: ResourceBroker,
    private readonly caches: Caches,
    private readonly settings: ControllerSettings,
    private readonly log: Logger,
    private readonly now: () => Date = () => new Date(),
  ) {}

  async reconcile(key: string): Promise<ReconcileResult> {
    const { kind, namespace, name } = parseKey(key);
    const cached = this.caches.resources[kind].get(namespace, name);
    if (!cached) {
      this.forgetChildren(kind, namespace, name);
      return {};
    }
    const handler = HANDLERS[kind];
    const log = this.log.child({ kind, namespace, name });
    if (cached.metadata.deletionTimestamp) return this.finalize(cached, handler, log);

    let r = cached;
    if (!(r.metadata.finalizers ?? []).includes(FINALIZER)) {
      r = await this.client.mergePatch<AnyResource>(kind, namespace, name, {
        metadata: {
          finalizers: [...(r.metadata.finalizers ?? []), FINALIZER],
          resourceVersion: r.metadata.resourceVersion,
        },
      });
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
    const creds = credentialsResolved(
      namespace,
      secretRefs.map((s) => {
        const secret = this.caches.secrets.get(namespace, s.secret);
        return {
          ...s,
          keys: secret
            ? [...Object.keys(secret.data ?? {}), ...Object.keys(secret.stringData ?? {})]
            : undefined,
        };
      }),
    );

    // Broker topology.
    const purposes = handler.purposes(r);
    let topology: ComputedCondition;
    let brokerError: unknown;
    try {
      const queues = await this.broker.declareResourceTopology(namespace, kind, name, purposes);
      topology = topologyReady({ queues });
    } catch (err) {
      brokerError = err;
      topology = topologyReady({ error: (err as Error).message });
    }

    // Children, only when the pods could start; otherwise the running version stays as it is.
    let deployment = this.caches.children.Deployment.get(namespace, childName(r)) as
      | DeploymentState
      | undefined;
    let configHash = r.status?.configHash;
    let blockedBy: string | undefined;
    if (valid.status === 'True' && refs.status === 'True' && creds.status === 'True') {
      const connectors: Record<string, Connector['spec']> = {};
      for (const c of refChecks) {
        const target = this.caches.resources.Connector.get(namespace, c.connector) as Connector | undefined;
        if (target) connectors[c.connector] = target.spec;
      }
      const secretNames = [...new Set(secretRefs.map((s) => s.secret))];
      const config = renderRuntimeConfig(r, {
        connectors,
        purposes: purposes.map((p) => p.purpose),
        secretNames,
        brokerSecretName: this.settings.brokerSecretName,
      });
      const { configMap, hash } = renderConfigMap(r, config);
      configHash = hash;
      const ports = handler.ports(r);
      const desired: KubeObject[] = [
        configMap,
        renderDeployment(r, {
          image: this.settings.image,
          configHash: hash,
          secretNames,
          brokerSecretName: this.settings.brokerSecretName,
          ports,
        }),
        renderService(r, ports),
      ];
      const pdb = renderPodDisruptionBudget(r);
      if (pdb) desired.push(pdb);
      for (const child of desired) {
        const applied = await this.applyChild(child);
        if (child.kind === 'Deployment') deployment = applied as unknown as DeploymentState;
      }
      if (!pdb) await this.pruneChild('PodDisruptionBudget', namespace, childName(r));
    } else {
      blockedBy = [valid, refs, creds].find((c) => c.status !== 'True')?.message;
    }

    const replicas = desiredReplicas(r);
    const computed = [valid, refs, creds, topology, deploymentAvailable(deployment, replicas, blockedBy)];
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
      await this.client.mergePatch(kind, namespace, name, { status }, 'status');
      this.writes++;
      for (const failure of newFailures(r.status?.conditions, conditions.slice(1))) {
        await this.warn(r, failure.reason, failure.message, log);
      }
      log.debug({ ready: conditions[0]?.status, reason: conditions[0]?.reason }, 'status written');
    }
    if (brokerError) throw new RetryableError(`broker: ${(brokerError as Error).message}`);
    return {};
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

  private async applyChild(child: KubeObject): Promise<KubeObject> {
    const { namespace, name } = child.metadata;
    const key = this.childKey(child.kind!, namespace!, name);
    const hash = createHash('sha256').update(JSON.stringify(child)).digest('hex');
    const cached = this.caches.children[child.kind as ChildKind].get(namespace!, name);
    const last = this.applied.get(key);
    // Unchanged desired state and nobody touched the object since our apply: nothing to write.
    if (cached && last && last.hash === hash && last.resourceVersion === cached.metadata.resourceVersion)
      return cached;
    const result = await this.client.apply(child);
    if (result.metadata.resourceVersion !== cached?.metadata.resourceVersion) this.writes++;
    this.applied.set(key, { hash, resourceVersion: result.metadata.resourceVersion! });
    return result;
  }

  private async pruneChild(kind: ChildKind, namespace: string, name: string): Promise<void> {
    if (!this.caches.children[kind].get(namespace, name)) return;
    await this.client.delete(kind, namespace, name);
    this.applied.delete(this.childKey(kind, namespace, name));
    this.writes++;
  }

  private forgetChildren(kind: Kind, namespace: string, name: string): void {
    const child = `o2c-${kind.toLowerCase()}-${name}`;
    for (const k of CHILD_KINDS) this.applied.delete(this.childKey(k, namespace, child));
  }

  private async finalize(r: AnyResource, handler: KindHandler, log: Logger): Promise<ReconcileResult> {
    const finalizers = r.metadata.finalizers ?? [];
    if (!finalizers.includes(FINALIZER)) return {};
    const { namespace, name } = r.metadata;
    if ((r.spec.deletionPolicy ?? 'delete') === 'delete') {
      await this.broker.deleteResourceTopology(namespace!, r.kind, name, [...handler.allPurposes]);
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
