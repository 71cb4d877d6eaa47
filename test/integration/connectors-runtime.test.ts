// The connector role end to end with the simulator driver: real RabbitMQ, real PostgreSQL and
// SQLite stores. Commands go in on o2c.commands, replies come out on o2c.events.
import { create, fromBinary } from '@bufbuild/protobuf';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BusConnection } from '../../runtime/src/bus/connection.js';
import { ConfirmPublisher } from '../../runtime/src/bus/publisher.js';
import { deleteQueueTopology } from '../../runtime/src/bus/topology.js';
import { connectorMigrations, createOnce, findBinding } from '../../runtime/src/connectors/bindings.js';
import { type CommandRequest, commandMessage, decodeReply } from '../../runtime/src/connectors/commands.js';
import type { ConnectorRuntimeConfig } from '../../runtime/src/connectors/config.js';
import { ConnectorFailure } from '../../runtime/src/connectors/driver.js';
import {
  type ConnectorRole,
  commandQueueSpec,
  startConnectorRole,
} from '../../runtime/src/connectors/role.js';
import { SimulatorDriver } from '../../runtime/src/connectors/simulator/driver.js';
import { ErrorClass } from '../../runtime/src/gen/o2c/v1/common_pb.js';
import { OrderSchema } from '../../runtime/src/gen/o2c/v1/entities_pb.js';
import { EnvelopeSchema } from '../../runtime/src/gen/o2c/v1/events_pb.js';
import { openStore, registerMigrations } from '../../runtime/src/store/index.js';
import type { OutboxMessage, Store } from '../../runtime/src/store/types.js';
import { storeUrlFor } from './support/api.js';
import { BROKER_URL, eventTap } from './support/services.js';

registerMigrations(connectorMigrations);

const PREFIX = 'it-connectors-runtime';
const REPLY_TO = `${PREFIX}.reply`;
const retry = { maxAttempts: 3, backoff: { initialMs: 200, maxMs: 400, multiplier: 2 } };
const logger = pino({ level: 'warn' });

function publishOf(publisher: ConfirmPublisher) {
  return (m: OutboxMessage) =>
    publisher.publish({
      exchange: m.exchange,
      routingKey: m.routingKey,
      body: m.body,
      messageId: m.id,
      type: m.type,
      correlationId: m.correlationId,
    });
}

const createOrder = (orderId: string): CommandRequest => ({
  case: 'createSalesOrder',
  value: {
    $typeName: 'o2c.v1.CreateSalesOrderRequest',
    order: create(OrderSchema, { id: orderId, customerId: 'acme' }),
  },
});

