// The Argo CD health checks of examples/argocd, run by gopher-lua (the interpreter Argo CD embeds)
// the way Argo CD runs a custom check, against Connectors, Pipelines and Workflows captured from a
// real API server after the operator reconciled them (test/argocd/capture.ts).
import { execFile } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { KINDS } from '../../operator/src/resources.js';
import { ARGOCD_CM, HEALTH_LUA, healthKey, renderArgocdCm } from '../argocd/argocd-cm.js';

const run = promisify(execFile);
const GO_MODULE = join(import.meta.dirname, '../argocd');
const FIXTURES = join(GO_MODULE, 'fixtures');
const STATUS_MODULES = join(import.meta.dirname, '../../operator/src/status');
/** Go resolves the module's dependencies from go.mod/go.sum; the build lands in the Go build cache. */
const GO_ENV = { ...process.env, GOFLAGS: `${process.env.GOFLAGS ?? ''} -mod=mod`.trim() };

interface Health {
  file: string;
  status?: string;
  message?: string;
  error?: string;
}

let dir: string;
let binary: string;
const argocdCm = parse(readFileSync(ARGOCD_CM, 'utf8')) as { data: Record<string, string> };

/** The script argocd-cm gives the kind, written out for the Go program. */
function scriptFor(kind: string): string {
  const script = argocdCm.data[healthKey(kind)];
  if (!script) throw new Error(`argocd-cm.yaml has no ${healthKey(kind)}`);
  const path = join(dir, `${kind}.lua`);
  writeFileSync(path, script);
  return path;
}

async function health(kind: string, files: string[]): Promise<Health[]> {
  const { stdout } = await run(binary, [scriptFor(kind), ...files]);
  return stdout
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as Health);
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'o2c-argocd-health-'));
  binary = join(dir, 'o2c-health');
  await run('go', ['build', '-o', binary, './cmd/o2c-health'], { cwd: GO_MODULE, env: GO_ENV });
});

afterAll(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
});

