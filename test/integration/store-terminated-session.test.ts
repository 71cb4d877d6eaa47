// A PostgreSQL session terminated under a running query (pg_terminate_backend, an administrator, a
// failover) must not go back to the pool: the store's next caller gets a fresh connection and
// succeeds at once instead of "Connection terminated unexpectedly" (an "outcome unknown" for a call that
// never reached the database).
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PostgresStore } from '../../runtime/src/store/postgres.js';
import { freshDatabase } from './support/services.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('a terminated session on PostgreSQL', () => {
  let url: string;
  let store: PostgresStore;
  let admin: pg.Client;

  beforeAll(async () => {
    url = await freshDatabase('o2c_test_terminated_session');
    // One connection: had the terminated client gone back to the pool, the next call would get it.
    store = new PostgresStore({ url, migrations: [], poolSize: 1 });
    admin = new pg.Client({ connectionString: url });
    await admin.connect();
  });
  afterAll(async () => {
    await admin?.end();
    await store?.close();
  });

  /** Terminates the session running `marker` once it shows up in pg_stat_activity. */
  async function terminateWhenRunning(marker: string): Promise<number> {
    for (let i = 0; i < 200; i++) {
      const { rows } = await admin.query<{ pid: number }>(
        `SELECT pid FROM pg_stat_activity WHERE query LIKE $1 AND pid <> pg_backend_pid()`,
        [`%${marker}%`],
      );
      const pid = rows[0]?.pid;
      if (pid !== undefined) {
        await admin.query('SELECT pg_terminate_backend($1)', [pid]);
        return pid;
      }
      await sleep(25);
    }
    throw new Error(`no session ran ${marker}`);
  }

  const backendPid = async () =>
    (await store.statement<{ pid: number }>('SELECT pg_backend_pid() AS pid'))[0]?.pid;

  it.each<[string, (marker: string) => Promise<unknown>]>([
    [
      'a transaction whose statement is running',
      (marker) => store.transaction((tx) => tx.query(`SELECT pg_sleep(10) AS "${marker}"`)),
    ],
    ['a single statement', (marker) => store.statement(`SELECT pg_sleep(10) AS "${marker}"`)],
  ])('after %s is terminated, the next call succeeds at once on a fresh connection', async (_name, call) => {
    const marker = `terminate_me_${Date.now()}_${Math.random().toString(36).slice(2)}`;
    const running = call(marker).then(
      () => undefined,
      (err: unknown) => err,
    );
    const terminated = await terminateWhenRunning(marker);
    const failure = (await running) as { code?: string } | undefined;
    expect(failure).toBeInstanceOf(Error);
    expect(failure?.code).toBe('57P01');

    // A single statement does not retry its checkout: a terminated client handed back to the pool
    // would fail it with "Connection terminated unexpectedly".
    const next = await backendPid();
    expect(next).toBeTypeOf('number');
    expect(next).not.toBe(terminated);
    const inTransaction = await store.transaction(async (tx) => {
      const rows = await tx.query<{ pid: number }>('SELECT pg_backend_pid() AS pid');
      return rows[0]?.pid;
    });
    expect(inTransaction).toBe(next);
  });
});
