// One process owns an embedded store's file. SQLite has no row locks and the embedded lease is per
// process, so two processes on one file would handle the same orders at once and both relay the
// outbox: the second is refused instead. Ownership is an exclusive SQLite lock on a sidecar file
// (`<file>.owner`), held until the store closes or the process dies (the OS drops the lock, so a
// killed pod's successor takes over at once). Handles in one process share it.
import { resolve } from 'node:path';
import { DatabaseSync } from 'node:sqlite';

/** Another process holds the embedded store's file. */
export class StoreInUseError extends Error {
  override readonly name = 'StoreInUseError';
  constructor(readonly path: string) {
    super(
      `the embedded store ${path} is open in another process: a Workflow on SQLite runs one replica; use PostgreSQL for more`,
    );
  }
}

const owned = new Map<string, { lock: DatabaseSync; handles: number }>();

/** Takes (or shares, within this process) ownership of `path`; returns its release. */
export function ownFile(path: string): () => void {
  const key = resolve(path);
  let entry = owned.get(key);
  if (!entry) {
    const lock = new DatabaseSync(`${key}.owner`);
    try {
      lock.exec('PRAGMA locking_mode = EXCLUSIVE; BEGIN EXCLUSIVE; COMMIT');
    } catch (err) {
      lock.close();
      throw Object.assign(new StoreInUseError(path), { cause: err });
    }
    entry = { lock, handles: 0 };
    owned.set(key, entry);
  }
  entry.handles++;
  const held = entry;
  let released = false;
  return () => {
    if (released) return;
    released = true;
    if (--held.handles > 0) return;
    owned.delete(key);
    held.lock.close();
  };
}
