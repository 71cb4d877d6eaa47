// SubmitOrder group commit against real PostgreSQL and SQLite: concurrent submits share one store
// transaction, every caller still gets its own exact idempotency answer, one bad row fails only its
// own submit, and a database that goes away mid-group answers "outcome unknown" / "not accepted"
// exactly as a lone submit would, after which a retry with the same key settles each order once.
import { create } from '@bufbuild/protobuf';
import { type Client, Code, createClient } from '@connectrpc/connect';
import { createGrpcTransport } from '@connectrpc/connect-node';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Order, OrderSchema } from '../../runtime/src/gen/o2c/v1/entities_pb.js';
import { OrderService } from '../../runtime/src/gen/o2c/v1/order_service_pb.js';
import { createLogger } from '../../runtime/src/observability/logger.js';
import { createRegistry } from '../../runtime/src/observability/metrics.js';
import { IdempotencyConflictError, type OrderRepository } from '../../runtime/src/orders/repository.js';
import { startWorkflowRole, type WorkflowRole } from '../../runtime/src/roles/workflow.js';
import { type ApiHarness, rejection, type StoreKind, startApi } from './support/api.js';
import { errorKind, type Submission, submitOnce } from './support/order-load.js';
import { type PrivatePostgres, startPrivatePostgres } from './support/private-services.js';

type OrderInit = Parameters<typeof create<typeof OrderSchema>>[1];
const anOrder = (overrides: OrderInit = {}): Order =>
  create(OrderSchema, {
    customerId: 'ACME',
    currencyCode: 'USD',
    lines: [{ sku: 'WIDGET-1', quantity: 2, unitPrice: { currencyCode: 'USD', units: 10n } }],
    ...overrides,
  });

let keySeq = 0;
const uniqueKey = (prefix: string) => `${prefix}-${process.pid}-${Date.now()}-${keySeq++}`;

/** Settles every promise; a rejection becomes its error. */
const settled = <T>(ps: Promise<T>[]) => Promise.all(ps.map((p) => p.catch((e: unknown) => e as Error)));

describe.each<StoreKind>(['postgres', 'sqlite'])('SubmitOrder group commit on %s', (store) => {
  let api: ApiHarness;
  let orders: OrderRepository;

  beforeAll(async () => {
    api = await startApi({ store, name: `o2c_test_api_group_${store}`, broker: false });
    orders = api.role.orders;
  });
  afterAll(async () => {
    await api?.stop();
  });

  const storedFor = (keys: string[]) =>
    api.role.store.transaction(async (tx) => ({
      orders: await tx.query<{ id: string; idempotency_key: string }>(
        `SELECT id, idempotency_key FROM orders WHERE idempotency_key IN (${keys.map((_, i) => `$${i + 1}`).join(', ')})`,
        keys,
      ),
      events: await tx.query<{ correlation_id: string }>(
        `SELECT o.correlation_id FROM outbox o JOIN orders d ON d.id = o.correlation_id
         WHERE d.idempotency_key IN (${keys.map((_, i) => `$${i + 1}`).join(', ')})`,
        keys,
      ),
    }));

  it('answers 64 concurrent gRPC submits of one key and one request with one order and writes one event', async () => {
    const key = uniqueKey('same');
    const answers = await Promise.all(
      Array.from({ length: 64 }, () => api.grpc.submitOrder({ idempotencyKey: key, order: anOrder() })),
    );
    expect(new Set(answers.map((a) => a.order?.id)).size).toBe(1);
    const { orders: rows, events } = await storedFor([key]);
    expect(rows).toHaveLength(1);
    expect(events).toHaveLength(1);
  });

  it('answers every caller of one mixed group exactly: created, stored before, same group, and conflicts', async () => {
    const earlierKey = uniqueKey('earlier');
    const earlier = (await orders.submit({ order: anOrder(), idempotencyKey: earlierKey })).order;
    const fresh = Array.from({ length: 20 }, () => uniqueKey('fresh'));
    const shared = uniqueKey('shared');
    const contested = uniqueKey('contested');
    // Submits made in one turn of the event loop form one group (behind the opener's, if in flight).
    const opener = orders.submit({ order: anOrder(), idempotencyKey: uniqueKey('opener') });
    await new Promise((r) => setImmediate(r));
    const group = settled([
      ...fresh.map((k) => orders.submit({ order: anOrder({ purchaseOrderNumber: k }), idempotencyKey: k })),
      orders.submit({ order: anOrder(), idempotencyKey: earlierKey }),
      orders.submit({ order: anOrder({ customerId: 'OTHER' }), idempotencyKey: earlierKey }),
      orders.submit({ order: anOrder(), idempotencyKey: shared }),
      orders.submit({ order: anOrder(), idempotencyKey: shared }),
      orders.submit({ order: anOrder({ notes: 'first' }), idempotencyKey: contested }),
      orders.submit({ order: anOrder({ notes: 'second' }), idempotencyKey: contested }),
    ]);
    await opener;
    const answers = await group;
    const freshAnswers = answers.slice(0, 20);
    const [sameAsEarlier, differentFromEarlier, shared1, shared2, contested1, contested2] = answers.slice(20);

    for (const a of freshAnswers) expect(a).toMatchObject({ created: true });
    expect(sameAsEarlier).toMatchObject({ created: false, order: { id: earlier.id } });
    expect(differentFromEarlier).toBeInstanceOf(IdempotencyConflictError);
    expect(differentFromEarlier).toMatchObject({ existingOrderId: earlier.id });
    // Two callers of one new key with the same request: one created it, both have that order.
    const sharedPair = [shared1, shared2] as { order: Order; created: boolean }[];
    expect(sharedPair.map((a) => a.created).sort()).toEqual([false, true]);
    expect(sharedPair[0]?.order.id).toBe(sharedPair[1]?.order.id);
    // One new key, two different requests: the first of the group wins, the other conflicts with it.
    expect(contested1).toMatchObject({ created: true });
    expect(contested2).toBeInstanceOf(IdempotencyConflictError);
    expect(contested2).toMatchObject({ existingOrderId: (contested1 as { order: Order }).order.id });

    const { orders: rows, events } = await storedFor([...fresh, shared, contested, earlierKey]);
    expect(rows).toHaveLength(23);
    expect(events).toHaveLength(23);
    if (store === 'postgres') {
      // One transaction wrote the group: its rows share their inserting transaction id.
      const xmins = await api.role.store.transaction((tx) =>
        tx.query<{ xmin: string }>(
          `SELECT DISTINCT xmin::text FROM orders WHERE idempotency_key IN (${[...fresh, shared, contested]
            .map((_, i) => `$${i + 1}`)
            .join(', ')})`,
          [...fresh, shared, contested],
        ),
      );
      expect(xmins).toHaveLength(1);
    }
  });

  it('gives concurrent API callers their codes: AlreadyExists for a different request, the order for the same', async () => {
    const key = uniqueKey('api-mixed');
    const calls = settled(
      Array.from({ length: 32 }, (_, i) =>
        api.grpc.submitOrder({
          idempotencyKey: key,
          order: i % 2 === 0 ? anOrder() : anOrder({ customerId: 'OTHER' }),
        }),
      ),
    );
    const answers = await calls;
    const ok = answers.filter((a) => !(a instanceof Error)) as { order?: Order }[];
    const failed = answers.filter((a) => a instanceof Error);
    expect(ok.length + failed.length).toBe(32);
    expect(new Set(ok.map((a) => a.order?.id)).size).toBe(1);
    // Whichever request won, the other half is refused naming the winner's order.
    expect([ok.length, failed.length]).toEqual([16, 16]);
    const winner = ok[0]?.order?.id ?? '';
    for (const f of failed) {
      const err = await rejection(Promise.reject(f));
      expect(err.code).toBe(Code.AlreadyExists);
      expect(err.rawMessage).toContain(winner);
    }
  });
});

