// `o2c dlq list|show|replay|purge <queue>`: inspect and recover dead-lettered messages. <queue> is a
// work queue (o2c.<ns>.<kind>.<resource>.<purpose>) or its `.dlq`.
import { parseArgs } from 'node:util';
import pino from 'pino';
import { BusConnection } from '../bus/connection.js';
import {
  type DlqEntry,
  type DlqMessage,
  listDlq,
  purgeDlq,
  replayDlq,
  showDlq,
  toDlqName,
} from '../bus/dlq.js';
import { isNotFound } from '../bus/errors.js';

const USAGE = `usage:
  o2c dlq list   <queue> [--limit N] [--type T] [--key K] [--json]
  o2c dlq show   <queue> <message-id> [--json]
  o2c dlq replay <queue> [--type T] [--key K] [--id ID] [--limit N]
  o2c dlq purge  <queue> [--type T] [--key K] [--id ID] --yes
options: --url amqp://... (default $O2C_AMQP_URL or amqp://guest:guest@127.0.0.1:5672)`;

export async function runDlq(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      url: { type: 'string' },
      limit: { type: 'string' },
      type: { type: 'string' },
      key: { type: 'string' },
      id: { type: 'string' },
      json: { type: 'boolean' },
      yes: { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  const [command, queue, messageId] = positionals;
  if (values.help || !command || !queue) {
    console.error(USAGE);
    return values.help ? 0 : 2;
  }
  const limit = values.limit === undefined ? undefined : Number(values.limit);
  if (limit !== undefined && !(Number.isInteger(limit) && limit > 0)) {
    console.error(`--limit must be a positive integer, got '${values.limit}'`);
    return 2;
  }
  const filter = { type: values.type, orderingKey: values.key, messageId: values.id };
  const connection = new BusConnection({
    url: values.url ?? process.env.O2C_AMQP_URL ?? 'amqp://guest:guest@127.0.0.1:5672',
    name: 'o2c-cli-dlq',
    logger: pino({ level: 'error' }),
    reconnect: { maxMs: 1_000 },
  });
  const started = connection.start();
  const timeout = new Promise<never>((_, reject) =>
    setTimeout(() => reject(new Error('broker not reachable within 10 s')), 10_000).unref(),
  );
  await Promise.race([started, timeout]);
  try {
    switch (command) {
      case 'list': {
        const entries = await listDlq(connection, queue, { limit: limit ?? 100, ...filter });
        if (values.json)
          console.log(
            JSON.stringify(
              entries.map(({ headers: _h, ...e }) => e),
              null,
              2,
            ),
          );
        else printTable(entries);
        return 0;
      }
      case 'show': {
        const id = messageId ?? values.id;
        if (!id) {
          console.error('o2c dlq show needs a message id');
          return 2;
        }
        const found = await showDlq(connection, queue, id);
        if (!found) {
          console.error(`no message ${id} in ${queue}`);
          return 1;
        }
        console.log(values.json ? JSON.stringify(found, null, 2) : formatDlqMessage(found));
        return 0;
      }
      case 'replay': {
        const replayed = await replayDlq(connection, queue, { limit, ...filter });
        for (const e of replayed) console.log(`replayed ${e.messageId} (${e.type}) -> ${e.originalQueue}`);
        console.log(`${replayed.length} message(s) replayed`);
        return 0;
      }
      case 'purge': {
        if (!values.yes) {
          console.error('purge deletes messages for good: add --yes');
          return 2;
        }
        console.log(`${await purgeDlq(connection, queue, filter)} message(s) purged`);
        return 0;
      }
      default:
        console.error(`unknown dlq command '${command}'\n${USAGE}`);
        return 2;
    }
  } catch (err) {
    if (!isNotFound(err)) throw err;
    console.error(
      `no queue ${toDlqName(queue)} on the broker (is the queue name o2c.<namespace>.<kind>.<name>.<purpose>, kind connector, pipeline or workflow?)`,
    );
    return 1;
  } finally {
    await connection.close();
  }
}

/** `o2c dlq show`: why the message is parked first, then what it carries. */
export function formatDlqMessage(found: DlqMessage): string {
  const e = found.entry;
  const rows: [string, string][] = [
    ['message id', e.messageId],
    ['type', e.type || '(none)'],
    ['queue', e.originalQueue],
    ['reason', e.errorClass ? `${e.reason || '(none)'} (${e.errorClass})` : e.reason || '(none)'],
    ['error', e.error || '(none)'],
    ['attempts', String(e.attempts)],
    ['first failure', e.firstFailure || '(unknown)'],
    ['last failure', e.lastFailure || '(unknown)'],
    ['size', `${e.sizeBytes} bytes`],
  ];
  if (e.correlationId) rows.splice(2, 0, ['correlation id', e.correlationId]);
  if (e.orderingKey) rows.splice(2, 0, ['ordering key', e.orderingKey]);
  if (found.decodeError) {
    rows.push(['body', `not an o2c.v1.Envelope: ${found.decodeError}`]);
    if (found.bodyPreview) rows.push(['body bytes', found.bodyPreview]);
  }
  const width = Math.max(...rows.map(([k]) => k.length));
  const lines = rows.map(([k, v]) => `${k.padEnd(width)}  ${v}`);
  if (found.envelope !== undefined) lines.push('envelope', JSON.stringify(found.envelope, null, 2));
  return lines.join('\n');
}

function printTable(entries: DlqEntry[]): void {
  if (entries.length === 0) {
    console.log('no messages');
    return;
  }
  const rows = entries.map((e) => [
    e.messageId,
    e.type,
    e.reason,
    String(e.attempts),
    e.errorClass,
    e.lastFailure,
    e.error,
  ]);
  const head = ['MESSAGE ID', 'TYPE', 'REASON', 'ATTEMPTS', 'ERROR CLASS', 'LAST FAILURE', 'ERROR'];
  const widths = head.map((h, i) => Math.min(48, Math.max(h.length, ...rows.map((r) => r[i]!.length))));
  for (const r of [head, ...rows]) {
    console.log(
      r.map((c, i) => (i === r.length - 1 ? c : c.slice(0, widths[i]).padEnd(widths[i]!))).join('  '),
    );
  }
}
