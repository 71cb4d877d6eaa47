// Service in front of the runtime pods: the order API of a Workflow gets a cluster IP; a metrics-only
// Service (Connector, Pipeline) is headless, for scraping and DNS, and costs no cluster IP.
import type { KubeObject } from '../kube.js';
import type { AnyResource } from '../resources.js';
import { HEALTH_PORT } from './deployment.js';
import { childMetadata, selectorLabels } from './names.js';

export function renderService(r: AnyResource, ports: Record<string, number> = {}): KubeObject {
  const all = { ...ports, metrics: HEALTH_PORT };
  return {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: childMetadata(r),
    spec: {
      type: 'ClusterIP',
      ...(Object.keys(ports).length === 0 ? { clusterIP: 'None' } : {}),
      selector: selectorLabels(r),
      ports: Object.entries(all).map(([name, port]) => ({
        name,
        port,
        targetPort: name,
        protocol: 'TCP',
        ...(name === 'api' ? { appProtocol: 'kubernetes.io/h2c' } : {}),
      })),
    },
  };
}
