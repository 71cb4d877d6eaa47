// Connector: one external system (ERP, CRM, WMS, tax, payment) and the driver that talks to it.
import { DRIVERS, ENTITIES, SYSTEMS } from './operations.js';
import {
  ageColumn,
  arr,
  deletionPolicy,
  duration,
  int,
  type KindDefinition,
  messageColumn,
  obj,
  readyColumns,
  replicas,
  type StoreSpec,
  secretKeyRef,
  statusSchema,
  storeSchema,
  str,
} from './schema.js';

export interface ConnectorSpec {
  system: (typeof SYSTEMS)[number];
  driver: (typeof DRIVERS)[number];
  endpoint?: string;
  credentialsSecretRef?: { name: string; key?: string };
  owns?: string[];
  limits?: { requestsPerSecond?: number; maxConcurrency?: number; timeout?: string };
  circuitBreaker?: { consecutiveFailures?: number; openFor?: string };
  options?: Record<string, unknown>;
  /** Default embedded: `{embedded: {}}`. */
  store?: StoreSpec;
  replicas?: number;
  deletionPolicy?: 'delete' | 'retain';
}

export const connectorDefinition: KindDefinition = {
  kind: 'Connector',
  plural: 'connectors',
  singular: 'connector',
  shortNames: ['conn'],
  description:
    'A Connector is one external system (ERP, CRM, WMS, tax, payment) behind the o2c connector contract. The operator runs it as a Deployment of the o2c runtime in the connector role and gives it a command queue.',
  spec: obj(
    'Desired state of the Connector.',
    {
      system: str(
        'Which kind of system this is. Decides which operations Pipelines and Workflows may call.',
        {
          enum: [...SYSTEMS],
        },
      ),
      driver: str(
        'How the runtime talks to the system: a built-in driver (tryton, salesforce, http), an external ConnectRPC server implementing o2c.v1.ConnectorService (connect), or the in-process simulator.',
        { enum: [...DRIVERS] },
      ),
      endpoint: str('Base URL of the system (http or https). Required unless the driver is simulator.', {
        maxLength: 2048,
        pattern: '^https?://[^\\s]+$',
      }),
      credentialsSecretRef: secretKeyRef(
        'Secret holding the credentials for the system. Mounted read-only into the pods at /etc/o2c/secrets/<name>/; its values never enter the ConfigMap.',
      ),
      owns: arr(
        'Entities this system is the record owner of. Commands that create or change them go to this Connector.',
        str('An entity name.', { enum: [...ENTITIES] }),
        { maxItems: ENTITIES.length, 'x-kubernetes-list-type': 'set' },
      ),
      limits: obj('Client-side limits the runtime enforces towards the system.', {
        requestsPerSecond: int('Steady request rate towards the system.', {
          minimum: 1,
          maximum: 10000,
          default: 20,
        }),
        maxConcurrency: int('Requests in flight at once.', { minimum: 1, maximum: 1024, default: 4 }),
        timeout: duration('Timeout of one request.', '10s'),
      }),
      circuitBreaker: obj('Stops calling the system for a while after repeated failures.', {
        consecutiveFailures: int('Failures in a row that open the circuit.', {
          minimum: 1,
          maximum: 1000,
          default: 5,
        }),
        openFor: duration('How long the circuit stays open before a trial request.', '30s'),
      }),
      options: {
        type: 'object',
        description:
          "Driver-specific settings (for example the simulator's customers and stock, or field mappings of the tryton driver), passed to the runtime as they are. Never put secrets here: use credentialsSecretRef.",
        'x-kubernetes-preserve-unknown-fields': true,
        maxProperties: 64,
      },
      store: storeSchema(
        'Where the connector keeps its outbox (events it originates: dispatches, payments, master-data changes, and its replies), inbox, ID bindings and change-feed watermarks, so a restart resumes the feed and a broker outage only delays events. Default embedded; PostgreSQL to run more than one replica.',
        'Connector',
        { default: { embedded: {} } },
      ),
      replicas: replicas(),
      deletionPolicy: deletionPolicy(),
    },
    ['system', 'driver'],
    {
      'x-kubernetes-validations': [
        {
          rule: "self.driver == 'simulator' || has(self.endpoint)",
          message: 'endpoint is required unless driver is simulator',
          fieldPath: '.endpoint',
          reason: 'FieldValueRequired',
        },
        {
          rule: '!has(self.store) || !has(self.store.embedded) || !has(self.replicas) || self.replicas <= 1',
          message:
            'an embedded store (the default) allows at most one replica: set store.postgres to run more',
          fieldPath: '.replicas',
        },
        {
          rule: "self.driver != 'tryton' || self.system == 'erp'",
          message: 'driver tryton serves system erp only',
          fieldPath: '.driver',
        },
        {
          rule: "self.driver != 'salesforce' || self.system == 'crm'",
          message: 'driver salesforce serves system crm only',
          fieldPath: '.driver',
        },
      ],
    },
  ),
  status: statusSchema(),
  columns: [
    { name: 'System', type: 'string', jsonPath: '.spec.system' },
    { name: 'Driver', type: 'string', jsonPath: '.spec.driver' },
    ...readyColumns,
    ageColumn,
    messageColumn,
  ],
};
