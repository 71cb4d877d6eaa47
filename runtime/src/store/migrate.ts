// Applies versioned migrations in order, each in its own transaction, recording them in
// schema_migrations. Both stores call it at start-up.
import type { Migration } from './migration.js';
import type { Dialect, SqlParam } from './types.js';

export interface MigrationTarget {
  dialect: Dialect;
  exec(sql: string): Promise<void>;
  query(sql: string, params?: SqlParam[]): Promise<Record<string, unknown>[]>;
}

export function sortedMigrations(migrations: Migration[]): Migration[] {
  const seen = new Set<number>();
  for (const m of migrations) {
    if (seen.has(m.version)) throw new Error(`two migrations share version ${m.version}`);
    seen.add(m.version);
  }
  return [...migrations].sort((a, b) => a.version - b.version);
}

/** Runs inside a transaction the caller holds (and, on PostgreSQL, under an advisory lock). */
export async function applyMigrations(target: MigrationTarget, migrations: Migration[]): Promise<number[]> {
  await target.exec(
    'CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at BIGINT NOT NULL)',
  );
  const rows = await target.query('SELECT version FROM schema_migrations');
  const applied = new Set(rows.map((r) => Number(r.version)));
  const done: number[] = [];
  for (const m of sortedMigrations(migrations)) {
    if (applied.has(m.version)) continue;
    await target.exec(target.dialect === 'postgres' ? m.postgres : m.sqlite);
    await target.query('INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)', [
      m.version,
      m.name,
      Date.now(),
    ]);
    done.push(m.version);
  }
  return done;
}
