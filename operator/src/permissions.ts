// Every API call the operator makes, as RBAC rules. crds/generate.ts writes them into the chart's
// ClusterRole, so a new call that is not listed here fails in the e2e tier rather than in production.

export interface PolicyRule {
  apiGroups: string[];
  resources: string[];
  verbs: string[];
}

export const OPERATOR_RULES: PolicyRule[] = [
  // Watch the three kinds; finalizers are added and removed with a merge patch.
  {
    apiGroups: ['o2c.dev'],
    resources: ['connectors', 'pipelines', 'workflows'],
    verbs: ['get', 'list', 'watch', 'patch'],
  },
  {
    apiGroups: ['o2c.dev'],
    resources: ['connectors/status', 'pipelines/status', 'workflows/status'],
    verbs: ['patch'],
  },
  // OwnerReferencesPermissionEnforcement (OpenShift's default): a child with blockOwnerDeletion on its
  // owner reference may only be created by someone who can update the owner's finalizers.
  {
    apiGroups: ['o2c.dev'],
    resources: ['connectors/finalizers', 'pipelines/finalizers', 'workflows/finalizers'],
    verbs: ['update'],
  },
  // Children: server-side apply is a patch, and one that creates the object also needs create (the
  // RBAC integration test proves it); pruning deletes them.
  {
    apiGroups: [''],
    resources: ['configmaps', 'services', 'persistentvolumeclaims'],
    verbs: ['list', 'watch', 'create', 'patch', 'delete'],
  },
  { apiGroups: ['apps'], resources: ['deployments'], verbs: ['list', 'watch', 'create', 'patch', 'delete'] },
  {
    apiGroups: ['policy'],
    resources: ['poddisruptionbudgets'],
    verbs: ['list', 'watch', 'create', 'patch', 'delete'],
  },
  // Secrets are never listed or watched (no cluster-wide cache of their values): a referenced one is
  // read by name for its key names, the broker Secret by name for its URL, and each resource's
  // connection Secret (the broker URL for its pods) is applied by name.
  { apiGroups: [''], resources: ['secrets'], verbs: ['get', 'create', 'patch'] },
  { apiGroups: [''], resources: ['events'], verbs: ['create'] },
  { apiGroups: ['coordination.k8s.io'], resources: ['leases'], verbs: ['get', 'create', 'update'] },
];
