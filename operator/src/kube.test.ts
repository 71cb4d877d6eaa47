import { describe, expect, it } from 'vitest';
import { resourceOfPath } from './kube.js';

describe('the resource a request is counted under', () => {
  it.each<[string, string, string]>([
    [
      'a namespaced object',
      '/apis/apps/v1/namespaces/shop/deployments/o2c-pipeline-a?fieldManager=x',
      'deployments',
    ],
    [
      'a status subresource',
      '/apis/o2c.dev/v1alpha1/namespaces/shop/pipelines/items/status',
      'pipelines/status',
    ],
    ['a list across namespaces', '/api/v1/configmaps?labelSelector=a%3Db', 'configmaps'],
    ['a list in one namespace', '/api/v1/namespaces/shop/services', 'services'],
    ['a Namespace itself', '/api/v1/namespaces/shop', 'namespaces'],
    [
      'a cluster-scoped object',
      '/apis/apiextensions.k8s.io/v1/customresourcedefinitions/x',
      'customresourcedefinitions',
    ],
    ['anything outside the API groups', '/metrics', 'other'],
  ])('%s', (_name, path, expected) => {
    expect(resourceOfPath(path)).toBe(expected);
  });
});
