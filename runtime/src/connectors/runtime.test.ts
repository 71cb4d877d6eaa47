import { create, fromBinary, toBinary } from '@bufbuild/protobuf';
import { describe, expect, it } from 'vitest';
import { ErrorClass } from '../gen/o2c/v1/common_pb.js';
import { OrderSchema } from '../gen/o2c/v1/entities_pb.js';
import { EnvelopeSchema } from '../gen/o2c/v1/events_pb.js';
import type { OutboxMessage } from '../store/types.js';
import { ManualClock } from './clock.js';
import { buildCommandEnvelope, type CommandRequest, decodeReply } from './commands.js';
import type { ConnectorRuntimeConfig } from './config.js';
import { ConnectorFailure } from './driver.js';
import { ConnectorRuntime } from './runtime.js';
import { SimulatorDriver } from './simulator/driver.js';

function aRuntime(config: Partial<ConnectorRuntimeConfig> = {}, driver = new SimulatorDriver({ seed: 7 })) {
  const published: OutboxMessage[] = [];
  const runtime = new ConnectorRuntime({
    config: {
      name: 'erp',
      system: 'erp',
      driver: 'simulator',
      owns: ['order', 'inventory'],
      limits: { burst: 100 },
      ...config,
    },
    driver,
    publisher: { publish: async (m) => void published.push(m) },
    clock: new ManualClock(),
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
