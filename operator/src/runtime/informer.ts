// An informer that keeps running: list (in pages), then watch from the list's resourceVersion, with
// bookmarks; a watch the server ends is resumed from the last version seen, a 410 Gone lists again,
// any other failure (connection refused, 5xx, a failed list) restarts it with capped exponential
// backoff. It reports whether it is synced (first list delivered). The cache holds each object as
// `slim` leaves it: without managedFields and kubectl's last-applied annotation, which are most of an
// object's size and which the operator never reads.
import type { Logger } from 'pino';
import { isGone, type KubeClient, type KubeObject } from '../kube.js';
import { type BackoffPolicy, backoffDelay } from './queue.js';

export type InformerEvent = 'add' | 'update' | 'delete';
export type InformerHandler<T extends KubeObject> = (event: InformerEvent, obj: T) => void;

export const LAST_APPLIED_ANNOTATION = 'kubectl.kubernetes.io/last-applied-configuration';

/** The object as cached: what the operator never reads is dropped (in place: the parse is ours). */
export function slim<T extends KubeObject>(o: T): T {
  const meta = o.metadata as T['metadata'] & { managedFields?: unknown };
  delete meta.managedFields;
  if (meta.annotations && LAST_APPLIED_ANNOTATION in meta.annotations) {
    delete meta.annotations[LAST_APPLIED_ANNOTATION];
  }
  return o;
}

/** Whether an update carries a new version of the object (a relist hands back unchanged ones). */
export const isNewVersion = (cached: KubeObject | undefined, next: KubeObject): boolean =>
  !cached || cached.metadata.resourceVersion !== next.metadata.resourceVersion;

/** A watch lasts this long on the server, spread so the informers do not all come back at once. */
const watchSeconds = () => 240 + Math.floor(Math.random() * 120);

export class ResilientInformer<T extends KubeObject> {
  /** namespace -> name -> object. */
  private readonly objects = new Map<string, Map<string, T>>();
  private resourceVersion: string | undefined;
  private failures = 0;
  private stopped = true;
  private running: Promise<void> | undefined;
  private abort: AbortController | undefined;
  private restartTimer: NodeJS.Timeout | undefined;
  private syncedOnce = false;
  private readonly syncWaiters: Array<() => void> = [];
  restarts = 0;

  constructor(
    private readonly client: KubeClient,
    readonly kind: string,
    private readonly log: Logger,
    private readonly handler: InformerHandler<T>,
    private readonly labelSelector: string | undefined,
    private readonly backoff: BackoffPolicy = { baseMs: 500, maxMs: 30_000 },
  ) {}

  get synced(): boolean {
    return this.syncedOnce;
  }

  /** Starts listing and watching; resolves once the first list is delivered (or failed, to be retried). */
  async start(): Promise<void> {
    this.stopped = false;
    await this.run();
  }

  /** Resolves once the first list has been delivered. */
  waitForSync(): Promise<void> {
    if (this.syncedOnce) return Promise.resolve();
    return new Promise((resolve) => this.syncWaiters.push(resolve));
  }

  /** One list, then watches until a failure or stop; the watching goes on after this resolves. */
  private async run(): Promise<void> {
    const abort = new AbortController();
    this.abort = abort;
    try {
      await this.relist();
    } catch (err) {
      this.restartLater(err);
      return;
    }
    if (this.stopped) return;
    this.failures = 0;
    if (!this.syncedOnce) {
      this.syncedOnce = true;
      for (const wake of this.syncWaiters.splice(0)) wake();
    }
    this.running = this.watchLoop(abort.signal);
  }

  private async relist(): Promise<void> {
    const { items, resourceVersion } = await this.client.listAll<T>(this.kind, this.labelSelector);
    if (this.stopped) return;
    const present = new Set<string>();
    for (const item of items) {
      present.add(`${item.metadata.namespace ?? ''}/${item.metadata.name}`);
      this.upsert(slim(item));
    }
    for (const [ns, byName] of this.objects) {
      for (const [name, obj] of byName) {
        if (present.has(`${ns}/${name}`)) continue;
        byName.delete(name);
        this.handler('delete', obj);
      }
      if (byName.size === 0) this.objects.delete(ns);
    }
    this.resourceVersion = resourceVersion;
  }

  private async watchLoop(signal: AbortSignal): Promise<void> {
    while (!this.stopped && !signal.aborted) {
      try {
        await this.client.watch<T>(
          this.kind,
          this.resourceVersion,
          this.labelSelector,
          (event) => {
            if (event.type === 'BOOKMARK') {
              this.resourceVersion = event.object.metadata.resourceVersion;
              return;
            }
            const obj = slim(event.object);
            if (event.type === 'DELETED') this.remove(obj);
            else this.upsert(obj);
            this.resourceVersion = obj.metadata.resourceVersion;
          },
          { timeoutSeconds: watchSeconds(), signal },
        );
      } catch (err) {
        if (this.stopped || signal.aborted) return;
        if (isGone(err)) {
          // The version is too old to resume from: list again (and tell what changed meanwhile).
          try {
            await this.relist();
            continue;
          } catch (listErr) {
            this.restartLater(listErr);
            return;
          }
        }
        this.restartLater(err);
        return;
      }
    }
  }

  private upsert(obj: T): void {
    const ns = obj.metadata.namespace ?? '';
    let byName = this.objects.get(ns);
    if (!byName) {
      byName = new Map();
      this.objects.set(ns, byName);
    }
    const cached = byName.get(obj.metadata.name);
    if (!isNewVersion(cached, obj)) return;
    byName.set(obj.metadata.name, obj);
    this.handler(cached ? 'update' : 'add', obj);
  }

  private remove(obj: T): void {
    const ns = obj.metadata.namespace ?? '';
    const byName = this.objects.get(ns);
    if (!byName?.delete(obj.metadata.name)) return;
    if (byName.size === 0) this.objects.delete(ns);
    this.handler('delete', obj);
  }

  private restartLater(err: unknown): void {
    if (this.stopped || this.restartTimer) return;
    this.failures++;
    const delay = backoffDelay(this.failures, this.backoff);
    this.log.warn({ err, kind: this.kind, delayMs: delay }, 'informer stopped; restarting');
    this.restartTimer = setTimeout(() => {
      this.restartTimer = undefined;
      this.restarts++;
      void this.run();
    }, delay);
  }

  get(namespace: string, name: string): T | undefined {
    return this.objects.get(namespace)?.get(name);
  }

  list(namespace?: string): ReadonlyArray<T> {
    if (namespace !== undefined) return [...(this.objects.get(namespace)?.values() ?? [])];
    const all: T[] = [];
    for (const byName of this.objects.values()) for (const o of byName.values()) all.push(o);
    return all;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.restartTimer) clearTimeout(this.restartTimer);
    this.restartTimer = undefined;
    this.abort?.abort();
    await this.running?.catch(() => {});
  }
}
