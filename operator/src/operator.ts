// Wires the operator together: health server, Lease leader election, and — while leading — the
// informers, the work queue, the controller and the periodic resync. Events on children and
// Connectors are mapped to the resources that depend on them. No Secret is listed or watched.
import type { Server } from 'node:http';
import type { Logger } from 'pino';
import { AmqpResourceBroker, type ResourceBroker } from './broker.js';
import {
  type BrokerSource,
  type Caches,
  CHILD_KINDS,
  type ChildKind,
  Controller,
  HANDLERS,
} from './controller.js';
import { type KubeAccess, KubeClient, type KubeObject } from './kube.js';
import { MANAGED_BY_SELECTOR } from './render/names.js';
import { type AnyResource, isKind, KINDS, type Kind, resourceKey } from './resources.js';
import { needsReconcile } from './runtime/event-filter.js';
import { startHealthServer } from './runtime/health.js';
import { ResilientInformer } from './runtime/informer.js';
import { DEFAULT_LEASE_TIMINGS, LeaderElector, type LeaseTimings } from './runtime/leader.js';
import { OperatorMetrics } from './runtime/metrics.js';
import { WorkQueue } from './runtime/queue.js';

/** The local broker of `make run-operator` and the tests; main.ts never falls back to it. */
export const DEV_AMQP_URL = 'amqp://guest:guest@127.0.0.1:5672';

export interface OperatorOptions {
  kubeConfig: KubeAccess;
  log: Logger;
  image: string;
  identity: string;
  /** The operator's own broker connection (declares and deletes queues). */
  amqpUrl?: string;
  broker?: ResourceBroker;
  /** Where runtime pods get the broker URL; default the operator's own amqpUrl. */
  brokerSecret?: { namespace: string; name: string; key: string };
  /** Every resource is reconciled again this often (re-declares queues deleted behind our back). */
  resyncMs?: number;
  leaseNamespace: string;
  leaseName?: string;
  leaseTimings?: LeaseTimings;
  /** Port of /healthz, /readyz, /metrics; 0 picks a free one; undefined runs no server. */
  healthPort?: number;
  healthHost?: string;
  workers?: number;
  /** Called when leadership is lost after it was held (main exits so the pod restarts clean). */
  onLostLeadership?: () => void;
}

interface Running {
  caches: Caches;
  queue: WorkQueue;
  controller: Controller;
  informers: ResilientInformer<KubeObject>[];
  resync: NodeJS.Timeout;
}

export const DEFAULT_RESYNC_MS = 300_000;

export class Operator {
  readonly metrics = new OperatorMetrics();
  readonly client: KubeClient;
  private readonly broker: ResourceBroker;
  private readonly elector: LeaderElector;
  private running: Running | undefined;
  private starting: Promise<void> | undefined;
  private server: Server | undefined;
  private stopped = false;
  /** Per key: the fields whose change needs a reconcile (status-only updates are our own writes). */
  private readonly seen = new Map<string, string>();
  reconciles = 0;

  constructor(private readonly options: OperatorOptions) {
    this.client = new KubeClient(options.kubeConfig, undefined, (verb, resource, code) =>
      this.metrics.apiRequests.inc({ verb, resource, code: String(code) }),
    );
    this.broker = options.broker ?? new AmqpResourceBroker(options.amqpUrl ?? DEV_AMQP_URL);
    this.elector = new LeaderElector(
      this.client,
      options.leaseNamespace,
      options.leaseName ?? 'o2c-operator',
      options.identity,
      {
        onStartedLeading: () => {
          this.metrics.leader.set(1);
          this.starting = this.startControllers();
          return this.starting;
        },
        onStoppedLeading: async () => {
          this.metrics.leader.set(0);
          await this.stopControllers();
          options.onLostLeadership?.();
        },
      },
      options.log,
      options.leaseTimings ?? DEFAULT_LEASE_TIMINGS,
    );
  }

  get isLeader(): boolean {
    return this.elector.isLeader;
  }

  get healthPort(): number | undefined {
    const a = this.server?.address();
    return typeof a === 'object' && a ? a.port : undefined;
  }

  /** Writes to the API server by the controller (applies that changed something, status, finalizers). */
  get writes(): number {
    return this.running?.controller.writes ?? 0;
  }

  get queueDepth(): number {
    return this.running?.queue.depth ?? 0;
  }

  async start(): Promise<void> {
    if (this.options.healthPort !== undefined) {
      this.server = await startHealthServer(this.options.healthPort, this.options.healthHost ?? '0.0.0.0', {
        live: () => !this.stopped,
        ready: () => !this.elector.isLeader || (this.running?.informers.every((i) => i.synced) ?? false),
        registry: this.metrics.registry,
      });
    }
    this.elector.start();
  }

