// The order repository's batch reads and writes (getMany, saveMany) on PostgreSQL and SQLite: the
// same results, version checks and events as one get/save per order.
import { clone, create, fromBinary } from '@bufbuild/protobuf';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Order, OrderSchema, OrderState } from '../../runtime/src/gen/o2c/v1/entities_pb.js';
import { EnvelopeSchema } from '../../runtime/src/gen/o2c/v1/events_pb.js';
import { EventType } from '../../runtime/src/orders/envelope.js';
import { OrderRepository, VersionConflictError } from '../../runtime/src/orders/repository.js';
import { openStore } from '../../runtime/src/store/index.js';
import type { Store } from '../../runtime/src/store/types.js';
import { type StoreKind, storeUrlFor } from './support/api.js';

let keys = 0;
function anOrder(customerId = 'C-1'): Order {
  return create(OrderSchema, {
    customerId,
    currencyCode: 'EUR',
    lines: [{ sku: 'SKU-1', quantity: 2, unitPrice: { currencyCode: 'EUR', units: 10n } }],
  });
}

describe.each<StoreKind>(['postgres', 'sqlite'])('order repository batches on %s', (kind) => {
  let store: Store;
  let orders: OrderRepository;
  beforeAll(async () => {
    store = await openStore(await storeUrlFor(kind, `o2c_test_order_repository_${kind}`));
    orders = new OrderRepository(store, 'o2c/test/workflow/repository');
  });
  afterAll(async () => {
    await store?.close();
  });

  const submitted = async (n: number): Promise<Order[]> => {
    const out: Order[] = [];
    for (let i = 0; i < n; i++)
      out.push((await orders.submit({ order: anOrder(), idempotencyKey: `repo-${kind}-${++keys}` })).order);
    return out;
  };
  const moved = (o: Order, state: OrderState, reason = ''): Order => {
    const next = clone(OrderSchema, o);
    next.state = state;
    next.statusReason = reason;
    return next;
  };
  const eventsOf = async (orderId: string) => {
    const rows = await store.transaction((tx) =>
      tx.query<{ type: string; body: Uint8Array }>(
        'SELECT type, body FROM outbox WHERE correlation_id = $1 ORDER BY seq',
        [orderId],
      ),
    );
    return rows.map((r) => ({ type: r.type, envelope: fromBinary(EnvelopeSchema, new Uint8Array(r.body)) }));
  };

  it('reads the orders that exist by id in one call and leaves unknown ids out', async () => {
    const [a, b] = await submitted(2);
    const found = await orders.getMany([a!.id, 'ord_missing', b!.id, a!.id]);
    expect([...found.keys()].sort()).toEqual([a!.id, b!.id].sort());
    expect(found.get(a!.id)?.customerId).toBe('C-1');
    expect(await orders.getMany([])).toEqual(new Map());
  });

  it('reads inside the caller transaction, seeing its own uncommitted writes', async () => {
    const [a] = await submitted(1);
    await store.transaction(async (tx) => {
      await orders.saveMany(tx, [{ order: moved(a!, OrderState.IN_PROGRESS), before: a!, events: [] }]);
      expect((await orders.getMany([a!.id], tx)).get(a!.id)?.state).toBe(OrderState.IN_PROGRESS);
    });
  });

  it('writes many orders at once: versions bumped, OrderStateChanged when the state moved, extra events after', async () => {
    const [a, b, c] = await submitted(3);
    const saved = await store.transaction((tx) =>
      orders.saveMany(tx, [
        { order: moved(a!, OrderState.IN_PROGRESS), before: a!, events: [] },
        { order: moved(b!, OrderState.SUBMITTED, 'same state, new reason'), before: b!, events: [] },
        {
          order: moved(c!, OrderState.CANCELLED, 'by test'),
          before: c!,
          events: [
            {
              type: EventType.OrderCancelled,
              payload: { case: 'orderCancelled', value: { orderId: c!.id, reason: 'by test' } },
              causationId: 'cause-1',
            },
          ],
        },
      ]),
    );
    expect(saved.map((o) => [o.id, o.state, o.version])).toEqual([
      [a!.id, OrderState.IN_PROGRESS, 2n],
      [b!.id, OrderState.SUBMITTED, 2n],
      [c!.id, OrderState.CANCELLED, 2n],
    ]);
    const stored = await orders.getMany([a!.id, b!.id, c!.id]);
    expect(stored.get(a!.id)?.state).toBe(OrderState.IN_PROGRESS);
    expect(stored.get(b!.id)?.statusReason).toBe('same state, new reason');
    expect(stored.get(c!.id)?.version).toBe(2n);
    const listed = await orders.list({ states: [OrderState.CANCELLED] }, 100);
    expect(listed.map((o) => o.id)).toContain(c!.id);

    expect((await eventsOf(a!.id)).map((e) => e.type)).toEqual([
      EventType.OrderSubmitted,
      EventType.OrderStateChanged,
    ]);
    expect((await eventsOf(b!.id)).map((e) => e.type)).toEqual([EventType.OrderSubmitted]);
    const cEvents = await eventsOf(c!.id);
    expect(cEvents.map((e) => e.type)).toEqual([
      EventType.OrderSubmitted,
      EventType.OrderCancelled,
      EventType.OrderStateChanged,
    ]);
    expect(cEvents[1]?.envelope.causationId).toBe('cause-1');
    const changed = cEvents[2]?.envelope.payload;
    expect(changed?.case === 'orderStateChanged' && changed.value.previousState).toBe(OrderState.SUBMITTED);
  });

  it('writes an order listed twice in list order, as two consecutive saves would', async () => {
    const [a] = await submitted(1);
    await store.transaction(async (tx) => {
      const step1 = moved(a!, OrderState.IN_PROGRESS);
      const after1 = clone(OrderSchema, step1);
      after1.version = a!.version + 1n;
      await orders.saveMany(tx, [
        { order: step1, before: a!, events: [] },
        { order: moved(after1, OrderState.ALLOCATED), before: after1, events: [] },
      ]);
    });
    const stored = (await orders.getMany([a!.id])).get(a!.id);
    expect([stored?.state, stored?.version]).toEqual([OrderState.ALLOCATED, 3n]);
    expect((await eventsOf(a!.id)).map((e) => e.type)).toEqual([
      EventType.OrderSubmitted,
      EventType.OrderStateChanged,
      EventType.OrderStateChanged,
    ]);
  });

  it('fails the whole batch with VersionConflictError naming the stale order, and writes nothing', async () => {
    const [a, b] = await submitted(2);
    await store.transaction((tx) => orders.save(tx, moved(b!, OrderState.IN_PROGRESS), b!, []));
    const attempt = store.transaction((tx) =>
      orders.saveMany(tx, [
        { order: moved(a!, OrderState.IN_PROGRESS), before: a!, events: [] },
        { order: moved(b!, OrderState.ON_HOLD), before: b!, events: [] },
      ]),
    );
    await expect(attempt).rejects.toThrow(VersionConflictError);
    await expect(attempt).rejects.toMatchObject({ orderId: b!.id, expected: 1 });
    const stored = await orders.getMany([a!.id, b!.id]);
    expect([stored.get(a!.id)?.version, stored.get(b!.id)?.state]).toEqual([1n, OrderState.IN_PROGRESS]);
    expect((await eventsOf(a!.id)).map((e) => e.type)).toEqual([EventType.OrderSubmitted]);
  });

  it('keeps save as the one-order case: a stale save throws VersionConflictError', async () => {
    const [a] = await submitted(1);
    const first = await store.transaction((tx) => orders.save(tx, moved(a!, OrderState.IN_PROGRESS), a!));
    expect(first.version).toBe(2n);
    await expect(
      store.transaction((tx) => orders.save(tx, moved(a!, OrderState.ON_HOLD), a!)),
    ).rejects.toThrow(VersionConflictError);
  });

  it('writes and reads batches larger than one statement holds', async () => {
    const many = await submitted(450);
    const saved = await store.transaction((tx) =>
      orders.saveMany(
        tx,
        many.map((o) => ({ order: moved(o, OrderState.IN_PROGRESS), before: o, events: [] })),
      ),
    );
    expect(saved).toHaveLength(450);
    const read = await orders.getMany([...many.map((o) => o.id), ...many.map((o) => o.id)]);
    expect(read.size).toBe(450);
    expect([...read.values()].every((o) => o.state === OrderState.IN_PROGRESS && o.version === 2n)).toBe(
      true,
    );
  });
});
