// Small builders for structural OpenAPI v3 schemas and CRDs, shared by the three kinds so that every
// field carries a description (kubectl explain) and the status shape is the same everywhere.

export interface Validation {
  rule: string;
  message: string;
  fieldPath?: string;
  reason?: 'FieldValueInvalid' | 'FieldValueForbidden' | 'FieldValueRequired' | 'FieldValueDuplicate';
}

export interface Schema {
  type?: 'object' | 'string' | 'integer' | 'number' | 'boolean' | 'array';
  description?: string;
  properties?: Record<string, Schema>;
  required?: string[];
  items?: Schema;
  additionalProperties?: Schema | boolean;
  enum?: string[];
  default?: unknown;
  format?: string;
  pattern?: string;
  minLength?: number;
  maxLength?: number;
  minimum?: number;
  maximum?: number;
  minItems?: number;
  maxItems?: number;
  maxProperties?: number;
  'x-kubernetes-list-type'?: 'atomic' | 'set' | 'map';
  'x-kubernetes-list-map-keys'?: string[];
  'x-kubernetes-validations'?: Validation[];
  'x-kubernetes-preserve-unknown-fields'?: boolean;
}

type Extra = Omit<Schema, 'type' | 'description' | 'properties' | 'items'>;

export const str = (description: string, extra: Extra = {}): Schema => ({
  type: 'string',
  description,
  maxLength: 256,
  ...extra,
});
export const int = (description: string, extra: Extra = {}): Schema => ({
  type: 'integer',
  description,
  ...extra,
});
export const bool = (description: string, extra: Extra = {}): Schema => ({
  type: 'boolean',
  description,
  ...extra,
});
export const arr = (description: string, items: Schema, extra: Extra = {}): Schema => ({
  type: 'array',
  description,
  items,
  ...extra,
});
export const obj = (
  description: string,
  properties: Record<string, Schema>,
  required: string[] = [],
  extra: Extra = {},
): Schema => ({
  type: 'object',
  description,
  properties,
  ...(required.length ? { required } : {}),
  ...extra,
});

/** Go-style durations with a day unit: 500ms, 10s, 5m, 1h30m, 45d. */
export const DURATION_PATTERN = '^([0-9]{1,6}(ms|s|m|h|d))+$';
export const duration = (description: string, defaultValue?: string): Schema =>
  str(`${description} A duration such as 500ms, 10s, 5m, 1h30m or 45d.`, {
    pattern: DURATION_PATTERN,
    maxLength: 32,
    ...(defaultValue ? { default: defaultValue } : {}),
  });

/** A Kubernetes object name (DNS-1123 label) of something in the same namespace. */
export const objectName = (description: string): Schema =>
  str(description, { pattern: '^[a-z0-9]([-a-z0-9]*[a-z0-9])?$', minLength: 1, maxLength: 63 });

export const secretKeyRef = (description: string, defaultKey?: string): Schema =>
  obj(
    description,
    {
      name: objectName('Name of a Secret in the same namespace.'),
      key: str(
        'Key inside the Secret. The operator mounts the Secret, so every key is available to the runtime.',
        {
          pattern: '^[-._a-zA-Z0-9]+$',
          maxLength: 253,
          ...(defaultKey ? { default: defaultKey } : {}),
        },
      ),
    },
    ['name'],
  );

/** Where a runtime pod keeps durable state (Workflow orders; Connector outbox, inbox, watermarks). */
export interface StoreSpec {
  postgres?: { urlSecretRef: { name: string; key?: string } };
  embedded?: { size?: string; storageClassName?: string };
}

/** The store field of a Workflow or a Connector: PostgreSQL, or SQLite on a claim the operator creates. */
export const storeSchema = (description: string, owner: string, extra: Extra = {}): Schema =>
  obj(
    `${description} Exactly one of postgres or embedded.`,
    {
      postgres: obj(
        'PostgreSQL.',
        { urlSecretRef: secretKeyRef('Secret key holding the postgres:// URL.', 'url') },
        ['urlSecretRef'],
      ),
      embedded: obj(
        `Embedded SQLite on a PersistentVolumeClaim the operator creates (owned by the ${owner}, deleted with it). One replica only; the pod is replaced with the Recreate strategy.`,
        {
          size: str('Requested size of the volume.', {
            pattern: '^[0-9]+(\\.[0-9]+)?(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?$',
            maxLength: 32,
            default: '1Gi',
          }),
          storageClassName: str(
            "StorageClass of the volume; the cluster's default class when unset. Immutable once the claim exists.",
            { maxLength: 253, pattern: '^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$' },
          ),
        },
      ),
    },
    [],
    {
      'x-kubernetes-validations': [
        {
          rule: 'has(self.postgres) != has(self.embedded)',
          message: 'store needs exactly one of postgres or embedded',
        },
      ],
      ...extra,
    },
  );

export const replicas = (): Schema =>
  int('Number of runtime pods. A PodDisruptionBudget is created when more than one.', {
    minimum: 0,
    maximum: 50,
    default: 1,
  });

export const deletionPolicy = (): Schema =>
  str(
    'What happens to the RabbitMQ queues of this resource when it is deleted: delete removes them, retain keeps them (and their messages). Immutable.',
    {
      enum: ['delete', 'retain'],
      default: 'delete',
      'x-kubernetes-validations': [{ rule: 'self == oldSelf', message: 'deletionPolicy is immutable' }],
    },
  );

