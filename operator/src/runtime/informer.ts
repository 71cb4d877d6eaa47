// An informer that keeps running: client-node's ListWatch relists by itself on 410 Gone, but stops on
// any other error (connection refused, 5xx, a failed list). This wrapper restarts it with capped
// exponential backoff and reports whether it is synced (first list done and watching).
import { type KubernetesObject, ListWatch, Watch } from '@kubernetes/client-node';
import type { Logger } from 'pino';
import { type KubeClient, type KubeObject, resourcePath } from '../kube.js';
import { type BackoffPolicy, backoffDelay } from './queue.js';

export type InformerEvent = 'add' | 'update' | 'delete';
export type InformerHandler<T extends KubeObject> = (event: InformerEvent, obj: T) => void;

export class ResilientInformer<T extends KubeObject> {
  // ListWatch is typed with client-node's Date-typed metadata; the objects are raw JSON (strings).
  private readonly listWatch: ListWatch<KubernetesObject>;
  private failures = 0;
  private stopped = false;
  private restartTimer: NodeJS.Timeout | undefined;
  private syncedOnce = false;
  private readonly syncWaiters: Array<() => void> = [];
  restarts = 0;

  constructor(
    client: KubeClient,
    readonly kind: string,
    private readonly log: Logger,
    handler: InformerHandler<T>,
    labelSelector: string | undefined,
    private readonly backoff: BackoffPolicy = { baseMs: 500, maxMs: 30_000 },
  ) {
    const path = resourcePath(kind);
    const list = async () => {
      const result = await client.list<T>(kind, undefined, labelSelector);
      return {
        apiVersion: 'v1',
        kind: `${kind}List`,
        metadata: result.metadata,
        items: result.items as unknown as KubernetesObject[],
      };
    };
    this.listWatch = new ListWatch<KubernetesObject>(
      path,
      new Watch(client.kubeConfig),
      list,
      false,
      labelSelector,
    );
    // managedFields is most of an object's size and the operator never reads it: drop it from the cache.
    const slim = (o: KubernetesObject): T => {
      if (o.metadata?.managedFields) delete o.metadata.managedFields;
      return o as unknown as T;
    };
    this.listWatch.on('add', (o) => handler('add', slim(o)));
    this.listWatch.on('update', (o) => handler('update', slim(o)));
    this.listWatch.on('delete', (o) => handler('delete', slim(o)));
    this.listWatch.on('error', (err) => this.restartLater(err));
  }

  get synced(): boolean {
    return this.syncedOnce;
  }

  async start(): Promise<void> {
    this.stopped = false;
    try {
      await this.listWatch.start();
      this.failures = 0;
      if (!this.syncedOnce && !this.stopped) {
        this.syncedOnce = true;
        for (const wake of this.syncWaiters.splice(0)) wake();
      }
    } catch (err) {
      this.restartLater(err);
    }
  }

  /** Resolves once the first list has been delivered. */
  waitForSync(): Promise<void> {
    if (this.syncedOnce) return Promise.resolve();
    return new Promise((resolve) => this.syncWaiters.push(resolve));
  }

  private restartLater(err: unknown): void {
    if (this.stopped || this.restartTimer) return;
    this.failures++;
    const delay = backoffDelay(this.failures, this.backoff);
    this.log.warn({ err, kind: this.kind, delayMs: delay }, 'informer stopped; restarting');
    this.restartTimer = setTimeout(() => {
      this.restartTimer = undefined;
      this.restarts++;
      void this.start();
    }, delay);
  }

  get(namespace: string, name: string): T | undefined {
    return this.listWatch.get(name, namespace) as unknown as T | undefined;
  }

  list(namespace?: string): ReadonlyArray<T> {
    return this.listWatch.list(namespace) as unknown as ReadonlyArray<T>;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.restartTimer) clearTimeout(this.restartTimer);
    this.restartTimer = undefined;
    await this.listWatch.stop();
  }
}
