// What differs between the kinds: which Connectors and Secrets a resource references, which queues it
// needs and which ports it serves. Everything else lives in the generic reconciler (controller.ts).
import type { DeletablePurpose, TopologyPurpose } from '../broker.js';
import type { AnyResource, Kind, O2cStatus } from '../resources.js';

export interface ConnectorReference {
  field: string;
  connector: string;
  operation?: string;
}

export interface SecretReference {
  field: string;
  secret: string;
  key?: string;
}

export interface KindHandler<R extends AnyResource = AnyResource> {
  kind: Kind;
  connectorRefs(r: R): ConnectorReference[];
  secretRefs(r: R): SecretReference[];
  purposes(r: R): TopologyPurpose[];
  /** Every purpose (and ordered layout) this kind may ever have declared, for deletion. */
  allPurposes: readonly DeletablePurpose[];
  /** Named ports the runtime serves besides metrics (HEALTH_PORT). */
  ports(r: R): Record<string, number>;
  /** Problems the schema cannot see (CEL that does not compile), each naming its field. */
  validate?(r: R): string[];
  extraStatus?(r: R): Partial<O2cStatus>;
}
