// CredentialsResolved: every Secret the resource names exists and holds the key asked for.
import type { ComputedCondition } from './condition.js';

export const CredentialsReason = {
  Resolved: 'SecretsFound',
  NoSecrets: 'NoSecretsReferenced',
  SecretNotFound: 'SecretNotFound',
  SecretKeyMissing: 'SecretKeyMissing',
} as const;

export interface SecretReferenceCheck {
  field: string;
  secret: string;
  /** Where the Secret lives when not in the resource's namespace (the operator's broker Secret). */
  namespace?: string;
  key?: string;
  /** Keys present in the Secret; undefined when the Secret does not exist. */
  keys?: readonly string[];
}

export function credentialsResolved(
  namespace: string,
  checks: readonly SecretReferenceCheck[],
): ComputedCondition {
  const type = 'CredentialsResolved';
  if (checks.length === 0) {
    return {
      type,
      status: 'True',
      reason: CredentialsReason.NoSecrets,
      message: 'This resource references no Secrets.',
    };
  }
  const missing = checks.filter((c) => c.keys === undefined);
  if (missing.length > 0) {
    return {
      type,
      status: 'False',
      reason: CredentialsReason.SecretNotFound,
      message: missing
        .map((c) => `Secret ${c.namespace ?? namespace}/${c.secret} not found (${c.field})`)
        .join('; '),
    };
  }
  const keyless = checks.filter((c) => c.key !== undefined && !c.keys?.includes(c.key));
  if (keyless.length > 0) {
    return {
      type,
      status: 'False',
      reason: CredentialsReason.SecretKeyMissing,
      message: keyless
        .map((c) => `Secret ${c.namespace ?? namespace}/${c.secret} has no key '${c.key}' (${c.field})`)
        .join('; '),
    };
  }
  return {
    type,
    status: 'True',
    reason: CredentialsReason.Resolved,
    message: `Secret${checks.length === 1 ? '' : 's'} ${[...new Set(checks.map((c) => c.secret))].join(', ')} found.`,
  };
}
