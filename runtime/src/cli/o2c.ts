#!/usr/bin/env -S npx tsx
// The `o2c` command: local development, order API client, fallout and dead-letter tools.
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { fromJson, type JsonValue, toJsonString } from '@bufbuild/protobuf';
import { timestampDate } from '@bufbuild/protobuf/wkt';
import { Code, ConnectError } from '@connectrpc/connect';
import { ErrorClass } from '../gen/o2c/v1/common_pb.js';
import { OrderSchema, OrderState } from '../gen/o2c/v1/entities_pb.js';
import { FalloutExceptionSchema } from '../gen/o2c/v1/order_service_pb.js';
import { orderClient } from './client.js';

const USAGE = `o2c <command> [options]

  dev -f <dir|file>...        run the manifests' Workflow locally (order API on 127.0.0.1:8080)
  submit -f order.json --key K | --customer C --currency USD --line SKU:QTY[:PRICE]... --key K
  get <id>                    show an order
  list [--state S] [--customer C] [--limit N]
  watch <id>                  follow an order until it is terminal
  cancel <id> [--reason R]
  history <id>                the steps an order went through
  exceptions list [--status open|resolved|all] [--order ID] [--step S]
  exceptions show <id>        one exception with the request its step sent
  exceptions retry <id>       resume the order from the failed step (after fixing the cause)
  exceptions resolve <id> [--resolution TEXT] [--skip-step]
  dlq list|show|replay|purge  dead-lettered messages (see o2c dlq --help)
  events replay --since T     re-read published events from the event log

Client options: --server URL (default $O2C_SERVER or http://127.0.0.1:8080), --token T (default $O2C_TOKEN).`;

const clientOptions = {
  server: { type: 'string', default: process.env.O2C_SERVER ?? 'http://127.0.0.1:8080' },
  token: { type: 'string', default: process.env.O2C_TOKEN },
} as const;

function print(order: unknown): void {
  console.log(toJsonString(OrderSchema, order as never, { prettySpaces: 2 }));
}

function parseLine(spec: string, currency: string): JsonValue {
  const [sku, qty, price] = spec.split(':');
  if (!sku || !qty) throw new Error(`--line ${spec}: expected SKU:QTY[:PRICE]`);
  const line: Record<string, JsonValue> = { sku, quantity: Number(qty) };
  if (price) {
    const [units, frac = ''] = price.split('.');
    line.unit_price = {
      currency_code: currency,
      units: units ?? '0',
      nanos: Number(frac.padEnd(9, '0').slice(0, 9)),
    };
  }
  return line;
}

