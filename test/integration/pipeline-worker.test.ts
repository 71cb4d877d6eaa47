// The pipeline role against real RabbitMQ: ERP ItemUpserted events, filtered and transformed with CEL,
// reach a CRM simulator connector as UpsertItem commands; failures land in the DLQ; one SKU's events
// arrive in order. One ordered pipeline and one connector keep the broker's quorum queues few.
import { create, toBinary } from '@bufbuild/protobuf';
import { timestampFromMs } from '@bufbuild/protobuf/wkt';
import amqp from 'amqplib';
import pino from 'pino';
import { Registry } from 'prom-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { eventRoutingKey } from '../../runtime/src/bus/addressing.js';
import { BusConnection } from '../../runtime/src/bus/connection.js';
import { FailureHeader } from '../../runtime/src/bus/consumer.js';
import { ConfirmPublisher } from '../../runtime/src/bus/publisher.js';
import { deleteQueueTopology, dlqName, type QueueSpec } from '../../runtime/src/bus/topology.js';
import type { ConnectorRuntimeConfig } from '../../runtime/src/connectors/config.js';
import {
  type ConnectorRole,
  commandQueueSpec,
  startConnectorRole,
} from '../../runtime/src/connectors/role.js';
import { SimulatorDriver } from '../../runtime/src/connectors/simulator/driver.js';
import type { UpsertItemRequest } from '../../runtime/src/gen/o2c/v1/connector_service_pb.js';
import { ItemSchema } from '../../runtime/src/gen/o2c/v1/entities_pb.js';
import { EnvelopeSchema } from '../../runtime/src/gen/o2c/v1/events_pb.js';
import {
  compilePipelineSpec,
  type PipelineSpec,
  validatePipelineSpec,
} from '../../runtime/src/pipeline/spec.js';
import { pipelineQueues } from '../../runtime/src/pipeline/worker.js';
import { type PipelineRole, startPipelineRole } from '../../runtime/src/roles/pipeline.js';
import { BROKER_URL, until } from './support/services.js';

const NS = 'it-pipeline';
const ERP = 'erp';
const CRM = 'crm';
const PIPELINE = 'items-to-crm';
const logger = pino({ level: 'warn' });
const connectorRetry = { maxAttempts: 1, backoff: { initialMs: 100, maxMs: 100, multiplier: 2 } };

const spec: PipelineSpec = {
  source: { connector: ERP, events: ['o2c.v1.ItemUpserted'] },
  filter: 'event.item.active',
  transform: {
    name: 'event.item.name.upperAscii()',
    description: '"synced from ERP item " + event.item.sku',
    // A lookup table: an unmapped unit of measure fails at run time.
    uom: `{'ea': 'unit', 'kg': 'kg'}[event.item.uom]`,
  },
  sink: { connector: CRM, operation: 'UpsertItem' },
  delivery: {
    maxAttempts: 3,
    backoff: { initial: '100ms', max: '200ms' },
    deadLetter: true,
    orderingKey: 'event.item.sku',
  },
  concurrency: 8,
};

const crmConfig: ConnectorRuntimeConfig = {
  name: CRM,
  namespace: NS,
  system: 'crm',
  driver: 'simulator',
  owns: ['item'],
  limits: { requestsPerSecond: 1000, maxConcurrency: 8 },
};

