// `o2c events replay --since ...`: reads the event log stream (o2c.events.log) from a point in time
// or an offset and prints the events, or re-delivers them into one queue to rebuild a consumer.

import { parseArgs } from 'node:util';
import { toJson } from '@bufbuild/protobuf';
import pino from 'pino';
import { BusConnection } from '../bus/connection.js';
import { parseStreamStart, readEventLog } from '../bus/event-log.js';
import { ConfirmPublisher } from '../bus/publisher.js';
import { EnvelopeSchema } from '../gen/o2c/v1/events_pb.js';

const USAGE = `usage:
  o2c events replay --since <15m|2h|3d|ISO-8601|offset:N|first> [--until ISO-8601] [--type T]...
                    [--limit N] [--to-queue QUEUE]
  Without --to-queue the events are printed as JSON lines; with it they are re-delivered to QUEUE
  (consumers deduplicate by event id: rebuild under a fresh consumer name or inbox).
options: --url amqp://... (default $O2C_AMQP_URL or amqp://guest:guest@127.0.0.1:5672)`;

export async function runEvents(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      url: { type: 'string' },
      since: { type: 'string' },
      until: { type: 'string' },
      type: { type: 'string', multiple: true },
      limit: { type: 'string' },
      'to-queue': { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help || positionals[0] !== 'replay' || !values.since) {
    console.error(USAGE);
    return values.help ? 0 : 2;
  }
  let from: ReturnType<typeof parseStreamStart>;
  try {
    from = parseStreamStart(values.since);
  } catch (err) {
    console.error((err as Error).message);
    return 2;
  }
  const until = values.until ? new Date(values.until) : undefined;
  if (until && Number.isNaN(until.getTime())) {
    console.error(`--until '${values.until}' is not an ISO-8601 time`);
    return 2;
  }
  const connection = new BusConnection({
    url: values.url ?? process.env.O2C_AMQP_URL ?? 'amqp://guest:guest@127.0.0.1:5672',
    name: 'o2c-cli-events',
    logger: pino({ level: 'error' }),
  });
  await connection.start();
  const target = values['to-queue'];
  const publisher = target ? new ConfirmPublisher(connection) : undefined;
  let count = 0;
  try {
    const records = readEventLog(connection, {
      from,
      until,
      types: values.type,
      limit: values.limit ? Number(values.limit) : undefined,
    });
    for await (const record of records) {
      count++;
      if (!publisher || !target) {
        console.log(
          JSON.stringify({
            offset: record.offset,
            routingKey: record.routingKey,
            time: record.time?.toISOString(),
            envelope: record.envelope ? toJson(EnvelopeSchema, record.envelope) : undefined,
            decodeError: record.decodeError,
          }),
        );
        continue;
      }
      await publisher.publish({
        exchange: '',
        routingKey: target,
        body: record.body,
        messageId: record.messageId || record.envelope?.id || `offset-${record.offset}`,
        type: record.type,
        correlationId: record.envelope?.correlationId ?? '',
        orderingKey: record.envelope?.orderingKey,
        traceparent: record.envelope?.traceparent || undefined,
        timestampMs: record.time?.getTime(),
        headers: { 'x-o2c-replayed-from-offset': record.offset },
      });
    }
    if (target) console.error(`${count} event(s) re-delivered to ${target}`);
    return 0;
  } finally {
    await publisher?.close();
    await connection.close();
  }
}
