// A work queue in the client-go mould: a key is processed by at most one worker at a time, a key
// added while it is queued is deduplicated, a key added while it is processing runs once more after,
// and failures are retried with capped exponential backoff per key.
import { backoffDelayMs } from '../../../runtime/src/backoff.js';

export interface BackoffPolicy {
  baseMs: number;
  maxMs: number;
}

export type Work = (key: string) => Promise<{ requeueAfterMs?: number } | undefined>;

export interface QueueObserver {
  onDepth?(depth: number): void;
  onResult?(key: string, ok: boolean, durationMs: number, error?: unknown): void;
}

/** The runtime's one backoff formula at the top of its jitter range: like client-go, no jitter per key. */
export function backoffDelay(failures: number, policy: BackoffPolicy): number {
  return backoffDelayMs({ initialMs: policy.baseMs, maxMs: policy.maxMs, multiplier: 2 }, failures, () => 1);
}

export class WorkQueue {
  private readonly order: string[] = [];
  private readonly queued = new Set<string>();
  private readonly processing = new Set<string>();
  private readonly dirty = new Set<string>();
  private readonly failures = new Map<string, number>();
  private readonly timers = new Map<string, { timer: NodeJS.Timeout; due: number }>();
  private readonly waiters: Array<() => void> = [];
  private shuttingDown = false;
  private workers: Promise<void>[] = [];

  constructor(
    private readonly policy: BackoffPolicy = { baseMs: 200, maxMs: 60_000 },
    private readonly observer: QueueObserver = {},
  ) {}

  get depth(): number {
    return this.order.length;
  }

  add(key: string): void {
    if (this.shuttingDown) return;
    if (this.processing.has(key)) {
      this.dirty.add(key);
      return;
    }
    if (this.queued.has(key)) return;
    this.queued.add(key);
    this.order.push(key);
    this.observer.onDepth?.(this.order.length);
    this.waiters.shift()?.();
  }

  /** Adds the key after a delay; of two pending delays for one key the earlier wins. */
  addAfter(key: string, ms: number): void {
    if (this.shuttingDown) return;
    if (ms <= 0) {
      this.add(key);
      return;
    }
    const due = Date.now() + ms;
    const pending = this.timers.get(key);
    if (pending && pending.due <= due) return;
    if (pending) clearTimeout(pending.timer);
    const timer = setTimeout(() => {
      this.timers.delete(key);
      this.add(key);
    }, ms);
    timer.unref();
    this.timers.set(key, { timer, due });
  }

  private async next(): Promise<string | undefined> {
    while (this.order.length === 0) {
      if (this.shuttingDown) return undefined;
      await new Promise<void>((resolve) => this.waiters.push(resolve));
    }
    const key = this.order.shift()!;
    this.queued.delete(key);
    this.observer.onDepth?.(this.order.length);
    return key;
  }

  private async worker(work: Work): Promise<void> {
    for (;;) {
      const key = await this.next();
      if (key === undefined) return;
      this.processing.add(key);
      const started = performance.now();
      try {
        const result = await work(key);
        this.failures.delete(key);
        this.observer.onResult?.(key, true, performance.now() - started);
        if (result?.requeueAfterMs !== undefined) this.addAfter(key, result.requeueAfterMs);
      } catch (err) {
        const failures = (this.failures.get(key) ?? 0) + 1;
        this.failures.set(key, failures);
        this.observer.onResult?.(key, false, performance.now() - started, err);
        this.processing.delete(key);
        this.dirty.delete(key);
        this.addAfter(key, backoffDelay(failures, this.policy));
        continue;
      }
      this.processing.delete(key);
      if (this.dirty.delete(key)) this.add(key);
    }
  }

  /** Starts `concurrency` workers; different keys run in parallel, one key never does. */
  run(work: Work, concurrency: number): void {
    for (let i = 0; i < concurrency; i++) this.workers.push(this.worker(work));
  }

  /** Stops taking new work and waits for the reconciles in flight. */
  async shutdown(): Promise<void> {
    this.shuttingDown = true;
    for (const { timer } of this.timers.values()) clearTimeout(timer);
    this.timers.clear();
    this.order.length = 0;
    this.queued.clear();
    for (const wake of this.waiters.splice(0)) wake();
    await Promise.all(this.workers);
  }
}
