// Runs the order API in a child process (fixtures/api-process.ts) so a test sees the server's own
// memory (VmRSS from /proc) and its JSON log lines.
import { type ChildProcess, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createInterface } from 'node:readline';

export interface ApiProcess {
  child: ChildProcess;
  apiPort: number;
  healthPort: number;
  baseUrl: string;
  /** Parsed pino lines the process wrote so far. */
  logs: Record<string, unknown>[];
  /** Resident set size of the server process, in MiB. */
  rssMiB(): number;
  stop(): Promise<void>;
}

export function rssMiBOf(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = /^VmRSS:\s+(\d+) kB$/m.exec(status);
  if (!kb) throw new Error(`no VmRSS for process ${pid}`);
  return Number(kb[1]) / 1024;
}

export function startApiProcess(env: Record<string, string>, nodeArgs: string[] = []): Promise<ApiProcess> {
  // node itself with tsx's loader, not the tsx CLI: the pid must be the process that serves.
  const child = spawn(
    process.execPath,
    [...nodeArgs, '--import', 'tsx', 'test/integration/fixtures/api-process.ts'],
    {
      env: { ...process.env, O2C_LOG_LEVEL: 'warn', ...env },
      stdio: ['ignore', 'pipe', 'inherit'],
    },
  );
  const logs: Record<string, unknown>[] = [];
  return new Promise((resolve, reject) => {
    const lines = createInterface({ input: child.stdout! });
    lines.on('line', (line) => {
      const ready = /^ready (\d+) (\d+)$/.exec(line);
      if (ready) {
        const apiPort = Number(ready[1]);
        resolve({
          child,
          apiPort,
          healthPort: Number(ready[2]),
          baseUrl: `http://127.0.0.1:${apiPort}`,
          logs,
          rssMiB: () => rssMiBOf(child.pid!),
          stop: () =>
            new Promise<void>((done) => {
              if (child.exitCode !== null) return done();
              child.once('exit', () => done());
              child.kill('SIGTERM');
              setTimeout(() => child.kill('SIGKILL'), 5_000).unref();
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
    child.once('exit', (code) => reject(new Error(`api process exited with ${code}`)));
  });
}
