// A small JSON client for the Kubernetes API on top of @kubernetes/client-node's KubeConfig (auth,
// TLS): one keep-alive agent, explicit patch content types (server-side apply, merge patch), plain
// objects in and out, and errors that carry the apiserver's status message.
import { Agent, type RequestOptions, request } from 'node:https';
import type { KubeConfig } from '@kubernetes/client-node';

export const FIELD_MANAGER = 'o2c-operator';

export interface ObjectMeta {
  name: string;
  namespace?: string;
  uid?: string;
  resourceVersion?: string;
  generation?: number;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  finalizers?: string[];
  deletionTimestamp?: string;
  creationTimestamp?: string;
  ownerReferences?: OwnerReference[];
}

export interface OwnerReference {
  apiVersion: string;
  kind: string;
  name: string;
  uid: string;
  controller?: boolean;
  blockOwnerDeletion?: boolean;
}

export interface KubeObject {
  apiVersion?: string;
  kind?: string;
  metadata: ObjectMeta;
  [field: string]: unknown;
}

export interface KubeList<T> {
  metadata: { resourceVersion?: string; continue?: string };
  items: T[];
}

export class KubeApiError extends Error {
  constructor(
    readonly status: number,
    readonly reason: string,
    message: string,
    readonly details?: unknown,
  ) {
    super(message);
    this.name = 'KubeApiError';
  }
}

export const isNotFound = (err: unknown): boolean => err instanceof KubeApiError && err.status === 404;
export const isConflict = (err: unknown): boolean => err instanceof KubeApiError && err.status === 409;

/** Plural resource and API prefix for every kind the operator touches. */
const RESOURCES: Record<string, { prefix: string; plural: string }> = {
  ConfigMap: { prefix: '/api/v1', plural: 'configmaps' },
  Secret: { prefix: '/api/v1', plural: 'secrets' },
  Service: { prefix: '/api/v1', plural: 'services' },
  PersistentVolumeClaim: { prefix: '/api/v1', plural: 'persistentvolumeclaims' },
  Pod: { prefix: '/api/v1', plural: 'pods' },
  ResourceQuota: { prefix: '/api/v1', plural: 'resourcequotas' },
  Event: { prefix: '/api/v1', plural: 'events' },
  Namespace: { prefix: '/api/v1', plural: 'namespaces' },
  Deployment: { prefix: '/apis/apps/v1', plural: 'deployments' },
  PodDisruptionBudget: { prefix: '/apis/policy/v1', plural: 'poddisruptionbudgets' },
  Lease: { prefix: '/apis/coordination.k8s.io/v1', plural: 'leases' },
  ClusterRole: { prefix: '/apis/rbac.authorization.k8s.io/v1', plural: 'clusterroles' },
  ClusterRoleBinding: { prefix: '/apis/rbac.authorization.k8s.io/v1', plural: 'clusterrolebindings' },
  CustomResourceDefinition: { prefix: '/apis/apiextensions.k8s.io/v1', plural: 'customresourcedefinitions' },
  Connector: { prefix: '/apis/o2c.dev/v1alpha1', plural: 'connectors' },
  Pipeline: { prefix: '/apis/o2c.dev/v1alpha1', plural: 'pipelines' },
  Workflow: { prefix: '/apis/o2c.dev/v1alpha1', plural: 'workflows' },
};

/** /apis/apps/v1/namespaces/default/deployments/x; namespace undefined = all namespaces. */
export function resourcePath(kind: string, namespace?: string, name?: string, subresource?: string): string {
  const r = RESOURCES[kind];
  if (!r) throw new Error(`unknown kind ${kind}`);
  const clusterScoped = [
    'Namespace',
    'CustomResourceDefinition',
    'ClusterRole',
    'ClusterRoleBinding',
  ].includes(kind);
  const ns = clusterScoped || namespace === undefined ? '' : `/namespaces/${namespace}`;
  return `${r.prefix}${ns}/${r.plural}${name ? `/${name}` : ''}${subresource ? `/${subresource}` : ''}`;
}

export class KubeClient {
  private agent: Agent | undefined;
  private base: URL;

  constructor(
    readonly kubeConfig: KubeConfig,
    private readonly maxSockets = 32,
  ) {
    const cluster = kubeConfig.getCurrentCluster();
    if (!cluster) throw new Error('kubeconfig has no current cluster');
    this.base = new URL(cluster.server);
  }

