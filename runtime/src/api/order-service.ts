// o2c.v1.OrderService: the order API that CRMs, portals and client applications call.
import { timestampFromMs, timestampMs } from '@bufbuild/protobuf/wkt';
import { Code, ConnectError, type ConnectRouter, type HandlerContext } from '@connectrpc/connect';
import { type Order, OrderState } from '../gen/o2c/v1/entities_pb.js';
import {
  CancelOrderRequestSchema,
  GetOrderHistoryRequestSchema,
  GetOrderRequestSchema,
  ListExceptionsRequestSchema,
  ListOrdersRequestSchema,
  OrderService,
  ResolveExceptionRequestSchema,
  RetryStepRequestSchema,
  SubmitOrderRequestSchema,
  WatchOrderRequestSchema,
} from '../gen/o2c/v1/order_service_pb.js';
import {
  type ListFilter,
  type OrderChange,
  type OrderRepository,
  orderCreatedMs,
  TERMINAL_STATES,
} from '../orders/repository.js';
import type { WorkflowEngine } from '../workflow/engine.js';
import { type ExceptionRow, listExceptions, stepHistory } from '../workflow/instances.js';
import { type AdmissionSignal, admit, maxBacklogFromEnv, saturated } from './admission.js';
import { decodePageToken, encodePageToken, PageTokenError } from './page-token.js';
import { assertValid, invalidArgument, PRINTABLE_TOKEN } from './validation.js';

export interface OrderServiceOptions {
  orders: OrderRepository;
  /** The Workflow generation new orders start on. */
  workflowGeneration?: () => number;
  /** How often WatchOrder re-reads the order, to see changes made by other replicas. */
  watchPollMs?: number;
  /** The workflow engine, for RetryStep and ResolveException. */
  engine?: WorkflowEngine;
  /**
   * The engine's saturation signal, read once per SubmitOrder (the workflow role passes
   * `() => ({ backlog: engine.backlog() })`); without it every submit is admitted.
   */
  admission?: () => AdmissionSignal;
  /** The backlog at which SubmitOrder answers Unavailable; default O2C_API_MAX_BACKLOG, else 2,000. */
  maxBacklog?: number;
}

function exceptionMessage(e: ExceptionRow) {
  return {
    id: e.id,
    orderId: e.orderId,
    step: e.step,
    errorClass: e.errorClass,
    message: e.message,
    attempts: e.attempts,
    status: e.status,
    openTime: timestampFromMs(e.openedAt),
    resolveTime: e.resolvedAt === null ? undefined : timestampFromMs(e.resolvedAt),
    resolution: e.resolution,
    payloadJson: e.payload,
  };
}

const DEFAULT_PAGE_SIZE = 50;

function idempotencyKeyOf(fieldValue: string, ctx: HandlerContext): string {
  const header = ctx.requestHeader.get('idempotency-key') ?? '';
  if (fieldValue && header && fieldValue !== header) {
    throw invalidArgument(
      'idempotency_key',
      'differs from the Idempotency-Key header; send one or make them equal',
    );
  }
  const key = fieldValue || header;
  if (!key) throw invalidArgument('idempotency_key', 'required (the field or the Idempotency-Key header)');
  if (!PRINTABLE_TOKEN.test(key)) {
    throw invalidArgument('idempotency_key', 'must be 1 to 128 printable ASCII characters without spaces');
  }
  return key;
}

function notFound(id: string): ConnectError {
  return new ConnectError(`order ${id} not found`, Code.NotFound);
}