  /** Resolves when this replica leads and its caches are synced. */
  async waitUntilLeading(timeoutMs = 60_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!this.running?.informers.every((i) => i.synced)) {
      if (Date.now() > deadline) throw new Error(`${this.options.identity} did not become leader`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  private enqueue(queue: WorkQueue, kind: Kind, obj: KubeObject): void {
    queue.add(resourceKey(kind, obj.metadata.namespace!, obj.metadata.name));
  }

  private async startControllers(): Promise<void> {
    const log = this.options.log;
    const queue = new WorkQueue(
      { baseMs: 200, maxMs: 60_000 },
      {
        onDepth: (d) => this.metrics.queueDepth.set(d),
        onResult: (key, ok, ms, err) => {
          const kind = key.split('/')[0]!;
          this.reconciles++;
          this.metrics.reconciles.inc({ kind, result: ok ? 'success' : 'error' });
          this.metrics.reconcileDuration.observe({ kind }, ms / 1000);
          if (!ok) {
            this.metrics.reconcileErrors.inc({ kind });
            log.warn({ key, err }, 'reconcile failed; retrying with backoff');
          }
        },
      },
    );
    const informers: ResilientInformer<KubeObject>[] = [];
    const make = <T extends KubeObject>(
      kind: string,
      handler: (event: 'add' | 'update' | 'delete', obj: T) => void,
      selector?: string,
    ) => {
      const informer = new ResilientInformer<T>(this.client, kind, log, handler, selector);
      informers.push(informer as unknown as ResilientInformer<KubeObject>);
      return informer;
    };

    // The controller is made below, once the caches exist; events only arrive after start().
    let controller: Controller | undefined;
    const resources = {} as Caches['resources'];
    for (const kind of KINDS) {
      resources[kind] = make<AnyResource>(kind, (event, obj) => {
        const { namespace, name, resourceVersion } = obj.metadata;
        const key = resourceKey(kind, namespace!, name);
        const signature = JSON.stringify([
          obj.metadata.generation,
          obj.metadata.deletionTimestamp,
          obj.metadata.finalizers,
          obj.metadata.uid,
        ]);
        const before = this.seen.get(key);
        if (event === 'delete') this.seen.delete(key);
        else this.seen.set(key, signature);
        const ownVersion = controller?.ownVersion(kind, namespace!, name);
        controller?.cacheCaughtUp(kind, namespace!, name, resourceVersion);
        if (!needsReconcile({ event, resourceVersion, ownVersion, signature: { before, now: signature } }))
          return;
        queue.add(key);
        if (kind === 'Connector') this.enqueueDependentsOfConnector(queue, resources, obj);
      });
    }
    const children = {} as Caches['children'];
    for (const kind of CHILD_KINDS) {
      children[kind as ChildKind] = make<KubeObject>(
        kind,
        (event, obj) => {
          const { namespace, name, resourceVersion } = obj.metadata;
          const owner = obj.metadata.ownerReferences?.find((o) => o.controller && isKind(o.kind));
          if (event === 'delete') controller?.childDeleted(kind, namespace!, name);
          const ownVersion = controller?.ownVersion(kind, namespace!, name);
          if (!needsReconcile({ event, resourceVersion, ownVersion })) return;
          if (owner && isKind(owner.kind)) queue.add(resourceKey(owner.kind, namespace!, owner.name));
        },
        MANAGED_BY_SELECTOR,
      );
    }
    const caches: Caches = { resources, children };
    const resyncMs = this.options.resyncMs ?? DEFAULT_RESYNC_MS;
    const broker: BrokerSource = this.options.brokerSecret
      ? { secret: this.options.brokerSecret }
      : { url: this.options.amqpUrl ?? DEV_AMQP_URL };
    controller = new Controller(
      this.client,
      this.broker,
      caches,
      { image: this.options.image, broker, identity: this.options.identity },
      log,
      undefined,
      {
        topology: (outcome, seconds) => {
          this.metrics.topologyDeclarations.inc({ outcome });
          if (seconds !== undefined) this.metrics.topologyDeclareDuration.observe(seconds);
        },
      },
    );
    const reconciler = controller;
    // What the informers cannot see (a queue deleted on the broker, a connection Secret edited by
    // hand, a rotated broker Secret) is put right on the next resync.
    const resync = setInterval(() => {
      reconciler.beginResyncPeriod();
      for (const kind of KINDS) for (const r of resources[kind].list()) this.enqueue(queue, kind, r);
    }, resyncMs);
    resync.unref();
    this.running = { caches, queue, controller: reconciler, informers, resync };
    // Caches first, so the first reconciles see every Connector and Secret.
    await Promise.all(informers.map((i) => i.start()));
    await Promise.all(informers.map((i) => i.waitForSync()));
    queue.run((key) => reconciler.reconcile(key), this.options.workers ?? 8);
    log.info({ identity: this.options.identity }, 'controllers started');
  }

  private enqueueDependentsOfConnector(
    queue: WorkQueue,
    resources: Caches['resources'],
    connector: KubeObject,
  ) {
    for (const kind of ['Pipeline', 'Workflow'] as const) {
      for (const r of resources[kind].list(connector.metadata.namespace)) {
        if (HANDLERS[kind].connectorRefs(r).some((ref) => ref.connector === connector.metadata.name)) {
          this.enqueue(queue, kind, r);
        }
      }
    }
  }

  private async stopControllers(): Promise<void> {
    await this.starting?.catch(() => {});
    const running = this.running;
    this.running = undefined;
    this.seen.clear();
    if (!running) return;
    clearInterval(running.resync);
    await Promise.all(running.informers.map((i) => i.stop()));
    await running.queue.shutdown();
    for (const i of running.informers) this.metrics.informerRestarts.set({ kind: i.kind }, i.restarts);
  }

  /** Graceful shutdown: finish reconciles in flight, release the Lease, close the broker. */
  async stop(): Promise<void> {
    this.stopped = true;
    await this.stopControllers();
    await this.elector.stop();
    this.metrics.leader.set(0);
    await this.broker.close();
    this.client.close();
    await new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
  }
}
