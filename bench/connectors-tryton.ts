// Tryton connector figures against a real Tryton 6.0 (test/tryton/server.ts): full sales/s with 1 and
// 4 workers, time per ConnectorService operation (median, p95), and o2c's overhead per ERP call =
// time in the driver call (or the whole in-process runtime path: envelope decode, ownership,
// governor, driver, reply encode) minus the time inside HTTP round trips to Tryton, measured at the
// JSON-RPC client (fetch + body parse). No broker: bench/connectors.ts measures the bus path.
//
// `tsx bench/connectors-tryton.ts` merges its figures into bench/results/connectors.json under
// `tryton`; bench/connectors.ts imports runTrytonBench() and does the same.
// O2C_BENCH_TRYTON_SALES (default 12) sales per worker count.
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus, totalmem } from 'node:os';
import { pathToFileURL } from 'node:url';
import { create, toBinary } from '@bufbuild/protobuf';
import {
  buildCommandEnvelope,
  type CommandRequest,
  decodeReply,
} from '../runtime/src/connectors/commands.js';
import type { ConnectorRuntimeConfig } from '../runtime/src/connectors/config.js';
import { StaticCredentials } from '../runtime/src/connectors/credentials.js';
import { money } from '../runtime/src/connectors/money.js';
import { ConnectorRuntime } from '../runtime/src/connectors/runtime.js';
import { type OperationStats, TrytonDriver } from '../runtime/src/connectors/tryton/index.js';
import type { ExternalRef } from '../runtime/src/gen/o2c/v1/common_pb.js';
import { CreateSalesOrderRequestSchema } from '../runtime/src/gen/o2c/v1/connector_service_pb.js';
import { OrderSchema } from '../runtime/src/gen/o2c/v1/entities_pb.js';
import { EnvelopeSchema } from '../runtime/src/gen/o2c/v1/events_pb.js';
import { startTryton } from '../test/tryton/server.js';

const SALES = Number(process.env.O2C_BENCH_TRYTON_SALES ?? 12);

interface Sample {
  operation: string;
  runtimeMs: number;
  driverMs: number;
  httpMs: number;
  httpCalls: number;
}

const pct = (xs: number[], p: number): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))] ?? 0;
};
const r2 = (x: number) => Math.round(x * 100) / 100;
const r3 = (x: number) => Math.round(x * 1000) / 1000;

