// Pipeline: event-driven master-data sync from one Connector's events into another Connector.
import { EVENT_TYPE_PATTERN, SINK_OPERATIONS } from './operations.js';
import {
  ageColumn,
  arr,
  bool,
  deletionPolicy,
  duration,
  int,
  type KindDefinition,
  messageColumn,
  obj,
  objectName,
  readyColumns,
  replicas,
  statusSchema,
  str,
} from './schema.js';

export interface PipelineSpec {
  source: { connector: string; events: string[] };
  filter?: string;
  transform?: Record<string, string>;
  sink: { connector: string; operation: string };
  delivery?: {
    maxAttempts?: number;
    backoff?: { initial?: string; max?: string };
    deadLetter?: boolean;
    orderingKey?: string;
  };
  concurrency?: number;
  replicas?: number;
  deletionPolicy?: 'delete' | 'retain';
}

const cel = (description: string): ReturnType<typeof str> =>
  str(description, { minLength: 1, maxLength: 4096 });

export const pipelineDefinition: KindDefinition = {
  kind: 'Pipeline',
  plural: 'pipelines',
  singular: 'pipeline',
  shortNames: ['pl'],
  description:
    "A Pipeline consumes events published by one Connector, filters and transforms them with CEL, and delivers the result to another Connector's operation, with retries and a dead-letter queue.",
  spec: obj(
    'Desired state of the Pipeline.',
    {
      source: obj(
        'Where events come from.',
        {
          connector: objectName(
            'Name of the Connector (same namespace) whose events this Pipeline consumes.',
          ),
          events: arr(
            'Event types to consume, e.g. o2c.v1.ItemUpserted.',
            str('A canonical event type.', { pattern: EVENT_TYPE_PATTERN, maxLength: 80 }),
            { minItems: 1, maxItems: 32, 'x-kubernetes-list-type': 'set' },
          ),
        },
        ['connector', 'events'],
      ),
      filter: cel('CEL expression over `event`; events for which it is false are acknowledged and skipped.'),
      transform: {
        type: 'object',
        description:
          'Output field name to CEL expression over `event`, e.g. {product_code: "event.item.sku"}.',
        additionalProperties: cel('CEL expression producing the field value.'),
        maxProperties: 64,
      },
      sink: obj(
        'Where the transformed events go.',
        {
          connector: objectName('Name of the Connector (same namespace) to deliver to.'),
          operation: str(
            "Connector operation to call. Must be a write operation the sink Connector's system offers.",
            {
              enum: [...SINK_OPERATIONS],
            },
          ),
        },
        ['connector', 'operation'],
      ),
      delivery: obj('Retry and dead-letter behaviour of deliveries.', {
        maxAttempts: int('Attempts before a message is dead-lettered.', {
          minimum: 1,
          maximum: 100,
          default: 8,
        }),
        backoff: obj(
          'Exponential backoff between attempts.',
          {
            initial: duration('Delay before the second attempt.', '1s'),
            max: duration('Upper bound of the delay.', '5m'),
          },
          [],
        ),
        deadLetter: bool('Move exhausted messages to the dead-letter queue (else drop them).', {
          default: true,
        }),
        orderingKey: cel('CEL expression over `event`; messages with the same key are delivered in order.'),
      }),
      concurrency: int('Deliveries in flight per pod.', { minimum: 1, maximum: 256, default: 16 }),
      replicas: replicas(),
      deletionPolicy: deletionPolicy(),
    },
    ['source', 'sink'],
    {
      'x-kubernetes-validations': [
        {
          rule: 'self.source.connector != self.sink.connector',
          message: 'sink.connector must differ from source.connector',
          fieldPath: '.sink.connector',
        },
      ],
    },
  ),
  status: statusSchema(),
  columns: [
    { name: 'Source', type: 'string', jsonPath: '.spec.source.connector' },
    { name: 'Sink', type: 'string', jsonPath: '.spec.sink.connector' },
    ...readyColumns,
    ageColumn,
    messageColumn,
  ],
};
