// The PersistentVolumeClaim of a Workflow or Connector with `store: embedded` (a Connector's default):
// its SQLite file survives the pod moving to another node. Size and StorageClass from
// spec.store.embedded, else 1Gi on the default class. Pipelines keep no store.
import type { StoreSpec } from '../../../crds/schema.js';
import type { KubeObject } from '../kube.js';
import type { AnyResource } from '../resources.js';
import { childMetadata, childName } from './names.js';

export const DEFAULT_DATA_SIZE = '1Gi';

/** The store a resource's pods use: a Connector without one gets the embedded default. */
export function storeOf(r: AnyResource): StoreSpec | undefined {
  if (r.kind === 'Workflow') return r.spec.store;
  if (r.kind === 'Connector') return r.spec.store ?? { embedded: {} };
  return undefined;
}

export const usesEmbeddedStore = (r: AnyResource): boolean => storeOf(r)?.embedded !== undefined;

/** Name suffix of the data volume claim, beside the resource's other children. */
export const DATA_SUFFIX = 'data';
export const dataClaimName = (r: AnyResource): string => childName(r, DATA_SUFFIX);

export function renderDataVolumeClaim(r: AnyResource): KubeObject | undefined {
  const embedded = storeOf(r)?.embedded;
  if (!embedded) return undefined;
  const { size, storageClassName } = embedded;
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
