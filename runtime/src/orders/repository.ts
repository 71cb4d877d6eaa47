// Orders in the store: idempotent submission (the order and its OrderSubmitted event in one
// transaction), reads with keyset pagination, state changes with optimistic versions, and an
// in-process change feed that WatchOrder follows.
import { createHash } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { clone, create, fromBinary, toBinary } from '@bufbuild/protobuf';
import { timestampDate, timestampFromMs } from '@bufbuild/protobuf/wkt';
import { type Order, OrderSchema, OrderState } from '../gen/o2c/v1/entities_pb.js';
import { classifyStoreError, nothingWritten } from '../store/errors.js';
import type { PostgresStore } from '../store/postgres.js';
import { OUTBOX_INSERT_COLUMNS, outboxValuesBeforeBody } from '../store/sql-common.js';
import type { OutboxMessage, SqlParam, Store, Tx } from '../store/types.js';
import { buildEnvelope, type EnvelopePayload, EventType, envelopeToOutbox } from './envelope.js';
import { GroupCommit, type Outcome } from './group-commit.js';
import { newOrderId } from './ids.js';
import { answerSubmit, type StoredSubmit, type SubmitAttempt, writersOf } from './submit-group.js';

export const TERMINAL_STATES: ReadonlySet<OrderState> = new Set([
  OrderState.PAID,
  OrderState.CANCELLED,
  OrderState.FAILED,
]);

/** States from which CancelOrder is allowed: nothing has left the warehouse yet. */
export const CANCELLABLE_STATES: ReadonlySet<OrderState> = new Set([
  OrderState.SUBMITTED,
  OrderState.IN_PROGRESS,
  OrderState.ALLOCATED,
  OrderState.BACKORDERED,
  OrderState.BOOKED,
  OrderState.ON_HOLD,
]);

export class IdempotencyConflictError extends Error {
  constructor(
    readonly key: string,
    readonly existingOrderId: string,
  ) {
    super(
      `idempotency key "${key}" was already used for order ${existingOrderId} with different content; use a new key for a different order`,
    );
  }
}

export class OrderNotFoundError extends Error {
  constructor(readonly orderId: string) {
    super(`order ${orderId} not found`);
  }
}

export class OrderStateError extends Error {
  constructor(
    readonly order: Order,
    action: string,
  ) {
    super(`order ${order.id} is ${OrderState[order.state]}; it cannot be ${action} in that state`);
  }
}

export class VersionConflictError extends Error {
  constructor(
    readonly orderId: string,
    readonly expected: number,
  ) {
    super(`order ${orderId} changed concurrently (expected version ${expected})`);
  }
}

/** An event appended to the outbox with an order's change. */
export interface OrderEvent {
  type: string;
  payload: EnvelopePayload;
  causationId?: string;
}

/** One order change for `saveMany`: the order to write, the version it was read at, its events. */
export interface OrderSave {
  order: Order;
  before: Order;
  events: OrderEvent[];
}

export interface ListFilter {
  states?: OrderState[];
  customerId?: string;
  createdAfterMs?: number;
  createdBeforeMs?: number;
}

export interface PageCursor {
  createdAt: number;
  id: string;
}

/** The fields a client sends; the idempotency fingerprint covers exactly these. */
export function clientContent(order: Order): Order {
  return create(OrderSchema, {
    customerId: order.customerId,
    currencyCode: order.currencyCode,
    lines: order.lines.map((l) => ({
      sku: l.sku,
      quantity: l.quantity,
      unitPrice: l.unitPrice,
      description: l.description,
    })),
    purchaseOrderNumber: order.purchaseOrderNumber,
    shipTo: order.shipTo,
    notes: order.notes,
    channel: order.channel,
  });
}

export function requestFingerprint(order: Order): string {
  return contentFingerprint(clientContent(order));
}

function contentFingerprint(content: Order): string {
  return createHash('sha256').update(toBinary(OrderSchema, content)).digest('base64url');
}

const INSERT_ORDER_COLUMNS =
  'id, idempotency_key, request_hash, customer_id, state, version, workflow_generation, created_at, updated_at, data';

const ANY_ORDER = Symbol('any order');

export interface OrderRepositoryOptions {
  /** Most SubmitOrder calls one store transaction carries (group commit). Default 128. */
  maxSubmitGroup?: number;
}

export const DEFAULT_MAX_SUBMIT_GROUP = 128;

