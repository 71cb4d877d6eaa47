// The connect driver against the example external connector, started as its own process, over
// both the Connect protocol and gRPC.
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { create } from '@bufbuild/protobuf';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connectTransport, createConnectDriver } from '../../runtime/src/connectors/connect/driver.js';
import {
  type CallContext,
  type ConnectorDriver,
  ConnectorFailure,
} from '../../runtime/src/connectors/driver.js';
import { Governor } from '../../runtime/src/connectors/governor.js';
import { formatDecimal, money } from '../../runtime/src/connectors/money.js';
import { ErrorClass } from '../../runtime/src/gen/o2c/v1/common_pb.js';
import { CustomerSchema } from '../../runtime/src/gen/o2c/v1/entities_pb.js';

let server: ChildProcess;
let endpoint: string;

beforeAll(async () => {
  server = spawn(
    process.execPath,
    ['--import', 'tsx', 'examples/connect-connector/server.ts', '--port', '0'],
    {
      stdio: ['ignore', 'pipe', 'inherit'],
    },
  );
  const [chunk] = (await once(server.stdout as NodeJS.ReadableStream, 'data')) as [Buffer];
  const { port } = JSON.parse(chunk.toString().split('\n')[0] ?? '{}') as { port: number };
  endpoint = `http://127.0.0.1:${port}`;
}, 60_000);

afterAll(() => {
  server?.kill('SIGTERM');
});

const ctx = (): CallContext => ({
  signal: AbortSignal.timeout(5000),
  idempotencyKey: 'k-1',
  correlationId: 'c-1',
});

describe.each([
  ['the Connect protocol over HTTP/2', { protocol: 'connect' as const, httpVersion: '2' as const }],
  ['gRPC', { protocol: 'grpc' as const }],
])('connect driver over %s', (_name, cfg) => {
  let driver: ConnectorDriver;
  beforeAll(() => {
    driver = createConnectDriver(connectTransport(endpoint, cfg));
  });

  it('calculates tax in the external connector', async () => {
    const res = await driver.calculateTax?.(
      {
        $typeName: 'o2c.v1.CalculateTaxRequest',
        orderId: 'o-1',
        customerId: 'acme',
        currencyCode: 'USD',
        lines: [{ $typeName: 'o2c.v1.PricedLine', sku: 'A', quantity: 1, lineTotal: money('USD', '100.00') }],
      },
      ctx(),
    );
    expect(formatDecimal(res?.taxTotal)).toBe('8.25');
  });

  it('upserts a customer: created the first time, updated the second', async () => {
    const req = {
      $typeName: 'o2c.v1.UpsertCustomerRequest' as const,
      customer: create(CustomerSchema, { id: `cust-${cfg.protocol}` }),
    };
    expect((await driver.upsertCustomer?.(req, ctx()))?.created).toBe(true);
    expect((await driver.upsertCustomer?.(req, ctx()))?.created).toBe(false);
  });

  it('keeps the error class the server attached to its failure', async () => {
    const err = await driver
      .validateCustomer?.(
        { $typeName: 'o2c.v1.ValidateCustomerRequest', customerId: 'nobody', orderId: '' },
        ctx(),
      )
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ConnectorFailure);
    expect((err as ConnectorFailure).errorClass).toBe(ErrorClass.NOT_FOUND);
    expect((err as ConnectorFailure).code).toBe('NO_SUCH_CUSTOMER');
  });

  it('reports a method the server does not implement as a non-retryable failure', async () => {
    const err = await driver
      .createSalesOrder?.({ $typeName: 'o2c.v1.CreateSalesOrderRequest' }, ctx())
      .catch((e: unknown) => e);
    expect((err as ConnectorFailure).retryable).toBe(false);
    expect((err as ConnectorFailure).code).toBe('Unimplemented');
  });
});

it('classifies a connector process that is not there as retryable UNAVAILABLE', async () => {
  const driver = createConnectDriver(connectTransport('http://127.0.0.1:1', { protocol: 'connect' }));
  const governor = new Governor({ timeoutMs: 5000 });
  const err = await governor
    .run(
      (signal) =>
        driver.validateCustomer?.(
          { $typeName: 'o2c.v1.ValidateCustomerRequest', customerId: 'acme', orderId: '' },
          { ...ctx(), signal },
        ) ?? Promise.reject(new Error('missing')),
    )
    .catch((e: unknown) => e);
  expect((err as ConnectorFailure).errorClass).toBe(ErrorClass.UNAVAILABLE);
  expect((err as ConnectorFailure).retryable).toBe(true);
});
