import { describe, expect, it } from 'vitest';
import { connectorDefinition } from './connector.js';
import { pipelineDefinition } from './pipeline.js';
import { customResourceDefinition } from './schema.js';
import { workflowDefinition } from './workflow.js';

describe('customResourceDefinition', () => {
  it.each([
    ['Connector', connectorDefinition],
    ['Pipeline', pipelineDefinition],
    ['Workflow', workflowDefinition],
  ])('the %s CRD tells Argo CD never to prune or delete it', (_kind, def) => {
    const crd = customResourceDefinition(def) as { metadata: { annotations: Record<string, string> } };
    expect(crd.metadata.annotations['argocd.argoproj.io/sync-options']).toBe('Prune=false,Delete=false');
  });
});
