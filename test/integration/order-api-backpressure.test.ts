// SubmitOrder back-pressure with a real workflow role (API, engine, outbox relay) on PostgreSQL and
// RabbitMQ: while the engine gets no work from the broker (a memory alarm on a RabbitMQ of this
// test's own blocks every publisher, so no OrderSubmitted reaches it) its backlog of orders not yet
// started grows, and past O2C_API_MAX_BACKLOG a submit is refused with Unavailable, a retry delay in
// google.rpc.RetryInfo and `retry-after`, without being stored; once the alarm clears and the engine
// drains, the same submit is accepted, and every order accepted before is started by the engine:
// nothing accepted is lost.
import { type Client, Code, ConnectError, createClient } from '@connectrpc/connect';
import { createConnectTransport, createGrpcTransport } from '@connectrpc/connect-node';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RetryInfoSchema } from '../../runtime/src/api/admission.js';
import { OrderService } from '../../runtime/src/gen/o2c/v1/order_service_pb.js';
import { createLogger } from '../../runtime/src/observability/logger.js';
import { createRegistry } from '../../runtime/src/observability/metrics.js';
import { startWorkflowRole, type WorkflowRole } from '../../runtime/src/roles/workflow.js';
import { orderFor } from './support/order-load.js';
import { type PrivateRabbit, startPrivateRabbit } from './support/private-services.js';
import { freshDatabase, until } from './support/services.js';
import { distributor } from './support/stack.js';

const BOUND = 20;
const NAMESPACE = `bp-${process.pid}`;

describe('SubmitOrder back-pressure from a saturated workflow engine', () => {
  let role: WorkflowRole;
  let url: string;
  let connect: Client<typeof OrderService>;
  let grpc: Client<typeof OrderService>;
  let rabbit: PrivateRabbit;

  beforeAll(async () => {
    [url, rabbit] = await Promise.all([freshDatabase('o2c_test_api_backpressure'), startPrivateRabbit('bp')]);
    const previous = process.env.O2C_API_MAX_BACKLOG;
    process.env.O2C_API_MAX_BACKLOG = String(BOUND);
    try {
      role = await startWorkflowRole({
        storeUrl: url,
        brokerUrl: rabbit.url,
        host: '127.0.0.1',
        apiPort: 0,
        source: `o2c/${NAMESPACE}/workflow/distributor`,
        workflowGeneration: 1,
        // No connector runs: the engine starts orders and sends their first command, nobody answers.
        workflow: { namespace: NAMESPACE, name: 'distributor', spec: distributor().spec, timerPollMs: 50 },
        logger: createLogger('test', 'silent'),
        registry: createRegistry(false),
      });
    } finally {
      if (previous === undefined) delete process.env.O2C_API_MAX_BACKLOG;
      else process.env.O2C_API_MAX_BACKLOG = previous;
    }
    const baseUrl = `http://127.0.0.1:${role.api.port}`;
    connect = createClient(OrderService, createConnectTransport({ baseUrl, httpVersion: '1.1' }));
    grpc = createClient(OrderService, createGrpcTransport({ baseUrl }));
  });
  afterAll(async () => {
    await role?.stop();
    await rabbit?.close();
  });

  const rows = async <R extends Record<string, unknown>>(sql: string, params: unknown[]) => {
    const c = new pg.Client({ connectionString: url });
    await c.connect();
    try {
      return (await c.query<R>(sql, params)).rows;
    } finally {
      await c.end();
    }
  };
  const submit = async (client: Client<typeof OrderService>, key: string) => {
    try {
      const { order } = await client.submitOrder({ idempotencyKey: key, order: orderFor(key) });
      return { key, orderId: order?.id };
    } catch (err) {
      return { key, error: ConnectError.from(err) };
    }
  };

  it('refuses submits past the bound with Unavailable and a retry delay, stores none of them, and accepts again once the engine drains', async () => {
    // A memory alarm blocks every publisher: the outbox relay cannot hand OrderSubmitted to the
    // engine, while submits (the store only) and the engine's backlog count (the store) go on.
    await rabbit.ctl('set_vm_memory_high_watermark', '0');
    const accepted: string[] = [];
    let refused: { key: string; error: ConnectError } | undefined;
    try {
      for (let i = 0; i < 400 && !refused; i++) {
        const answer = await submit(connect, `bp-${process.pid}-${i}`);
        if (answer.orderId) accepted.push(answer.orderId);
        else if (answer.error) refused = { key: answer.key, error: answer.error };
        await new Promise((r) => setTimeout(r, 10));
      }
      expect(refused, 'a submit refused once the backlog passed the bound').toBeDefined();
      if (!refused) return;
      // The refusal says how long to wait, in both places clients look.
      expect(refused.error.code).toBe(Code.Unavailable);
      expect(refused.error.rawMessage).toMatch(/saturated.*not accepted/);
      const [info] = refused.error.findDetails(RetryInfoSchema) as {
        retryDelay?: { seconds: bigint; nanos: number };
      }[];
      const delayMs = Number(info?.retryDelay?.seconds ?? 0n) * 1000 + (info?.retryDelay?.nanos ?? 0) / 1e6;
      expect(delayMs).toBeGreaterThanOrEqual(250);
      expect(Number(refused.error.metadata.get('retry-after'))).toBeGreaterThanOrEqual(1);
      // Over gRPC too: the delay arrives as RetryInfo in grpc-status-details-bin and retry-after.
      const overGrpc = await submit(grpc, `bp-${process.pid}-grpc`);
      expect(overGrpc.error?.code).toBe(Code.Unavailable);
      expect(overGrpc.error?.findDetails(RetryInfoSchema)).toHaveLength(1);
      expect(overGrpc.error?.metadata.get('retry-after')).toMatch(/^[1-9][0-9]*$/);
      expect(accepted.length).toBeGreaterThanOrEqual(BOUND);
      // Not stored: a refused submit left nothing behind.
      const stored = await rows('SELECT id FROM orders WHERE idempotency_key = ANY($1::text[])', [
        [refused.key, `bp-${process.pid}-grpc`],
      ]);
      expect(stored).toEqual([]);
    } finally {
      await rabbit.ctl('set_vm_memory_high_watermark', '0.4');
    }
    // As a client is told: retry after the delay with the same key, until the engine has drained.
    const key = refused.key;
    let retried: Awaited<ReturnType<typeof submit>> | undefined;
    await until(
      async () => {
        retried = await submit(connect, key);
        if (retried.error && retried.error.code !== Code.Unavailable) throw retried.error;
        return retried.orderId !== undefined;
      },
      30_000,
      'the refused submit to be accepted once the backlog drained',
    );
    expect(retried?.orderId).toMatch(/^ord_/);
    // Nothing accepted is lost: the engine started every order it had accepted.
    const ids = [...accepted, retried?.orderId ?? ''];
    await until(
      async () =>
        (await rows('SELECT order_id FROM workflow_instances WHERE order_id = ANY($1::text[])', [ids]))
          .length === ids.length,
      30_000,
      'every accepted order to have a workflow instance',
    );
  });
});