type SubmitResult = { order: Order; created: boolean };

/** A submit ready to write: its order row's values and its OrderSubmitted outbox message. */
interface PreparedSubmit extends SubmitAttempt {
  now: number;
  row: SqlParam[];
  outbox: OutboxMessage;
}

/** The OrderSubmitted outbox row of a submit, then the id of the order it belongs to. */
function outboxValues(w: PreparedSubmit): SqlParam[] {
  const m = w.outbox;
  return [...outboxValuesBeforeBody(m), m.body, w.now, w.order.id];
}

/** VALUES rows take no type from a target column: the outbox values' types, then the order id's. */
const OUTBOX_VALUE_CASTS = [
  '::text',
  '::text',
  '::text',
  '::text',
  '::text',
  '::text',
  '::text',
  '::bytea',
  '::bigint',
  '::text',
];

export interface OrderChange {
  order: Order;
  previousState: OrderState;
}

export class OrderRepository {
  private readonly feed = new EventEmitter();

  private readonly submits: GroupCommit<PreparedSubmit, SubmitResult>;

  constructor(
    readonly store: Store,
    private readonly source: string,
    options: OrderRepositoryOptions = {},
  ) {
    this.feed.setMaxListeners(0);
    this.submits = new GroupCommit((group) => this.commitSubmits(group), {
      maxGroupSize: options.maxSubmitGroup ?? DEFAULT_MAX_SUBMIT_GROUP,
      failsQueued: nothingWritten,
    });
  }

  /**
   * Accepts an order once per idempotency key. Concurrent submits commit together (group commit):
   * the caller is answered once its group's transaction has committed, with its own answer: the
   * order it created, the order stored earlier (or by another caller of the group) for the same key
   * and the same request, or IdempotencyConflictError for the same key with a different request.
   */
  async submit(input: {
    order: Order;
    idempotencyKey: string;
    workflowGeneration?: number;
    traceparent?: string;
  }): Promise<{ order: Order; created: boolean }> {
    const result = await this.submits.run(this.prepareSubmit(input));
    if (result.created) this.emitChange({ order: result.order, previousState: OrderState.UNSPECIFIED });
    return result;
  }

  /** Callers waiting for the next submit group: intake that the store has not caught up with. */
  get queuedSubmits(): number {
    return this.submits.queued;
  }

  private prepareSubmit(input: {
    order: Order;
    idempotencyKey: string;
    workflowGeneration?: number;
    traceparent?: string;
  }): PreparedSubmit {
    const now = Date.now();
    const order = clientContent(input.order);
    // Of the client's content alone, before the server's fields are set on it.
    const fingerprint = contentFingerprint(order);
    order.id = newOrderId();
    order.state = OrderState.SUBMITTED;
    order.idempotencyKey = input.idempotencyKey;
    order.createTime = timestampFromMs(now);
    order.updateTime = order.createTime;
    order.version = 1n;
    order.workflowGeneration = BigInt(input.workflowGeneration ?? 0);
    if (!order.channel) order.channel = 'api';
    const envelope = buildEnvelope({
      type: EventType.OrderSubmitted,
      source: this.source,
      subject: order.id,
      correlationId: order.id,
      idempotencyKey: input.idempotencyKey,
      traceparent: input.traceparent,
      payload: { case: 'orderSubmitted', value: { order } },
      now,
    });
    return {
      key: input.idempotencyKey,
      fingerprint,
      order,
      now,
      outbox: envelopeToOutbox(envelope),
      row: [
        order.id,
        input.idempotencyKey,
        fingerprint,
        order.customerId,
        order.state,
        1,
        Number(order.workflowGeneration),
        now,
        now,
        toBinary(OrderSchema, order),
      ],
    };
  }

