// PodDisruptionBudget, only when there is more than one replica to keep.
import type { KubeObject } from '../kube.js';
import type { AnyResource } from '../resources.js';
import { desiredReplicas } from './deployment.js';
import { childMetadata, selectorLabels } from './names.js';

export function renderPodDisruptionBudget(r: AnyResource): KubeObject | undefined {
  if (desiredReplicas(r) <= 1) return undefined;
  return {
    apiVersion: 'policy/v1',
    kind: 'PodDisruptionBudget',
    metadata: childMetadata(r),
    spec: { maxUnavailable: 1, selector: { matchLabels: selectorLabels(r) } },
  };
}
