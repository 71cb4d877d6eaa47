// The metav1.Condition shape and the rules for merging a freshly computed set into the stored one:
// lastTransitionTime moves only when the status flips; "changed" ignores timestamps.

export type ConditionStatus = 'True' | 'False' | 'Unknown';

export const ConditionType = {
  Ready: 'Ready',
  ReferencesResolved: 'ReferencesResolved',
  CredentialsResolved: 'CredentialsResolved',
  TopologyReady: 'TopologyReady',
  DeploymentAvailable: 'DeploymentAvailable',
} as const;
export type ConditionType = (typeof ConditionType)[keyof typeof ConditionType];

export interface Condition {
  type: string;
  status: ConditionStatus;
  reason: string;
  message: string;
  observedGeneration?: number;
  lastTransitionTime: string;
}

/** A condition as computed, before it is dated. */
export type ComputedCondition = Omit<Condition, 'lastTransitionTime' | 'observedGeneration'>;

export function mergeConditions(
  previous: readonly Condition[] | undefined,
  computed: readonly ComputedCondition[],
  generation: number | undefined,
  now: Date,
): Condition[] {
  return computed.map((c) => {
    const old = previous?.find((p) => p.type === c.type);
    const lastTransitionTime =
      old && old.status === c.status ? old.lastTransitionTime : now.toISOString().replace(/\.\d{3}Z$/, 'Z');
    return { ...c, observedGeneration: generation, lastTransitionTime };
  });
}

export function conditionsDiffer(a: readonly Condition[] | undefined, b: readonly Condition[]): boolean {
  if ((a?.length ?? 0) !== b.length) return true;
  return b.some((c) => {
    const o = a?.find((p) => p.type === c.type);
    return (
      !o ||
      o.status !== c.status ||
      o.reason !== c.reason ||
      o.message !== c.message ||
      o.observedGeneration !== c.observedGeneration
    );
  });
}

/**
 * Conditions that turned False in this reconcile (each one deserves a Warning Event). Reasons in
 * `progress` are work under way, such as a rollout, not failures: they get no Warning.
 */
export function newFailures(
  previous: readonly Condition[] | undefined,
  next: readonly Condition[],
  progress: ReadonlySet<string> = new Set(),
): Condition[] {
  return next.filter((c) => {
    if (c.status !== 'False' || progress.has(c.reason)) return false;
    const old = previous?.find((p) => p.type === c.type);
    return old?.status !== 'False' || old.reason !== c.reason;
  });
}
