// DeploymentAvailable: the runtime Deployment has rolled out the current config and enough of its
// pods are available, as the Deployment controller reports it.
import type { ComputedCondition } from './condition.js';

export const DeploymentReason = {
  Available: 'MinimumReplicasAvailable',
  ScaledToZero: 'ScaledToZero',
  NotCreated: 'DeploymentNotCreated',
  RollingOut: 'RollingOut',
  Unavailable: 'ReplicasUnavailable',
  /** The Deployment controller gave up waiting for the rollout (spec.progressDeadlineSeconds). */
  ProgressDeadlineExceeded: 'ProgressDeadlineExceeded',
} as const;

/** A rollout under way is progress, not a failure worth a Warning Event. */
export const DEPLOYMENT_PROGRESS_REASONS: ReadonlySet<string> = new Set([
  DeploymentReason.NotCreated,
  DeploymentReason.RollingOut,
]);

export interface DeploymentState {
  metadata: { name: string; generation?: number };
  spec?: { replicas?: number };
  status?: {
    observedGeneration?: number;
    replicas?: number;
    updatedReplicas?: number;
    availableReplicas?: number;
    conditions?: readonly { type: string; status: string; reason?: string; message?: string }[];
  };
}

export function deploymentAvailable(
  deployment: DeploymentState | undefined,
  desiredReplicas: number,
  blockedBy?: string,
): ComputedCondition {
  const type = 'DeploymentAvailable';
  if (!deployment) {
    return {
      type,
      status: 'False',
      reason: DeploymentReason.NotCreated,
      message: blockedBy ? `Deployment not created: ${blockedBy}` : 'Deployment not created yet.',
    };
  }
  const name = deployment.metadata.name;
  const s = deployment.status ?? {};
  if (desiredReplicas === 0) {
    return {
      type,
      status: 'True',
      reason: DeploymentReason.ScaledToZero,
      message: `Deployment ${name} is scaled to zero.`,
    };
  }
  const observed = (s.observedGeneration ?? 0) >= (deployment.metadata.generation ?? 0);
  // A stuck rollout (image not pullable, pods that never get ready, quota) is a failure, not
  // progress: the controller's verdict counts once it has seen the current spec.
  const progressing = s.conditions?.find((c) => c.type === 'Progressing');
  if (observed && progressing?.status === 'False' && progressing.reason === 'ProgressDeadlineExceeded') {
    return {
      type,
      status: 'False',
      reason: DeploymentReason.ProgressDeadlineExceeded,
      message: `Deployment ${name}: ${progressing.message || 'rollout exceeded its progress deadline'}`,
    };
  }
  if (!observed || (s.updatedReplicas ?? 0) < desiredReplicas) {
    return {
      type,
      status: 'False',
      reason: DeploymentReason.RollingOut,
      message: `Deployment ${name} is rolling out: ${s.updatedReplicas ?? 0}/${desiredReplicas} pods updated.`,
    };
  }
  const available = s.availableReplicas ?? 0;
  if (available < desiredReplicas) {
    return {
      type,
      status: 'False',
      reason: DeploymentReason.Unavailable,
      message: `Deployment ${name} has ${available}/${desiredReplicas} pods available; see kubectl describe deployment ${name}.`,
    };
  }
  return {
    type,
    status: 'True',
    reason: DeploymentReason.Available,
    message: `Deployment ${name} has ${available}/${desiredReplicas} pods available.`,
  };
}