describe('a pipeline from ERP items to CRM products', () => {
  let connection: BusConnection;
  let publisher: ConfirmPublisher;
  let crm: ConnectorRole;
  let pipeline: PipelineRole;
  const upserts: UpsertItemRequest[] = [];
  let queues: QueueSpec[] = [];

  async function cleanup(): Promise<void> {
    for (const q of queues) await deleteQueueTopology(connection.model as amqp.ChannelModel, q);
  }

  beforeAll(async () => {
    connection = new BusConnection({ url: BROKER_URL, name: `${NS}-test`, logger });
    await connection.start(10_000);
    const driver = new SimulatorDriver({ latencyMs: { min: 0, max: 15 }, seed: 7 }, undefined, {
      system: 'crm',
    });
    const upsertItem = driver.upsertItem;
    driver.upsertItem = (req, ctx) => {
      upserts.push(req);
      return upsertItem(req, ctx);
    };
    const { events, deliveries } = pipelineQueues(NS, PIPELINE, compilePipelineSpec(spec), 2);
    queues = [commandQueueSpec(crmConfig, connectorRetry), events, deliveries as QueueSpec];
    await cleanup(); // what an earlier, interrupted run left behind
    crm = await startConnectorRole({ config: crmConfig, connection, driver, logger, retry: connectorRetry });
    pipeline = await startPipelineRole({
      namespace: NS,
      name: PIPELINE,
      spec,
      connection,
      logger,
      registry: new Registry(),
      partitions: 2,
      replyTimeoutMs: 5_000,
    });
    publisher = new ConfirmPublisher(connection);
  });

  afterAll(async () => {
    await pipeline?.stop();
    await crm?.stop();
    await publisher?.close();
    if (connection?.model) await cleanup();
    await connection?.close();
  });

  let seq = 0;
  /** Publishes an ItemUpserted the way the ERP connector does. */
  async function itemUpserted(
    item: { sku: string; name?: string; uom?: string; active?: boolean },
    source = `o2c/${NS}/connector/${ERP}`,
  ): Promise<string> {
    const id = `${NS}-${process.pid}-${Date.now()}-${seq++}`;
    const envelope = create(EnvelopeSchema, {
      id,
      type: 'o2c.v1.ItemUpserted',
      source,
      subject: item.sku,
      time: timestampFromMs(Date.now()),
      correlationId: id,
      orderingKey: item.sku,
      payload: {
        case: 'itemUpserted',
        value: {
          $typeName: 'o2c.v1.ItemUpserted',
          item: create(ItemSchema, { uom: 'ea', active: true, ...item }),
        },
      },
    });
    await publisher.publish({
      exchange: 'o2c.events',
      // Always routed as the ERP's: an event whose source disagrees with its key (WMS-1 below) is
      // still refused by the worker; one routed as the WMS's never reaches the queue at all.
      routingKey: eventRoutingKey(`o2c/${NS}/connector/${ERP}`, 'o2c.v1.ItemUpserted'),
      body: toBinary(EnvelopeSchema, envelope),
      messageId: id,
      type: 'o2c.v1.ItemUpserted',
      correlationId: id,
      orderingKey: item.sku,
    });
    return id;
  }

  const upsertsOf = (sku: string) => upserts.filter((u) => u.item?.sku === sku);

  it('delivers an active item to the CRM as UpsertItem with the transformed fields', async () => {
    await itemUpserted({ sku: 'WID-1', name: 'Widget', uom: 'kg' });
    await until(() => upsertsOf('WID-1').length === 1, 15_000, 'the CRM upsert of WID-1');
    const [upsert] = upsertsOf('WID-1');
    expect(upsert?.item).toMatchObject({
      sku: 'WID-1',
      name: 'WIDGET',
      description: 'synced from ERP item WID-1',
      uom: 'kg',
      active: true,
    });
    expect(pipeline.worker.counts.delivered).toBeGreaterThanOrEqual(1);
  });

  it('skips inactive items and events of other connectors', async () => {
    const filteredBefore = pipeline.worker.counts.filtered;
    const foreignBefore = pipeline.worker.counts.foreign;
    await itemUpserted({ sku: 'OLD-1', name: 'Discontinued', active: false });
    await itemUpserted({ sku: 'WMS-1', name: 'From the WMS' }, `o2c/${NS}/connector/wms`);
    await itemUpserted({ sku: 'NEXT-1', name: 'Next' });
    await until(() => upsertsOf('NEXT-1').length === 1, 15_000, 'the CRM upsert of NEXT-1');
    await until(
      () =>
        pipeline.worker.counts.filtered > filteredBefore && pipeline.worker.counts.foreign > foreignBefore,
      5_000,
      'the skipped events counted',
    );
    expect(upsertsOf('OLD-1')).toEqual([]);
    expect(upsertsOf('WMS-1')).toEqual([]);
  });

  it('parks an event whose transform fails at run time in the DLQ with the reason', async () => {
    const id = await itemUpserted({ sku: 'ODD-1', name: 'Odd', uom: 'furlong' });
    const dlq = dlqName(pipeline.worker.queues.deliveries?.name as string);
    const conn = await amqp.connect(BROKER_URL);
    try {
      const ch = await conn.createChannel();
      let parked: amqp.GetMessage | false = false;
      await until(
        async () => {
          parked = await ch.get(dlq, { noAck: true });
          return parked !== false && parked.properties.messageId === id;
        },
        15_000,
        'the failed event in the DLQ',
      );
      const headers = (parked as unknown as amqp.GetMessage).properties.headers ?? {};
      expect(headers[FailureHeader.reason]).toBe('permanent');
      expect(String(headers[FailureHeader.error])).toContain('spec.transform.uom');
      expect(String(headers[FailureHeader.error])).toContain('furlong');
      expect(headers[FailureHeader.attempts]).toBe(1);
    } finally {
      await conn.close();
    }
    expect(upsertsOf('ODD-1')).toEqual([]);
  });

  it('delivers the events of one SKU in the order they were published', async () => {
    const versions = Array.from({ length: 20 }, (_, i) => `v${i + 1}`);
    for (const v of versions) await itemUpserted({ sku: 'ORD-1', name: v });
    for (const v of versions) await itemUpserted({ sku: `ORD-OTHER-${v}`, name: v });
    await until(() => upsertsOf('ORD-1').length === versions.length, 30_000, 'all ORD-1 upserts');
    expect(upsertsOf('ORD-1').map((u) => u.item?.name)).toEqual(versions.map((v) => v.toUpperCase()));
  });
});

describe('validatePipelineSpec', () => {
  it.each([
    ['a filter that does not parse', { filter: 'event.item.active &&' }, 'spec.filter'],
    ['a transform that does not parse', { transform: { name: 'event.item.name +' } }, 'spec.transform.name'],
    [
      'a transform onto a field the Item lacks',
      { transform: { product_code: 'event.item.sku' } },
      'spec.transform.product_code',
    ],
    [
      'an ordering key naming a field the event lacks',
      { delivery: { orderingKey: 'event.item.skew' } },
      'spec.delivery.orderingKey',
    ],
  ])('names the field of %s', (_, change, field) => {
    const problems = validatePipelineSpec({ ...spec, ...change } as PipelineSpec);
    expect(
      problems.some((p) => p.startsWith(`${field}:`)),
      problems.join('\n'),
    ).toBe(true);
  });

  it('accepts the reference pipeline', () => {
    expect(validatePipelineSpec(spec)).toEqual([]);
  });
});
