import { create, fromBinary, toBinary } from '@bufbuild/protobuf';
import { describe, expect, it } from 'vitest';
import { ErrorClass } from '../gen/o2c/v1/common_pb.js';
import { OrderSchema } from '../gen/o2c/v1/entities_pb.js';
import { EnvelopeSchema } from '../gen/o2c/v1/events_pb.js';
import { openStore, registerMigrations } from '../store/index.js';
import type { OutboxMessage } from '../store/types.js';
import { connectorMigrations } from './bindings.js';
import { type Clock, ManualClock, systemClock } from './clock.js';
import { buildCommandEnvelope, type CommandRequest, decodeReply } from './commands.js';
import type { ConnectorRuntimeConfig } from './config.js';
import { ConnectorFailure } from './driver.js';
import { ConnectorRuntime } from './runtime.js';
import { SimulatorDriver } from './simulator/driver.js';

/** The simulated ERP connector owning orders and inventory, with `limits` unless `config` sets its own. */
function erpConfig(
  limits: ConnectorRuntimeConfig['limits'],
  config: Partial<ConnectorRuntimeConfig>,
): ConnectorRuntimeConfig {
  return { name: 'erp', system: 'erp', driver: 'simulator', owns: ['order', 'inventory'], limits, ...config };
}

function aRuntime(
  config: Partial<ConnectorRuntimeConfig> = {},
  driver = new SimulatorDriver({ seed: 7 }),
  clock: Clock = new ManualClock(),
) {
  const published: OutboxMessage[] = [];
  const runtime = new ConnectorRuntime({
    config: erpConfig({ burst: 100 }, config),
    driver,
    publisher: { publish: async (m) => void published.push(m) },
    clock,
  });
  return { runtime, published, driver };
}

function aCommand(request: CommandRequest, overrides: { replyTo?: string } = {}) {
  const envelope = buildCommandEnvelope({
    connector: 'erp',
    request,
    orderId: 'o-1',
    step: 'sales-order',
    replyTo: overrides.replyTo ?? 'workflow.distributor.reply',
    correlationId: 'corr-1',
    causationId: 'cause-1',
  });
  return { envelope, body: toBinary(EnvelopeSchema, envelope) };
}

const createOrder: CommandRequest = {
  case: 'createSalesOrder',
  value: {
    $typeName: 'o2c.v1.CreateSalesOrderRequest',
    order: create(OrderSchema, { id: 'o-1', customerId: 'c-1' }),
  },
};

describe('ConnectorRuntime', () => {
  it('answers a command with a reply on reply_to carrying the correlation and causation ids', async () => {
    const { runtime, published } = aRuntime();
    const { envelope, body } = aCommand(createOrder);
    expect(await runtime.handleMessage(body)).toBe('replied');
    expect(published).toHaveLength(1);
    const msg = published[0];
    expect(msg?.exchange).toBe('o2c.events');
    expect(msg?.routingKey).toBe('workflow.distributor.reply');
    const decoded = decodeReply(msg?.body ?? new Uint8Array());
    expect(decoded?.envelope.correlationId).toBe('corr-1');
    expect(decoded?.envelope.causationId).toBe(envelope.id);
    expect(decoded?.reply.step).toBe('sales-order');
    expect(decoded?.reply.connector).toBe('erp');
    expect(decoded?.reply.result.case).toBe('createSalesOrder');
  });

  it('refuses a write the connector does not own with an OWNERSHIP error reply', async () => {
    const { runtime, published, driver } = aRuntime({ owns: ['customer'] });
    await runtime.handleMessage(aCommand(createOrder).body);
    const reply = decodeReply(published[0]?.body ?? new Uint8Array())?.reply;
    expect(reply?.result.case).toBe('error');
    const error = reply?.result.case === 'error' ? reply.result.value : undefined;
    expect(error?.errorClass).toBe(ErrorClass.OWNERSHIP);
    expect(error?.retryable).toBe(false);
    expect(driver.salesOrderCount()).toBe(0);
  });

  it('throws a retryable failure for the bus to retry, and answers it on the final attempt', async () => {
    const driver = new SimulatorDriver({ failureRate: 1 });
    const { runtime, published } = aRuntime({}, driver);
    const { body } = aCommand(createOrder);
    await expect(runtime.handleMessage(body, { attempt: 1 })).rejects.toBeInstanceOf(ConnectorFailure);
    expect(published).toHaveLength(0);
    await runtime.handleMessage(body, { attempt: 5, finalAttempt: true });
    const reply = decodeReply(published[0]?.body ?? new Uint8Array())?.reply;
    expect(reply?.result.case === 'error' && reply.result.value.errorClass).toBe(ErrorClass.UNAVAILABLE);
  });

  it('answers an unknown operation with a VALIDATION error instead of retrying it', async () => {
    const { runtime, published } = aRuntime();
    const { envelope } = aCommand(createOrder);
    if (envelope.payload.case === 'connectorCommand') envelope.payload.value.operation = 'ShipToMars';
    await runtime.handleMessage(toBinary(EnvelopeSchema, envelope));
    const reply = decodeReply(published[0]?.body ?? new Uint8Array())?.reply;
    expect(reply?.result.case === 'error' && reply.result.value.code).toBe('UNKNOWN_OPERATION');
  });

  it('dead-letters a body that is not an envelope', async () => {
    const { runtime } = aRuntime();
    await expect(runtime.handleMessage(new Uint8Array([0xff, 0xff, 0xff]))).rejects.toThrow(
      /not an o2c.v1.Envelope/,
    );
    expect(fromBinary).toBeDefined();
  });
});

