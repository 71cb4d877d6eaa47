// ID bindings: which external record stands for a canonical id in each system, written before the
// external create (pending) and completed after it, so a create retried after a lost reply finds the
// first record instead of making a second one. Also the change-poller watermarks.
import type { Migration } from '../store/migration.js';
import type { Store, Tx } from '../store/types.js';

export const connectorMigrations: Migration[] = [
  {
    version: 100,
    name: 'connector bindings',
    postgres: `
      CREATE TABLE bindings (
        system TEXT NOT NULL,
        entity TEXT NOT NULL,
        canonical_id TEXT NOT NULL,
        external_id TEXT,
        display_id TEXT,
        state TEXT NOT NULL,
        created_at BIGINT NOT NULL,
        updated_at BIGINT NOT NULL,
        PRIMARY KEY (system, entity, canonical_id)
      );
      CREATE UNIQUE INDEX bindings_external ON bindings (system, entity, external_id) WHERE external_id IS NOT NULL;`,
    sqlite: `
      CREATE TABLE bindings (
        system TEXT NOT NULL,
        entity TEXT NOT NULL,
        canonical_id TEXT NOT NULL,
        external_id TEXT,
        display_id TEXT,
        state TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL,
        PRIMARY KEY (system, entity, canonical_id)
      );
      CREATE UNIQUE INDEX bindings_external ON bindings (system, entity, external_id) WHERE external_id IS NOT NULL;`,
  },
  {
    version: 101,
    name: 'connector watermarks',
    postgres: `
      CREATE TABLE connector_watermarks (
        system TEXT NOT NULL,
        name TEXT NOT NULL,
        value TEXT NOT NULL,
        updated_at BIGINT NOT NULL,
        PRIMARY KEY (system, name)
      );`,
    sqlite: `
      CREATE TABLE connector_watermarks (
        system TEXT NOT NULL,
        name TEXT NOT NULL,
        value TEXT NOT NULL,
        updated_at INTEGER NOT NULL,
        PRIMARY KEY (system, name)
      );`,
  },
];

export type BindingState = 'pending' | 'complete';

export interface Binding {
  system: string;
  entity: string;
  canonicalId: string;
  /** Empty while pending: the external create may or may not have happened. */
  externalId: string | undefined;
  displayId: string | undefined;
  state: BindingState;
  createdAt: number;
  updatedAt: number;
}

type BindingRow = {
  system: string;
  entity: string;
  canonical_id: string;
  external_id: string | null;
  display_id: string | null;
  state: string;
  created_at: number | string;
  updated_at: number | string;
};

function fromRow(r: BindingRow): Binding {
  return {
    system: r.system,
    entity: r.entity,
    canonicalId: r.canonical_id,
    externalId: r.external_id ?? undefined,
    displayId: r.display_id ?? undefined,
    state: r.state as BindingState,
    createdAt: Number(r.created_at),
    updatedAt: Number(r.updated_at),
  };
}

export async function findBinding(
  tx: Tx,
  system: string,
  entity: string,
  canonicalId: string,
): Promise<Binding | undefined> {
  const rows = await tx.query<BindingRow>(
    'SELECT * FROM bindings WHERE system = $1 AND entity = $2 AND canonical_id = $3',
    [system, entity, canonicalId],
  );
  return rows[0] ? fromRow(rows[0]) : undefined;
}

export async function findBindingByExternalId(
  tx: Tx,
  system: string,
  entity: string,
  externalId: string,
): Promise<Binding | undefined> {
  const rows = await tx.query<BindingRow>(
    'SELECT * FROM bindings WHERE system = $1 AND entity = $2 AND external_id = $3',
    [system, entity, externalId],
  );
  return rows[0] ? fromRow(rows[0]) : undefined;
}

/**
 * Records the intent to create `canonicalId` in `system` before the external call. Returns the
 * binding as it now stands: a fresh or earlier pending one, or a complete one from an earlier create.
 */
export async function reserveBinding(
  tx: Tx,
  system: string,
  entity: string,
  canonicalId: string,
  now = Date.now(),
): Promise<Binding> {
  await tx.execute(
    `INSERT INTO bindings (system, entity, canonical_id, external_id, display_id, state, created_at, updated_at)
     VALUES ($1, $2, $3, NULL, NULL, 'pending', $4, $4)
     ON CONFLICT (system, entity, canonical_id) DO NOTHING`,
    [system, entity, canonicalId, now],
  );
  const binding = await findBinding(tx, system, entity, canonicalId);
  if (!binding) throw new Error(`binding ${system}/${entity}/${canonicalId} vanished after insert`);
  return binding;
}

/** Stores the external id once the system answered (or a natural-key lookup found the record). */
export async function completeBinding(
  tx: Tx,
  system: string,
  entity: string,
  canonicalId: string,
  externalId: string,
  displayId?: string,
  now = Date.now(),
): Promise<void> {
  await tx.execute(
    `INSERT INTO bindings (system, entity, canonical_id, external_id, display_id, state, created_at, updated_at)
     VALUES ($1, $2, $3, $4, $5, 'complete', $6, $6)
     ON CONFLICT (system, entity, canonical_id)
     DO UPDATE SET external_id = $4, display_id = $5, state = 'complete', updated_at = $6`,
    [system, entity, canonicalId, externalId, displayId ?? null, now],
  );
}

export interface ExternalRecord {
  externalId: string;
  displayId?: string;
}

export interface CreateOnceResult extends ExternalRecord {
  /** True when the record existed already (binding or natural key), so nothing was created. */
  existed: boolean;
}

/**
 * The create protocol every driver uses: 1. a complete binding answers at once; 2. otherwise the
 * binding is reserved (pending) and committed; 3. the system is asked for the record by its natural
 * key (a pending binding means an earlier attempt may have created it); 4. only then it is created,
 * and 5. the binding completed. The external calls run outside any database transaction.
 */
export async function createOnce(
  store: Store,
  key: { system: string; entity: string; canonicalId: string },
  ops: {
    findByNaturalKey: () => Promise<ExternalRecord | undefined>;
    create: () => Promise<ExternalRecord>;
  },
): Promise<CreateOnceResult> {
  const { system, entity, canonicalId } = key;
  const binding = await store.transaction((tx) => reserveBinding(tx, system, entity, canonicalId));
  if (binding.state === 'complete' && binding.externalId) {
    return { externalId: binding.externalId, displayId: binding.displayId, existed: true };
  }
  const found = await ops.findByNaturalKey();
  const record = found ?? (await ops.create());
  await store.transaction((tx) =>
    completeBinding(tx, system, entity, canonicalId, record.externalId, record.displayId),
  );
  return { ...record, existed: found !== undefined };
}

/** The last change a poller handed on (a SystemModstamp, a Tryton write_date), per system and stream. */
export async function readWatermark(tx: Tx, system: string, name: string): Promise<string | undefined> {
  const rows = await tx.query<{ value: string }>(
    'SELECT value FROM connector_watermarks WHERE system = $1 AND name = $2',
    [system, name],
  );
  return rows[0]?.value;
}

export async function writeWatermark(tx: Tx, system: string, name: string, value: string, now = Date.now()) {
  await tx.execute(
    `INSERT INTO connector_watermarks (system, name, value, updated_at) VALUES ($1, $2, $3, $4)
     ON CONFLICT (system, name) DO UPDATE SET value = $3, updated_at = $4`,
    [system, name, value, now],
  );
}
