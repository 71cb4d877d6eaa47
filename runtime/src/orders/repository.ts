// Orders in the store: idempotent submission (the order and its OrderSubmitted event in one
// transaction), reads with keyset pagination, state changes with optimistic versions, and an
// in-process change feed that WatchOrder follows.
import { createHash } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { clone, create, fromBinary, toBinary } from '@bufbuild/protobuf';
import { timestampDate, timestampFromMs } from '@bufbuild/protobuf/wkt';
import { type Order, OrderSchema, OrderState } from '../gen/o2c/v1/entities_pb.js';
import type { PostgresStore } from '../store/postgres.js';
import type { Store, Tx } from '../store/types.js';
import { buildEnvelope, type EnvelopePayload, EventType, envelopeToOutbox } from './envelope.js';
import { newOrderId } from './ids.js';

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
  return createHash('sha256')
    .update(toBinary(OrderSchema, clientContent(order)))
    .digest('base64url');
}

const INSERT_ORDER_COLUMNS =
  'id, idempotency_key, request_hash, customer_id, state, version, workflow_generation, created_at, updated_at, data';

const ANY_ORDER = Symbol('any order');

export interface OrderChange {
  order: Order;
  previousState: OrderState;
}

export class OrderRepository {
  private readonly feed = new EventEmitter();

  constructor(
    readonly store: Store,
    private readonly source: string,
  ) {
    this.feed.setMaxListeners(0);
  }

  /** Accepts an order once per idempotency key. */
  async submit(input: {
    order: Order;
    idempotencyKey: string;
    workflowGeneration?: number;
    traceparent?: string;
  }): Promise<{ order: Order; created: boolean }> {
    const now = Date.now();
    const fingerprint = requestFingerprint(input.order);
    const order = clientContent(input.order);
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
    const outbox = envelopeToOutbox(envelope);
    const orderParams = [
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
    ];

    let created: boolean;
    if (this.store.dialect === 'postgres') {
      // One statement, one round trip: the order and its event commit together or not at all.
      const rows = await (this.store as PostgresStore).statement<{ created: number }>(
        `WITH ins AS (
           INSERT INTO orders (${INSERT_ORDER_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
           ON CONFLICT (idempotency_key) DO NOTHING RETURNING id
         ), ob AS (
           INSERT INTO outbox (id, exchange, routing_key, type, correlation_id, ordering_key, headers, body, created_at)
           SELECT $11, $12, $13, $14, $15, $16, $17, $18, $8 FROM ins RETURNING seq
         )
         SELECT count(*)::int AS created FROM ob`,
        [
          ...orderParams,
          outbox.id,
          outbox.exchange,
          outbox.routingKey,
          outbox.type,
          outbox.correlationId,
          outbox.orderingKey,
          JSON.stringify(outbox.headers ?? {}),
          outbox.body,
        ],
      );
      created = (rows[0]?.created ?? 0) === 1;
    } else {
      created = await this.store.transaction(async (tx) => {
        const existing = await tx.query('SELECT id FROM orders WHERE idempotency_key = $1', [
          input.idempotencyKey,
        ]);
        if (existing.length > 0) return false;
        await tx.execute(
          `INSERT INTO orders (${INSERT_ORDER_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`,
          orderParams,
        );
        await tx.enqueueOutbox([outbox]);
        return true;
      });
    }
    if (created) {
      this.emitChange({ order, previousState: OrderState.UNSPECIFIED });
      return { order, created: true };
    }
    const rows = await this.store.transaction((tx) =>
      tx.query<{ request_hash: string; data: Uint8Array }>(
        'SELECT request_hash, data FROM orders WHERE idempotency_key = $1',
        [input.idempotencyKey],
      ),
    );
    const row = rows[0];
    if (!row) throw new Error(`order with idempotency key ${input.idempotencyKey} vanished`);
    const existing = fromBinary(OrderSchema, row.data);
    if (row.request_hash !== fingerprint)
      throw new IdempotencyConflictError(input.idempotencyKey, existing.id);
    return { order: existing, created: false };
  }

  async get(id: string, tx?: Tx): Promise<Order | undefined> {
    const read = (t: Tx) => t.query<{ data: Uint8Array }>('SELECT data FROM orders WHERE id = $1', [id]);
    const rows = tx ? await read(tx) : await this.store.transaction(read);
    const row = rows[0];
    return row ? fromBinary(OrderSchema, row.data) : undefined;
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
  async save(
    tx: Tx,
    order: Order,
    previous: Order,
    extra: { type: string; payload: EnvelopePayload; causationId?: string }[] = [],
  ): Promise<Order> {
    const now = Date.now();
    const next = clone(OrderSchema, order);
    next.version = previous.version + 1n;
    next.updateTime = timestampFromMs(now);
    const changed = await tx.execute(
      'UPDATE orders SET state = $1, version = $2, updated_at = $3, data = $4 WHERE id = $5 AND version = $6',
      [next.state, Number(next.version), now, toBinary(OrderSchema, next), next.id, Number(previous.version)],
    );
    if (changed !== 1) throw new VersionConflictError(next.id, Number(previous.version));
    const events = [...extra];
    if (next.state !== previous.state) {
      events.push({
        type: EventType.OrderStateChanged,
        payload: { case: 'orderStateChanged', value: { order: next, previousState: previous.state } },
      });
    }
    await tx.enqueueOutbox(
      events.map((e) =>
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
      ),
    );
    return next;
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
