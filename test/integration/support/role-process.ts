// Starts a runtime role in a child process (role-process-main.ts) and watches it: a test asserts the
// process never exited, reads its JSON log lines and asks for its stats over IPC.
import { type ChildProcess, spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import type { RoleStats } from './role-process-main.js';

export type { RoleStats } from './role-process-main.js';

export interface RoleProcess {
  role: string;
  child: ChildProcess;
  ready: Record<string, unknown>;
  /** Parsed pino lines so far. */
  logs: Record<string, unknown>[];
  /** Exit code or signal once it ended on its own; undefined while it runs (or after stop()). */
  exited(): string | undefined;
  stats(): Promise<RoleStats>;
  stop(): Promise<void>;
}

export function startRoleProcess(
  role: 'workflow' | 'connectors' | 'pipeline',
  env: Record<string, string>,
): Promise<RoleProcess> {
  // node itself with tsx's loader, not the tsx CLI: the pid must be the process that does the work.
  const child = spawn(
    process.execPath,
    ['--import', 'tsx', 'test/integration/support/role-process-main.ts'],
    {
      env: { ...process.env, O2C_LOG_LEVEL: 'warn', ...env, O2C_ROLE: role },
      stdio: ['ignore', 'pipe', 'inherit', 'ipc'],
    },
  );
  const logs: Record<string, unknown>[] = [];
  let exit: string | undefined;
  let stopping = false;
  child.once('exit', (code, signal) => {
    if (!stopping) exit = `${role} exited with ${code ?? signal}`;
  });
  return new Promise((resolve, reject) => {
    const lines = createInterface({ input: child.stdout! });
    lines.on('line', (line) => {
      const ready = /^ready (.*)$/.exec(line);
      if (ready) {
        resolve({
          role,
          child,
          ready: JSON.parse(ready[1]!) as Record<string, unknown>,
          logs,
          exited: () => exit,
          stats: () =>
            new Promise<RoleStats>((done, fail) => {
              if (exit || !child.connected) return fail(new Error(exit ?? `${role} process is gone`));
              const onMessage = (m: unknown) => {
                const s = (m as { stats?: RoleStats }).stats;
                if (!s) return;
                child.off('message', onMessage);
                done(s);
              };
              child.on('message', onMessage);
              if (!child.send('stats')) fail(new Error(`${role} process does not take messages`));
            }),
          stop: () =>
            new Promise<void>((done) => {
              stopping = true;
              if (child.exitCode !== null || child.signalCode !== null) return done();
              child.once('exit', () => done());
              child.kill('SIGTERM');
              setTimeout(() => child.kill('SIGKILL'), 10_000).unref();
            }),
        });
        return;
      }
      try {
        logs.push(JSON.parse(line) as Record<string, unknown>);
      } catch {
        // not a log line
      }
    });
    child.once('exit', (code) =>
      reject(new Error(`${role} process exited with ${code} before it was ready`)),
    );
  });
}
