// Writes examples/argocd/argocd-cm.yaml from examples/argocd/health.lua: the one health check,
// embedded under the key Argo CD looks up for each o2c kind. health.lua is the source; the
// ConfigMap is generated so the two never differ (test/integration/argocd-health.test.ts checks).
//
//   tsx test/argocd/argocd-cm.ts
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Document, Scalar } from 'yaml';
import { KINDS } from '../../operator/src/resources.js';

export const EXAMPLES_ARGOCD = join(import.meta.dirname, '../../examples/argocd');
export const HEALTH_LUA = join(EXAMPLES_ARGOCD, 'health.lua');
export const ARGOCD_CM = join(EXAMPLES_ARGOCD, 'argocd-cm.yaml');

/** The argocd-cm key of a kind's custom health check: resource.customizations.health.<group>_<kind>. */
export const healthKey = (kind: string): string => `resource.customizations.health.o2c.dev_${kind}`;

const HEADER = `Health checks for o2c's Connector, Pipeline and Workflow, for the argocd-cm ConfigMap of Argo CD.
Generated from examples/argocd/health.lua by \`tsx test/argocd/argocd-cm.ts\`; edit that file instead.
Merge it into a running Argo CD with
  kubectl -n argocd patch configmap argocd-cm --type merge --patch-file examples/argocd/argocd-cm.yaml
or put the data keys under configs.cm of the argo-cd Helm chart.`;

export function renderArgocdCm(lua: string): string {
  const data: Record<string, Scalar> = {};
  for (const kind of KINDS) {
    const script = new Scalar(lua.endsWith('\n') ? lua : `${lua}\n`);
    script.type = Scalar.BLOCK_LITERAL;
    data[healthKey(kind)] = script;
  }
  const doc = new Document({
    apiVersion: 'v1',
    kind: 'ConfigMap',
    metadata: {
      name: 'argocd-cm',
      namespace: 'argocd',
      labels: { 'app.kubernetes.io/name': 'argocd-cm', 'app.kubernetes.io/part-of': 'argocd' },
    },
    data,
  });
  doc.commentBefore = HEADER.split('\n')
    .map((l) => ` ${l}`)
    .join('\n');
  return doc.toString({ lineWidth: 0 });
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  writeFileSync(ARGOCD_CM, renderArgocdCm(readFileSync(HEALTH_LUA, 'utf8')));
  console.log(`wrote ${ARGOCD_CM}`);
}
