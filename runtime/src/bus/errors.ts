// Errors the bus surfaces to its callers. Each names what a person needs to act on: the queue, the
// argument, the message id.

/** A declaration differs from what exists on the broker (AMQP 406 PRECONDITION_FAILED). */
export class TopologyConflictError extends Error {
  override readonly name = 'TopologyConflictError';
  constructor(
    readonly kind: 'queue' | 'exchange',
    readonly entity: string,
    readonly argument: string,
    readonly brokerMessage: string,
  ) {
    super(
      `${kind} '${entity}' already exists with a different '${argument}' than o2c declares ` +
        `(broker: ${brokerMessage}); delete it or align the configuration`,
    );
  }
}

/** The broker could not route a mandatory message to any queue. */
export class UnroutableError extends Error {
  override readonly name = 'UnroutableError';
  constructor(
    readonly exchange: string,
    readonly routingKey: string,
    readonly messageId: string,
    readonly replyText: string,
  ) {
    super(
      `message ${messageId} to exchange '${exchange}' with key '${routingKey}' was unroutable (${replyText})`,
    );
  }
}

/** The broker refused a message (basic.nack), e.g. a queue at its length limit. Retryable. */
export class PublishNackedError extends Error {
  override readonly name = 'PublishNackedError';
  constructor(readonly messageId: string) {
    super(`broker nacked message ${messageId}`);
  }
}

/** The channel or connection went away before the broker confirmed. Retryable: publish again. */
export class ConnectionLostError extends Error {
  override readonly name = 'ConnectionLostError';
}

/** A handler failure that must not be retried; the message goes straight to the DLQ. */
export class PermanentError extends Error {
  override readonly name: string = 'PermanentError';
}

/**
 * What is wrong with a poison message, as its DLQ error class: the body is no Envelope, it names no
 * or an unknown event type, its payload is not the type it declares, it is not for this queue, or a
 * field the handler cannot do without is empty.
 */
export type PoisonClass =
  | 'UndecodableEnvelope'
  | 'MissingMessageId'
  | 'MissingEventType'
  | 'ConflictingEventType'
  | 'UnknownEventType'
  | 'PayloadTypeMismatch'
  | 'UnexpectedEventType'
  | 'InvalidPayload';

/**
 * A message that can never be handled, whoever retries it: parked in the DLQ at once with reason
 * `poison`, never claimed in an inbox. Its name is the PoisonClass, so the DLQ's error class says what.
 */
export class PoisonMessageError extends PermanentError {
  override readonly name: PoisonClass;
  constructor(poisonClass: PoisonClass, message: string) {
    super(message);
    this.name = poisonClass;
  }
}

/** AMQP 406 as raised by amqplib; parses the broker's text into a TopologyConflictError. */
export function asTopologyConflict(err: unknown): TopologyConflictError | undefined {
  const e = err as { code?: number; message?: string };
  if (e?.code !== 406 || typeof e.message !== 'string') return undefined;
  const m = /inequivalent arg '([^']+)' for (queue|exchange) '([^']+)'/.exec(e.message);
  const brokerMessage = /PRECONDITION_FAILED - ([^"]+)/.exec(e.message)?.[1] ?? e.message;
  if (!m) return undefined;
  return new TopologyConflictError(m[2] as 'queue' | 'exchange', m[3]!, m[1]!, brokerMessage);
}

/** AMQP 404 NOT_FOUND (queue or exchange absent). */
export function isNotFound(err: unknown): boolean {
  return (err as { code?: number })?.code === 404;
}
