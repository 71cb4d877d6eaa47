// The operator as its own process from source (node with tsx's loader, no build), configured through
// the environment the chart's Deployment sets: for tests that SIGKILL it or cap its heap.
import { type ChildProcess, type StdioOptions, spawn } from 'node:child_process';
import { join } from 'node:path';
import type { ControlPlane } from '../../envtest/controlplane.js';
import { AMQP_URL } from '../operator-harness.js';

const REPO = join(import.meta.dirname, '../../..');

export interface OperatorProcessOptions {
  /** POD_NAMESPACE: where the Lease lives. */
  namespace: string;
  /** POD_NAME, the first half of the process identity. */
  pod: string;
  healthPort: number;
  logLevel: string;
  /** Flags for node itself, e.g. the chart's `--max-old-space-size`. */
  nodeFlags?: string[];
  stdio: StdioOptions;
}

/** node itself runs the operator, so a signal hits the process that holds the Lease. */
export function spawnOperatorProcess(plane: ControlPlane, options: OperatorProcessOptions): ChildProcess {
  return spawn(process.execPath, [...(options.nodeFlags ?? []), '--import', 'tsx', 'operator/src/main.ts'], {
    cwd: REPO,
    env: {
      PATH: process.env.PATH,
      HOME: process.env.HOME,
      KUBECONFIG: plane.kubeconfigPath,
      O2C_AMQP_URL: AMQP_URL,
      O2C_RUNTIME_IMAGE: 'o2c:test',
      POD_NAMESPACE: options.namespace,
      POD_NAME: options.pod,
      O2C_HEALTH_PORT: String(options.healthPort),
      LOG_LEVEL: options.logLevel,
    },
    stdio: options.stdio,
  });
}
