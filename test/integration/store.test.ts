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

  it('claims a batch of inbox messages in one call: only the ids no transaction claimed before', async () => {
    await store.transaction((tx) => tx.claimInbox('batch', 'b-1'));
    const claimed = await store.transaction((tx) => tx.claimInboxMany('batch', ['b-3', 'b-1', 'b-2', 'b-3']));
    expect([...claimed].sort()).toEqual(['b-2', 'b-3']);
    const again = await store.transaction((tx) => tx.claimInboxMany('batch', ['b-2', 'b-4']));
    expect([...again]).toEqual(['b-4']);
    expect(await store.transaction((tx) => tx.claimInboxMany('batch', []))).toEqual(new Set());
  });

  it('forgets a batch claim whose transaction rolled back', async () => {
    await expect(
      store.transaction(async (tx) => {
        await tx.claimInboxMany('batch-rb', ['r-1', 'r-2']);
        throw new Error('boom');
      }),
    ).rejects.toThrow('boom');
    const claimed = await store.transaction((tx) => tx.claimInboxMany('batch-rb', ['r-1', 'r-2']));
    expect([...claimed].sort()).toEqual(['r-1', 'r-2']);
  });

  it('writes thousands of outbox rows at once, in write order, bodies and headers intact', async () => {
    const n = 5_000;
    const ids = Array.from({ length: n }, (_, i) => `bulk-${i}`);
    await store.transaction((tx) =>
      tx.enqueueOutbox(
        ids.map((id, i) => ({
          id,
          exchange: 'o2c.events',
          routingKey: 'o2c.v1.Bulk',
          body: i === 0 ? new Uint8Array(0) : new Uint8Array([0, 255, i % 256, 10]),
          type: 'o2c.v1.Bulk',
          correlationId: `corr-${i}`,
          orderingKey: `key-${i % 7}`,
          headers: i % 2 === 0 ? { traceparent: `tp-${i}`, quote: 'a "b" \\ c' } : undefined,
        })),
      ),
    );
    const rows = (await store.pendingOutbox(20_000)).filter((r) => r.id.startsWith('bulk-'));
    expect(rows.map((r) => r.id)).toEqual(ids);
    expect([...rows[0]!.body]).toEqual([]);
    expect([...rows[3]!.body]).toEqual([0, 255, 3, 10]);
    expect(rows[2]!.headers).toEqual({ traceparent: 'tp-2', quote: 'a "b" \\ c' });
    expect(rows[1]!.headers).toBeUndefined();
    expect(rows[4_999]!.orderingKey).toBe('key-1');
    await store.markOutboxSent(rows.map((r) => r.seq));
    expect((await store.pendingOutbox(20_000)).filter((r) => r.id.startsWith('bulk-'))).toEqual([]);
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
