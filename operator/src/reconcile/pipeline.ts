// Pipeline: source and sink Connectors (the sink's system must offer the operation), one sync queue
// bound on o2c.events to the source event types.
import { validatePipelineSpec } from '../../../runtime/src/pipeline/spec.js';
import { EVENTS_EXCHANGE } from '../broker.js';
import type { Pipeline } from '../resources.js';
import type { KindHandler } from './kind.js';

export const pipelineHandler: KindHandler<Pipeline> = {
  kind: 'Pipeline',
  connectorRefs: (p) => [
    { field: 'spec.source.connector', connector: p.spec.source.connector },
    { field: 'spec.sink.connector', connector: p.spec.sink.connector, operation: p.spec.sink.operation },
  ],
  secretRefs: () => [],
  purposes: (p) => [
    {
      purpose: 'events',
      bindings: [...new Set(p.spec.source.events)].map((event) => ({
        exchange: EVENTS_EXCHANGE,
        routingKey: event,
      })),
    },
  ],
  allPurposes: ['events', 'deliveries'],
  validate: (p) => validatePipelineSpec(p.spec as never),
  ports: () => ({}),
};
