// Names, labels and owner references shared by every child a resource gets.
import type { OwnerReference } from '../kube.js';
import type { AnyResource } from '../resources.js';

export const MANAGED_BY = 'o2c-operator';
export const MANAGED_BY_SELECTOR = `app.kubernetes.io/managed-by=${MANAGED_BY}`;
export const CONFIG_HASH_ANNOTATION = 'o2c.dev/config-hash';

export type Role = 'connector' | 'pipeline' | 'workflow';
export const roleOf = (r: AnyResource): Role => r.kind.toLowerCase() as Role;

/** o2c-<kind>-<name>: the CRD limits names to 50 characters so this stays a DNS-1035 label. */
export const childName = (r: AnyResource): string => `o2c-${roleOf(r)}-${r.metadata.name}`;

export const selectorLabels = (r: AnyResource): Record<string, string> => ({
  'o2c.dev/kind': roleOf(r),
  'o2c.dev/name': r.metadata.name,
});

export const childLabels = (r: AnyResource): Record<string, string> => ({
  'app.kubernetes.io/name': 'o2c-runtime',
  'app.kubernetes.io/instance': r.metadata.name,
  'app.kubernetes.io/component': roleOf(r),
  'app.kubernetes.io/part-of': 'o2c',
  'app.kubernetes.io/managed-by': MANAGED_BY,
  ...selectorLabels(r),
});

export const selectorString = (r: AnyResource): string =>
  Object.entries(selectorLabels(r))
    .map(([k, v]) => `${k}=${v}`)
    .join(',');

export const ownerReference = (r: AnyResource): OwnerReference => ({
  apiVersion: 'o2c.dev/v1alpha1',
  kind: r.kind,
  name: r.metadata.name,
  uid: r.metadata.uid!,
  controller: true,
  blockOwnerDeletion: true,
});

export const childMetadata = (r: AnyResource, name = childName(r)) => ({
  name,
  namespace: r.metadata.namespace!,
  labels: childLabels(r),
  ownerReferences: [ownerReference(r)],
});