describe('SubmitOrder group commit on PostgreSQL when the database refuses a row or goes away', () => {
  let postgres: PrivatePostgres;
  let role: WorkflowRole;
  let api: Client<typeof OrderService>;
  let url: string;

  beforeAll(async () => {
    postgres = await startPrivatePostgres('group');
    url = await postgres.createDatabase('o2c_group_commit');
    role = await startWorkflowRole({
      storeUrl: url,
      host: '127.0.0.1',
      apiPort: 0,
      source: 'o2c/test/workflow/group-commit',
      logger: createLogger('test', 'silent'),
      registry: createRegistry(false),
    });
    api = createClient(OrderService, createGrpcTransport({ baseUrl: `http://127.0.0.1:${role.api.port}` }));
  });
  afterAll(async () => {
    await role?.stop();
    await postgres?.close();
  });

  it('fails only the submit whose value PostgreSQL refuses and stores the rest of its group', async () => {
    const opener = role.orders.submit({ order: anOrder(), idempotencyKey: uniqueKey('opener') });
    const keys = Array.from({ length: 10 }, () => uniqueKey('nul'));
    // A NUL never passes the API's validation; the repository alone meets it here, as a defect would.
    const answers = await settled(
      keys.map((k, i) =>
        role.orders.submit({
          order: anOrder(i === 4 ? { customerId: 'AC\u0000ME' } : {}),
          idempotencyKey: k,
        }),
      ),
    );
    await opener;
    expect(answers.map((a) => (a instanceof Error ? 'refused' : 'stored'))).toEqual([
      ...Array(4).fill('stored'),
      'refused',
      ...Array(5).fill('stored'),
    ]);
    const rows = await role.store.transaction((tx) =>
      tx.query(
        `SELECT id FROM orders WHERE idempotency_key IN (${keys.map((_, i) => `$${i + 1}`).join(', ')})`,
        keys,
      ),
    );
    expect(rows).toHaveLength(9);
  });

  it('answers every submit of a group whose session the database terminates "outcome unknown", and a retry with the same key stores each once', async () => {
    const session = async () => {
      const c = new pg.Client({ connectionString: url });
      c.on('error', () => {}); // the sessions this test terminates are not these
      await c.connect();
      return c;
    };
    const [rowHolder, tableLocker, monitor] = await Promise.all([session(), session(), session()]);
    const ours = [rowHolder, tableLocker, monitor].map(
      (c) => (c as unknown as { processID: number }).processID,
    );
    // The sessions of this database waiting for a lock, other than this test's own.
    const waiting = async (): Promise<number[]> =>
      (
        await monitor.query<{ pid: number }>(
          `SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'
           AND NOT (pid = ANY($1::int[]))`,
          [ours],
        )
      ).rows.map((r) => r.pid);
    const until = async (what: string, ok: () => Promise<boolean> | boolean) => {
      const deadline = Date.now() + 10_000;
      while (!(await ok())) {
        if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
        await new Promise((r) => setTimeout(r, 25));
      }
    };
    const stamp = `${process.pid}-${Date.now()}`;
    const firstKey = `opener-${stamp}`;
    const keys = Array.from({ length: 11 }, (_, i) => `cut-${stamp}-${i}`);
    try {
      // The first submit waits for an uncommitted row with its key; the rest queue behind it.
      await rowHolder.query('BEGIN');
      await rowHolder.query(
        `INSERT INTO orders (id, idempotency_key, request_hash, customer_id, state, version, created_at, updated_at, data)
         VALUES ('ord_holder', $1, '-', '-', 1, 1, 0, 0, '\\x')`,
        [firstKey],
      );
      const first = submitOnce(api, firstKey);
      await until('the first submit to wait for the row', async () => (await waiting()).length === 1);
      const group = keys.map((k) => submitOnce(api, k));
      await until('the group to queue', () => role.orders.queuedSubmits === keys.length);
      // A table lock taken once the first submit is done holds the group's statement inside the database.
      await tableLocker.query('BEGIN');
      const locked = tableLocker.query('LOCK TABLE orders IN SHARE ROW EXCLUSIVE MODE');
      await until(
        'the table lock to queue',
        async () =>
          (
            await monitor.query(
              `SELECT 1 FROM pg_stat_activity WHERE pid = $1 AND wait_event_type = 'Lock'`,
              [ours[1]],
            )
          ).rowCount === 1,
      );
      await rowHolder.query('ROLLBACK');
      expect((await first).error).toBeUndefined();
      await locked;
      await until(
        'the group statement to wait for the table lock',
        async () => (await waiting()).length === 1,
      );
      // What a restart does to a session in the middle of a statement, to the group's one session.
      const [groupPid] = await waiting();
      await monitor.query('SELECT pg_terminate_backend($1)', [groupPid]);
      const cut = await Promise.all(group);
      expect(cut.map((s) => s.error && errorKind(s.error))).toEqual(keys.map(() => 'outcome-unknown'));
    } finally {
      await rowHolder.query('ROLLBACK').catch(() => {});
      await tableLocker.query('ROLLBACK').catch(() => {});
      await Promise.all([rowHolder, tableLocker, monitor].map((c) => c.end().catch(() => {})));
    }
    // As a client is told: retry "outcome unknown" with the same key until it is settled.
    const settledOrders = new Map<string, string>();
    for (let round = 0; round < 3 && settledOrders.size < keys.length; round++) {
      const answers = await Promise.all(
        keys.filter((k) => !settledOrders.has(k)).map((k) => submitOnce(api, k)),
      );
      for (const a of answers) {
        if (a.orderId) settledOrders.set(a.key, a.orderId);
        else expect(a.error && errorKind(a.error)).toBe('outcome-unknown');
      }
    }
    expect(settledOrders.size).toBe(keys.length);
    const rows = await role.store.transaction((tx) =>
      tx.query<{ n: number }>(
        `SELECT count(*)::int AS n FROM orders WHERE idempotency_key IN (${keys.map((_, i) => `$${i + 1}`).join(', ')})`,
        keys,
      ),
    );
    expect(rows[0]?.n).toBe(keys.length);
  });

  it('answers every submit sent while the database is down "not accepted" together, and a retry after it is back stores each once', async () => {
    await postgres.stop();
    const keys = Array.from({ length: 12 }, (_, i) => `down-${process.pid}-${Date.now()}-${i}`);
    let down: Submission[];
    try {
      down = await Promise.all(keys.map((k) => submitOnce(api, k)));
    } finally {
      await postgres.start();
    }
    expect(down.map((s) => s.error && errorKind(s.error))).toEqual(keys.map(() => 'not-stored'));
    // Queued callers are answered with the group that found the store unreachable, not a window later each.
    const answeredWithin = Math.max(...down.map((s) => s.answeredAt - s.sentAt));
    expect(answeredWithin).toBeLessThan(9_000);
    const retried = await Promise.all(keys.map((k) => submitOnce(api, k)));
    expect(retried.filter((s) => s.error)).toEqual([]);
    expect(new Set(retried.map((s) => s.orderId)).size).toBe(12);
  });
});
