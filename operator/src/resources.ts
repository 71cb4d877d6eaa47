// The o2c custom resources as the operator sees them (raw JSON from the apiserver).
import type { ConnectorSpec } from '../../crds/connector.js';
import type { PipelineSpec } from '../../crds/pipeline.js';
import type { WorkflowSpec } from '../../crds/workflow.js';
import type { KubeObject } from './kube.js';
import type { Condition } from './status/condition.js';

export const KINDS = ['Connector', 'Pipeline', 'Workflow'] as const;
export type Kind = (typeof KINDS)[number];
export const isKind = (kind: string | undefined): kind is Kind => KINDS.includes(kind as Kind);

export interface O2cStatus {
  observedGeneration?: number;
  conditions?: Condition[];
  replicas?: number;
  selector?: string;
  configHash?: string;
  steps?: number;
  orders?: number;
}

export interface O2cResource<S = unknown> extends KubeObject {
  kind: Kind;
  spec: S;
  status?: O2cStatus;
}

export type Connector = O2cResource<ConnectorSpec> & { kind: 'Connector' };
export type Pipeline = O2cResource<PipelineSpec> & { kind: 'Pipeline' };
export type Workflow = O2cResource<WorkflowSpec> & { kind: 'Workflow' };
export type AnyResource = Connector | Pipeline | Workflow;

export const resourceKey = (kind: string, namespace: string, name: string): string =>
  `${kind}/${namespace}/${name}`;
export function parseKey(key: string): { kind: Kind; namespace: string; name: string } {
  const [kind, namespace, name] = key.split('/');
  if (!isKind(kind) || !namespace || !name) throw new Error(`bad key ${key}`);
  return { kind, namespace, name };
}

export const FINALIZER = 'o2c.dev/broker-topology';
