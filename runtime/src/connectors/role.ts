// The connector role process: one command queue (o2c.commands, routing key = connector name), the
// driver behind the governor, replies and the events it originates (change feed, simulator) through
// the outbox and its relay (with a store) or a confirmed publisher (tests).
import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from 'pino';
import { backoffDelayMs } from '../backoff.js';
import type { BusConnection } from '../bus/connection.js';
import { Consumer, type Delivery, type HandlerOutcome, PermanentError } from '../bus/consumer.js';
import { declareEventLog } from '../bus/event-log.js';
import { ConfirmPublisher } from '../bus/publisher.js';
import { DEFAULT_RETRY_POLICY, type QueueSpec, queueName, type RetryPolicy } from '../bus/topology.js';
import type { QueueRoute } from '../contract/runtime-config.js';
import { OutboxRelay } from '../outbox/relay.js';
import type { Store } from '../store/types.js';
import { type Clock, systemClock } from './clock.js';
import { COMMAND_TYPE, COMMANDS_EXCHANGE, commandRoutingKey } from './commands.js';
import { type ConnectorRuntimeConfig, credentialsDirOf, governorLimits } from './config.js';
import { type CredentialSource, FileCredentials, StaticCredentials } from './credentials.js';
import { type ConnectorDriver, ConnectorFailure } from './driver.js';
import { createDriver } from './drivers.js';
import { Governor } from './governor.js';
import { GroupCommit } from './group-commit.js';
import type { OriginatedEvent, OriginateEvents } from './origination.js';
import {
  type CommandDelivery,
  type CommandOutcome,
  ConnectorRuntime,
  type MessagePublisher,
} from './runtime.js';
import { SimulatorDriver, simulatorEvent } from './simulator/driver.js';

/** Retrying a simulator change's outbox write: from 200 ms, doubling, at most 5 s apart. */
const ORIGINATE_BACKOFF = { initialMs: 200, maxMs: 5_000, multiplier: 2 };

export interface ConnectorRoleOptions {
  config: ConnectorRuntimeConfig;
  connection: BusConnection;
  /** With a store, replies go through its outbox in the same transaction as the inbox claim. */
  store?: Store;
  /** Run an outbox relay for the store here (default true when a store is given). */
  relay?: boolean;
  /** A driver built elsewhere (tests); default: from config.driver. */
  driver?: ConnectorDriver;
  credentials?: CredentialSource;
  retry?: RetryPolicy;
  /** Queue name override (tests); default o2c.<namespace>.<name>.commands. */
  queue?: string;
  /** The command queue and its binding as the operator rendered them (runtime config). */
  route?: QueueRoute;
  prefetch?: number;
  clock?: Clock;
  logger: Logger;
}

export interface ConnectorRole {
  runtime: ConnectorRuntime;
  consumer: Consumer;
  queue: string;
  stop(): Promise<void>;
}

/** The command queue of a connector. */
export function commandQueueSpec(
  config: ConnectorRuntimeConfig,
  retry: RetryPolicy,
  name?: string,
): QueueSpec {
  return {
    name: name ?? queueName(config.namespace ?? 'default', 'connector', config.name, 'commands'),
    bindings: [
      {
        exchange: COMMANDS_EXCHANGE,
        routingKey: commandRoutingKey(config.namespace ?? 'default', config.name),
      },
    ],
    retry,
  };
}

function toPublishRequest(publisher: ConfirmPublisher): MessagePublisher {
  return {
    publish: (m) =>
      publisher.publish({
        exchange: m.exchange,
        routingKey: m.routingKey,
        body: m.body,
        messageId: m.id,
        type: m.type,
        correlationId: m.correlationId,
        headers: m.headers,
        traceparent: m.headers?.traceparent,
        orderingKey: m.orderingKey,
      }),
  };
}

/** A driver with a change feed of its own (Tryton). */
interface ChangeFeedDriver {
  startChangeFeed(
    originate: OriginateEvents,
    opts: { onError?: (err: unknown) => void },
  ): () => Promise<void>;
}

const hasChangeFeed = (d: ConnectorDriver): d is ConnectorDriver & ChangeFeedDriver =>
  typeof (d as Partial<ChangeFeedDriver>).startChangeFeed === 'function';

/** A delivery as the runtime takes it: the last attempt answers a retryable failure instead of retrying. */
function commandOf(delivery: Delivery, retry: RetryPolicy): CommandDelivery {
  return {
    envelope: delivery.envelope,
    delivery: {
      messageId: delivery.envelope.id,
      attempt: delivery.attempt,
      finalAttempt: delivery.attempt >= retry.maxAttempts,
    },
  };
}

