import { describe, expect, it } from 'vitest';
import type { Manifest } from '../manifests.js';
import { stackFromManifests } from './stack.js';

const m = (kind: string, name: string, spec: Record<string, unknown>): Manifest => ({
  apiVersion: 'o2c.dev/v1alpha1',
  kind,
  metadata: { name },
  spec,
  source: 'test.yaml',
});
const wms = m('Connector', 'wms', { system: 'wms', driver: 'simulator' });
const workflow = (awaitStep: Record<string, unknown>) =>
  m('Workflow', 'wf', {
    store: { embedded: {} },
    steps: [
      { name: 'release', call: { connector: 'wms', operation: 'ReleaseFulfillment' } },
      { name: 'await-dispatch', await: { event: 'o2c.v1.ShipmentDispatched', ...awaitStep } },
    ],
  });

describe('o2c dev reads a Workflow and its Connectors', () => {
  it.each<[string, Manifest[], string | undefined]>([
    ['an await asking the Connector of the call before it', [wms, workflow({})], undefined],
    ['an await asking a Connector among the manifests', [wms, workflow({ connector: 'wms' })], undefined],
    [
      'an await asking a Connector that is not there is refused, naming both',
      [wms, workflow({ connector: 'warehouse' })],
      'Workflow wf step await-dispatch asks Connector warehouse, which is not among the manifests',
    ],
  ])('%s', (_name, manifests, error) => {
    if (error) expect(() => stackFromManifests(manifests)).toThrow(error);
    else expect(stackFromManifests(manifests).connectors.map((c) => c.name)).toEqual(['wms']);
  });
});
