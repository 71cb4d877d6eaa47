import { describe, expect, it } from 'vitest';
import type { KubeObject } from '../kube.js';
import { isNewVersion, LAST_APPLIED_ANNOTATION, slim } from './informer.js';

const anObject = (metadata: Record<string, unknown> = {}): KubeObject =>
  ({
    kind: 'Deployment',
    metadata: { name: 'd', namespace: 'ns', resourceVersion: '1', ...metadata },
  }) as KubeObject;

describe('an object as the cache keeps it', () => {
  it.each<[string, KubeObject, KubeObject['metadata']]>([
    [
      'has no managedFields',
      anObject({ managedFields: [{ manager: 'o2c-operator' }] }),
      { name: 'd', namespace: 'ns', resourceVersion: '1' },
    ],
    [
      'has no last-applied annotation but keeps the others',
      anObject({ annotations: { [LAST_APPLIED_ANNOTATION]: '{"big":true}', 'o2c.dev/config-hash': 'abc' } }),
      { name: 'd', namespace: 'ns', resourceVersion: '1', annotations: { 'o2c.dev/config-hash': 'abc' } },
    ],
    [
      'is unchanged when there is nothing to drop',
      anObject(),
      { name: 'd', namespace: 'ns', resourceVersion: '1' },
    ],
  ])('%s', (_name, obj, expected) => {
    expect(slim(obj).metadata).toEqual(expected);
  });
});

describe('an object listed or watched', () => {
  it.each<[string, KubeObject | undefined, KubeObject, boolean]>([
    ['is new when the cache has none', undefined, anObject(), true],
    ['is new at another resourceVersion', anObject(), anObject({ resourceVersion: '2' }), true],
    ['is no news at the version the cache holds (a relist)', anObject(), anObject(), false],
  ])('%s', (_name, cached, next, expected) => {
    expect(isNewVersion(cached, next)).toBe(expected);
  });
});
