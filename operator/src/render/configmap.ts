// ConfigMap holding config.json; its hash goes onto the pod template so a config change rolls the pods.
import { createHash } from 'node:crypto';
import { CONFIG_FILE, type RuntimeConfig } from '../../../runtime/src/contract/runtime-config.js';
import type { KubeObject } from '../kube.js';
import type { AnyResource } from '../resources.js';
import { childMetadata } from './names.js';

export interface RenderedConfig {
  configMap: KubeObject;
  hash: string;
}

export function renderConfigMap(r: AnyResource, config: RuntimeConfig): RenderedConfig {
  // `generation` is left out of the hashed content: a spec change that renders the same config must not roll pods.
  const { generation: _generation, ...content } = config;
  const json = `${JSON.stringify(content, null, 2)}\n`;
  const hash = createHash('sha256').update(json).digest('hex').slice(0, 16);
  return {
    hash,
    configMap: {
      apiVersion: 'v1',
      kind: 'ConfigMap',
      metadata: childMetadata(r),
      data: { [CONFIG_FILE]: json },
    },
  };
}
