// The event backbone's test set-up shared by the bus integration tests: a store on a fresh
// PostgreSQL database, a started connection with a confirm publisher, their tear-down, and polling.
import type { Logger } from 'pino';
import {
  BusConnection,
  ConfirmPublisher,
  deleteQueueTopology,
  EVENTS_EXCHANGE,
  type QueueSpec,
  queueName,
} from '../../../runtime/src/bus/index.js';
import { openStore, type Store } from '../../../runtime/src/store/index.js';
import { BROKER_URL, freshDatabase } from './services.js';

export interface Bus {
  store: Store;
  conn: BusConnection;
  publisher: ConfirmPublisher;
}

/** A store on the fresh database `db`, a started connection named `name` and its publisher. */
export async function openBus(opts: {
  db: string;
  name: string;
  logger: Logger;
  /** The broker; default the shared one. */
  url?: string;
  /** Run on the store before the connection starts (e.g. a test's own tables). */
  prepare?: (store: Store) => Promise<unknown>;
}): Promise<Bus> {
  const store = await openStore(await freshDatabase(opts.db));
  await opts.prepare?.(store);
  const conn = new BusConnection({ url: opts.url ?? BROKER_URL, name: opts.name, logger: opts.logger });
  await conn.start();
  return { store, conn, publisher: new ConfirmPublisher(conn) };
}

/** Deletes the topology of `specs`, then closes what `openBus` opened (any part may be missing). */
export async function closeBus(bus: Partial<Bus>, specs: readonly QueueSpec[] = []): Promise<void> {
  const model = bus.conn?.model;
  if (model) for (const spec of specs) await deleteQueueTopology(model, spec).catch(() => {});
  await bus.publisher?.close();
  await bus.conn?.close();
  await bus.store?.close();
}

/**
 * A maker of queue specs for a test's Workflow `workflow` in namespace `ns`: each bound to
 * `<ns>.<purpose>.#` on the events exchange with `retry`, and recorded in `specs` for the tear-down.
 */
export function specMaker(ns: string, workflow: string, retry: QueueSpec['retry'], specs: QueueSpec[]) {
  return (purpose: string, overrides: Partial<QueueSpec> = {}): QueueSpec => {
    const spec: QueueSpec = {
      name: queueName(ns, 'workflow', workflow, purpose),
      bindings: [{ exchange: EVENTS_EXCHANGE, routingKey: `${ns}.${purpose}.#` }],
      retry,
      ...overrides,
    };
    specs.push(spec);
    return spec;
  };
}

/** Polls `probe` every `intervalMs` until it returns a value other than undefined or false. */
export async function eventually<T>(
  probe: () => Promise<T | undefined | false> | T | undefined | false,
  timeoutMs = 30_000,
  intervalMs = 50,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined && value !== false) return value;
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}