export function orderServiceRoutes(options: OrderServiceOptions) {
  const { orders, admission } = options;
  const pollMs = options.watchPollMs ?? 1000;
  const maxBacklog = options.maxBacklog ?? maxBacklogFromEnv(process.env);

  return (router: ConnectRouter) =>
    router.service(OrderService, {
      async submitOrder(req, ctx) {
        // Refused before any other work: a saturated engine must not also pay for validation.
        if (admission) {
          const signal = admission();
          const decision = admit({ ...signal, bound: maxBacklog });
          if (!decision.accept) throw saturated(signal.backlog, maxBacklog, decision.retryAfterMs);
        }
        assertValid(SubmitOrderRequestSchema, req);
        const key = idempotencyKeyOf(req.idempotencyKey, ctx);
        // Domain and store errors become their codes in the interceptor (errors.ts).
        const { order } = await orders.submit({
          order: req.order!,
          idempotencyKey: key,
          workflowGeneration: options.workflowGeneration?.(),
          traceparent: ctx.requestHeader.get('traceparent') ?? undefined,
        });
        return { order };
      },

      async getOrder(req) {
        assertValid(GetOrderRequestSchema, req);
        const order = await orders.get(req.id);
        if (!order) throw notFound(req.id);
        return { order };
      },

      async listOrders(req) {
        assertValid(ListOrdersRequestSchema, req);
        const filter: ListFilter = {
          states: req.states,
          customerId: req.customerId || undefined,
          createdAfterMs: req.createdAfter ? timestampMs(req.createdAfter) : undefined,
          createdBeforeMs: req.createdBefore ? timestampMs(req.createdBefore) : undefined,
        };
        let after: { createdAt: number; id: string } | undefined;
        if (req.pageToken) {
          try {
            after = decodePageToken(req.pageToken, filter);
          } catch (err) {
            if (err instanceof PageTokenError) throw invalidArgument('page_token', err.message);
            throw err;
          }
        }
        const pageSize = req.pageSize || DEFAULT_PAGE_SIZE;
        // One more than asked tells whether another page exists.
        const page = await orders.list(filter, pageSize + 1, after);
        const more = page.length > pageSize;
        const list = more ? page.slice(0, pageSize) : page;
        const last = list[list.length - 1];
        return {
          orders: list,
          nextPageToken:
            more && last ? encodePageToken({ createdAt: orderCreatedMs(last), id: last.id }, filter) : '',
        };
      },

      async cancelOrder(req) {
        assertValid(CancelOrderRequestSchema, req);
        return { order: await orders.cancel(req.id, req.reason) };
      },

      async getOrderHistory(req) {
        assertValid(GetOrderHistoryRequestSchema, req);
        const steps = await orders.store.transaction(async (tx) => {
          if (!(await orders.get(req.id, tx))) throw notFound(req.id);
          return stepHistory(tx, req.id);
        });
        return {
          steps: steps.map((s) => ({
            step: s.step,
            attempt: s.attempt,
            outcome: s.outcome,
            errorClass: s.errorClass,
            message: s.message,
            startTime: timestampFromMs(s.startedAt),
            endTime: s.endedAt === undefined ? undefined : timestampFromMs(s.endedAt),
          })),
        };
      },

      async listExceptions(req) {
        assertValid(ListExceptionsRequestSchema, req);
        const rows = await orders.store.transaction((tx) =>
          listExceptions(tx, {
            status: req.status,
            orderId: req.orderId,
            step: req.step,
            limit: req.pageSize || DEFAULT_PAGE_SIZE,
          }),
        );
        return { exceptions: rows.map(exceptionMessage) };
      },

      async retryStep(req) {
        assertValid(RetryStepRequestSchema, req);
        if (!options.engine)
          throw new ConnectError('this process runs no workflow engine', Code.FailedPrecondition);
        return { order: await options.engine.retryStep(req.exceptionId) };
      },

      async resolveException(req) {
        assertValid(ResolveExceptionRequestSchema, req);
        if (!options.engine)
          throw new ConnectError('this process runs no workflow engine', Code.FailedPrecondition);
        const row = await options.engine.resolve(req.exceptionId, req.resolution, req.skipStep);
        return { exception: exceptionMessage(row) };
      },

      async *watchOrder(req, ctx) {
        assertValid(WatchOrderRequestSchema, req);
        // Subscribe before the first read so no change falls between the read and the subscription.
        const pending: Order[] = [];
        let wake: (() => void) | undefined;
        const unsubscribe = orders.onChange(req.id, (change: OrderChange) => {
          pending.push(change.order);
          wake?.();
        });
        const onAbort = () => wake?.();
        ctx.signal.addEventListener('abort', onAbort);
        try {
          const first = await orders.get(req.id);
          if (!first) throw notFound(req.id);
          let version = first.version;
          yield { order: first };
          let current = first;
          while (!TERMINAL_STATES.has(current.state) && !ctx.signal.aborted) {
            if (pending.length === 0) {
              await new Promise<void>((resolve) => {
                wake = resolve;
                setTimeout(resolve, pollMs);
              });
              wake = undefined;
            }
            const next = pending.length > 0 ? pending.shift() : await orders.get(req.id);
            if (!next || next.version <= version) continue;
            version = next.version;
            current = next;
            yield { order: next };
          }
        } finally {
          unsubscribe();
          ctx.signal.removeEventListener('abort', onAbort);
        }
      },
    });
}

export { OrderState };