// Keyed by the fixture file name without ".json"; captures from another cluster
// (e2e-*.json) add their own rows.
const CAPTURED: Array<[string, string, string, string]> = [
  [
    'a Connector whose pods are available is Healthy',
    'envtest-connector-ready',
    'Healthy',
    'All conditions are met.',
  ],
  [
    'a Pipeline whose pods are available is Healthy',
    'envtest-pipeline-ready',
    'Healthy',
    'All conditions are met.',
  ],
  [
    'a Workflow whose pods are available is Healthy',
    'envtest-workflow-ready',
    'Healthy',
    'All conditions are met.',
  ],
  // Captured by make e2e-local (O2C_E2E_CAPTURE=1) from make cluster's node, pods really running.
  [
    'a Connector running on a real cluster is Healthy',
    'e2e-connector-ready',
    'Healthy',
    'All conditions are met.',
  ],
  [
    'a Pipeline running on a real cluster is Healthy',
    'e2e-pipeline-ready',
    'Healthy',
    'All conditions are met.',
  ],
  [
    'a Workflow running on a real cluster is Healthy',
    'e2e-workflow-ready',
    'Healthy',
    'All conditions are met.',
  ],
  [
    'a Connector whose Deployment has not rolled out yet is Progressing',
    'envtest-connector-rolling-out',
    'Progressing',
    'DeploymentAvailable: Deployment o2c-connector-wms is rolling out: 0/1 pods updated.',
  ],
  [
    'a Connector whose pods are not ready yet is Progressing',
    'envtest-connector-replicas-unavailable',
    'Progressing',
    'DeploymentAvailable: Deployment o2c-connector-returns has 0/1 pods available; see kubectl describe deployment o2c-connector-returns.',
  ],
  [
    'a Connector whose credentials Secret is missing is Degraded and names the Secret',
    'envtest-connector-credentials-missing',
    'Degraded',
    'CredentialsResolved: Secret argocd-capture/billing-credentials not found (spec.credentialsSecretRef)',
  ],
  [
    'a Connector whose Secret lacks the key is Degraded and names the key',
    'envtest-connector-credentials-key-missing',
    'Degraded',
    "CredentialsResolved: Secret argocd-capture/ledger-credentials has no key 'password' (spec.credentialsSecretRef)",
  ],
  [
    'a Pipeline whose sink Connector is missing is Degraded and names it',
    'envtest-pipeline-connector-missing',
    'Degraded',
    'ReferencesResolved: Connector argocd-capture/marketing not found (referenced by spec.sink.connector); create it or fix the reference.',
  ],
  [
    'a Pipeline delivering to a system without that operation is Degraded',
    'envtest-pipeline-operation-not-offered',
    'Degraded',
    'ReferencesResolved: spec.sink.connector: Connector argocd-capture/tax is a tax system and does not offer UpsertItem.',
  ],
  [
    'a Pipeline whose CEL filter does not compile is Degraded and names the field',
    'envtest-pipeline-invalid-cel',
    'Degraded',
    'SpecValid: spec.filter: invalid CEL "event.item.active &&"',
  ],
  [
    'a Workflow calling a missing Connector is Degraded and names the step',
    'envtest-workflow-connector-missing',
    'Degraded',
    'ReferencesResolved: Connector argocd-capture/shipping not found (referenced by spec.steps[0].call); create it or fix the reference.',
  ],
  [
    'a Workflow whose API tokens Secret is missing is Degraded',
    'envtest-workflow-credentials-missing',
    'Degraded',
    'CredentialsResolved: Secret argocd-capture/missing-tokens not found (spec.api.authSecretRef)',
  ],
  [
    'a Connector changed since the operator last reported is Progressing, though Ready=True',
    'envtest-connector-generation-ahead',
    'Progressing',
    'Waiting for the o2c operator to report on generation 2; the status is about generation 1 (Ready=True: All conditions are met.)',
  ],
  [
    'a Pipeline changed since the operator last reported is Progressing, though Ready=True',
    'envtest-pipeline-generation-ahead',
    'Progressing',
    'Waiting for the o2c operator to report on generation 2; the status is about generation 1 (Ready=True: All conditions are met.)',
  ],
  [
    'a Workflow changed since the operator last reported is Progressing, though Ready=True',
    'envtest-workflow-generation-ahead',
    'Progressing',
    'Waiting for the o2c operator to report on generation 2; the status is about generation 1 (Ready=True: All conditions are met.)',
  ],
  [
    'a Connector the operator has not seen is Progressing',
    'envtest-connector-no-status',
    'Progressing',
    'Waiting for the o2c operator to report on generation 1.',
  ],
  [
    'a Pipeline the operator has not seen is Progressing',
    'envtest-pipeline-no-status',
    'Progressing',
    'Waiting for the o2c operator to report on generation 1.',
  ],
  [
    'a Workflow the operator has not seen is Progressing',
    'envtest-workflow-no-status',
    'Progressing',
    'Waiting for the o2c operator to report on generation 1.',
  ],
  [
    'a Connector whose queues cannot be declared is Degraded while the broker is down',
    'envtest-connector-broker-unreachable',
    'Degraded',
    'TopologyReady: Could not declare the RabbitMQ queues: connect ECONNREFUSED 127.0.0.1:1. Retrying with backoff.',
  ],
  [
    'a Pipeline whose queues cannot be declared is Degraded while the broker is down',
    'envtest-pipeline-broker-unreachable',
    'Degraded',
    'TopologyReady: Could not declare the RabbitMQ queues: connect ECONNREFUSED 127.0.0.1:1. Retrying with backoff.',
  ],
  [
    'a Workflow whose queues cannot be declared is Degraded while the broker is down',
    'envtest-workflow-broker-unreachable',
    'Degraded',
    'TopologyReady: Could not declare the RabbitMQ queues: connect ECONNREFUSED 127.0.0.1:1. Retrying with backoff.',
  ],
];

/**
 * What Argo CD shows for Ready=False with each reason the operator can put there: the reason of the
 * first condition that is not True (operator/src/status/ready.ts). Reasons of conditions that are
 * True never reach Ready=False and are listed as such.
 */
const READY_FALSE_HEALTH: Record<string, 'Degraded' | 'Progressing'> = {
  InvalidSpec: 'Degraded',
  ConnectorNotFound: 'Degraded',
  OperationNotOffered: 'Degraded',
  SecretNotFound: 'Degraded',
  SecretKeyMissing: 'Degraded',
  BrokerUnreachable: 'Degraded',
  ApplyFailed: 'Degraded',
  DeploymentNotCreated: 'Progressing',
  RollingOut: 'Progressing',
  ReplicasUnavailable: 'Progressing',
  ProgressDeadlineExceeded: 'Degraded',
};
/** Reasons of conditions that are Unknown, never False: they reach Ready as Ready=Unknown. */
const READY_UNKNOWN_REASONS = new Set(['WaitingForInputs']);
const SUCCESS_REASONS = new Set([
  'SpecValid',
  'Resolved',
  'NoReferences',
  'SecretsFound',
  'NoSecretsReferenced',
  'QueuesDeclared',
  'MinimumReplicasAvailable',
  'ScaledToZero',
  'ChildrenApplied',
]);

