// Workflow: the durable O2C process, its order API and its store.
import { EVENT_TYPE_PATTERN, OPERATIONS } from './operations.js';
import {
  ageColumn,
  arr,
  deletionPolicy,
  duration,
  int,
  type KindDefinition,
  messageColumn,
  obj,
  objectName,
  readyColumns,
  replicas,
  type Schema,
  type StoreSpec,
  secretKeyRef,
  statusSchema,
  storeSchema,
  str,
} from './schema.js';

export interface ConnectorCall {
  connector: string;
  operation: string;
}
export interface WorkflowStep {
  name: string;
  call?: ConnectorCall;
  await?: {
    event: string;
    timeout?: string;
    /** Quiet period after which the owning system is asked (fallback for a missed event). */
    pollAfter?: string;
    /** The Connector asked; default the Connector of the nearest call step before the await. */
    connector?: string;
  };
  onFailure?: 'fail' | 'hold' | 'compensate' | 'continue';
  when?: string;
  timeout?: string;
  retry?: { maxAttempts?: number; backoff?: { initial?: string; max?: string } };
  compensate?: { operation: string };
}
export interface WorkflowSpec {
  api?: { port?: number; authSecretRef?: { name: string; key?: string } };
  store: StoreSpec;
  steps: WorkflowStep[];
  notify?: ConnectorCall[];
  replicas?: number;
  deletionPolicy?: 'delete' | 'retain';
}

const operation = (description: string): Schema => str(description, { enum: [...OPERATIONS] });
const connectorCall = (description: string): Schema =>
  obj(
    description,
    {
      connector: objectName('Name of the Connector (same namespace) to call.'),
      operation: operation(
        "Operation of o2c.v1.ConnectorService to call; the Connector's system must offer it.",
      ),
    },
    ['connector', 'operation'],
  );

const step = obj(
  'One step of the O2C process. Exactly one of call or await.',
  {
    name: objectName('Unique name of the step, shown in order history and fallout.'),
    call: connectorCall('Call a Connector operation.'),
    await: obj(
      'Wait for an event about the order.',
      {
        event: str('Event type to wait for, e.g. o2c.v1.ShipmentDispatched.', {
          pattern: EVENT_TYPE_PATTERN,
          maxLength: 80,
        }),
        timeout: duration('Fallout is raised when the event has not arrived by then.', '72h'),
        pollAfter: duration(
          'Quiet period: when o2c.v1.ShipmentDispatched or o2c.v1.PaymentReceived has not arrived by then, the engine asks the owning system (GetShipment, GetPaymentStatus) and proceeds on what it finds, as if the event had arrived; not yet: it asks again with backoff (doubling, at most hourly) until the timeout. The fallback for a missed event.',
          '10m',
        ),
        connector: objectName(
          'Connector (same namespace) asked after the quiet period. Default: the Connector of the nearest call step before this one (e.g. the one that released the fulfillment or posted the invoice).',
        ),
      },
      ['event'],
    ),
    onFailure: str(
      'What happens when the step fails after its retries: fail the order, hold it for a person (fallout), compensate the completed steps, or continue with the next step.',
      { enum: ['fail', 'hold', 'compensate', 'continue'], default: 'hold' },
    ),
    when: str(
      'CEL guard over `order` (the order as proto JSON) and `steps` (names of completed steps); the step is skipped when it is false, e.g. `order.total.units > 10000`.',
      { maxLength: 1024 },
    ),
    timeout: duration(
      "How long a call step waits for the connector's reply before sending the command again (default 5m).",
    ),
    retry: obj('Retries of a call step.', {
      maxAttempts: int('Attempts including the first.', { minimum: 1, maximum: 100, default: 3 }),
      backoff: obj('Exponential backoff between attempts.', {
        initial: duration('Delay before the second attempt.', '1s'),
        max: duration('Upper bound of the delay.', '5m'),
      }),
    }),
    compensate: obj(
      'Operation that undoes this step when a later step fails (same Connector).',
      { operation: operation('Operation to call on the same Connector.') },
      ['operation'],
    ),
  },
  ['name'],
  {
    'x-kubernetes-validations': [
      { rule: 'has(self.call) != has(self.await)', message: 'a step has exactly one of call or await' },
      {
        rule: '!has(self.compensate) || has(self.call)',
        message: 'compensate is only allowed on a call step',
        fieldPath: '.compensate',
      },
      {
        rule: '!has(self.retry) || has(self.call)',
        message: 'retry is only allowed on a call step',
        fieldPath: '.retry',
      },
    ],
  },
);

export const workflowDefinition: KindDefinition = {
  kind: 'Workflow',
  plural: 'workflows',
  singular: 'workflow',
  shortNames: ['wf'],
  description:
    'A Workflow is the O2C process: the steps an order goes through, the order API (o2c.v1.OrderService) and the store that keeps orders durable. The operator runs it as a Deployment of the o2c runtime in the workflow role.',
  spec: obj(
    'Desired state of the Workflow.',
    {
      api: obj('The order API (ConnectRPC, gRPC and HTTP+JSON on one port).', {
        port: int('Container and Service port of the order API.', {
          minimum: 1024,
          maximum: 65535,
          default: 8080,
        }),
        authSecretRef: secretKeyRef('Secret holding the bearer tokens accepted by the order API.', 'tokens'),
      }),
      store: storeSchema('Where orders and workflow state live.', 'Workflow'),
      steps: arr('The O2C steps, in order.', step, {
        minItems: 1,
        maxItems: 64,
        'x-kubernetes-list-type': 'map',
        'x-kubernetes-list-map-keys': ['name'],
      }),
      notify: arr(
        'Connector operations told about every order state change (e.g. CRM status write-back).',
        connectorCall('A notification target.'),
        {
          maxItems: 8,
        },
      ),
      replicas: replicas(),
      deletionPolicy: deletionPolicy(),
    },
    ['store', 'steps'],
    {
      'x-kubernetes-validations': [
        {
          rule: '!has(self.store.embedded) || !has(self.replicas) || self.replicas <= 1',
          message: 'an embedded store allows at most one replica',
          fieldPath: '.replicas',
        },
      ],
    },
  ),
  status: statusSchema({
    steps: int('Number of steps in the process.', { minimum: 0 }),
    orders: int('Orders in flight, as last reported by the runtime.', { minimum: 0 }),
  }),
  columns: [
    { name: 'Steps', type: 'integer', jsonPath: '.status.steps' },
    { name: 'Orders', type: 'integer', jsonPath: '.status.orders' },
    ...readyColumns,
    ageColumn,
    messageColumn,
  ],
};
