import { describe, expect, it } from 'vitest';
import type { Connector, Workflow } from '../resources.js';
import { connectorHandler } from './connector.js';
import type { ConnectorReference, SecretReference } from './kind.js';
import { workflowHandler } from './workflow.js';

const aWorkflow = (steps: Workflow['spec']['steps']): Workflow => ({
  apiVersion: 'o2c.dev/v1alpha1',
  kind: 'Workflow',
  metadata: { name: 'wf', namespace: 'shop' },
  spec: { store: { embedded: {} }, steps },
});

const aConnector = (spec: Partial<Connector['spec']> = {}): Connector => ({
  apiVersion: 'o2c.dev/v1alpha1',
  kind: 'Connector',
  metadata: { name: 'erp', namespace: 'shop' },
  spec: { system: 'erp', driver: 'simulator', ...spec },
});

const awaitRefs = (w: Workflow): ConnectorReference[] =>
  workflowHandler.connectorRefs(w).filter((r) => r.field.endsWith('.await'));

describe('the Connector an await step asks after its quiet period', () => {
  it.each<[string, Workflow, ConnectorReference[]]>([
    [
      'is the one of the call step before it, asked GetShipment',
      aWorkflow([
        { name: 'release', call: { connector: 'wms', operation: 'ReleaseFulfillment' } },
        { name: 'await-dispatch', await: { event: 'o2c.v1.ShipmentDispatched' } },
      ]),
      [{ field: 'spec.steps[1].await', connector: 'wms', operation: 'GetShipment' }],
    ],
    [
      'is the one the await names, asked GetPaymentStatus',
      aWorkflow([
        { name: 'invoice', call: { connector: 'erp', operation: 'PostInvoice' } },
        { name: 'await-payment', await: { event: 'o2c.v1.PaymentReceived', connector: 'payments' } },
      ]),
      [{ field: 'spec.steps[1].await', connector: 'payments', operation: 'GetPaymentStatus' }],
    ],
    [
      'is no reference when nobody can be asked',
      aWorkflow([{ name: 'wait', await: { event: 'o2c.v1.PaymentReceived' } }]),
      [],
    ],
    [
      'is no reference for an event without a query',
      aWorkflow([
        { name: 'invoice', call: { connector: 'erp', operation: 'PostInvoice' } },
        { name: 'wait', await: { event: 'o2c.v1.InvoicePosted' } },
      ]),
      [],
    ],
  ])('%s', (_name, w, expected) => {
    expect(awaitRefs(w)).toEqual(expected);
  });
});

describe('the Secrets a Connector mounts', () => {
  it.each<[string, Connector, SecretReference[]]>([
    ['none on the embedded default', aConnector(), []],
    [
      'its credentials and its database URL',
      aConnector({
        credentialsSecretRef: { name: 'creds' },
        store: { postgres: { urlSecretRef: { name: 'db' } } },
      }),
      [
        { field: 'spec.credentialsSecretRef', secret: 'creds', key: undefined },
        { field: 'spec.store.postgres.urlSecretRef', secret: 'db', key: 'url' },
      ],
    ],
  ])('%s', (_name, c, expected) => {
    expect(connectorHandler.secretRefs(c)).toEqual(expected);
  });
});
