// ReferencesResolved: every Connector the resource names exists and offers the operation asked of it.
import type { ComputedCondition } from './condition.js';

export const ReferencesReason = {
  Resolved: 'Resolved',
  NoReferences: 'NoReferences',
  ConnectorNotFound: 'ConnectorNotFound',
  OperationNotOffered: 'OperationNotOffered',
} as const;

export interface ConnectorReferenceCheck {
  /** Where the reference is, e.g. spec.sink.connector. */
  field: string;
  connector: string;
  operation?: string;
  /** The referenced Connector's spec.system, undefined when it does not exist. */
  system?: string;
  offered?: boolean;
}

export function referencesResolved(
  namespace: string,
  checks: readonly ConnectorReferenceCheck[],
): ComputedCondition {
  const type = 'ReferencesResolved';
  if (checks.length === 0) {
    return {
      type,
      status: 'True',
      reason: ReferencesReason.NoReferences,
      message: 'This resource references no Connectors.',
    };
  }
  const missing = checks.filter((c) => c.system === undefined);
  if (missing.length > 0) {
    const names = [...new Set(missing.map((c) => `${namespace}/${c.connector}`))];
    return {
      type,
      status: 'False',
      reason: ReferencesReason.ConnectorNotFound,
      message: `Connector ${names.join(', ')} not found (referenced by ${[...new Set(missing.map((c) => c.field))].join(', ')}); create it or fix the reference.`,
    };
  }
  const unsupported = checks.filter((c) => c.operation && !c.offered);
  if (unsupported.length > 0) {
    return {
      type,
      status: 'False',
      reason: ReferencesReason.OperationNotOffered,
      message: unsupported
        .map(
          (c) =>
            `${c.field}: Connector ${namespace}/${c.connector} is a ${c.system} system and does not offer ${c.operation}`,
        )
        .join('; ')
        .concat('.'),
    };
  }
  const count = new Set(checks.map((c) => c.connector)).size;
  return {
    type,
    status: 'True',
    reason: ReferencesReason.Resolved,
    message: `All ${count} referenced Connector${count === 1 ? '' : 's'} found.`,
  };
}
