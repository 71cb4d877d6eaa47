// The connection Secret each resource's pods mount at CONNECTIONS_DIR: the broker URL, copied from the
// Secret named in the operator's configuration (which may live in the operator's namespace), so no
// one creates a broker Secret by hand in every namespace. Owned by the resource, removed with it.
import { createHash } from 'node:crypto';
import { BROKER_URL_KEY } from '../../../runtime/src/contract/runtime-config.js';
import type { KubeObject } from '../kube.js';
import type { AnyResource } from '../resources.js';
import { childMetadata, childName } from './names.js';

export const CONNECTIONS_HASH_ANNOTATION = 'o2c.dev/connections-hash';

/** Name suffix of the connection Secret, beside the resource's other children. */
export const CONNECTIONS_SUFFIX = 'conn';
export const connectionsSecretName = (r: AnyResource): string => childName(r, CONNECTIONS_SUFFIX);

export interface Connections {
  brokerUrl: string;
}

export interface RenderedConnections {
  secret: KubeObject;
  /** Goes on the pod template: a rotated URL rolls the pods, which read it at start-up. */
  hash: string;
}

export function renderConnectionsSecret(r: AnyResource, connections: Connections): RenderedConnections {
  const data = { [BROKER_URL_KEY]: Buffer.from(connections.brokerUrl, 'utf8').toString('base64') };
  return {
    hash: createHash('sha256').update(JSON.stringify(data)).digest('hex').slice(0, 16),
    secret: {
      apiVersion: 'v1',
      kind: 'Secret',
      metadata: childMetadata(r, connectionsSecretName(r)),
      type: 'Opaque',
      immutable: false,
      data,
    },
  };
}
