// Leader election on a coordination.k8s.io/v1 Lease, with the timings of client-go's defaults scaled
// by configuration: acquire when the lease is free or expired, renew every retry period, give up
// leadership when renewal has failed for longer than the renew deadline, release on shutdown.
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

interface Lease extends KubeObject {
  spec?: {
    holderIdentity?: string | null;
    leaseDurationSeconds?: number;
    acquireTime?: string;
    renewTime?: string;
    leaseTransitions?: number;
  };
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
    void this.tick();
  }

  private schedule(): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => void this.tick(), this.timings.retryPeriodMs);
  }

  private async tick(): Promise<void> {
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
    const renewed = spec.renewTime ? Date.parse(spec.renewTime) : 0;
    const expired = renewed + (spec.leaseDurationSeconds ?? durationSeconds) * 1000 < now;
    if (holder && holder !== this.identity && !expired) return false;
    const takeover = holder !== this.identity;
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
