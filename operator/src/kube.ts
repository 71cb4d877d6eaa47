// A small JSON client for the Kubernetes API over a kubeconfig's credentials (KubeAccess: auth,
// TLS): one keep-alive agent, explicit patch content types (server-side apply, merge patch), paged
// lists and watches, plain objects in and out, errors that carry the apiserver's status message, and
// an observer told of every request (the operator counts them).
import { Agent, type RequestOptions, request } from 'node:https';

export const FIELD_MANAGER = 'o2c-operator';

/**
 * What the client needs of a kubeconfig: the server and how to authenticate. client-node's
 * KubeConfig has both (tests hand it in); the operator process uses its own loader (kubeconfig.ts),
 * which spares it loading client-node's generated API models.
 */
export interface KubeAccess {
  getCurrentCluster(): { server: string } | null;
  applyToHTTPSOptions(opts: RequestOptions): Promise<void>;
}

/** One watch event as the API server streams it. */
export interface WatchEvent<T> {
  type: 'ADDED' | 'MODIFIED' | 'DELETED' | 'BOOKMARK' | 'ERROR';
  object: T;
}

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
/** 410 Gone: a watch's resourceVersion is older than the server keeps. */
export const isGone = (err: unknown): boolean => err instanceof KubeApiError && err.status === 410;

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

/** Told of every answered request: its verb, the kind's plural (or `other`) and the HTTP status (0: no answer). */
export type RequestObserver = (verb: string, resource: string, status: number) => void;

/**
 * How long the kubeconfig's credentials are reused before they are asked again: a projected
 * service-account token is rotated long before it expires, so a few seconds is plenty fresh.
 */
export const CREDENTIALS_REUSE_MS = 10_000;

/**
 * The resource a request path names, with its subresource: `deployments`, `pipelines/status`,
 * `namespaces` for /api/v1/namespaces/x, `other` for anything else (/metrics, discovery).
 */
export function resourceOfPath(path: string): string {
  const segments = path.split('?')[0]!.split('/').filter(Boolean);
  // /api/v1/... or /apis/<group>/<version>/...
  const rest = segments[0] === 'api' ? segments.slice(2) : segments[0] === 'apis' ? segments.slice(3) : [];
  const [plural, name, subresource] = rest[0] === 'namespaces' && rest.length >= 3 ? rest.slice(2) : rest;
  if (!plural) return 'other';
  return name && subresource ? `${plural}/${subresource}` : plural;
}

export class KubeClient {
  private agent: Agent | undefined;
  /** Watches hold their connection for minutes: they get their own agent, outside maxSockets. */
  private watchAgent: Agent | undefined;
  private readonly watches = new Set<{ destroy(): void }>();
  private base: URL;
  private credentials: { at: number; options: Promise<RequestOptions> } | undefined;

  constructor(
    readonly kubeConfig: KubeAccess,
    private readonly maxSockets = 32,
    private readonly onRequest?: RequestObserver,
  ) {
    const cluster = kubeConfig.getCurrentCluster();
    if (!cluster) throw new Error('kubeconfig has no current cluster');
    this.base = new URL(cluster.server);
  }

  /**
   * TLS material goes to the one keep-alive agent, once; a request carries only the agent and the
   * authorization headers. Decoding the kubeconfig's certificates for every request, and handing
   * them to the agent again (which folds them into its pool key), was work per call for nothing.
   */
  private options(): Promise<RequestOptions> {
    const now = Date.now();
    if (!this.credentials || now - this.credentials.at > CREDENTIALS_REUSE_MS) {
      const options = this.readCredentials();
      this.credentials = { at: now, options };
      options.catch(() => {
        if (this.credentials?.options === options) this.credentials = undefined;
      });
    }
    return this.credentials.options;
  }

