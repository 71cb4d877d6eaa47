// Workflow: every Connector its steps, compensations, await fallbacks and notifications call; its API
// token and database Secrets; one events queue bound to the events its steps await; the order API port.
import { DEFAULT_API_PORT } from '../../../runtime/src/contract/runtime-config.js';
import { awaitFallback } from '../../../runtime/src/workflow/await-fallback.js';
import { workflowQueues } from '../../../runtime/src/workflow/queues.js';
import { validateSpec } from '../../../runtime/src/workflow/spec.js';
import { EVENTS_EXCHANGE } from '../broker.js';
import type { Workflow } from '../resources.js';
import type { ConnectorReference, KindHandler, SecretReference } from './kind.js';

export const workflowHandler: KindHandler<Workflow> = {
  kind: 'Workflow',
  connectorRefs: (w) => {
    const refs: ConnectorReference[] = [];
    w.spec.steps.forEach((step, i) => {
      // The Connector an await asks after its quiet period must exist and offer the query.
      const fallback = awaitFallback(w.spec.steps, i);
      if (fallback) {
        refs.push({
          field: `spec.steps[${i}].await`,
          connector: fallback.connector,
          operation: fallback.operation,
        });
      }
      if (!step.call) return;
      refs.push({
        field: `spec.steps[${i}].call`,
        connector: step.call.connector,
        operation: step.call.operation,
      });
      if (step.compensate) {
        refs.push({
          field: `spec.steps[${i}].compensate`,
          connector: step.call.connector,
          operation: step.compensate.operation,
        });
      }
    });
    (w.spec.notify ?? []).forEach((n, i) => {
      refs.push({ field: `spec.notify[${i}]`, connector: n.connector, operation: n.operation });
    });
    return refs;
  },
  secretRefs: (w) => {
    const refs: SecretReference[] = [];
    const auth = w.spec.api?.authSecretRef;
    if (auth) refs.push({ field: 'spec.api.authSecretRef', secret: auth.name, key: auth.key ?? 'tokens' });
    const db = w.spec.store.postgres?.urlSecretRef;
    if (db) refs.push({ field: 'spec.store.postgres.urlSecretRef', secret: db.name, key: db.key ?? 'url' });
    return refs;
  },
  // The engine's queues (runtime/src/workflow/queues.ts), declared ahead of the pods.
  purposes: (w) =>
    workflowQueues(w.metadata.namespace!, w.metadata.name).map((q) => ({
      purpose: q.purpose,
      bindings: q.bindings.map((b) => ({ exchange: EVENTS_EXCHANGE, routingKey: b })),
    })),
  allPurposes: [{ purpose: 'orders' }, { purpose: 'replies' }, { purpose: 'events' }],
  validate: (w) => validateSpec(w.spec).map((p) => `spec.${p}`),
  ports: (w) => ({ api: w.spec.api?.port ?? DEFAULT_API_PORT }),
  extraStatus: (w) => ({ steps: w.spec.steps.length }),
};
