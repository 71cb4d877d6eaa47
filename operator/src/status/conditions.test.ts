import { describe, expect, it } from 'vitest';
import { conditionsDiffer, mergeConditions, newFailures } from './condition.js';
import { credentialsResolved } from './credentials-resolved.js';
import {
  DEPLOYMENT_PROGRESS_REASONS,
  type DeploymentState,
  deploymentAvailable,
} from './deployment-available.js';
import { ready } from './ready.js';
import { failedConditions, reconciled } from './reconciled.js';
import { referencesResolved } from './references-resolved.js';

const T0 = new Date('2026-01-01T00:00:00Z');
const T1 = new Date('2026-01-01T01:00:00Z');

describe('conditions', () => {
  it.each([
    [
      'a missing Secret is named',
      [{ field: 'spec.credentialsSecretRef', secret: 'tryton' }],
      'False',
      'SecretNotFound',
      'Secret shop/tryton not found',
    ],
    [
      'a missing key is named',
      [{ field: 'spec.credentialsSecretRef', secret: 'tryton', key: 'password', keys: ['user'] }],
      'False',
      'SecretKeyMissing',
      "Secret shop/tryton has no key 'password'",
    ],
    ['no Secrets is fine', [], 'True', 'NoSecretsReferenced', 'no Secrets'],
  ] as const)('CredentialsResolved: %s', (_n, checks, status, reason, text) => {
    const c = credentialsResolved('shop', checks);
    expect(c).toMatchObject({ status, reason });
    expect(c.message).toContain(text);
  });

  it('ReferencesResolved names a missing Connector and the field', () => {
    const c = referencesResolved('shop', [{ field: 'spec.sink.connector', connector: 'crm' }]);
    expect(c).toMatchObject({ status: 'False', reason: 'ConnectorNotFound' });
    expect(c.message).toContain('Connector shop/crm not found (referenced by spec.sink.connector)');
  });

  it.each([
    ['no Deployment yet', undefined, 1, 'DeploymentNotCreated'],
    [
      'a rollout in progress',
      { metadata: { name: 'd', generation: 2 }, status: { observedGeneration: 1 } },
      1,
      'RollingOut',
    ],
    [
      'too few pods available',
      {
        metadata: { name: 'd', generation: 1 },
        status: { observedGeneration: 1, updatedReplicas: 2, availableReplicas: 1 },
      },
      2,
      'ReplicasUnavailable',
    ],
    [
      'all pods available',
      {
        metadata: { name: 'd', generation: 1 },
        status: { observedGeneration: 1, updatedReplicas: 2, availableReplicas: 2 },
      },
      2,
      'MinimumReplicasAvailable',
    ],
  ])('DeploymentAvailable with %s', (_n, deployment, replicas, reason) => {
    expect(deploymentAvailable(deployment, replicas).reason).toBe(reason);
  });

  it.each([
    [
      'a rollout past its progress deadline fails with the Deployment message',
      {
        metadata: { name: 'd', generation: 3 },
        status: {
          observedGeneration: 3,
          updatedReplicas: 1,
          availableReplicas: 1,
          conditions: [
            {
              type: 'Progressing',
              status: 'False',
              reason: 'ProgressDeadlineExceeded',
              message: 'ReplicaSet "d-7f" has timed out progressing.',
            },
          ],
        },
      },
      2,
      ['False', 'ProgressDeadlineExceeded', 'Deployment d: ReplicaSet "d-7f" has timed out progressing.'],
    ],
    [
      'a deadline verdict on an older generation is still a rollout in progress',
      {
        metadata: { name: 'd', generation: 4 },
        status: {
          observedGeneration: 3,
          conditions: [{ type: 'Progressing', status: 'False', reason: 'ProgressDeadlineExceeded' }],
        },
      },
      2,
      ['False', 'RollingOut', 'Deployment d is rolling out: 0/2 pods updated.'],
    ],
    [
      'a rollout still within its deadline is in progress',
      {
        metadata: { name: 'd', generation: 3 },
        status: {
          observedGeneration: 3,
          updatedReplicas: 1,
          conditions: [{ type: 'Progressing', status: 'True', reason: 'ReplicaSetUpdated' }],
        },
      },
      2,
      ['False', 'RollingOut', 'Deployment d is rolling out: 1/2 pods updated.'],
    ],
  ] as const)('DeploymentAvailable and Ready: %s', (_n, deployment, replicas, [status, reason, message]) => {
    const condition = deploymentAvailable(deployment as DeploymentState, replicas);
    expect([condition.status, condition.reason, condition.message]).toEqual([status, reason, message]);
    const r = ready([{ type: 'SpecValid', status: 'True', reason: 'Valid', message: '' }, condition]);
    expect([r.status, r.reason, r.message]).toEqual([status, reason, `DeploymentAvailable: ${message}`]);
  });

  it('a rollout past its progress deadline deserves a Warning Event', () => {
    expect(DEPLOYMENT_PROGRESS_REASONS.has('ProgressDeadlineExceeded')).toBe(false);
  });

  it('Ready carries the first failure', () => {
    const r = ready([
      { type: 'ReferencesResolved', status: 'True', reason: 'Resolved', message: '' },
      {
        type: 'CredentialsResolved',
        status: 'False',
        reason: 'SecretNotFound',
        message: 'Secret a/b not found',
      },
    ]);
    expect(r).toMatchObject({
      status: 'False',
      reason: 'SecretNotFound',
      message: 'CredentialsResolved: Secret a/b not found',
    });
  });

  it('keeps lastTransitionTime while the status stays, and reports no change', () => {
    const c = { type: 'Ready', status: 'False' as const, reason: 'X', message: 'm' };
    const first = mergeConditions(undefined, [c], 1, T0);
    const second = mergeConditions(first, [c], 1, T1);
    expect(second[0]!.lastTransitionTime).toBe('2026-01-01T00:00:00Z');
    expect(conditionsDiffer(first, second)).toBe(false);
    expect(newFailures(first, second)).toEqual([]);
    const flipped = mergeConditions(second, [{ ...c, status: 'True' }], 1, T1);
    expect(flipped[0]!.lastTransitionTime).toBe('2026-01-01T01:00:00Z');
  });

  it.each([
    [
      'a refused write is False with the API server message',
      { error: 'PATCH /api/v1/namespaces/a/services/x: 422 Service "x" is invalid' },
      'False',
      'ApplyFailed',
      'Service "x" is invalid',
    ],
    [
      'children waiting on inputs are Unknown',
      { blocked: true } as const,
      'Unknown',
      'WaitingForInputs',
      'not rendered',
    ],
    [
      'applied children are named',
      { applied: ['Service o2c-connector-erp'] },
      'True',
      'ChildrenApplied',
      'Service o2c-connector-erp',
    ],
  ])('Reconciled: %s', (_n, result, status, reason, text) => {
    const c = reconciled(result);
    expect(c).toMatchObject({ status, reason });
    expect(c.message).toContain(text);
  });

  it('the broker Secret is named in its own namespace', () => {
    const c = credentialsResolved('shop', [
      {
        field: 'the operator setting O2C_BROKER_SECRET',
        secret: 'o2c-broker',
        namespace: 'o2c-system',
        key: 'url',
      },
    ]);
    expect(c.message).toContain(
      'Secret o2c-system/o2c-broker not found (the operator setting O2C_BROKER_SECRET)',
    );
  });

  it.each([
    ['a rollout under way is no failure', 'RollingOut', []],
    ['pods that do not come up are one', 'ReplicasUnavailable', ['DeploymentAvailable']],
  ])('Warning Events: %s', (_n, reason, expected) => {
    const next = mergeConditions(
      undefined,
      [{ type: 'DeploymentAvailable', status: 'False', reason, message: 'm' }],
      1,
      T0,
    );
    expect(newFailures(undefined, next, DEPLOYMENT_PROGRESS_REASONS).map((c) => c.type)).toEqual(expected);
  });

  it('a reconcile that failed early keeps the other conditions and puts the error into Reconciled and Ready', () => {
    const before = mergeConditions(
      undefined,
      [
        { type: 'Ready', status: 'True', reason: 'Ready', message: 'ok' },
        { type: 'TopologyReady', status: 'True', reason: 'QueuesDeclared', message: 'q' },
      ],
      1,
      T0,
    );
    const after = failedConditions(before, 'GET /api/v1/namespaces/a/secrets/b: 403 forbidden', 2, T1);
    expect(after.map((c) => [c.type, c.status, c.reason])).toEqual([
      ['Ready', 'False', 'ApplyFailed'],
      ['TopologyReady', 'True', 'QueuesDeclared'],
      ['Reconciled', 'False', 'ApplyFailed'],
    ]);
    expect(after[0]!.message).toContain('403 forbidden');
  });
});
