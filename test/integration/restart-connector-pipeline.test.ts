// The connector role and the pipeline role, each in a process of its own with a store (the
// connectors' outbox, the pipeline's inbox), under a steady stream of ERP ItemUpserted events that
// the items-to-crm Pipeline delivers to the CRM connector, while their PostgreSQL restarts and then
// while their RabbitMQ is stopped for 10 s: neither process exits, both resume consuming, and every
// item reaches the CRM. Services are private to this file (support/private-services.ts).
import { create, toBinary } from '@bufbuild/protobuf';
import { timestampFromMs } from '@bufbuild/protobuf/wkt';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { eventRoutingKey } from '../../runtime/src/bus/addressing.js';
import { BusConnection } from '../../runtime/src/bus/connection.js';
import { ConfirmPublisher } from '../../runtime/src/bus/publisher.js';
import { ItemSchema } from '../../runtime/src/gen/o2c/v1/entities_pb.js';
import { EnvelopeSchema } from '../../runtime/src/gen/o2c/v1/events_pb.js';
import {
  type PrivatePostgres,
  type PrivateRabbit,
  startPrivatePostgres,
  startPrivateRabbit,
} from './support/private-services.js';
import { type RoleProcess, startRoleProcess } from './support/role-process.js';

const RATE = Number(process.env.O2C_RESTART_RATE ?? 30);
const LOAD_MS = 20_000;
const NS = 'restart-roles';

let postgres: PrivatePostgres;
let rabbit: PrivateRabbit;
let connectors: RoleProcess;
let pipeline: RoleProcess;
let bus: BusConnection;
let publisher: ConfirmPublisher;
const figures: Record<string, unknown> = {};

beforeAll(async () => {
  [postgres, rabbit] = await Promise.all([startPrivatePostgres('roles'), startPrivateRabbit('roles')]);
  const env = { O2C_BROKER_URL: rabbit.url, O2C_NAMESPACE: NS };
  connectors = await startRoleProcess('connectors', {
    ...env,
    O2C_STORE_URL: await postgres.createDatabase('o2c_restart_roles_connectors'),
  });
  pipeline = await startRoleProcess('pipeline', {
    ...env,
    O2C_STORE_URL: await postgres.createDatabase('o2c_restart_roles_pipeline'),
  });
  bus = new BusConnection({
    url: rabbit.url,
    name: 'restart-roles-erp',
    logger: pino({ level: 'error' }),
    reconnect: { initialMs: 100, maxMs: 1_000 },
  });
  await bus.start(30_000);
  publisher = new ConfirmPublisher(bus);
}, 120_000);

afterAll(async () => {
  console.log(`restart-connector-pipeline figures: ${JSON.stringify(figures, null, 1)}`);
  await publisher?.close();
  await bus?.close();
  await pipeline?.stop();
  await connectors?.stop();
  await rabbit?.close();
  await postgres?.close();
});

/** Publishes an ItemUpserted as the ERP connector does, until the broker confirms it (an outbox). */
async function itemUpserted(sku: string): Promise<void> {
  const envelope = create(EnvelopeSchema, {
    id: `${sku}-event`,
    type: 'o2c.v1.ItemUpserted',
    source: `o2c/${NS}/connector/erp`,
    subject: sku,
    time: timestampFromMs(Date.now()),
    correlationId: sku,
    orderingKey: sku,
    payload: {
      case: 'itemUpserted',
      value: { $typeName: 'o2c.v1.ItemUpserted', item: create(ItemSchema, { sku, name: sku, active: true }) },
    },
  });
  for (;;) {
    try {
      await publisher.publish({
        exchange: 'o2c.events',
        routingKey: eventRoutingKey(envelope.source, 'o2c.v1.ItemUpserted'),
        body: toBinary(EnvelopeSchema, envelope),
        messageId: envelope.id,
        type: 'o2c.v1.ItemUpserted',
        correlationId: sku,
        orderingKey: sku,
      });
      return;
    } catch {
      await new Promise((r) => setTimeout(r, 250));
    }
  }
}

async function steadyItems<T>(
  prefix: string,
  during: () => Promise<T>,
): Promise<{ skus: string[]; during: T }> {
  const total = Math.round((RATE * LOAD_MS) / 1000);
  const started = Date.now();
  const skus: string[] = [];
  const sent: Promise<void>[] = [];
  const restart = during();
  for (let i = 0; i < total; i++) {
    const wait = started + (i * 1000) / RATE - Date.now();
    if (wait > 0) await new Promise((r) => setTimeout(r, wait));
    const sku = `${prefix}-${i}`;
    skus.push(sku);
    sent.push(itemUpserted(sku));
  }
  const [, result] = await Promise.all([Promise.all(sent), restart]);
  return { skus, during: result };
}

async function waitUntilUpserted(skus: string[], timeoutMs: number): Promise<[string, number][]> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const upserts = (await connectors.stats()).crmUpserts ?? [];
    const seen = new Set(upserts.map(([sku]) => sku));
    const missing = skus.filter((s) => !seen.has(s));
    if (missing.length === 0) return upserts;
    if (Date.now() > deadline)
      throw new Error(
        `${missing.length} of ${skus.length} items never reached the CRM: ${missing.slice(0, 5)}`,
      );
    await new Promise((r) => setTimeout(r, 500));
  }
}

function expectAlive(): void {
  expect(connectors.exited(), 'the connectors process').toBeUndefined();
  expect(pipeline.exited(), 'the pipeline process').toBeUndefined();
}

function summary(skus: string[], upserts: [string, number][], upAt: number) {
  const mine = new Set(skus);
  const times = upserts.filter(([sku, at]) => mine.has(sku) && at >= upAt).map(([, at]) => at);
  const perSku = new Map<string, number>();
  for (const [sku] of upserts) if (mine.has(sku)) perSku.set(sku, (perSku.get(sku) ?? 0) + 1);
  return {
    items: skus.length,
    /** Upserts repeated for an item (at-least-once towards the sink; an upsert is idempotent). */
    repeatedUpserts: [...perSku.values()].reduce((n, c) => n + c - 1, 0),
    firstUpsertAfterUpMs: times.length > 0 ? Math.min(...times) - upAt : undefined,
  };
}

describe('the connector and pipeline roles under 30 events/s', () => {
  it('survive a PostgreSQL restart: no exit, every item reaches the CRM', async () => {
    const { skus, during } = await steadyItems('pg', async () => {
      await new Promise((r) => setTimeout(r, 7_000));
      return postgres.restart({ downMs: 2_000 });
    });
    const upserts = await waitUntilUpserted(skus, 90_000);
    expectAlive();
    const stats = await pipeline.stats();
    expect(stats.pipeline?.failed, 'items the pipeline gave up on').toBe(0);
    figures.postgres = { downMs: during.upAt - during.downAt, ...summary(skus, upserts, during.upAt) };
  }, 180_000);

  it('survive RabbitMQ stopped for 10 s: no exit, both resume consuming, every item reaches the CRM', async () => {
    const { skus, during } = await steadyItems('mq', async () => {
      await new Promise((r) => setTimeout(r, 4_000));
      return rabbit.restart({ downMs: 10_000 });
    });
    const upserts = await waitUntilUpserted(skus, 120_000);
    expectAlive();
    const stats = await pipeline.stats();
    expect(stats.pipeline?.failed, 'items the pipeline gave up on').toBe(0);
    figures.rabbitmq = { downMs: during.upAt - during.downAt, ...summary(skus, upserts, during.upAt) };
  }, 240_000);
});
