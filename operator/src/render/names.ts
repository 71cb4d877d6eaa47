// Names, labels and owner references shared by every child a resource gets.
import { createHash } from 'node:crypto';
import type { Role } from '../../../runtime/src/contract/runtime-config.js';
import type { OwnerReference } from '../kube.js';
import type { AnyResource } from '../resources.js';

export const MANAGED_BY = 'o2c-operator';
export const MANAGED_BY_SELECTOR = `app.kubernetes.io/managed-by=${MANAGED_BY}`;
export const CONFIG_HASH_ANNOTATION = 'o2c.dev/config-hash';

export type { Role };
export const roleOf = (r: AnyResource): Role => r.kind.toLowerCase() as Role;
/** A Service name is a DNS-1035 label; every child name is kept to that. */
export const MAX_CHILD_NAME = 63;
const HASH_LENGTH = 8;

/** `o2c-<role>-<name>[-<suffix>]`, shortened by fitName when longer than 63 characters. */
export function childNameOf(role: Role, name: string, suffix?: string): string {
  return fitName(`o2c-${role}-${name}`, suffix ? `-${suffix}` : '');
}

/**
 * `<base><tail>` when it fits 63 characters; otherwise base is cut and followed by 8 hex characters
 * of a hash of the whole name, then the tail: deterministic, and two long names sharing a prefix differ.
 */
export function fitName(base: string, tail = ''): string {
  const full = `${base}${tail}`;
  if (full.length <= MAX_CHILD_NAME) return full;
  const hash = createHash('sha256').update(full).digest('hex').slice(0, HASH_LENGTH);
  const keep = MAX_CHILD_NAME - HASH_LENGTH - 1 - tail.length;
  return `${base.slice(0, keep).replace(/-+$/, '')}-${hash}${tail}`;
}

export const childName = (r: AnyResource, suffix?: string): string =>
  childNameOf(roleOf(r), r.metadata.name, suffix);

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