async function main(argv: string[]): Promise<void> {
  const [command, ...rest] = argv;
  switch (command) {
    case 'dev': {
      const { runDev } = await import('./dev.js');
      return runDev(rest);
    }
    case 'dlq': {
      const { runDlq } = await import('./dlq.js');
      process.exitCode = await runDlq(rest);
      return;
    }
    case 'events': {
      const { runEvents } = await import('./events.js');
      process.exitCode = await runEvents(rest);
      return;
    }
    case 'submit': {
      const { values } = parseArgs({
        args: rest,
        options: {
          ...clientOptions,
          file: { type: 'string', short: 'f' },
          key: { type: 'string' },
          customer: { type: 'string' },
          currency: { type: 'string', default: 'USD' },
          line: { type: 'string', multiple: true },
        },
      });
      const json: JsonValue = values.file
        ? (JSON.parse(readFileSync(values.file, 'utf8')) as JsonValue)
        : {
            customer_id: values.customer ?? '',
            currency_code: values.currency,
            lines: (values.line ?? []).map((l) => parseLine(l, values.currency)),
          };
      const order = fromJson(OrderSchema, json);
      const res = await orderClient(values.server, values.token).submitOrder({
        idempotencyKey: values.key ?? '',
        order,
      });
      return print(res.order);
    }
    case 'get': {
      const { values, positionals } = parseArgs({
        args: rest,
        options: clientOptions,
        allowPositionals: true,
      });
      const res = await orderClient(values.server, values.token).getOrder({ id: positionals[0] ?? '' });
      return print(res.order);
    }
    case 'list': {
      const { values } = parseArgs({
        args: rest,
        options: {
          ...clientOptions,
          state: { type: 'string', multiple: true },
          customer: { type: 'string' },
          limit: { type: 'string', default: '50' },
        },
      });
      const states = (values.state ?? []).map((s) => {
        const v = OrderState[s.toUpperCase() as keyof typeof OrderState];
        if (v === undefined) throw new Error(`unknown state ${s}`);
        return v;
      });
      const res = await orderClient(values.server, values.token).listOrders({
        states,
        customerId: values.customer ?? '',
        pageSize: Number(values.limit),
      });
      for (const o of res.orders) {
        console.log(
          `${o.id}  ${OrderState[o.state].padEnd(11)}  ${o.customerId.padEnd(12)}  ${o.lines.length} line(s)  ${o.idempotencyKey}`,
        );
      }
      if (res.nextPageToken) console.log(`(more: --page-token ${res.nextPageToken})`);
      return;
    }
    case 'watch': {
      const { values, positionals } = parseArgs({
        args: rest,
        options: clientOptions,
        allowPositionals: true,
      });
      for await (const res of orderClient(values.server, values.token).watchOrder({
        id: positionals[0] ?? '',
      })) {
        const o = res.order!;
        console.log(
          `${new Date().toISOString()}  ${o.id}  ${OrderState[o.state]}  ${o.currentStep}  ${o.statusReason}`,
        );
      }
      return;
    }
    case 'cancel': {
      const { values, positionals } = parseArgs({
        args: rest,
        options: { ...clientOptions, reason: { type: 'string', default: '' } },
        allowPositionals: true,
      });
      const res = await orderClient(values.server, values.token).cancelOrder({
        id: positionals[0] ?? '',
        reason: values.reason,
      });
      return print(res.order);
    }
    case 'history': {
      const { values, positionals } = parseArgs({
        args: rest,
        options: clientOptions,
        allowPositionals: true,
      });
      const res = await orderClient(values.server, values.token).getOrderHistory({
        id: positionals[0] ?? '',
      });
      for (const s of res.steps) {
        const at = s.startTime ? timestampDate(s.startTime).toISOString() : '';
        const cls = s.errorClass ? ` ${ErrorClass[s.errorClass]}` : '';
        console.log(`${at}  ${s.step.padEnd(24)} #${s.attempt} ${s.outcome.padEnd(11)}${cls} ${s.message}`);
      }
      return;
    }
    case 'exceptions': {
      const [verb, ...args] = rest;
      const { values, positionals } = parseArgs({
        args,
        options: {
          ...clientOptions,
          status: { type: 'string', default: 'open' },
          order: { type: 'string' },
          step: { type: 'string' },
          resolution: { type: 'string', default: '' },
          'skip-step': { type: 'boolean', default: false },
        },
        allowPositionals: true,
      });
      const client = orderClient(values.server, values.token);
      const id = positionals[0] ?? '';
      if (verb === 'list') {
        const res = await client.listExceptions({
          status: values.status,
          orderId: values.order ?? '',
          step: values.step ?? '',
        });
        for (const e of res.exceptions) {
          console.log(
            `${e.id}  ${e.status.padEnd(8)} ${e.orderId}  ${e.step.padEnd(20)} ${ErrorClass[e.errorClass]?.padEnd(12)} x${e.attempts}  ${e.message}`,
          );
        }
        if (res.exceptions.length === 0) console.log(`no ${values.status} exceptions`);
        return;
      }
      if (verb === 'show') {
        const res = await client.listExceptions({ status: 'all', pageSize: 500 });
        const e = res.exceptions.find((x) => x.id === id);
        if (!e) throw new Error(`exception ${id} not found`);
        console.log(toJsonString(FalloutExceptionSchema, e, { prettySpaces: 2 }));
        return;
      }
      if (verb === 'retry') {
        const res = await client.retryStep({ exceptionId: id });
        console.log(
          `${res.order?.id} resumed at ${res.order?.currentStep}: ${OrderState[res.order?.state ?? 0]}`,
        );
        return;
      }
      if (verb === 'resolve') {
        const res = await client.resolveException({
          exceptionId: id,
          resolution: values.resolution,
          skipStep: values['skip-step'],
        });
        console.log(`${res.exception?.id} ${res.exception?.status}: ${res.exception?.resolution}`);
        return;
      }
      throw new Error('usage: o2c exceptions list|show|retry|resolve');
    }
    default:
      console.log(USAGE);
      if (command && command !== 'help' && command !== '--help') process.exitCode = 2;
  }
}

main(process.argv.slice(2)).catch((err: unknown) => {
  if (err instanceof ConnectError) console.error(`o2c: [${Code[err.code]}] ${err.rawMessage}`);
  else console.error(`o2c: ${(err as Error).message}`);
  process.exitCode = 1;
});
