// A small external connector: a tax and credit service implementing o2c.v1.ConnectorService as its
// own process, plugged into o2c with `driver: connect`. It serves Connect, gRPC and gRPC-Web on one
// HTTP/2 (cleartext) port. Run: tsx examples/connect-connector/server.ts --port 8090
//
// Anything that speaks gRPC can do the same from connector_service.proto; the only o2c-specific
// convention is to attach an o2c.v1.ConnectorError to a failure's details, so o2c can tell a
// credit refusal from an outage.
import { createServer } from 'node:http2';
import { create } from '@bufbuild/protobuf';
import { Code, ConnectError, type ConnectRouter } from '@connectrpc/connect';
import { connectNodeAdapter } from '@connectrpc/connect-node';
import { ErrorClass, MoneySchema } from '../../runtime/src/gen/o2c/v1/common_pb.js';
import { ConnectorErrorSchema, ConnectorService } from '../../runtime/src/gen/o2c/v1/connector_service_pb.js';

const NANO = 1_000_000_000n;
const TAX_RATE_BP = BigInt(process.env.TAX_RATE_BP ?? '825'); // basis points: 8.25 %
const customers = new Map<string, { name: string; creditLimitUnits: bigint; blocked?: string }>([
  ['acme', { name: 'ACME Corp', creditLimitUnits: 50_000n }],
  ['globex', { name: 'Globex', creditLimitUnits: 1_000n }],
  ['initech', { name: 'Initech', creditLimitUnits: 0n, blocked: 'account on legal hold' }],
]);
const upserted = new Map<string, string>();

function classified(code: Code, errorClass: ErrorClass, message: string, externalCode: string): ConnectError {
  const detail = create(ConnectorErrorSchema, { errorClass, message, retryable: false, code: externalCode });
  return new ConnectError(message, code, undefined, [{ desc: ConnectorErrorSchema, value: detail }]);
}

const money = (currencyCode: string, nanos: bigint) =>
  create(MoneySchema, { currencyCode, units: nanos / NANO, nanos: Number(nanos % NANO) });
const nanosOf = (m?: { units: bigint; nanos: number }) => (m ? m.units * NANO + BigInt(m.nanos) : 0n);

export function routes(router: ConnectRouter): void {
  router.service(ConnectorService, {
    async validateCustomer(req) {
      const c = customers.get(req.customerId);
      if (!c)
        throw classified(
          Code.NotFound,
          ErrorClass.NOT_FOUND,
          `unknown customer ${req.customerId}`,
          'NO_SUCH_CUSTOMER',
        );
      return {
        valid: !c.blocked,
        reason: c.blocked ?? '',
        customer: { id: req.customerId, name: c.name, active: !c.blocked },
      };
    },
    async checkCredit(req) {
      const c = customers.get(req.customerId);
      if (!c)
        throw classified(
          Code.NotFound,
          ErrorClass.NOT_FOUND,
          `unknown customer ${req.customerId}`,
          'NO_SUCH_CUSTOMER',
        );
      const currency = req.amount?.currencyCode || 'USD';
      const limit = c.creditLimitUnits * NANO;
      const approved = nanosOf(req.amount) <= limit;
      return {
        approved,
        creditLimit: money(currency, limit),
        exposure: money(currency, 0n),
        available: money(currency, limit),
        reason: approved ? '' : 'over credit limit',
      };
    },
    async calculateTax(req) {
      let total = 0n;
      const currency = req.currencyCode || 'USD';
      const lines = req.lines.map((l) => {
        const taxable = nanosOf(l.lineTotal);
        // Round half up to cents.
        const tax = (((taxable * TAX_RATE_BP) / 10_000n + 5_000_000n) / 10_000_000n) * 10_000_000n;
        total += tax;
        return {
          sku: l.sku,
          taxable: money(currency, taxable),
          tax: money(currency, tax),
          rate: `${Number(TAX_RATE_BP) / 10_000}`,
        };
      });
      return { lines, taxTotal: money(currency, total) };
    },
    async upsertCustomer(req) {
      const id = req.customer?.id ?? '';
      if (!id)
        throw classified(
          Code.InvalidArgument,
          ErrorClass.VALIDATION,
          'customer.id is required',
          'MISSING_ID',
        );
      const created = !upserted.has(id);
      upserted.set(id, `EXT-${id}`);
      return { ref: { system: 'example', externalId: `EXT-${id}` }, created };
    },
  });
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const portArg = process.argv.indexOf('--port');
  const port = Number(portArg >= 0 ? process.argv[portArg + 1] : (process.env.PORT ?? 8090));
  const server = createServer(connectNodeAdapter({ routes }));
  server.listen(port, '127.0.0.1', () => {
    const address = server.address();
    const actual = typeof address === 'object' && address ? address.port : port;
    console.log(JSON.stringify({ msg: 'example connector listening', port: actual }));
  });
  process.on('SIGTERM', () => server.close(() => process.exit(0)));
}
