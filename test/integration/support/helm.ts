// The Helm binary `make helm` builds (or O2C_HELM), and the chart rendered by it as parsed objects.
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseAllDocuments } from 'yaml';
import type { KubeObject } from '../../../operator/src/kube.js';

export const REPO_ROOT = join(dirname(fileURLToPath(import.meta.url)), '../../..');
export const CHART_DIR = join(REPO_ROOT, 'charts/o2c');

let cached: string | undefined;
let helmHome: string | undefined;

export function helmBinary(): string {
  cached ??=
    process.env.O2C_HELM ??
    execFileSync('bash', [join(REPO_ROOT, 'scripts/tools/helm.sh')], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'inherit'],
    }).trim();
  return cached;
}

export interface HelmResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs helm with its own empty config and cache, so nothing from the user's helm leaks in. */
export function helm(args: string[], env: NodeJS.ProcessEnv = {}): HelmResult {
  helmHome ??= mkdtempSync(join(tmpdir(), 'o2c-helm-'));
  const result = spawnSync(helmBinary(), args, {
    encoding: 'utf8',
    cwd: REPO_ROOT,
    env: {
      PATH: process.env.PATH,
      HOME: process.env.HOME,
      HELM_CONFIG_HOME: join(helmHome, 'config'),
      HELM_CACHE_HOME: join(helmHome, 'cache'),
      HELM_DATA_HOME: join(helmHome, 'data'),
      ...env,
    },
    timeout: 60_000,
  });
  if (result.error) throw result.error;
  return { code: result.status ?? -1, stdout: result.stdout, stderr: result.stderr };
}

/** `helm template` of charts/o2c: the rendered objects, or the error helm printed. */
export function renderChart(
  release: string,
  namespace: string,
  args: string[] = [],
): { objects: KubeObject[] } | { error: string } {
  const r = helm(['template', release, CHART_DIR, '--namespace', namespace, ...args]);
  if (r.code !== 0) return { error: r.stderr };
  const objects = parseAllDocuments(r.stdout)
    .map((doc) => doc.toJS() as KubeObject | null)
    .filter((o): o is KubeObject => o !== null);
  return { objects };
}