/** How a command's outcome settles its delivery: answered → ack, permanent → DLQ, else retry. */
export function settlement(outcome: CommandOutcome): HandlerOutcome {
  if (typeof outcome === 'string') return 'ack';
  const err = outcome.error;
  if (err instanceof PermanentError) return { fail: err };
  if (err instanceof ConnectorFailure && !err.retryable) return { fail: new PermanentError(err.message) };
  return { retry: err instanceof Error ? err : new Error(String(err)) };
}

export async function startConnectorRole(options: ConnectorRoleOptions): Promise<ConnectorRole> {
  const { config, connection, store, logger } = options;
  const clock = options.clock ?? systemClock;
  const log = logger.child({
    kind: 'Connector',
    namespace: config.namespace ?? 'default',
    name: config.name,
  });
  const dir = credentialsDirOf(config);
  const credentials = options.credentials ?? (dir ? new FileCredentials(dir) : new StaticCredentials());
  const governor = new Governor(governorLimits(config), clock, (state) =>
    log.warn({ circuit: state }, `circuit ${state}`),
  );
  const driver = options.driver ?? (await createDriver({ config, credentials, clock, governor, store }));
  // Events this connector originates must be routable before any Workflow declared its queues: the
  // event log (bound with '#') takes every event, as the workflow role declares it.
  if (store) await declareEventLog(connection);
  const publisher = new ConfirmPublisher(connection);
  const relay =
    store && options.relay !== false
      ? new OutboxRelay({ store, publisher, logger: log.child({ component: 'outbox-relay' }), pollMs: 200 })
      : undefined;
  relay?.start();
  const runtime = new ConnectorRuntime({
    config,
    driver,
    governor,
    store,
    publisher: store ? undefined : toPublishRequest(publisher),
    clock,
    logger: log,
  });
  if (relay) runtime.onReply = () => relay.wake();

  // Work done inside the system reaches the workflow as events, through the outbox when there is a
  // store: Tryton's change feed hands each round with its watermark, the simulator each change.
  let stopFeed: (() => Promise<void>) | undefined;
  const stop = new AbortController();
  const stopping = stop.signal;
  if (hasChangeFeed(driver)) {
    stopFeed = driver.startChangeFeed(runtime.originate, {
      onError: (err) => log.warn({ err }, 'change feed round failed; retrying on the next tick'),
    });
  } else if (driver instanceof SimulatorDriver) {
    // A change the simulator made must reach the outbox: while the store is unreachable the write is
    // retried with the runtime's backoff (the event id comes from the change, so a repeat is a no-op).
    // Changes made while a write runs go together in the next one.
    const changes = new GroupCommit<OriginatedEvent, undefined>(async (events) => {
      for (let attempt = 1; ; attempt++) {
        try {
          await runtime.originate(events);
          return events.map(() => undefined);
        } catch (err) {
          const orderIds = events.map((e) => e.subject);
          if (stopping.aborted) {
            log.error({ err, orderIds }, 'stopping: simulator changes were not written');
            return events.map(() => undefined);
          }
          log.warn({ err, orderIds, attempt }, 'writing simulator changes failed; retrying');
          await sleep(backoffDelayMs(ORIGINATE_BACKOFF, attempt), undefined, { signal: stopping }).catch(
            () => undefined,
          );
        }
      }
    });
    driver.onChange((change) => void changes.submit(simulatorEvent(driver.system, change)));
  }

  const retry = options.retry ?? DEFAULT_RETRY_POLICY;
  const spec: QueueSpec = options.route
    ? { name: options.route.queue, bindings: options.route.bindings, retry }
    : commandQueueSpec(config, retry, options.queue);
  const consumer = new Consumer({
    connection,
    spec,
    // Anything but a command (undecodable, another type, a payload that is no command) is poison.
    accepts: [COMMAND_TYPE],
    prefetch: options.prefetch ?? Math.max(8, (governorLimits(config).maxConcurrency ?? 4) * 4),
    // A delivery batch at once: the driver calls run concurrently under the governor, the replies
    // go out in group commits, the acks coalesced.
    batchHandler: async (deliveries: Delivery[]): Promise<HandlerOutcome[]> => {
      const outcomes = await runtime.handleEnvelopes(deliveries.map((d) => commandOf(d, retry)));
      return outcomes.map(settlement);
    },
  });
  await consumer.start();
  log.info(
    { queue: spec.name, driver: driver.driverName, owns: config.owns ?? [] },
    'connector consuming commands',
  );

  return {
    runtime,
    consumer,
    queue: spec.name,
    async stop() {
      stop.abort();
      await consumer.stop();
      await stopFeed?.();
      await relay?.stop();
      await publisher.close();
      await driver.close?.();
    },
  };
}
