// Prometheus metrics of the bus, labelled per queue (consumers) or exchange (publishers). One set per
// prom-client registry, so several connections in one process share the series.
import { Counter, register as defaultRegistry, Gauge, Histogram, type Registry } from 'prom-client';

export interface BusMetrics {
  published: Counter<'exchange'>;
  confirmed: Counter<'exchange'>;
  returned: Counter<'exchange'>;
  nacked: Counter<'exchange'>;
  consumed: Counter<'queue'>;
  retried: Counter<'queue'>;
  deadLettered: Counter<'queue' | 'reason'>;
  duplicates: Counter<'queue'>;
  handlerSeconds: Histogram<'queue' | 'outcome'>;
  queueDepth: Gauge<'queue'>;
  /** Queue-depth probes, read when Prometheus scrapes. */
  depthProbes: Map<string, () => Promise<number>>;
}

const perRegistry = new WeakMap<Registry, BusMetrics>();

export function busMetrics(registry: Registry = defaultRegistry): BusMetrics {
  const existing = perRegistry.get(registry);
  if (existing) return existing;
  const registers = [registry];
  const depthProbes = new Map<string, () => Promise<number>>();
  const m: BusMetrics = {
    published: new Counter({
      name: 'o2c_bus_published_total',
      help: 'Messages handed to the broker',
      labelNames: ['exchange'],
      registers,
    }),
    confirmed: new Counter({
      name: 'o2c_bus_confirmed_total',
      help: 'Publishes the broker confirmed',
      labelNames: ['exchange'],
      registers,
    }),
    returned: new Counter({
      name: 'o2c_bus_returned_total',
      help: 'Mandatory publishes the broker could not route',
      labelNames: ['exchange'],
      registers,
    }),
    nacked: new Counter({
      name: 'o2c_bus_nacked_total',
      help: 'Publishes the broker refused or lost with the connection',
      labelNames: ['exchange'],
      registers,
    }),
    consumed: new Counter({
      name: 'o2c_bus_consumed_total',
      help: 'Deliveries handed to a handler',
      labelNames: ['queue'],
      registers,
    }),
    retried: new Counter({
      name: 'o2c_bus_retried_total',
      help: 'Deliveries sent to a retry delay tier',
      labelNames: ['queue'],
      registers,
    }),
    deadLettered: new Counter({
      name: 'o2c_bus_dead_lettered_total',
      help: 'Deliveries parked in the DLQ',
      labelNames: ['queue', 'reason'],
      registers,
    }),
    duplicates: new Counter({
      name: 'o2c_bus_inbox_duplicates_total',
      help: 'Deliveries the inbox recognised as already handled',
      labelNames: ['queue'],
      registers,
    }),
    handlerSeconds: new Histogram({
      name: 'o2c_bus_handler_seconds',
      help: 'Handler latency, by outcome',
      labelNames: ['queue', 'outcome'],
      buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers,
    }),
    queueDepth: new Gauge({
      name: 'o2c_bus_queue_depth',
      help: 'Ready messages in the queue at scrape time',
      labelNames: ['queue'],
      registers,
      async collect() {
        await Promise.all(
          [...depthProbes].map(async ([queue, probe]) => {
            try {
              this.set({ queue }, await probe());
            } catch {
              // broker unreachable at scrape time: keep the last value
            }
          }),
        );
      },
    }),
    depthProbes,
  };
  perRegistry.set(registry, m);
  return m;
}
