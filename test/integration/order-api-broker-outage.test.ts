// Orders accepted while RabbitMQ is down are all published once it is back, none twice. The broker
// is this file's own (support/private-services.ts), so stopping it disturbs no other test.
import { fromBinary } from '@bufbuild/protobuf';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EnvelopeSchema } from '../../runtime/src/gen/o2c/v1/events_pb.js';
import { type ApiHarness, startApi } from './support/api.js';
import { type PrivateRabbit, startPrivateRabbit } from './support/private-services.js';
import { eventTap, until } from './support/services.js';

describe('outbox relay across a broker outage', () => {
  let rabbit: PrivateRabbit;
  let api: ApiHarness;
  let tap: Awaited<ReturnType<typeof eventTap>>;
  const queue = `o2c.test.outage.${process.pid}`;

  beforeAll(async () => {
    rabbit = await startPrivateRabbit('api-outage');
    tap = await eventTap(queue, '#.o2c.v1.OrderSubmitted', rabbit.url);
    api = await startApi({ store: 'postgres', name: 'o2c_test_api_outage', brokerUrl: rabbit.url });
  }, 120_000);
  afterAll(async () => {
    await api?.stop();
    await tap?.close().catch(() => {});
    await rabbit?.close();
  });

  it('publishes every order submitted during the outage exactly once after the broker returns', async () => {
    const before = await api.client.submitOrder({
      idempotencyKey: `outage-before-${Date.now()}`,
      order: { customerId: 'ACME', currencyCode: 'USD', lines: [{ sku: 'A', quantity: 1 }] },
    });
    await tap.waitFor(1);

    await rabbit.stopApp();
    const during: string[] = [];
    try {
      for (let i = 0; i < 40; i++) {
        const { order } = await api.client.submitOrder({
          idempotencyKey: `outage-${Date.now()}-${i}`,
          order: { customerId: 'ACME', currencyCode: 'USD', lines: [{ sku: 'A', quantity: i + 1 }] },
        });
        during.push(order!.id);
      }
      // The API keeps accepting orders: they wait in the outbox.
      const pending = await api.role.store.pendingOutbox(1000);
      expect(pending.length).toBeGreaterThanOrEqual(40);
    } finally {
      await rabbit.startApp();
    }

    // The tap's own consumer died with the broker; read what the queue holds now.
    await tap.close().catch(() => {});
    tap = await eventTap(`${queue}.after`, '#.o2c.v1.OrderSubmitted', rabbit.url);
    await until(
      async () => (await api.role.store.pendingOutbox(1000)).length === 0,
      60_000,
      'the outbox to drain',
    );

    // Everything written during the outage was published after the broker returned and reached the
    // durable queue that was bound before the outage.
    const amqp = await import('amqplib');
    const conn = await amqp.connect(rabbit.url);
    const ch = await conn.createChannel();
    const seen = new Map<string, number>();
    for (;;) {
      const msg = await ch.get(queue, { noAck: true });
      if (!msg) break;
      const envelope = fromBinary(EnvelopeSchema, msg.content);
      seen.set(envelope.subject, (seen.get(envelope.subject) ?? 0) + 1);
    }
    await ch.deleteQueue(queue);
    await conn.close();
    for (const id of during) expect(seen.get(id), `order ${id}`).toBe(1);
    expect(seen.has(before.order!.id)).toBe(false); // consumed before the outage
  }, 240_000);
});
