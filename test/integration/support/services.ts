// Real services for integration tests: a fresh PostgreSQL database per test file, RabbitMQ helpers.
// Tests that stop or restart a service use their own (private-services.ts), never these shared ones.
import amqp from 'amqplib';
import pg from 'pg';

export const BROKER_URL = process.env.O2C_TEST_BROKER_URL ?? 'amqp://guest:guest@127.0.0.1:5672';
export const PG_ADMIN_URL = process.env.O2C_TEST_PG_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';

/** Drops and recreates `name`; returns its URL. */
export async function freshDatabase(name: string): Promise<string> {
  const admin = new pg.Client({ connectionString: PG_ADMIN_URL });
  await admin.connect();
  try {
    await admin.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
    await admin.query(`CREATE DATABASE ${name}`);
  } finally {
    await admin.end();
  }
  const url = new URL(PG_ADMIN_URL);
  url.pathname = `/${name}`;
  return url.toString();
}

/** A queue bound to o2c.events that collects what arrives, for assertions. */
export async function eventTap(queue: string, bindingKey = '#', brokerUrl = BROKER_URL) {
  const conn = await amqp.connect(brokerUrl);
  const ch = await conn.createChannel();
  await ch.assertExchange('o2c.events', 'topic', { durable: true });
  await ch.deleteQueue(queue);
  await ch.assertQueue(queue, { durable: true, arguments: { 'x-queue-type': 'quorum' } });
  await ch.bindQueue(queue, 'o2c.events', bindingKey);
  const received: amqp.ConsumeMessage[] = [];
  await ch.consume(queue, (msg) => {
    if (msg) {
      received.push(msg);
      ch.ack(msg);
    }
  });
  return {
    received,
    async waitFor(count: number, timeoutMs = 30_000): Promise<amqp.ConsumeMessage[]> {
      const deadline = Date.now() + timeoutMs;
      while (received.length < count) {
        if (Date.now() > deadline)
          throw new Error(`only ${received.length} of ${count} messages arrived on ${queue}`);
        await new Promise((r) => setTimeout(r, 50));
      }
      return received;
    },
    async close(): Promise<void> {
      await ch.deleteQueue(queue).catch(() => {});
      await conn.close().catch(() => {});
    },
  };
}

export async function until(
  check: () => Promise<boolean> | boolean,
  timeoutMs = 30_000,
  what = 'condition',
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}
