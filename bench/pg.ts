// The benchmarks' PostgreSQL: the admin URL (O2C_BENCH_PG_URL) and a fresh database per run.
import pg from 'pg';

export const PG_ADMIN = process.env.O2C_BENCH_PG_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';

/** The URL of database `name` on the benchmarks' server. */
export function databaseUrl(name: string): string {
  const url = new URL(PG_ADMIN);
  url.pathname = `/${name}`;
  return url.toString();
}

/** Drops and creates database `name`; its URL. */
export async function freshPg(name: string): Promise<string> {
  const admin = new pg.Client({ connectionString: PG_ADMIN });
  await admin.connect();
  await admin.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
  await admin.query(`CREATE DATABASE ${name}`);
  await admin.end();
  return databaseUrl(name);
}
