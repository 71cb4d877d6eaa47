// Opens the store named by a URL: postgres://... for PostgreSQL, sqlite:<path> (or sqlite::memory:)
// for the embedded default. Migrations from every module are applied at start-up.
import { coreMigrations } from './core-migrations.js';
import type { Migration } from './migration.js';
import { PostgresStore } from './postgres.js';
import { SqliteStore } from './sqlite.js';
import type { Store } from './types.js';

export type { Migration } from './migration.js';
export { PostgresStore } from './postgres.js';
export { SqliteStore } from './sqlite.js';
export type { Dialect, Lease, OutboxMessage, OutboxRow, SqlParam, Store, Tx } from './types.js';

const extraMigrations: Migration[] = [];

/** Modules with tables of their own (connectors, workflow) register their migrations here. */
export function registerMigrations(migrations: Migration[]): void {
  for (const m of migrations)
    if (!extraMigrations.some((e) => e.version === m.version)) extraMigrations.push(m);
}

export function allMigrations(): Migration[] {
  return [...coreMigrations, ...extraMigrations];
}

export interface OpenStoreOptions {
  poolSize?: number;
  /** Skip migrations (they ran elsewhere). */
  skipMigrations?: boolean;
}

export async function openStore(url: string, options: OpenStoreOptions = {}): Promise<Store> {
  let store: Store;
  if (url.startsWith('postgres://') || url.startsWith('postgresql://')) {
    store = new PostgresStore({ url, migrations: allMigrations(), poolSize: options.poolSize });
  } else if (url.startsWith('sqlite:')) {
    store = new SqliteStore({ path: url.slice('sqlite:'.length) || ':memory:', migrations: allMigrations() });
  } else {
    throw new Error(`unsupported store URL "${url}": use postgres://... or sqlite:<path>`);
  }
  if (!options.skipMigrations) await store.migrate();
  return store;
}