  /**
   * One group's commit and every caller's answer. A group that the database refuses for a reason
   * other than an outage (a value it cannot store, a lost race) is committed again one submit at a
   * time, so that one bad row never fails the others and each caller gets its own error.
   */
  private async commitSubmits(group: PreparedSubmit[]): Promise<Outcome<SubmitResult>[]> {
    const writers = writersOf(group).map((i) => group[i] as PreparedSubmit);
    let inserted: Set<string>;
    try {
      inserted = await this.insertSubmits(writers);
    } catch (err) {
      if (group.length === 1 || classifyStoreError(err) === 'unavailable') throw err;
      return this.commitEachAlone(group);
    }
    const stored = new Map<string, StoredSubmit>();
    for (const w of writers)
      if (inserted.has(w.order.id)) stored.set(w.key, { requestHash: w.fingerprint, order: w.order });
    const unresolved = [...new Set(group.filter((g) => !stored.has(g.key)).map((g) => g.key))];
    let lookupError: unknown;
    if (unresolved.length > 0) {
      try {
        for (const [key, row] of await this.storedSubmits(unresolved)) stored.set(key, row);
      } catch (err) {
        lookupError = err;
      }
    }
    return group.map((attempt): Outcome<SubmitResult> => {
      const answer = answerSubmit(attempt, stored.get(attempt.key));
      if (answer.kind === 'created' || answer.kind === 'existing')
        return { ok: true, value: { order: answer.order, created: answer.kind === 'created' } };
      if (answer.kind === 'conflict')
        return { ok: false, error: new IdempotencyConflictError(attempt.key, answer.existingOrderId) };
      return {
        ok: false,
        error: lookupError ?? new Error(`order with idempotency key ${attempt.key} vanished`),
      };
    });
  }

  /** The fallback of a refused group; an outage on the way fails the rest with the same error. */
  private async commitEachAlone(group: PreparedSubmit[]): Promise<Outcome<SubmitResult>[]> {
    const outcomes: Outcome<SubmitResult>[] = [];
    let outage: unknown;
    for (const attempt of group) {
      if (outage !== undefined) {
        outcomes.push({ ok: false, error: outage });
        continue;
      }
      try {
        outcomes.push(...(await this.commitSubmits([attempt])));
      } catch (error) {
        if (classifyStoreError(error) === 'unavailable') outage = error;
        outcomes.push({ ok: false, error });
      }
    }
    return outcomes;
  }

  /**
   * Inserts the orders whose idempotency key is new and the OrderSubmitted event of each in one
   * transaction; a key already stored (by anyone) is skipped, never an error. The ids inserted.
   */
  private async insertSubmits(writers: PreparedSubmit[]): Promise<Set<string>> {
    const params: SqlParam[] = [];
    const placeholders = (values: SqlParam[], casts: readonly string[] = []) => {
      const first = params.length;
      params.push(...values);
      return `(${values.map((_, i) => `$${first + i + 1}${casts[i] ?? ''}`).join(', ')})`;
    };
    const orderRows = writers.map((w) => placeholders(w.row)).join(', ');
    const insertOrders = `INSERT INTO orders (${INSERT_ORDER_COLUMNS}) VALUES ${orderRows}
      ON CONFLICT (idempotency_key) DO NOTHING RETURNING id`;
    if (this.store.dialect === 'postgres') {
      // One statement, one round trip: the orders and their events commit together or not at all.
      const eventRows = writers.map((w) => placeholders(outboxValues(w), OUTBOX_VALUE_CASTS)).join(', ');
      const rows = await (this.store as PostgresStore).statement<{ id: string }>(
        `WITH ins AS (${insertOrders}), ob AS (
           INSERT INTO outbox (${OUTBOX_INSERT_COLUMNS})
           SELECT ${OUTBOX_INSERT_COLUMNS.replace(/(\w+)/g, 'v.$1')} FROM (VALUES ${eventRows}) AS v (${OUTBOX_INSERT_COLUMNS}, order_id)
           JOIN ins ON ins.id = v.order_id RETURNING seq
         )
         SELECT id FROM ins`,
        params,
      );
      return new Set(rows.map((r) => r.id));
    }
    return this.store.transaction(async (tx) => {
      const rows = await tx.query<{ id: string }>(insertOrders, params);
      const inserted = new Set(rows.map((r) => r.id));
      await tx.enqueueOutbox(writers.filter((w) => inserted.has(w.order.id)).map((w) => w.outbox));
      return inserted;
    });
  }

  /** The stored request fingerprint and order of each of these idempotency keys, by key. */
  private async storedSubmits(keys: string[]): Promise<Map<string, StoredSubmit>> {
    const rows = await this.store.transaction((tx) =>
      tx.query<{ idempotency_key: string; request_hash: string; data: Uint8Array }>(
        `SELECT idempotency_key, request_hash, data FROM orders WHERE idempotency_key IN (${keys.map((_, i) => `$${i + 1}`).join(', ')})`,
        keys,
      ),
    );
    return new Map(
      rows.map((r) => [
        r.idempotency_key,
        { requestHash: r.request_hash, order: fromBinary(OrderSchema, r.data) },
      ]),
    );
  }

