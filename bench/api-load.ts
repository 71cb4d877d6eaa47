// The load generator of bench/api.ts, in a process of its own so the measured server does not share
// its event loop with the client. Args: <baseUrl> <concurrency> <durationMs> <label>. Prints one
// JSON line: latencies' count, p50, p99, errors, elapsed seconds and this process's CPU per order.
import { createClient } from '@connectrpc/connect';
import { createGrpcTransport } from '@connectrpc/connect-node';
import { OrderService } from '../runtime/src/gen/o2c/v1/order_service_pb.js';

const [baseUrl = '', concurrencyArg = '1', durationArg = '5000', label = 'load'] = process.argv.slice(2);
const concurrency = Number(concurrencyArg);
const durationMs = Number(durationArg);
const client = createClient(OrderService, createGrpcTransport({ baseUrl }));
const order = (n: number) => ({
  customerId: `CUST-${n % 100}`,
  currencyCode: 'USD',
  purchaseOrderNumber: `PO-${n}`,
  lines: [
    { sku: 'WIDGET-1', quantity: 2, unitPrice: { currencyCode: 'USD', units: 10n } },
    { sku: 'GADGET-7', quantity: 1, unitPrice: { currencyCode: 'USD', units: 99n, nanos: 500_000_000 } },
  ],
});

// Warm up connections and JIT.
await Promise.all(
  Array.from({ length: concurrency }, (_, i) =>
    client.submitOrder({ idempotencyKey: `${label}-warm-${i}`, order: order(i) }),
  ),
);
const latencies: number[] = [];
let errors = 0;
let seq = 0;
const cpuBefore = process.cpuUsage();
const started = performance.now();
const deadline = started + durationMs;
await Promise.all(
  Array.from({ length: concurrency }, async (_, worker) => {
    while (performance.now() < deadline) {
      const n = seq++;
      const t0 = performance.now();
      try {
        await client.submitOrder({ idempotencyKey: `${label}-${worker}-${n}`, order: order(n) });
        latencies.push(performance.now() - t0);
      } catch {
        errors++;
      }
    }
  }),
);
const elapsed = (performance.now() - started) / 1000;
const cpu = process.cpuUsage(cpuBefore);
latencies.sort((a, b) => a - b);
const pct = (p: number) =>
  latencies[Math.min(latencies.length - 1, Math.floor((p / 100) * latencies.length))] ?? 0;
process.stdout.write(
  `${JSON.stringify({ orders: latencies.length, elapsed, p50: pct(50), p99: pct(99), errors, clientCpuUs: cpu.user + cpu.system })}\n`,
);
process.exit(0);
