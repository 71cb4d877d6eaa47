// Prometheus metrics of the controller: reconciles, errors, duration, queue depth, and the calls it
// makes — to the API server by verb and resource, to the broker by outcome — which is what load it puts
// on both.
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';

export class OperatorMetrics {
  readonly registry = new Registry();
  constructor() {
    // Heap, RSS, event-loop lag and GC of the process: what to watch against the chart's heap cap.
    collectDefaultMetrics({ register: this.registry });
  }
  readonly reconciles = new Counter({
    name: 'o2c_operator_reconciles_total',
    help: 'Reconciles run, by kind and result.',
    labelNames: ['kind', 'result'] as const,
    registers: [this.registry],
  });
  readonly reconcileErrors = new Counter({
    name: 'o2c_operator_reconcile_errors_total',
    help: 'Reconciles that failed and will be retried with backoff, by kind.',
    labelNames: ['kind'] as const,
    registers: [this.registry],
  });
  readonly reconcileDuration = new Histogram({
    name: 'o2c_operator_reconcile_duration_seconds',
    help: 'Time one reconcile took, by kind.',
    labelNames: ['kind'] as const,
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
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
  readonly apiRequests = new Counter({
    name: 'o2c_operator_api_requests_total',
    help: 'Requests the operator sent to the API server (watches excluded), by verb, resource and HTTP status (0: no answer).',
    labelNames: ['verb', 'resource', 'code'] as const,
    registers: [this.registry],
  });
  readonly topologyDeclarations = new Counter({
    name: 'o2c_operator_topology_declarations_total',
    help: "Reconciles that declared a resource's broker topology (declared) or knew it declared this resync period (unchanged).",
    labelNames: ['outcome'] as const,
    registers: [this.registry],
  });
  readonly topologyDeclareDuration = new Histogram({
    name: 'o2c_operator_topology_declare_seconds',
    help: "Time one declaration of a resource's queues, dead-letter queues and bindings took.",
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    registers: [this.registry],
  });
  readonly leader = new Gauge({
    name: 'o2c_operator_leader',
    help: '1 while this replica holds the leader Lease.',
    registers: [this.registry],
  });
}