  async get(id: string, tx?: Tx): Promise<Order | undefined> {
    return (await this.getMany([id], tx)).get(id);
  }

  /** The orders with these ids that exist, by id, read with one query per chunk of ids. */
  async getMany(ids: readonly string[], tx?: Tx): Promise<Map<string, Order>> {
    const found = new Map<string, Order>();
    const unique = [...new Set(ids)];
    if (unique.length === 0) return found;
    const read = async (t: Tx) => {
      for (let start = 0; start < unique.length; start += IDS_PER_READ) {
        const chunk = unique.slice(start, start + IDS_PER_READ);
        const rows = await t.query<{ data: Uint8Array }>(
          `SELECT data FROM orders WHERE id IN (${chunk.map((_, i) => `$${i + 1}`).join(', ')})`,
          chunk,
        );
        for (const row of rows) {
          const order = fromBinary(OrderSchema, row.data);
          found.set(order.id, order);
        }
      }
    };
    if (tx) await read(tx);
    else await this.store.transaction(read);
    return found;
  }

  /** Newest first; `after` continues after the last order of the previous page. */
  async list(filter: ListFilter, pageSize: number, after?: PageCursor): Promise<Order[]> {
    const where: string[] = [];
    const params: (string | number)[] = [];
    const param = (v: string | number) => {
      params.push(v);
      return `$${params.length}`;
    };
    if (filter.states && filter.states.length > 0)
      where.push(`state IN (${filter.states.map((s) => param(s)).join(', ')})`);
    if (filter.customerId) where.push(`customer_id = ${param(filter.customerId)}`);
    if (filter.createdAfterMs !== undefined) where.push(`created_at >= ${param(filter.createdAfterMs)}`);
    if (filter.createdBeforeMs !== undefined) where.push(`created_at < ${param(filter.createdBeforeMs)}`);
    if (after) where.push(`(created_at, id) < (${param(after.createdAt)}, ${param(after.id)})`);
    const sql = `SELECT data FROM orders ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY created_at DESC, id DESC LIMIT ${param(pageSize)}`;
    const rows = await this.store.transaction((tx) => tx.query<{ data: Uint8Array }>(sql, params));
    return rows.map((r) => fromBinary(OrderSchema, r.data));
  }

  /**
   * Writes a changed order inside the caller's transaction: checks the version it read, bumps it,
   * and appends OrderStateChanged (when the state moved) plus any extra events to the outbox.
   */
  async save(tx: Tx, order: Order, previous: Order, extra: OrderEvent[] = []): Promise<Order> {
    const [saved] = await this.saveMany(tx, [{ order, before: previous, events: extra }]);
    if (!saved) throw new Error(`order ${order.id} was not saved`);
    return saved;
  }

  /**
   * `save` for many orders at once, with the same checks and events, in multi-row statements: one
   * UPDATE per round of distinct orders and one outbox INSERT per 100 events. An order listed twice
   * is written in list order (its second item's `before` must be the first item's result), exactly
   * as consecutive `save` calls would. A stale version anywhere throws VersionConflictError for the
   * first stale item; the caller's transaction then rolls back as a whole. Returns the saved orders
   * in item order.
   */
  async saveMany(tx: Tx, items: readonly OrderSave[]): Promise<Order[]> {
    const now = Date.now();
    const writes = items.map(({ order, before }) => {
      const next = clone(OrderSchema, order);
      next.version = before.version + 1n;
      next.updateTime = timestampFromMs(now);
      return { next, previousVersion: before.version };
    });
    for (const round of roundsOfDistinctIds(writes.map((w) => w.next.id))) {
      for (let start = 0; start < round.length; start += ORDERS_PER_UPDATE) {
        const chunk = round.slice(start, start + ORDERS_PER_UPDATE).flatMap((i) => writes[i] ?? []);
        const updated = await updateOrders(tx, chunk, now);
        const stale = chunk.find((w) => !updated.has(w.next.id));
        if (stale) throw new VersionConflictError(stale.next.id, Number(stale.previousVersion));
      }
    }
    const saved = writes.map((w) => w.next);
    const outbox = items.flatMap(({ order, before, events }, i) => {
      const next = writes[i]?.next ?? order;
      const all = [...events];
      if (next.state !== before.state) {
        all.push({
          type: EventType.OrderStateChanged,
          payload: { case: 'orderStateChanged', value: { order: next, previousState: before.state } },
        });
      }
      return all.map((e) =>
        envelopeToOutbox(
          buildEnvelope({
            type: e.type,
            source: this.source,
            subject: next.id,
            correlationId: next.id,
            causationId: e.causationId,
            payload: e.payload,
            now,
          }),
        ),
      );
    });
    if (outbox.length > 0) await tx.enqueueOutbox(outbox);
    return saved;
  }