const condition: Schema = obj(
  'One aspect of the current state, in the metav1.Condition shape.',
  {
    type: str(
      'Kind of condition: Ready, SpecValid, ReferencesResolved, CredentialsResolved, TopologyReady, Reconciled or DeploymentAvailable.',
      {
        maxLength: 316,
        pattern:
          '^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])$',
      },
    ),
    status: str('True, False or Unknown.', { enum: ['True', 'False', 'Unknown'] }),
    observedGeneration: int('The metadata.generation this condition was computed from.', {
      format: 'int64',
      minimum: 0,
    }),
    lastTransitionTime: str('When the status last changed.', { format: 'date-time', maxLength: 64 }),
    reason: str('CamelCase reason for the last transition.', {
      minLength: 1,
      maxLength: 1024,
      pattern: '^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$',
    }),
    message: str('What a person can do about it.', { maxLength: 32768 }),
  },
  ['type', 'status', 'lastTransitionTime', 'reason', 'message'],
);

export const statusSchema = (extra: Record<string, Schema> = {}): Schema =>
  obj('Observed state, written by the o2c operator.', {
    observedGeneration: int('The metadata.generation the operator last reconciled.', {
      format: 'int64',
      minimum: 0,
    }),
    conditions: arr('Ready and the conditions it is derived from.', condition, {
      maxItems: 16,
      'x-kubernetes-list-type': 'map',
      'x-kubernetes-list-map-keys': ['type'],
    }),
    replicas: int('Pods currently available.', { minimum: 0 }),
    selector: str('Label selector of the runtime pods (for the scale subresource).', { maxLength: 1024 }),
    configHash: str('Hash of the rendered runtime configuration the pods run.', { maxLength: 64 }),
    ...extra,
  });

export interface PrinterColumn {
  name: string;
  type: 'string' | 'integer' | 'date' | 'boolean' | 'number';
  jsonPath: string;
  description?: string;
  priority?: number;
}

export const readyColumns: PrinterColumn[] = [
  { name: 'Ready', type: 'string', jsonPath: '.status.conditions[?(@.type=="Ready")].status' },
  { name: 'Reason', type: 'string', jsonPath: '.status.conditions[?(@.type=="Ready")].reason' },
  {
    name: 'Available',
    type: 'integer',
    description: 'Runtime pods available.',
    jsonPath: '.status.replicas',
  },
];
export const ageColumn: PrinterColumn = {
  name: 'Age',
  type: 'date',
  jsonPath: '.metadata.creationTimestamp',
};
/** Last, so a long message does not push the other columns away: what to do about a failure. */
export const messageColumn: PrinterColumn = {
  name: 'Message',
  type: 'string',
  description: 'What the Ready condition says; names the field, Secret or Connector to fix.',
  jsonPath: '.status.conditions[?(@.type=="Ready")].message',
};

export const GROUP = 'o2c.dev';
export const VERSION = 'v1alpha1';
export const API_VERSION = `${GROUP}/${VERSION}`;

export interface KindDefinition {
  kind: string;
  plural: string;
  singular: string;
  shortNames: string[];
  description: string;
  spec: Schema;
  status: Schema;
  columns: PrinterColumn[];
}

/** Children are named o2c-<kind>-<name>; a Service name is a DNS-1035 label of at most 63. */
export const MAX_NAME_LENGTH = 50;

/**
 * Argo CD never prunes or deletes a CRD it synced: removing a CRD removes every resource of its kind
 * (and with them their orders' queues), which no sync of an app should do by accident.
 */
export const CRD_ANNOTATIONS = { 'argocd.argoproj.io/sync-options': 'Prune=false,Delete=false' } as const;

export function customResourceDefinition(def: KindDefinition): Record<string, unknown> {
  return {
    apiVersion: 'apiextensions.k8s.io/v1',
    kind: 'CustomResourceDefinition',
    metadata: { name: `${def.plural}.${GROUP}`, annotations: { ...CRD_ANNOTATIONS } },
    spec: {
      group: GROUP,
      names: {
        kind: def.kind,
        listKind: `${def.kind}List`,
        plural: def.plural,
        singular: def.singular,
        shortNames: def.shortNames,
        categories: ['o2c'],
      },
      scope: 'Namespaced',
      versions: [
        {
          name: VERSION,
          served: true,
          storage: true,
          subresources: {
            status: {},
            scale: {
              specReplicasPath: '.spec.replicas',
              statusReplicasPath: '.status.replicas',
              labelSelectorPath: '.status.selector',
            },
          },
          additionalPrinterColumns: def.columns,
          schema: {
            openAPIV3Schema: {
              type: 'object',
              description: def.description,
              required: ['spec'],
              properties: {
                apiVersion: { type: 'string', description: 'Versioned schema of this object.' },
                kind: { type: 'string', description: 'REST resource this object represents.' },
                metadata: { type: 'object' },
                spec: def.spec,
                status: def.status,
              },
              'x-kubernetes-validations': [
                {
                  rule: `size(self.metadata.name) <= ${MAX_NAME_LENGTH}`,
                  message: `metadata.name must be at most ${MAX_NAME_LENGTH} characters (children are named o2c-<kind>-<name>)`,
                },
              ],
            },
          },
        },
      ],
    },
  };
}