/** A runtime over an embedded store, counting its transactions. */
async function aStoredRuntime(config: Partial<ConnectorRuntimeConfig> = {}, driver = new SimulatorDriver()) {
  registerMigrations(connectorMigrations);
  const store = await openStore('sqlite::memory:');
  let transactions = 0;
  const transaction = store.transaction.bind(store);
  store.transaction = (fn) => {
    transactions++;
    return transaction(fn);
  };
  const runtime = new ConnectorRuntime({
    config: erpConfig({ requestsPerSecond: 1_000_000, burst: 1_000_000, maxConcurrency: 64 }, config),
    driver,
    store,
  });
  const outbox = async () => (await store.pendingOutbox(1000)).map((r) => decodeReply(r.body)?.reply);
  return { runtime, store, driver, transactions: () => transactions, outbox };
}

const orderCommand = (orderId: string) =>
  buildCommandEnvelope({
    connector: 'erp',
    request: {
      case: 'createSalesOrder',
      value: { $typeName: 'o2c.v1.CreateSalesOrderRequest', order: create(OrderSchema, { id: orderId }) },
    },
    orderId,
    step: 'sales-order',
    replyTo: 'workflow.distributor.reply',
    correlationId: `corr-${orderId}`,
  });

describe('ConnectorRuntime with a store, a delivery batch at once', () => {
  it.each([
    {
      sentence: 'every command of a batch is answered, all replies in one transaction',
      batch: ['a', 'b', 'c', 'd'],
      outcomes: ['replied', 'replied', 'replied', 'replied'],
    },
    {
      sentence: 'a command twice in one batch is answered once, its second copy is a duplicate',
      batch: ['a', 'b', 'a'],
      outcomes: ['replied', 'replied', 'duplicate'],
    },
  ])('$sentence', async ({ batch, outcomes }) => {
    const { runtime, transactions, outbox, store } = await aStoredRuntime();
    const envelopes = new Map(batch.map((id) => [id, orderCommand(`o-${id}`)]));
    const results = await runtime.handleEnvelopes(batch.map((id) => ({ envelope: envelopes.get(id)! })));
    expect(results).toEqual(outcomes);
    expect(transactions()).toBe(1);
    expect((await outbox()).map((r) => r?.orderId)).toEqual([...envelopes.keys()].map((id) => `o-${id}`));
    await store.close();
  });

  it('answers a command delivered again in a later batch as a duplicate, writing no second reply', async () => {
    const { runtime, outbox, store } = await aStoredRuntime();
    const envelope = orderCommand('o-1');
    expect(await runtime.handleEnvelopes([{ envelope }])).toEqual(['replied']);
    expect(await runtime.handleEnvelopes([{ envelope }, { envelope: orderCommand('o-2') }])).toEqual([
      'duplicate',
      'replied',
    ]);
    expect((await outbox()).map((r) => r?.orderId)).toEqual(['o-1', 'o-2']);
    await store.close();
  });

  it('hands back a retryable failure of one command for the bus to retry and answers the others', async () => {
    const driver = new SimulatorDriver({ failureRates: { CreateSalesOrder: 1 } });
    const { runtime, outbox, store } = await aStoredRuntime({}, driver);
    const price = buildCommandEnvelope({
      connector: 'erp',
      request: {
        case: 'getPrice',
        value: {
          $typeName: 'o2c.v1.GetPriceRequest',
          customerId: 'c',
          currencyCode: 'USD',
          orderId: 'o-2',
          lines: [],
        },
      },
      orderId: 'o-2',
      step: 'price',
      replyTo: 'workflow.distributor.reply',
      correlationId: 'corr-2',
    });
    const [failed, answered] = await runtime.handleEnvelopes([
      { envelope: orderCommand('o-1') },
      { envelope: price },
    ]);
    expect(typeof failed === 'object' && failed.error).toBeInstanceOf(ConnectorFailure);
    expect(answered).toBe('replied');
    expect((await outbox()).map((r) => r?.step)).toEqual(['price']);
    await store.close();
  });

  it('runs the calls of a batch concurrently, never more at once than maxConcurrency', async () => {
    const driver = new SimulatorDriver({ latencyMs: 5 });
    let inFlight = 0;
    let most = 0;
    const createSalesOrder = driver.createSalesOrder;
    driver.createSalesOrder = async (req, ctx) => {
      most = Math.max(most, ++inFlight);
      try {
        return await createSalesOrder(req, ctx);
      } finally {
        inFlight--;
      }
    };
    const { runtime, store } = await aStoredRuntime(
      { limits: { requestsPerSecond: 1_000_000, burst: 1_000_000, maxConcurrency: 3 } },
      driver,
    );
    const batch = Array.from({ length: 10 }, (_, i) => ({ envelope: orderCommand(`o-${i}`) }));
    expect(await runtime.handleEnvelopes(batch)).toEqual(batch.map(() => 'replied'));
    expect(most).toBe(3);
    await store.close();
  });

  it('admits the calls of a batch at the rate limit: one token now, the next a tenth of a second later', async () => {
    const clock = new ManualClock();
    const { runtime, published, driver } = aRuntime(
      { owns: ['order'], limits: { requestsPerSecond: 10, burst: 1, maxConcurrency: 8 } },
      new SimulatorDriver({}, clock),
      clock,
    );
    const done = runtime.handleEnvelopes(
      Array.from({ length: 3 }, (_, i) => ({ envelope: orderCommand(`o-${i}`) })),
    );
    await clock.advance(0);
    expect(driver.salesOrderCount()).toBe(1);
    await clock.advance(100);
    expect(driver.salesOrderCount()).toBe(2);
    await clock.advance(100);
    expect(await done).toEqual(['replied', 'replied', 'replied']);
    expect(published).toHaveLength(3);
  });

  it('lets no call of a batch through once the circuit opened: the rest fail fast for the bus to retry', async () => {
    const { runtime, published, driver } = aRuntime(
      {
        owns: ['order'],
        limits: { requestsPerSecond: 1_000_000, burst: 1_000_000, maxConcurrency: 1 },
        circuitBreaker: { consecutiveFailures: 2, openFor: '30s' },
      },
      new SimulatorDriver({ failureRate: 1 }),
      systemClock,
    );
    const outcomes = await runtime.handleEnvelopes(
      Array.from({ length: 5 }, (_, i) => ({ envelope: orderCommand(`o-${i}`) })),
    );
    const codes = outcomes.map((o) =>
      typeof o === 'object' && o.error instanceof ConnectorFailure ? o.error.code : o,
    );
    expect(codes).toEqual(['SIMULATED', 'SIMULATED', 'CIRCUIT_OPEN', 'CIRCUIT_OPEN', 'CIRCUIT_OPEN']);
    expect(driver.callCounts.get('createSalesOrder')).toBe(2);
    expect(published).toHaveLength(0);
  });
});
