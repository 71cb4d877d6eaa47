// O2C KPIs as Prometheus metrics: cycle times, step latency, fallout by step and class, invoice lag,
// orders by state, answers to the missed-event fallback.
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import { ErrorClass } from '../gen/o2c/v1/common_pb.js';
import type { KpiObservation } from './transition.js';

const CYCLE_BUCKETS = [0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300, 3600, 86_400, 604_800, 2_592_000];

export interface WorkflowKpis {
  cycleTime: Histogram<'milestone'>;
  stepLatency: Histogram<'step'>;
  fallout: Counter<'step' | 'error_class'>;
  invoiceLag: Histogram;
  ordersByState: Gauge<'state'>;
  transitions: Counter<'outcome'>;
  awaitFallback: Counter<'step' | 'answer'>;
}

export function createWorkflowKpis(registry: Registry): WorkflowKpis {
  return {
    cycleTime: new Histogram({
      name: 'o2c_order_cycle_seconds',
      help: 'Time from submission to a milestone (invoiced, paid)',
      labelNames: ['milestone'],
      buckets: CYCLE_BUCKETS,
      registers: [registry],
    }),
    stepLatency: new Histogram({
      name: 'o2c_step_duration_seconds',
      help: 'Time from sending a step command to its reply, per step',
      labelNames: ['step'],
      buckets: [0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60],
      registers: [registry],
    }),
    fallout: new Counter({
      name: 'o2c_fallout_total',
      help: 'Orders that fell out of the automated flow, by step and error class',
      labelNames: ['step', 'error_class'],
      registers: [registry],
    }),
    invoiceLag: new Histogram({
      name: 'o2c_invoice_lag_seconds',
      help: 'Time from dispatch to the invoice being posted',
      buckets: CYCLE_BUCKETS,
      registers: [registry],
    }),
    ordersByState: new Gauge({
      name: 'o2c_orders',
      help: 'Orders by state',
      labelNames: ['state'],
      registers: [registry],
    }),
    transitions: new Counter({
      name: 'o2c_workflow_transitions_total',
      help: 'Workflow transitions by outcome',
      labelNames: ['outcome'],
      registers: [registry],
    }),
    // `proceed` counts awaited events that never arrived: a rising rate means events are being lost.
    awaitFallback: new Counter({
      name: 'o2c_await_fallback_answers_total',
      help: 'Answers to the questions await steps ask the owning system after their quiet period, by step and answer (proceed, ask-again, stop-polling)',
      labelNames: ['step', 'answer'],
      registers: [registry],
    }),
  };
}

/** Records what decide observed (decide.ts) once its transition committed. */
export function observeKpis(kpis: WorkflowKpis, observations: readonly KpiObservation[]): void {
  for (const o of observations) {
    switch (o.kind) {
      case 'step-latency':
        kpis.stepLatency.observe({ step: o.step }, o.seconds);
        break;
      case 'fallout':
        kpis.fallout.inc({ step: o.step, error_class: ErrorClass[o.errorClass] ?? 'UNKNOWN' });
        break;
      case 'cycle-time':
        kpis.cycleTime.observe({ milestone: o.milestone }, o.seconds);
        break;
      case 'invoice-lag':
        kpis.invoiceLag.observe(o.seconds);
        break;
      case 'await-fallback':
        kpis.awaitFallback.inc({ step: o.step, answer: o.answer });
        break;
      case 'transition':
        kpis.transitions.inc({ outcome: o.outcome });
        break;
    }
  }
}
