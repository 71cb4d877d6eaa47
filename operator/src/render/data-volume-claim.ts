// The PersistentVolumeClaim of a Workflow with `store: embedded`: its SQLite file survives the pod
// moving to another node. Size and StorageClass from spec.store.embedded, else 1Gi on the default class.
import type { KubeObject } from '../kube.js';
import type { AnyResource } from '../resources.js';
import { childMetadata, childName } from './names.js';

export const DEFAULT_DATA_SIZE = '1Gi';

export const usesEmbeddedStore = (r: AnyResource): boolean =>
  r.kind === 'Workflow' && r.spec.store.embedded !== undefined;

export const dataClaimName = (r: AnyResource): string => childName(r, 'data');

export function renderDataVolumeClaim(r: AnyResource): KubeObject | undefined {
  if (r.kind !== 'Workflow' || !r.spec.store.embedded) return undefined;
  const { size, storageClassName } = r.spec.store.embedded;
  return {
    apiVersion: 'v1',
    kind: 'PersistentVolumeClaim',
    metadata: childMetadata(r, dataClaimName(r)),
    spec: {
      accessModes: ['ReadWriteOnce'],
      resources: { requests: { storage: size ?? DEFAULT_DATA_SIZE } },
      ...(storageClassName ? { storageClassName } : {}),
    },
  };
}
