// Leader election on a coordination.k8s.io/v1 Lease, with the timings of client-go's defaults scaled
// by configuration: acquire when the lease is free or expired, renew every retry period, give up
// leadership when renewal has failed for longer than the renew deadline, release on shutdown.
import { randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import { isConflict, type KubeClient, type KubeObject } from '../kube.js';

export interface LeaseTimings {
  leaseDurationMs: number;
  renewDeadlineMs: number;
  retryPeriodMs: number;
}

export const DEFAULT_LEASE_TIMINGS: LeaseTimings = {
  leaseDurationMs: 15_000,
  renewDeadlineMs: 10_000,
  retryPeriodMs: 2_000,
};

export interface LeaseSpec {
  holderIdentity?: string | null;
  leaseDurationSeconds?: number;
  acquireTime?: string;
  renewTime?: string;
  leaseTransitions?: number;
}

interface Lease extends KubeObject {
  spec?: LeaseSpec;
}

/**
 * A candidate's identity: one per process, as client-go's `<hostname>_<uuid>`. A container that
 * kubelet restarts keeps its pod name, but it is a new process that holds nothing: with the pod name
 * alone it would renew its dead predecessor's Lease as its own. Pod names never contain `_`.
 */
export const candidateIdentity = (podName: string, uuid: string = randomUUID()): string =>
  `${podName}_${uuid}`;

/** The pod part of an identity (the whole identity when it has no process part). */
export const podOfIdentity = (identity: string): string => identity.split('_')[0] ?? identity;

export type LeaseAction = 'create' | 'renew' | 'acquire' | 'wait';

/**
 * What a candidate does with the Lease it read. Its own identity renews; a free (released) Lease is
 * taken; a foreign one only after it expired. A candidate that started after the holder's last
 * renewal has never seen that holder alive (typically: the holder's own container, restarted after a
 * crash); it waits one retry period past expiry, the longest a candidate that was standing by and
 * watching waits to notice, so the standby takes over and the newcomer stands by.
 */
export function shouldAcquire(
  lease: LeaseSpec | undefined,
  identity: string,
  now: number,
  startedAt: number,
  timings: LeaseTimings,
): LeaseAction {
  if (!lease) return 'create';
  const holder = lease.holderIdentity ?? '';
  if (holder === identity) return 'renew';
  if (!holder) return 'acquire';
  const renewed = lease.renewTime ? Date.parse(lease.renewTime) : 0;
  const durationMs = (lease.leaseDurationSeconds ?? timings.leaseDurationMs / 1000) * 1000;
  const newcomer = startedAt > renewed;
  return now > renewed + durationMs + (newcomer ? timings.retryPeriodMs : 0) ? 'acquire' : 'wait';
}

const microTime = (ms: number): string => new Date(ms).toISOString().replace('Z', '000Z');

export interface LeaderCallbacks {
  onStartedLeading(): void | Promise<void>;
  onStoppedLeading(): void | Promise<void>;
}

export class LeaderElector {
  private leading = false;
  private stopped = false;
  private lastRenewed = 0;
  private startedAt = 0;
  private tickStarted = 0;
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly client: KubeClient,
    private readonly namespace: string,
    private readonly name: string,
    readonly identity: string,
    private readonly callbacks: LeaderCallbacks,
    private readonly log: Logger,
    private readonly timings: LeaseTimings = DEFAULT_LEASE_TIMINGS,
    private readonly now: () => number = Date.now,
  ) {}

  get isLeader(): boolean {
    return this.leading;
  }

  start(): void {
    this.stopped = false;
    this.startedAt = this.now();
    void this.tick();
  }

  /** At a fixed rate, so a standby looks at least once in every retry period. */
  private schedule(): void {
    if (this.stopped) return;
    const wait = Math.max(0, this.tickStarted + this.timings.retryPeriodMs - this.now());
    this.timer = setTimeout(() => void this.tick(), wait);
  }

  private async tick(): Promise<void> {
    this.tickStarted = this.now();
    try {
      const ok = await this.tryAcquireOrRenew();
      if (ok) {
        this.lastRenewed = this.now();
        if (!this.leading && !this.stopped) {
          this.leading = true;
          this.log.info(
            { lease: `${this.namespace}/${this.name}`, identity: this.identity },
            'became leader',
          );
          await this.callbacks.onStartedLeading();
        }
      } else if (this.leading) {
        await this.lose('lease taken by another holder');
      }
    } catch (err) {
      this.log.warn({ err }, 'lease renewal failed');
      if (this.leading && this.now() - this.lastRenewed > this.timings.renewDeadlineMs) {
        await this.lose('renew deadline exceeded');
      }
    }
    this.schedule();
  }

  private async lose(why: string): Promise<void> {
    this.leading = false;
    this.log.warn({ identity: this.identity, why }, 'lost leadership');
    await this.callbacks.onStoppedLeading();
  }

  private async tryAcquireOrRenew(): Promise<boolean> {
    const now = this.now();
    const durationSeconds = Math.max(1, Math.round(this.timings.leaseDurationMs / 1000));
    const lease = await this.client.get<Lease>('Lease', this.namespace, this.name);
    const action = shouldAcquire(
      lease && (lease.spec ?? {}),
      this.identity,
      now,
      this.startedAt,
      this.timings,
    );
    if (action === 'wait') return false;
    if (!lease) {
      try {
        await this.client.create<Lease>({
          apiVersion: 'coordination.k8s.io/v1',
          kind: 'Lease',
          metadata: { name: this.name, namespace: this.namespace },
          spec: {
            holderIdentity: this.identity,
            leaseDurationSeconds: durationSeconds,
            acquireTime: microTime(now),
            renewTime: microTime(now),
            leaseTransitions: 0,
          },
        });
        return true;
      } catch (err) {
        if (isConflict(err)) return false;
        throw err;
      }
    }
    const spec = lease.spec ?? {};
    const holder = spec.holderIdentity ?? '';
    const takeover = action === 'acquire';
    try {
      await this.client.replace<Lease>({
        ...lease,
        apiVersion: 'coordination.k8s.io/v1',
        kind: 'Lease',
        spec: {
          ...spec,
          holderIdentity: this.identity,
          leaseDurationSeconds: durationSeconds,
          renewTime: microTime(now),
          ...(takeover
            ? {
                acquireTime: microTime(now),
                leaseTransitions: (spec.leaseTransitions ?? 0) + (holder ? 1 : 0),
              }
            : {}),
        },
      });
      return true;
    } catch (err) {
      if (isConflict(err)) return false;
      throw err;
    }
  }

  /** Stops renewing and, when leading, releases the lease so a standby takes over at once. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    if (!this.leading) return;
    this.leading = false;
    try {
      const lease = await this.client.get<Lease>('Lease', this.namespace, this.name);
      if (lease?.spec?.holderIdentity === this.identity) {
        await this.client.replace<Lease>({
          ...lease,
          apiVersion: 'coordination.k8s.io/v1',
          kind: 'Lease',
          spec: { ...lease.spec, holderIdentity: null, leaseDurationSeconds: 1 },
        });
      }
    } catch (err) {
      this.log.warn({ err }, 'could not release the lease');
    }
  }
}
