// Prometheus metrics of the controller: reconciles, errors, duration, queue depth, and the calls it
// makes — to the API server by verb and resource, to the broker by outcome — which is what load it puts
// on both.
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';

/** Histogram buckets of the operator's durations, in seconds. */
const SECONDS_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

export class OperatorMetrics {
  readonly registry = new Registry();
  constructor() {
    // Heap, RSS, event-loop lag and GC of the process: what to watch against the chart's heap cap.
    collectDefaultMetrics({ register: this.registry });
  }
  readonly reconciles = this.counter('o2c_operator_reconciles_total', 'Reconciles run, by kind and result.', [
    'kind',
    'result',
  ] as const);
  readonly reconcileErrors = this.counter(
    'o2c_operator_reconcile_errors_total',
    'Reconciles that failed and will be retried with backoff, by kind.',
    ['kind'] as const,
  );
  readonly reconcileDuration = new Histogram({
    name: 'o2c_operator_reconcile_duration_seconds',
    help: 'Time one reconcile took, by kind.',
    labelNames: ['kind'] as const,
    buckets: SECONDS_BUCKETS,
    registers: [this.registry],
  });
  readonly queueDepth = new Gauge({
    name: 'o2c_operator_queue_depth',
    help: 'Keys waiting in the work queue.',
    registers: [this.registry],
  });
  readonly informerRestarts = new Gauge({
    name: 'o2c_operator_informer_restarts',
    help: 'Times an informer was restarted after a watch error, by kind.',
    labelNames: ['kind'] as const,
    registers: [this.registry],
  });
  readonly apiRequests = this.counter(
    'o2c_operator_api_requests_total',
    'Requests the operator sent to the API server (watches excluded), by verb, resource and HTTP status (0: no answer).',
    ['verb', 'resource', 'code'] as const,
  );
  readonly topologyDeclarations = this.counter(
    'o2c_operator_topology_declarations_total',
    "Reconciles that declared a resource's broker topology (declared) or knew it declared this resync period (unchanged).",
    ['outcome'] as const,
  );
  readonly topologyDeclareDuration = new Histogram({
    name: 'o2c_operator_topology_declare_seconds',
    help: "Time one declaration of a resource's queues, dead-letter queues and bindings took.",
    buckets: SECONDS_BUCKETS,
    registers: [this.registry],
  });
  readonly leader = new Gauge({
    name: 'o2c_operator_leader',
    help: '1 while this replica holds the leader Lease.',
    registers: [this.registry],
  });

  /** A counter registered in this registry, with its labels. */
  private counter<L extends string>(name: string, help: string, labelNames: readonly L[]): Counter<L> {
    return new Counter({ name, help, labelNames, registers: [this.registry] });
  }
}