  /** Cancels an order that has not shipped; a repeated cancel returns the cancelled order. */
  async cancel(id: string, reason: string): Promise<Order> {
    const { order, previousState, changed } = await this.store.transaction(async (tx) => {
      const current = await this.get(id, tx);
      if (!current) throw new OrderNotFoundError(id);
      if (current.state === OrderState.CANCELLED)
        return { order: current, previousState: current.state, changed: false };
      if (!CANCELLABLE_STATES.has(current.state)) throw new OrderStateError(current, 'cancelled');
      const next = clone(OrderSchema, current);
      next.state = OrderState.CANCELLED;
      next.statusReason = reason || 'cancelled by request';
      const saved = await this.save(tx, next, current, [
        {
          type: EventType.OrderCancelled,
          payload: { case: 'orderCancelled', value: { orderId: id, reason: next.statusReason } },
        },
      ]);
      return { order: saved, previousState: current.state, changed: true };
    });
    if (changed) this.emitChange({ order, previousState });
    return order;
  }

  /** Called after a transaction that saved orders has committed. */
  emitChange(change: OrderChange): void {
    this.feed.emit(change.order.id, change);
    this.feed.emit(ANY_ORDER, change);
  }

  /** Every committed change of any order (used to wake the outbox relay). */
  onAnyChange(listener: (change: OrderChange) => void): () => void {
    this.feed.on(ANY_ORDER, listener);
    return () => this.feed.off(ANY_ORDER, listener);
  }

  onChange(orderId: string, listener: (change: OrderChange) => void): () => void {
    this.feed.on(orderId, listener);
    return () => this.feed.off(orderId, listener);
  }
}

export function orderCreatedMs(order: Order): number {
  return order.createTime ? timestampDate(order.createTime).getTime() : 0;
}

/** Ids per getMany query: SQLite binds one parameter per id. */
const IDS_PER_READ = 500;
/** Orders per UPDATE statement (5 parameters each): well under both drivers' parameter limits. */
const ORDERS_PER_UPDATE = 200;

/**
 * Splits item positions into rounds in which every id occurs once, keeping list order per id: one
 * UPDATE touches a row once, so an order's second change must wait for a later statement.
 */
export function roundsOfDistinctIds(ids: readonly string[]): number[][] {
  const rounds: number[][] = [];
  const seen = new Map<string, number>();
  ids.forEach((id, i) => {
    const round = seen.get(id) ?? 0;
    seen.set(id, round + 1);
    if (round === rounds.length) rounds.push([i]);
    else rounds[round]?.push(i);
  });
  return rounds;
}

/** One UPDATE for orders with distinct ids, each only at the version it was read; the ids it wrote. */
async function updateOrders(
  tx: Tx,
  rows: { next: Order; previousVersion: bigint }[],
  now: number,
): Promise<Set<string>> {
  const pg = tx.dialect === 'postgres';
  const params: SqlParam[] = [];
  const values = rows.map(({ next, previousVersion }) => {
    const base = params.length;
    params.push(
      next.id,
      next.state,
      Number(next.version),
      toBinary(OrderSchema, next),
      Number(previousVersion),
    );
    return pg
      ? `($${base + 1}::text, $${base + 2}::int, $${base + 3}::bigint, $${base + 4}::bytea, $${base + 5}::bigint)`
      : `($${base + 1}, $${base + 2}, $${base + 3}, $${base + 4}, $${base + 5})`;
  });
  params.push(now);
  const written = await tx.query<{ id: string }>(
    `WITH v (id, state, version, data, previous_version) AS (VALUES ${values.join(', ')})
     UPDATE orders SET state = v.state, version = v.version, updated_at = $${params.length}, data = v.data
     FROM v WHERE orders.id = v.id AND orders.version = v.previous_version
     RETURNING orders.id`,
    params,
  );
  return new Set(written.map((r) => r.id));
}