export async function runTrytonBench(): Promise<Record<string, unknown>> {
  const tryton = await startTryton();
  const stats = new Map<string, OperationStats>();
  try {
    const config: ConnectorRuntimeConfig = {
      name: 'erp',
      system: 'erp',
      driver: 'tryton',
      endpoint: tryton.url,
      owns: ['customer', 'item', 'price', 'inventory', 'order', 'shipment', 'invoice', 'payment'],
      limits: { requestsPerSecond: 10_000, burst: 10_000, maxConcurrency: 4, timeout: '120s' },
    };
    const driver = new TrytonDriver({
      config,
      credentials: new StaticCredentials({ username: tryton.user, password: tryton.password }),
      onOperation: (s) => stats.set(s.idempotencyKey, s),
    });
    // The reply the runtime would publish, captured instead of sent to a broker.
    const replies = new Map<string, Uint8Array>();
    const runtime = new ConnectorRuntime({
      config,
      driver,
      publisher: {
        publish: async (m) => {
          replies.set(m.correlationId ?? '', m.body);
        },
      },
    });

    async function op(request: CommandRequest, orderId: string, step: string, samples: Sample[]) {
      const envelope = buildCommandEnvelope({
        connector: 'erp',
        request,
        orderId,
        step,
        replyTo: 'bench.reply',
        correlationId: orderId,
      });
      const body = toBinary(EnvelopeSchema, envelope);
      const t0 = performance.now();
      // Decode, ownership, governor, driver, reply encode and (captured) publish.
      await runtime.handleMessage(body, { finalAttempt: true });
      const runtimeMs = performance.now() - t0;
      const reply = decodeReply(replies.get(orderId) ?? new Uint8Array())?.reply;
      if (!reply) throw new Error(`no reply to ${request.case} ${orderId}`);
      if (reply.result.case === 'error')
        throw new Error(`${request.case} ${orderId}: ${reply.result.value.message}`);
      const s = stats.get(envelope.idempotencyKey);
      if (s)
        samples.push({
          operation: s.operation,
          runtimeMs,
          driverMs: s.ms,
          httpMs: s.httpMs,
          httpCalls: s.httpCalls,
        });
      return reply.result.value as never;
    }

    async function sale(orderId: string, samples: Sample[]): Promise<void> {
      const line = (sku: string, quantity: number) => ({
        $typeName: 'o2c.v1.PriceRequestLine' as const,
        sku,
        quantity,
      });
      await op(
        {
          case: 'validateCustomer',
          value: { $typeName: 'o2c.v1.ValidateCustomerRequest', customerId: 'CUST-ACME', orderId },
        },
        orderId,
        'validate',
        samples,
      );
      await op(
        {
          case: 'checkCredit',
          value: {
            $typeName: 'o2c.v1.CheckCreditRequest',
            customerId: 'CUST-ACME',
            orderId,
            amount: money('USD', '35.50'),
          },
        },
        orderId,
        'credit',
        samples,
      );
      await op(
        {
          case: 'getPrice',
          value: {
            $typeName: 'o2c.v1.GetPriceRequest',
            customerId: 'CUST-ACME',
            currencyCode: 'USD',
            orderId,
            lines: [line('WIDGET-001', 1), line('GADGET-002', 1)],
          },
        },
        orderId,
        'price',
        samples,
      );
      const so: { salesOrder?: ExternalRef } = await op(
        {
          case: 'createSalesOrder',
          value: create(CreateSalesOrderRequestSchema, {
            order: create(OrderSchema, {
              id: orderId,
              customerId: 'CUST-ACME',
              currencyCode: 'USD',
              lines: [
                { sku: 'WIDGET-001', quantity: 1, unitPrice: money('USD', '10.00') },
                { sku: 'GADGET-002', quantity: 1, unitPrice: money('USD', '25.50') },
              ],
            }),
          }),
        },
        orderId,
        'sales-order',
        samples,
      );
      const salesOrder = so.salesOrder;
      await op(
        {
          case: 'allocateInventory',
          value: { $typeName: 'o2c.v1.AllocateInventoryRequest', orderId, lines: [], salesOrder },
        },
        orderId,
        'allocate',
        samples,
      );
      await op(
        {
          case: 'releaseFulfillment',
          value: { $typeName: 'o2c.v1.ReleaseFulfillmentRequest', orderId, salesOrder },
        },
        orderId,
        'release',
        samples,
      );
      const inv: { invoice?: { externalRefs: ExternalRef[] } } = await op(
        { case: 'postInvoice', value: { $typeName: 'o2c.v1.PostInvoiceRequest', orderId, salesOrder } },
        orderId,
        'invoice',
        samples,
      );
      await op(
        {
          case: 'recordPayment',
          value: {
            $typeName: 'o2c.v1.RecordPaymentRequest',
            orderId,
            amount: money('USD', '39.05'),
            method: '',
            invoice: inv.invoice?.externalRefs[0],
          },
        },
        orderId,
        'payment',
        samples,
      );
      const st: { paid: boolean } = await op(
        { case: 'getPaymentStatus', value: { $typeName: 'o2c.v1.GetPaymentStatusRequest', orderId } },
        orderId,
        'payment-status',
        samples,
      );
      if (!st.paid) throw new Error(`sale ${orderId} not paid`);
    }

    const run = Date.now().toString(36);
    // Warm up: login, context, caches.
    await sale(`bench-${run}-warm`, []);

    async function phase(workers: number) {
      const samples: Sample[] = [];
      let next = 0;
      const t0 = performance.now();
      await Promise.all(
        Array.from({ length: workers }, async () => {
          for (;;) {
            const i = next++;
            if (i >= SALES) return;
            await sale(`bench-${run}-w${workers}-${i}`, samples);
          }
        }),
      );
      const seconds = (performance.now() - t0) / 1000;
      return { workers, sales: SALES, seconds: r2(seconds), salesPerSec: r3(SALES / seconds), samples };
    }

    const one = await phase(1);
    const four = await phase(4);

    const perOperation = (samples: Sample[]) => {
      const byOp = new Map<string, Sample[]>();
      for (const s of samples) byOp.set(s.operation, [...(byOp.get(s.operation) ?? []), s]);
      return Object.fromEntries(
        [...byOp].map(([opName, list]) => [
          opName,
          {
            n: list.length,
            medianMs: r2(
              pct(
                list.map((s) => s.runtimeMs),
                50,
              ),
            ),
            p95Ms: r2(
              pct(
                list.map((s) => s.runtimeMs),
                95,
              ),
            ),
            httpCallsPerOp: r2(list.reduce((a, s) => a + s.httpCalls, 0) / list.length),
            httpMedianMs: r2(
              pct(
                list.map((s) => s.httpMs),
                50,
              ),
            ),
          },
        ]),
      );
    };
    const overhead = (samples: Sample[]) => {
      const driverOver = samples.map((s) => s.driverMs - s.httpMs);
      const runtimeOver = samples.map((s) => s.runtimeMs - s.httpMs);
      const perHttp = samples.map((s) => (s.runtimeMs - s.httpMs) / Math.max(1, s.httpCalls));
      return {
        driverMinusHttpMs: { median: r3(pct(driverOver, 50)), p95: r3(pct(driverOver, 95)) },
        runtimeMinusHttpMs: { median: r3(pct(runtimeOver, 50)), p95: r3(pct(runtimeOver, 95)) },
        perHttpCallMs: { median: r3(pct(perHttp, 50)), p95: r3(pct(perHttp, 95)) },
      };
    };
    const cpu = cpus();
    return {
      machine: {
        cores: cpu.length,
        cpu: cpu[0]?.model ?? 'unknown',
        memoryGiB: r2(totalmem() / 2 ** 30),
        node: process.version,
        note: `${cpu.length} cores shared by Tryton (single-process werkzeug server), the bench and other engineers' tests`,
      },
      erp: 'Tryton 6.0 (Debian 12 packages), SQLite, test/tryton fixture',
      sale: 'ValidateCustomer, CheckCredit, GetPrice, CreateSalesOrder, AllocateInventory, ReleaseFulfillment, PostInvoice, RecordPayment, GetPaymentStatus',
      path: 'ConnectorRuntime.handleMessage in process (command decode, ownership, governor, driver, reply encode), no broker',
      fullSalesPerSec: { workers1: one.salesPerSec, workers4: four.salesPerSec },
      phases: [one, four].map(({ samples: _s, ...rest }) => rest),
      perOperation: { workers1: perOperation(one.samples), workers4: perOperation(four.samples) },
      overheadPerErpCall: {
        definition:
          'driver: driver call minus HTTP round trips inside it; runtime: ConnectorRuntime.handleMessage minus HTTP; perHttpCall: runtime overhead / JSON-RPC calls in the operation',
        workers1: overhead(one.samples),
        workers4: overhead(four.samples),
      },
    };
  } finally {
    await tryton.dispose();
  }
}

async function main(): Promise<void> {
  const tryton = await runTrytonBench();
  const file = new URL('./results/connectors.json', import.meta.url);
  mkdirSync(new URL('./results/', import.meta.url), { recursive: true });
  const all = existsSync(file) ? (JSON.parse(readFileSync(file, 'utf8')) as Record<string, unknown>) : {};
  all.tryton = tryton;
  writeFileSync(file, `${JSON.stringify(all, null, 2)}\n`);
  console.log(JSON.stringify(tryton, null, 2));
  console.log('merged into bench/results/connectors.json under "tryton"');
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main().catch((err: unknown) => {
    console.error(err);
    process.exit(1);
  });
}
