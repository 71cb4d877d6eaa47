// A real Tryton server for tests and benchmarks: copies the fixture snapshot built by
// test/tryton/setup.sh into a fresh temporary directory, writes a trytond config on a free loopback
// port, starts `trytond` in its own process group and waits until JSON-RPC answers.
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { closeSync, copyFileSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const HERE = dirname(fileURLToPath(import.meta.url));

/** What test/tryton/fixture.py wrote into fixture.json. */
export interface TrytonFixture {
  database: string;
  company: { id: number; currency: string };
  fiscalYear: string;
  admin: { login: string; password: string };
  user: { login: string; password: string; groups: string[] };
  warehouse: { id: number; code: string };
  paymentMethod: { id: number; name: string };
  paymentTerm: { id: number; name: string };
  tax: { name: string; rate: string };
  customers: Record<'good' | 'low_credit', { id: number; code: string; name: string; credit_limit: string }>;
  products: Record<
    'widget' | 'gadget' | 'scarce',
    { id: number; sku: string; name: string; list_price: string; stock: number }
  >;
}

export interface TrytonServer {
  /** Database URL for JSON-RPC, e.g. http://127.0.0.1:41234/o2c/ */
  url: string;
  /** Server root, e.g. http://127.0.0.1:41234/ */
  baseUrl: string;
  port: number;
  database: string;
  /** The restricted integration user. */
  user: string;
  password: string;
  fixture: TrytonFixture;
  /** Temporary directory holding the database copy, config and trytond.log. */
  dir: string;
  logFile: string;
  running(): boolean;
  /** Kill the server's process group (SIGTERM, then SIGKILL after 5 s). Idempotent. */
  stop(): Promise<void>;
  /** Start again on the same port with the current database (after stop()). */
  start(): Promise<void>;
  restart(): Promise<void>;
  /** Stop, restore the database from the snapshot, start. */
  reset(): Promise<void>;
  /** Stop and remove the temporary directory. */
  dispose(): Promise<void>;
}

export interface StartOptions {
  /** Snapshot directory (o2c.sqlite + fixture.json); default: run test/tryton/setup.sh. */
  snapshotDir?: string;
  port?: number;
  /** How long to wait for the server to answer, default 60 s. */
  readyTimeoutMs?: number;
}

let cachedSnapshot: string | undefined;

/** Runs setup.sh (seconds when cached) and returns the snapshot directory; O2C_TRYTON_SNAPSHOT overrides. */
export function snapshotDir(): string {
  if (process.env.O2C_TRYTON_SNAPSHOT) return process.env.O2C_TRYTON_SNAPSHOT;
  if (cachedSnapshot) return cachedSnapshot;
  let out: string;
  try {
    out = execFileSync('bash', [join(HERE, 'setup.sh')], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'inherit'],
      timeout: 15 * 60_000,
    });
  } catch (err) {
    throw new Error(
      `test/tryton/setup.sh failed (run \`make tryton\` to see why): ${(err as Error).message}`,
    );
  }
  const dir = out.trim().split('\n').pop();
  if (!dir) throw new Error('test/tryton/setup.sh printed no snapshot directory');
  cachedSnapshot = dir;
  return dir;
}

export function freePort(): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const srv = createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      srv.close(() => resolvePort(port));
    });
  });
}

const live = new Set<ChildProcess>();
let exitHookInstalled = false;
function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on('exit', () => {
    for (const child of live) {
      try {
        if (child.pid) process.kill(-child.pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
  });
}

export async function startTryton(opts: StartOptions = {}): Promise<TrytonServer> {
  const snap = resolve(opts.snapshotDir ?? snapshotDir());
  const fixture = JSON.parse(readFileSync(join(snap, 'fixture.json'), 'utf8')) as TrytonFixture;
  const database = fixture.database;
  const dir = mkdtempSync(join(tmpdir(), 'o2c-tryton-'));
  const port = opts.port ?? (await freePort());
  const conf = join(dir, 'trytond.conf');
  const logFile = join(dir, 'trytond.log');
  const dbFile = join(dir, `${database}.sqlite`);
  writeFileSync(
    conf,
    [
      '[database]',
      'uri = sqlite://',
      `path = ${dir}`,
      '[web]',
      `listen = 127.0.0.1:${port}`,
      '[session]',
      // Failed logins are rate limited per login; tests log in often.
      'max_attempt = 50',
      '',
    ].join('\n'),
  );
  copyFileSync(join(snap, `${database}.sqlite`), dbFile);
  const baseUrl = `http://127.0.0.1:${port}/`;
  const url = `${baseUrl}${database}/`;
  const readyTimeoutMs = opts.readyTimeoutMs ?? 60_000;
  let child: ChildProcess | undefined;
  let exited: Promise<void> = Promise.resolve();

  async function start(): Promise<void> {
    if (child) return;
    installExitHook();
    const fd = openSync(logFile, 'a');
    const proc = spawn('trytond', ['-c', conf, '-d', database], {
      detached: true,
      stdio: ['ignore', fd, fd],
      env: process.env,
    });
    closeSync(fd);
    child = proc;
    live.add(proc);
    let exitCode: number | null | undefined;
    exited = new Promise<void>((done) => {
      proc.once('exit', (code) => {
        exitCode = code;
        live.delete(proc);
        if (child === proc) child = undefined;
        done();
      });
    });
    proc.once('error', () => {});
    const deadline = Date.now() + readyTimeoutMs;
    while (true) {
      if (exitCode !== undefined) {
        throw new Error(`trytond exited with ${exitCode} before answering; log:\n${tail(logFile)}`);
      }
      if (await answers(url, database, fixture)) return;
      if (Date.now() > deadline) {
        await stop();
        throw new Error(
          `trytond did not answer on ${url} within ${readyTimeoutMs} ms; log:\n${tail(logFile)}`,
        );
      }
      await sleep(100);
    }
  }

  async function stop(): Promise<void> {
    const proc = child;
    if (!proc?.pid) return;
    const pid = proc.pid;
    const kill = (sig: NodeJS.Signals) => {
      try {
        process.kill(-pid, sig);
      } catch {
        // group gone
      }
    };
    kill('SIGTERM');
    const timer = setTimeout(() => kill('SIGKILL'), 5_000);
    await exited;
    clearTimeout(timer);
    kill('SIGKILL'); // any straggler in the group
  }

  const server: TrytonServer = {
    url,
    baseUrl,
    port,
    database,
    user: fixture.user.login,
    password: fixture.user.password,
    fixture,
    dir,
    logFile,
    running: () => child !== undefined,
    stop,
    start,
    async restart() {
      await stop();
      await start();
    },
    async reset() {
      await stop();
      copyFileSync(join(snap, `${database}.sqlite`), dbFile);
      rmSync(`${dbFile}-journal`, { force: true });
      await start();
    },
    async dispose() {
      await stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
  await start();
  return server;
}

/** True once the database answers a login (which also loads the module pool). */
async function answers(url: string, database: string, fixture: TrytonFixture): Promise<boolean> {
  try {
    const res = await fetch(url, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        id: 0,
        method: 'common.db.login',
        params: [fixture.user.login, { password: fixture.user.password }, 'en'],
      }),
      signal: AbortSignal.timeout(30_000),
    });
    if (res.status !== 200) return false;
    const body = (await res.json()) as { result?: unknown };
    return Array.isArray(body.result) && database.length > 0;
  } catch {
    return false;
  }
}

function tail(file: string, lines = 30): string {
  try {
    return readFileSync(file, 'utf8').split('\n').slice(-lines).join('\n');
  } catch {
    return '(no log)';
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
