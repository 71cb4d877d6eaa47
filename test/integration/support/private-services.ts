// A PostgreSQL and a RabbitMQ of a test's own, on free ports in temporary directories, for tests that
// restart or stop a service: the shared ones on 5432/5672 serve every other session and are never
// restarted. PostgreSQL runs as the `postgres` user (initdb + pg_ctl of the newest Debian version),
// RabbitMQ as a second Erlang node (own node name, ports, Mnesia, logs, cookie and plugins file).
// Everything is stopped and removed by `close()`, and on process exit if a test forgot.
import { execFile, execFileSync, spawnSync } from 'node:child_process';
import {
  chmodSync,
  chownSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import pg from 'pg';

/** A free TCP port on loopback (released again at once: a small race, fine on one machine). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

const cleanups = new Set<() => void>();
process.once('exit', () => {
  for (const c of cleanups) c();
});

const execFileAsync = promisify(execFile);

/** Runs a command without blocking the event loop (load generators keep running meanwhile). */
async function sh(
  cmd: string,
  args: string[],
  options: { env?: NodeJS.ProcessEnv; timeoutMs?: number } = {},
): Promise<string> {
  try {
    const { stdout } = await execFileAsync(cmd, args, {
      env: options.env ?? process.env,
      timeout: options.timeoutMs ?? 120_000,
    });
    return stdout;
  } catch (err) {
    const e = err as { stderr?: string; stdout?: string; code?: unknown };
    throw new Error(`${cmd} ${args.join(' ')} failed (${e.code}): ${e.stderr || e.stdout || err}`);
  }
}

// ---- PostgreSQL ---------------------------------------------------------------------------------

export interface PrivatePostgres {
  port: number;
  /** postgres://postgres@127.0.0.1:<port>/<database> */
  url(database?: string): string;
  /** Creates (or recreates) a database and returns its URL. */
  createDatabase(name: string): Promise<string>;
  /** Fast shutdown (sessions terminated with 57P01), `downMs` without a server, start again. */
  restart(options?: { downMs?: number }): Promise<{ downAt: number; upAt: number }>;
  stop(): Promise<void>;
  start(): Promise<void>;
  close(): Promise<void>;
}

function postgresBin(): string {
  const versions = readdirSync('/usr/lib/postgresql')
    .filter((v) => /^\d+$/.test(v))
    .sort((a, b) => Number(b) - Number(a));
  if (versions.length === 0)
    throw new Error('no PostgreSQL server under /usr/lib/postgresql (make services)');
  return `/usr/lib/postgresql/${versions[0]}/bin`;
}

export async function startPrivatePostgres(name: string): Promise<PrivatePostgres> {
  const bin = postgresBin();
  const dir = mkdtempSync(join(tmpdir(), `o2c-${name}-pg-`));
  chmodSync(dir, 0o755);
  const data = join(dir, 'data');
  mkdirSync(data);
  const uid = Number(execFileSync('id', ['-u', 'postgres'], { encoding: 'utf8' }).trim());
  const gid = Number(execFileSync('id', ['-g', 'postgres'], { encoding: 'utf8' }).trim());
  chownSync(dir, uid, gid);
  chownSync(data, uid, gid);
  const port = await freePort();
  const asPostgres = (tool: string, args: string[]) =>
    sh('runuser', ['-u', 'postgres', '--', `${bin}/${tool}`, ...args], { timeoutMs: 120_000 });
  const serverOptions = `-p ${port} -k ${dir} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200`;
  const pgCtl = (...args: string[]) => asPostgres('pg_ctl', ['-D', data, '-l', join(dir, 'log'), ...args]);

  await asPostgres('initdb', ['-D', data, '-A', 'trust', '-U', 'postgres', '-E', 'UTF8', '--no-sync']);
  const start = async () => {
    await pgCtl('-o', serverOptions, '-w', '-t', '60', 'start');
  };
  const stop = async () => {
    await pgCtl('-m', 'fast', '-w', '-t', '60', 'stop');
  };
  await start();
  const cleanup = () => {
    spawnSync('runuser', ['-u', 'postgres', '--', `${bin}/pg_ctl`, '-D', data, '-m', 'immediate', 'stop'], {
      timeout: 30_000,
    });
    rmSync(dir, { recursive: true, force: true });
  };
  cleanups.add(cleanup);
  const url = (database = 'postgres') => `postgres://postgres@127.0.0.1:${port}/${database}`;

  return {
    port,
    url,
    async createDatabase(db) {
      const admin = new pg.Client({ connectionString: url() });
      await admin.connect();
      try {
        await admin.query(`DROP DATABASE IF EXISTS ${db} WITH (FORCE)`);
        await admin.query(`CREATE DATABASE ${db}`);
      } finally {
        await admin.end();
      }
      return url(db);
    },
    async restart(options = {}) {
      await stop();
      const downAt = Date.now();
      if (options.downMs) await sleep(options.downMs);
      await start();
      return { downAt, upAt: Date.now() };
    },
    stop,
    start,
    async close() {
      cleanups.delete(cleanup);
      cleanup();
    },
  };
}

// ---- RabbitMQ -----------------------------------------------------------------------------------

export interface PrivateRabbit {
  node: string;
  port: number;
  /** amqp://guest:guest@127.0.0.1:<port> */
  url: string;
  /** `rabbitmqctl -n <node> …` with this node's cookie. */
  ctl(...args: string[]): Promise<string>;
  /** stop_app: connections close, the port closes, the Erlang node stays. */
  stopApp(): Promise<void>;
  /** start_app and wait until the node serves again. */
  startApp(): Promise<void>;
  /** stop_app, `downMs` down, start_app. */
  restart(options?: { downMs?: number }): Promise<{ downAt: number; upAt: number }>;
  close(): Promise<void>;
}

let rabbitSeq = 0;

export async function startPrivateRabbit(name: string): Promise<PrivateRabbit> {
  const dir = mkdtempSync(join(tmpdir(), `o2c-${name}-rabbit-`));
  const home = join(dir, 'home');
  mkdirSync(home);
  const port = await freePort();
  const distPort = await freePort();
  const node = `o2c-restart-${name}-${process.pid}-${++rabbitSeq}@localhost`;
  writeFileSync(join(dir, 'enabled_plugins'), '[rabbitmq_consistent_hash_exchange].\n');
  // Its own config file, so the shared node's listener settings in the system config do not apply.
  writeFileSync(join(dir, 'rabbitmq.conf'), 'loopback_users = none\n');
  writeFileSync(join(dir, 'rabbitmq-env.conf'), '');
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    HOME: home,
    RABBITMQ_NODENAME: node,
    RABBITMQ_NODE_IP_ADDRESS: '127.0.0.1',
    RABBITMQ_NODE_PORT: String(port),
    RABBITMQ_DIST_PORT: String(distPort),
    RABBITMQ_MNESIA_BASE: join(dir, 'mnesia'),
    RABBITMQ_LOG_BASE: join(dir, 'log'),
    RABBITMQ_PID_FILE: join(dir, 'pid'),
    RABBITMQ_ENABLED_PLUGINS_FILE: join(dir, 'enabled_plugins'),
    RABBITMQ_CONFIG_FILE: join(dir, 'rabbitmq.conf'),
    RABBITMQ_CONF_ENV_FILE: join(dir, 'rabbitmq-env.conf'),
    RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS: '-kernel inet_dist_use_interface {127,0,0,1}',
  };
  // The Debian wrappers in /usr/sbin switch to the rabbitmq user and its home (cookie): call the
  // scripts themselves, with this node's own home and cookie.
  const scripts = '/usr/lib/rabbitmq/bin';
  const ctl = (...args: string[]) => sh(`${scripts}/rabbitmqctl`, ['-q', '-n', node, ...args], { env });
  const awaitStartup = async () => {
    const deadline = Date.now() + 120_000;
    for (;;) {
      try {
        await ctl('await_startup', '--timeout', '60');
        return;
      } catch (err) {
        // The node registers with epmd a moment after -detached returns.
        if (Date.now() > deadline) throw err;
        await sleep(500);
      }
    }
  };
  await sh(`${scripts}/rabbitmq-server`, ['-detached'], { env });
  const cleanup = () => {
    spawnSync(`${scripts}/rabbitmqctl`, ['-q', '-n', node, 'shutdown'], { env, timeout: 60_000 });
    try {
      const pid = Number(readFileSync(join(dir, 'pid'), 'utf8').trim());
      if (pid > 0) process.kill(pid, 'SIGKILL');
    } catch {
      // already gone
    }
    rmSync(dir, { recursive: true, force: true });
  };
  cleanups.add(cleanup);
  try {
    await awaitStartup();
  } catch (err) {
    cleanup();
    cleanups.delete(cleanup);
    throw err;
  }

  const stopApp = async () => {
    await ctl('stop_app');
  };
  const startApp = async () => {
    await ctl('start_app');
    await awaitStartup();
  };
  return {
    node,
    port,
    url: `amqp://guest:guest@127.0.0.1:${port}`,
    ctl,
    stopApp,
    startApp,
    async restart(options = {}) {
      await stopApp();
      const downAt = Date.now();
      if (options.downMs) await sleep(options.downMs);
      await startApp();
      return { downAt, upAt: Date.now() };
    },
    async close() {
      cleanups.delete(cleanup);
      cleanup();
    },
  };
}