describe.each(['postgres', 'sqlite'] as const)('connector role with the simulator and a %s store', (kind) => {
  const name = `${PREFIX}-${kind}`;
  const config: ConnectorRuntimeConfig = {
    name,
    namespace: 'it',
    system: 'erp',
    driver: 'simulator',
    owns: ['order', 'inventory', 'shipment'],
    limits: { requestsPerSecond: 200, maxConcurrency: 4 },
  };
  let bus: BusConnection;
  let publisher: ConfirmPublisher;
  let store: Store;
  let role: ConnectorRole;
  let driver: SimulatorDriver;
  let tap: Awaited<ReturnType<typeof eventTap>>;
  let flaky = 0;

  beforeAll(async () => {
    store = await openStore(await storeUrlFor(kind, `o2c_it_connectors_runtime_${kind}`));
    bus = new BusConnection({ url: BROKER_URL, name, logger });
    await bus.start();
    await deleteQueueTopology(bus.model as never, commandQueueSpec(config, retry));
    publisher = new ConfirmPublisher(bus);
    driver = new SimulatorDriver({ dispatchAfterMs: 100 });
    // The first two GetShipment calls of each order fail as an outage; the bus retries them.
    const realGetShipment = driver.getShipment.bind(driver);
    driver.getShipment = async (req, ctx) => {
      if (flaky++ % 3 < 2) throw new ConnectorFailure(ErrorClass.UNAVAILABLE, 'down');
      return realGetShipment(req, ctx);
    };
    tap = await eventTap(`${name}.tap`, `${REPLY_TO}.${kind}`);
    role = await startConnectorRole({ config, connection: bus, store, driver, retry, logger });
  });

  afterAll(async () => {
    await role?.stop();
    await tap?.close();
    if (bus?.model) await deleteQueueTopology(bus.model, commandQueueSpec(config, retry));
    await publisher?.close();
    await bus?.close();
    await store?.close();
  });

  const send = (request: CommandRequest, orderId: string, step = 'sales-order') => {
    const m = commandMessage({
      namespace: 'it',
      connector: name,
      request,
      orderId,
      step,
      replyTo: `${REPLY_TO}.${kind}`,
      correlationId: `corr-${orderId}`,
      causationId: `cause-${orderId}`,
    });
    return publishOf(publisher)(m).then(() => m);
  };

  it('answers a command with the reply on reply_to, carrying correlation and causation ids', async () => {
    const before = tap.received.length;
    const cmd = await send(createOrder('o-1'), 'o-1');
    const [msg] = (await tap.waitFor(before + 1)).slice(before);
    const decoded = decodeReply(new Uint8Array(msg?.content ?? []));
    expect(decoded?.envelope.correlationId).toBe('corr-o-1');
    expect(decoded?.envelope.causationId).toBe(cmd.id);
    expect(msg?.properties.correlationId).toBe('corr-o-1');
    expect(decoded?.reply.result.case).toBe('createSalesOrder');
  });

  it('replies once to a command delivered twice, and the sales order exists once', async () => {
    const before = tap.received.length;
    const cmd = await send(createOrder('o-2'), 'o-2');
    await publishOf(publisher)(cmd);
    await tap.waitFor(before + 1);
    await new Promise((r) => setTimeout(r, 1000));
    expect(tap.received.length).toBe(before + 1);
    expect(driver.salesOrderCount()).toBe(2);
  });

  it('refuses a write it does not own with an OWNERSHIP error reply', async () => {
    const before = tap.received.length;
    await send(
      { case: 'postInvoice', value: { $typeName: 'o2c.v1.PostInvoiceRequest', orderId: 'o-3' } },
      'o-3',
      'invoice',
    );
    const [msg] = (await tap.waitFor(before + 1)).slice(before);
    const reply = decodeReply(new Uint8Array(msg?.content ?? []))?.reply;
    expect(reply?.result.case).toBe('error');
    if (reply?.result.case === 'error') {
      expect(reply.result.value.errorClass).toBe(ErrorClass.OWNERSHIP);
      expect(reply.result.value.message).toContain('it writes invoice');
    }
  });

  it('retries a retryable failure through the bus and answers once it succeeds', async () => {
    await send(
      {
        case: 'releaseFulfillment',
        value: { $typeName: 'o2c.v1.ReleaseFulfillmentRequest', orderId: 'o-4' },
      },
      'o-4',
      'release',
    );
    const before = tap.received.length;
    await send(
      { case: 'getShipment', value: { $typeName: 'o2c.v1.GetShipmentRequest', orderId: 'o-4' } },
      'o-4',
      'shipment',
    );
    const deadline = Date.now() + 15_000;
    let reply: ReturnType<typeof decodeReply>;
    while (Date.now() < deadline && !reply) {
      reply = tap.received
        .slice(before - 1)
        .map((m) => decodeReply(new Uint8Array(m.content)))
        .find((r) => r?.reply.step === 'shipment');
      await new Promise((r) => setTimeout(r, 100));
    }
    expect(reply?.reply.result.case).toBe('getShipment');
    expect(flaky).toBeGreaterThanOrEqual(3);
  });

  it('announces a simulated dispatch as o2c.v1.ShipmentDispatched', async () => {
    const dispatched = await eventTap(`${name}.dispatch-tap`, '#.o2c.v1.ShipmentDispatched');
    try {
      await send(
        {
          case: 'releaseFulfillment',
          value: { $typeName: 'o2c.v1.ReleaseFulfillmentRequest', orderId: 'o-5' },
        },
        'o-5',
        'release',
      );
      const found = async () =>
        dispatched.received.some((m) => {
          const env = fromBinary(EnvelopeSchema, new Uint8Array(m.content));
          return env.payload.case === 'shipmentDispatched' && env.payload.value.orderId === 'o-5';
        });
      const deadline = Date.now() + 10_000;
      while (!(await found()) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
      expect(await found()).toBe(true);
    } finally {
      await dispatched.close();
    }
  });

  it('answers a burst of 200 commands once each, replies ready together in one store transaction', async () => {
    // Count the reply writes: the transactions that claim this connector's commands in the inbox.
    let writes = 0;
    let claimed = 0;
    const transaction = store.transaction.bind(store);
    store.transaction = (fn) =>
      transaction((tx) =>
        fn(
          new Proxy(tx, {
            get(target, prop) {
              if (prop === 'claimInboxMany')
                return async (consumer: string, ids: readonly string[]) => {
                  if (consumer === role.runtime.consumer) {
                    writes++;
                    claimed += ids.length;
                    // The first reply write is slow: the replies of the commands in flight
                    // meanwhile become ready during it and must share the write after it.
                    if (writes === 1) await new Promise((r) => setTimeout(r, 400));
                  }
                  return target.claimInboxMany(consumer, ids);
                };
              const value = Reflect.get(target, prop);
              return typeof value === 'function' ? value.bind(target) : value;
            },
          }),
        ),
      );
    try {
      const before = tap.received.length;
      const orders = driver.salesOrderCount();
      await Promise.all(Array.from({ length: 200 }, (_, i) => send(createOrder(`burst-${i}`), `burst-${i}`)));
      await tap.waitFor(before + 200);
      await new Promise((r) => setTimeout(r, 500));
      expect(tap.received.length - before, 'one reply per command').toBe(200);
      expect(driver.salesOrderCount() - orders).toBe(200);
      expect(claimed).toBe(200);
      // The governor spaces the calls 5 ms apart (200/s), so on an idle machine a fast store writes
      // most replies alone; those that became ready during the slow first write went together.
      console.log(`${kind}: 200 replies in ${writes} store transactions`);
      expect(writes, 'store transactions that wrote the 200 replies').toBeLessThan(200);
    } finally {
      store.transaction = transaction;
    }
  });

  it('creates an external record once when the reply was lost and the create is retried', async () => {
    let created = 0;
    const external = new Map<string, string>();
    const create = async () => {
      created++;
      external.set('o-6', `SO-${created}`);
      return { externalId: `SO-${created}` };
    };
    const findByNaturalKey = async () => {
      const id = external.get('o-6');
      return id ? { externalId: id } : undefined;
    };
    const key = { system: name, entity: 'order', canonicalId: 'o-6' };
    // First attempt: the create happens, then the process dies before completing the binding.
    await store.transaction(async (tx) => {
      const { reserveBinding } = await import('../../runtime/src/connectors/bindings.js');
      await reserveBinding(tx, key.system, key.entity, key.canonicalId);
    });
    await create();
    // The retry finds the pending binding, asks the system by natural key and creates nothing.
    const retried = await createOnce(store, key, { findByNaturalKey, create });
    expect(retried).toEqual({ externalId: 'SO-1', existed: true });
    const again = await createOnce(store, key, { findByNaturalKey, create });
    expect(again.existed).toBe(true);
    expect(created).toBe(1);
    const binding = await store.transaction((tx) => findBinding(tx, key.system, key.entity, key.canonicalId));
    expect(binding).toMatchObject({ externalId: 'SO-1', state: 'complete' });
  });
});