  private async options(): Promise<RequestOptions> {
    const opts: RequestOptions = {};
    await this.kubeConfig.applyToHTTPSOptions(opts);
    if (!this.agent) {
      this.agent = new Agent({
        keepAlive: true,
        maxSockets: this.maxSockets,
        ca: opts.ca,
        cert: opts.cert,
        key: opts.key,
        rejectUnauthorized: opts.rejectUnauthorized,
      });
    }
    return { ...opts, agent: this.agent };
  }

  async request<T>(
    method: string,
    path: string,
    body?: unknown,
    contentType = 'application/json',
    accept = 'application/json',
  ): Promise<T> {
    const base = await this.options();
    const url = new URL(path, this.base);
    const payload = body === undefined ? undefined : JSON.stringify(body);
    return new Promise<T>((resolve, reject) => {
      const req = request(
        url,
        {
          ...base,
          method,
          headers: {
            ...(base.headers ?? {}),
            accept,
            ...(payload ? { 'content-type': contentType, 'content-length': Buffer.byteLength(payload) } : {}),
          },
          timeout: 30_000,
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () => {
            const text = Buffer.concat(chunks).toString('utf8');
            let parsed: unknown;
            try {
              parsed = text ? JSON.parse(text) : undefined;
            } catch {
              parsed = text;
            }
            const status = res.statusCode ?? 0;
            if (status >= 200 && status < 300) return resolve(parsed as T);
            const s = (parsed ?? {}) as { reason?: string; message?: string; details?: unknown };
            reject(
              new KubeApiError(
                status,
                s.reason ?? 'Unknown',
                `${method} ${url.pathname}: ${status} ${s.message ?? text}`,
                s.details,
              ),
            );
          });
          res.on('error', reject);
        },
      );
      req.on('timeout', () => req.destroy(new Error(`${method} ${url.pathname}: timed out`)));
      req.on('error', reject);
      if (payload) req.write(payload);
      req.end();
    });
  }

  async get<T extends KubeObject>(kind: string, namespace: string, name: string): Promise<T | undefined> {
    try {
      return await this.request<T>('GET', resourcePath(kind, namespace, name));
    } catch (err) {
      if (isNotFound(err)) return undefined;
      throw err;
    }
  }

  list<T extends KubeObject>(kind: string, namespace?: string, labelSelector?: string): Promise<KubeList<T>> {
    const q = labelSelector ? `?labelSelector=${encodeURIComponent(labelSelector)}` : '';
    return this.request<KubeList<T>>('GET', `${resourcePath(kind, namespace)}${q}`);
  }

  create<T extends KubeObject>(obj: T): Promise<T> {
    return this.request<T>('POST', resourcePath(obj.kind!, obj.metadata.namespace), obj);
  }

  /** Server-side apply with field manager o2c-operator; conflicts are forced (the operator owns these fields). */
  apply<T extends KubeObject>(obj: T, fieldManager = FIELD_MANAGER): Promise<T> {
    const path = resourcePath(obj.kind!, obj.metadata.namespace, obj.metadata.name);
    return this.request<T>(
      'PATCH',
      `${path}?fieldManager=${fieldManager}&force=true`,
      obj,
      'application/apply-patch+yaml',
    );
  }

  mergePatch<T extends KubeObject>(
    kind: string,
    namespace: string,
    name: string,
    patch: unknown,
    subresource?: string,
  ): Promise<T> {
    return this.request<T>(
      'PATCH',
      `${resourcePath(kind, namespace, name, subresource)}?fieldManager=${FIELD_MANAGER}`,
      patch,
      'application/merge-patch+json',
    );
  }

  replace<T extends KubeObject>(obj: T, subresource?: string): Promise<T> {
    return this.request<T>(
      'PUT',
      resourcePath(obj.kind!, obj.metadata.namespace, obj.metadata.name, subresource),
      obj,
    );
  }

  /** Deletes; a 404 counts as success. */
  async delete(kind: string, namespace: string, name: string): Promise<void> {
    try {
      await this.request('DELETE', resourcePath(kind, namespace, name), { propagationPolicy: 'Background' });
    } catch (err) {
      if (!isNotFound(err)) throw err;
    }
  }

  close(): void {
    this.agent?.destroy();
  }
}