  private async readCredentials(): Promise<RequestOptions> {
    const opts: RequestOptions = {};
    await this.kubeConfig.applyToHTTPSOptions(opts);
    const tls = {
      ca: opts.ca,
      cert: opts.cert,
      key: opts.key,
      rejectUnauthorized: opts.rejectUnauthorized,
      ...(opts.servername ? { servername: opts.servername } : {}),
    };
    this.agent ??= new Agent({ keepAlive: true, maxSockets: this.maxSockets, ...tls });
    this.watchAgent ??= new Agent({ keepAlive: false, ...tls });
    return {
      agent: this.agent,
      ...(opts.headers ? { headers: opts.headers } : {}),
      ...(opts.auth ? { auth: opts.auth } : {}),
    };
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
            this.onRequest?.(method, resourceOfPath(path), res.statusCode ?? 0);
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
      req.on('error', (err) => {
        this.onRequest?.(method, resourceOfPath(path), 0);
        reject(err);
      });
      if (payload) req.write(payload);
      req.end();
    });
  }

  /**
   * Every object of a kind, in pages of `limit`: a cache filling up from 1,000 Deployments never
   * holds one response of several megabytes and its parse at once.
   */
  async listAll<T extends KubeObject>(
    kind: string,
    labelSelector?: string,
    limit = 250,
  ): Promise<{ items: T[]; resourceVersion: string | undefined }> {
    const items: T[] = [];
    let next: string | undefined;
    let resourceVersion: string | undefined;
    do {
      const q = new URLSearchParams({ limit: String(limit) });
      if (labelSelector) q.set('labelSelector', labelSelector);
      if (next) q.set('continue', next);
      const page = await this.request<KubeList<T>>('GET', `${resourcePath(kind)}?${q}`);
      for (const item of page.items) items.push(item);
      resourceVersion = page.metadata.resourceVersion;
      next = page.metadata.continue || undefined;
    } while (next);
    return { items, resourceVersion };
  }

  /**
   * Watches a kind across namespaces from `resourceVersion`, one callback per event (bookmarks
   * included). Resolves when the server ends the watch (after `timeoutSeconds`) or `stop` is called;
   * rejects on a refused watch or an ERROR event (410 Gone: the version is too old, list again).
   */
  async watch<T extends KubeObject>(
    kind: string,
    resourceVersion: string | undefined,
    labelSelector: string | undefined,
    onEvent: (event: WatchEvent<T>) => void,
    options: { timeoutSeconds?: number; signal?: AbortSignal } = {},
  ): Promise<void> {
    const timeoutSeconds = options.timeoutSeconds ?? 300;
    const base = await this.options();
    const q = new URLSearchParams({
      watch: '1',
      allowWatchBookmarks: 'true',
      timeoutSeconds: String(timeoutSeconds),
    });
    if (resourceVersion) q.set('resourceVersion', resourceVersion);
    if (labelSelector) q.set('labelSelector', labelSelector);
    const path = `${resourcePath(kind)}?${q}`;
    const url = new URL(path, this.base);
    return new Promise<void>((resolve, reject) => {
      let settled = false;
      const finish = (err?: Error) => {
        if (settled) return;
        settled = true;
        this.watches.delete(handle);
        if (err) reject(err);
        else resolve();
      };
      const req = request(
        url,
        {
          ...base,
          agent: this.watchAgent,
          method: 'GET',
          headers: { ...(base.headers ?? {}), accept: 'application/json' },
        },
        (res) => {
          const status = res.statusCode ?? 0;
          this.onRequest?.('WATCH', resourceOfPath(path), status);
          if (status !== 200) {
            const chunks: Buffer[] = [];
            res.on('data', (c: Buffer) => chunks.push(c));
            res.on('end', () => {
              const text = Buffer.concat(chunks).toString('utf8');
              let message = text;
              try {
                message = (JSON.parse(text) as { message?: string }).message ?? text;
              } catch {}
              finish(new KubeApiError(status, 'WatchRefused', `WATCH ${url.pathname}: ${status} ${message}`));
            });
            return;
          }
          res.setEncoding('utf8');
          let buffered = '';
          res.on('data', (chunk: string) => {
            buffered += chunk;
            let nl = buffered.indexOf('\n');
            while (nl >= 0) {
              const line = buffered.slice(0, nl);
              buffered = buffered.slice(nl + 1);
              nl = buffered.indexOf('\n');
              if (!line.trim()) continue;
              const event = JSON.parse(line) as WatchEvent<T>;
              if (event.type === 'ERROR') {
                const st = event.object as unknown as { code?: number; reason?: string; message?: string };
                req.destroy();
                finish(
                  new KubeApiError(
                    st.code ?? 500,
                    st.reason ?? 'Unknown',
                    `WATCH ${url.pathname}: ${st.message}`,
                  ),
                );
                return;
              }
              onEvent(event);
            }
          });
          res.on('end', () => finish());
          res.on('error', (err) => finish(err));
          res.on('close', () => finish());
        },
      );
      const handle = { destroy: () => req.destroy() };
      this.watches.add(handle);
      if (options.signal?.aborted) req.destroy();
      options.signal?.addEventListener('abort', () => req.destroy(), { once: true });
      // No byte for longer than the server's own timeout plus a margin: the connection is gone.
      req.setTimeout((timeoutSeconds + 30) * 1000, () =>
        req.destroy(new Error(`WATCH ${url.pathname}: no data for ${timeoutSeconds + 30} s`)),
      );
      req.on('error', (err) => finish(err));
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

  /** Ends the watches in flight (their promises resolve) and closes the connections. */
  close(): void {
    for (const w of [...this.watches]) w.destroy();
    this.agent?.destroy();
    this.watchAgent?.destroy();
  }
}