/** Every reason constant exported by operator/src/status/*.ts (the `...Reason` objects). */
async function operatorReasons(): Promise<string[]> {
  const reasons = new Set<string>();
  for (const file of readdirSync(STATUS_MODULES).filter(
    (f) => f.endsWith('.ts') && !f.endsWith('.test.ts'),
  )) {
    const mod = (await import(join(STATUS_MODULES, file))) as Record<string, unknown>;
    for (const [name, value] of Object.entries(mod)) {
      if (!name.endsWith('Reason') || typeof value !== 'object' || value === null) continue;
      for (const r of Object.values(value)) if (typeof r === 'string') reasons.add(r);
    }
  }
  return [...reasons].sort();
}

describe('Argo CD health of captured resources', () => {
  it('argocd-cm.yaml embeds health.lua unchanged for every kind (tsx test/argocd/argocd-cm.ts)', () => {
    expect(readFileSync(ARGOCD_CM, 'utf8')).toBe(renderArgocdCm(readFileSync(HEALTH_LUA, 'utf8')));
    for (const kind of KINDS) expect(argocdCm.data[healthKey(kind)]).toBe(readFileSync(HEALTH_LUA, 'utf8'));
  });

  it('every captured fixture has an expected health below', () => {
    const files = readdirSync(FIXTURES)
      .filter((f) => f.endsWith('.json'))
      .map((f) => f.replace(/\.json$/, ''));
    expect(files.sort()).toEqual(CAPTURED.map((c) => c[1]).sort());
  });

  it.each(CAPTURED)('%s', async (_sentence, fixture, status, message) => {
    const file = join(FIXTURES, `${fixture}.json`);
    const obj = JSON.parse(readFileSync(file, 'utf8')) as { kind: string };
    const [result] = await health(obj.kind, [file]);
    expect(result?.error).toBeUndefined();
    expect(result?.status).toBe(status);
    expect(result?.message).toContain(message);
  });

  it('classifies every reason the operator can give Ready=False', async () => {
    const reasons = await operatorReasons();
    expect(reasons.length).toBeGreaterThan(10);
    const unclassified = reasons.filter(
      (r) => !(r in READY_FALSE_HEALTH) && !READY_UNKNOWN_REASONS.has(r) && !SUCCESS_REASONS.has(r),
    );
    expect(unclassified, 'add these reasons to READY_FALSE_HEALTH (and health.lua if they settle)').toEqual(
      [],
    );
    const failures = reasons.filter((r) => r in READY_FALSE_HEALTH);
    const files = failures.map((reason) => {
      const path = join(dir, `ready-false-${reason}.json`);
      const condition = {
        type: 'Ready',
        status: 'False',
        reason,
        message: `m ${reason}`,
        observedGeneration: 3,
      };
      writeFileSync(
        path,
        JSON.stringify({
          metadata: { generation: 3 },
          status: { observedGeneration: 3, conditions: [condition] },
        }),
      );
      return path;
    });
    for (const kind of KINDS) {
      const results = await health(kind, files);
      expect(Object.fromEntries(results.map((r, i) => [failures[i], r.status]))).toEqual(
        Object.fromEntries(failures.map((r) => [r, READY_FALSE_HEALTH[r]])),
      );
      expect(results.map((r) => r.message)).toEqual(failures.map((r) => `m ${r}`));
    }
  });

  it('Ready=Unknown is Progressing with its message', async () => {
    const path = join(dir, 'ready-unknown.json');
    writeFileSync(
      path,
      JSON.stringify({
        metadata: { generation: 1 },
        status: {
          conditions: [
            { type: 'Ready', status: 'Unknown', reason: 'X', message: 'checking', observedGeneration: 1 },
          ],
        },
      }),
    );
    expect(await health('Workflow', [path])).toMatchObject([{ status: 'Progressing', message: 'checking' }]);
  });

  it('falls back to status.observedGeneration when the condition carries none', async () => {
    const path = join(dir, 'status-generation.json');
    const ready = { type: 'Ready', status: 'True', reason: 'Ready', message: 'ok' };
    writeFileSync(
      path,
      JSON.stringify({ metadata: { generation: 4 }, status: { observedGeneration: 4, conditions: [ready] } }),
    );
    const stale = join(dir, 'status-generation-stale.json');
    writeFileSync(
      stale,
      JSON.stringify({ metadata: { generation: 4 }, status: { observedGeneration: 3, conditions: [ready] } }),
    );
    expect(await health('Connector', [path, stale])).toMatchObject([
      { status: 'Healthy', message: 'ok' },
      { status: 'Progressing' },
    ]);
  });

  it('the Go harness evaluates Lua as Argo CD does (go test)', async () => {
    const { stdout } = await run('go', ['test', './...'], { cwd: GO_MODULE, env: GO_ENV });
    expect(stdout).toMatch(/^ok\s+o2c\.dev\/test\/argocd\/luahealth/m);
  });
});
