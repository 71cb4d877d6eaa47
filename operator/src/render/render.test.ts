import { describe, expect, it } from 'vitest';
import type { Connector, Workflow } from '../resources.js';
import { renderConfigMap } from './configmap.js';
import { renderDeployment } from './deployment.js';
import { renderPodDisruptionBudget } from './pdb.js';
import { renderRuntimeConfig } from './runtime-config.js';
import { renderService } from './service.js';

const aConnector = (spec: Partial<Connector['spec']> = {}): Connector => ({
  apiVersion: 'o2c.dev/v1alpha1',
  kind: 'Connector',
  metadata: { name: 'erp', namespace: 'shop', uid: 'u1', generation: 1 },
  spec: { system: 'erp', driver: 'tryton', endpoint: 'http://tryton:8000/', ...spec },
});

const config = (c: Connector) =>
  renderRuntimeConfig(c, { connectors: {}, purposes: ['commands'], secretNames: ['tryton-credentials'] });

describe('renderers', () => {
  it('a config change changes the hash; a generation bump alone does not', () => {
    const a = renderConfigMap(aConnector(), config(aConnector()));
    const b = renderConfigMap(
      aConnector({ limits: { requestsPerSecond: 5 } }),
      config(aConnector({ limits: { requestsPerSecond: 5 } })),
    );
    const bumped = aConnector();
    bumped.metadata.generation = 7;
    expect(a.hash).not.toBe(b.hash);
    expect(renderConfigMap(bumped, config(bumped)).hash).toBe(a.hash);
  });

  it('the Deployment runs the connector role non-root with the Secret mounted and the config hash on the pods', () => {
    const d = renderDeployment(aConnector(), {
      image: 'img:1',
      configHash: 'abc',
      secretNames: ['tryton-credentials'],
    }) as unknown as {
      spec: {
        template: {
          metadata: { annotations: Record<string, string> };
          spec: { containers: Array<Record<string, unknown>> };
        };
      };
    };
    expect(d.spec.template.metadata.annotations['o2c.dev/config-hash']).toBe('abc');
    expect(d.spec.template.spec.containers[0]).toMatchObject({
      image: 'img:1',
      command: [
        'node',
        '--import',
        'tsx',
        'runtime/src/main.ts',
        '--role',
        'connector',
        '--config',
        '/etc/o2c/config.json',
      ],
      securityContext: {
        readOnlyRootFilesystem: true,
        allowPrivilegeEscalation: false,
        capabilities: { drop: ['ALL'] },
      },
    });
    expect(JSON.stringify(d)).toContain('/etc/o2c/secrets/tryton-credentials');
  });

  it('a PodDisruptionBudget only above one replica', () => {
    expect(renderPodDisruptionBudget(aConnector())).toBeUndefined();
    expect(renderPodDisruptionBudget(aConnector({ replicas: 3 }))?.spec).toMatchObject({ maxUnavailable: 1 });
  });

  it('a Workflow Service exposes the API with a cluster IP; a metrics-only Service is headless', () => {
    const wf = {
      ...aConnector(),
      kind: 'Workflow',
      spec: { store: { embedded: {} }, steps: [] },
    } as unknown as Workflow;
    expect(renderService(wf, { api: 8080 }).spec).toMatchObject({
      ports: [
        { name: 'api', port: 8080 },
        { name: 'metrics', port: 9090 },
      ],
    });
    expect(renderService(aConnector()).spec).toMatchObject({ clusterIP: 'None' });
  });
});
