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
  // Children: server-side apply is a patch, and one that creates the object also needs create (the
  // RBAC integration test proves it); pruning deletes them.
  {
    apiGroups: [''],
    resources: ['configmaps', 'services'],
    verbs: ['list', 'watch', 'create', 'patch', 'delete'],
  },
  { apiGroups: ['apps'], resources: ['deployments'], verbs: ['list', 'watch', 'create', 'patch', 'delete'] },
  {
    apiGroups: ['policy'],
    resources: ['poddisruptionbudgets'],
    verbs: ['list', 'watch', 'create', 'patch', 'delete'],
  },
  // Referenced Secrets: only their presence and key names are read, never copied.
  { apiGroups: [''], resources: ['secrets'], verbs: ['list', 'watch'] },
  { apiGroups: [''], resources: ['events'], verbs: ['create'] },
  { apiGroups: ['coordination.k8s.io'], resources: ['leases'], verbs: ['get', 'create', 'update'] },
];
