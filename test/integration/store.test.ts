// One store suite, run against PostgreSQL and the embedded SQLite store.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openStore } from '../../runtime/src/store/index.js';
import type { Store } from '../../runtime/src/store/types.js';
import { type StoreKind, storeUrlFor } from './support/api.js';

describe.each<StoreKind>(['postgres', 'sqlite'])('store on %s', (kind) => {
  let store: Store;
  let url: string;
  beforeAll(async () => {
    url = await storeUrlFor(kind, `o2c_test_store_${kind}`);
    store = await openStore(url);
  });
  afterAll(async () => {
    await store?.close();
  });

  it('applies migrations once, and again is a no-op', async () => {
    await store.migrate();
    const second = await openStore(url);
    const rows = await second.transaction((tx) =>
      tx.query<{ version: number }>('SELECT version FROM schema_migrations'),
    );
    expect(rows.map((r) => Number(r.version))).toContain(1);
    await second.close();
  });

  it('rolls back everything a failed transaction wrote', async () => {
    await expect(
      store.transaction(async (tx) => {
        await tx.enqueueOutbox([
          {
            id: 'rb-1',
            exchange: 'x',
            routingKey: 'k',
            body: new Uint8Array([1]),
            type: 't',
            correlationId: 'c',
            orderingKey: 'rb',
          },
        ]);
        throw new Error('boom');
      }),
    ).rejects.toThrow('boom');
    const rows = await store.transaction((tx) => tx.query("SELECT id FROM outbox WHERE id = 'rb-1'"));
    expect(rows).toHaveLength(0);
  });

  it('claims an inbox message once per consumer', async () => {
    const first = await store.transaction((tx) => tx.claimInbox('c1', 'm1'));
    const again = await store.transaction((tx) => tx.claimInbox('c1', 'm1'));
    const other = await store.transaction((tx) => tx.claimInbox('c2', 'm1'));
    expect([first, again, other]).toEqual([true, false, true]);
  });

  it('hands out pending outbox rows in write order and forgets them once sent', async () => {
    const ids = ['o-1', 'o-2', 'o-3'];
    await store.transaction((tx) =>
      tx.enqueueOutbox(
        ids.map((id) => ({
          id,
          exchange: 'o2c.events',
          routingKey: 'o2c.v1.Test',
          body: new TextEncoder().encode(id),
          type: 'o2c.v1.Test',
          correlationId: 'corr',
          orderingKey: 'key',
          headers: { traceparent: '00-abc-def-01' },
        })),
      ),
    );
    const pending = (await store.pendingOutbox(100)).filter((r) => ids.includes(r.id));
    expect(pending.map((r) => r.id)).toEqual(ids);
    expect(new TextDecoder().decode(pending[0]!.body)).toBe('o-1');
    expect(pending[0]!.headers).toEqual({ traceparent: '00-abc-def-01' });
    await store.markOutboxSent(pending.slice(0, 2).map((r) => r.seq));
    const left = (await store.pendingOutbox(100)).filter((r) => ids.includes(r.id));
    expect(left.map((r) => r.id)).toEqual(['o-3']);
  });

  it('gives a lease to one holder at a time', async () => {
    const a = await store.tryAcquireLease('test-lease');
    expect(a).toBeDefined();
    const other = kind === 'postgres' ? await openStore(url, { skipMigrations: true }) : store;
    const b = await other.tryAcquireLease('test-lease');
    expect(b).toBeUndefined();
    await a!.release();
    const c = await other.tryAcquireLease('test-lease');
    expect(c).toBeDefined();
    await c!.release();
    if (other !== store) await other.close();
  });
});
