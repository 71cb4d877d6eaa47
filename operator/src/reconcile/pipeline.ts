// Pipeline: source and sink Connectors (the sink's system must offer the operation), one events queue
// bound on o2c.events to the source event types and, with an ordering key, the partitioned deliveries
// queue the intake forwards to.

import { eventBindingKey } from '../../../runtime/src/bus/addressing.js';
import { ORDERING_PARTITIONS } from '../../../runtime/src/contract/runtime-config.js';
import { validatePipelineSpec } from '../../../runtime/src/pipeline/spec.js';
import { EVENTS_EXCHANGE, type TopologyPurpose } from '../broker.js';
import type { Pipeline } from '../resources.js';
import type { KindHandler } from './kind.js';

export const pipelineHandler: KindHandler<Pipeline> = {
  kind: 'Pipeline',
  connectorRefs: (p) => [
    { field: 'spec.source.connector', connector: p.spec.source.connector },
    { field: 'spec.sink.connector', connector: p.spec.sink.connector, operation: p.spec.sink.operation },
  ],
  secretRefs: () => [],
  purposes: (p) => {
    const events: TopologyPurpose = {
      purpose: 'events',
      // Only its source Connector's events, of its own namespace.
      bindings: [...new Set(p.spec.source.events)].map((event) => ({
        exchange: EVENTS_EXCHANGE,
        routingKey: eventBindingKey(p.metadata.namespace!, 'connector', p.spec.source.connector, event),
      })),
    };
    if (!p.spec.delivery?.orderingKey) return [events];
    return [events, { purpose: 'deliveries', bindings: [], partitions: ORDERING_PARTITIONS }];
  },
  // `replies`: the replicas' reply queues are exclusive and go with their processes; this deletes the
  // durable replies DLQ they share (o2c.<ns>.pipeline.<name>.replies.dlq).
  allPurposes: [
    { purpose: 'events' },
    { purpose: 'deliveries', partitions: ORDERING_PARTITIONS },
    { purpose: 'replies' },
  ],
  validate: (p) => validatePipelineSpec(p.spec),
  ports: () => ({}),
};
