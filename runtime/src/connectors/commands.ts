// How other roles talk to a connector: a ConnectorCommand in an Envelope on exchange o2c.commands
// with routing key `<namespace>.<connector>` (Connectors are namespaced, like every resource, so two
// namespaces with a Connector named erp never see each other's commands); the reply comes back as an
// Envelope{connector_reply} on o2c.events with routing key = the command's reply_to, which names the
// sender (bus/addressing.ts). The workflow engine builds its commands here.

import { randomUUID } from 'node:crypto';
import { create, fromBinary, toBinary } from '@bufbuild/protobuf';
import { timestampFromMs } from '@bufbuild/protobuf/wkt';
import {
  type ConnectorCommand,
  ConnectorCommandSchema,
  type ConnectorReply,
  ConnectorReplySchema,
} from '../gen/o2c/v1/connector_service_pb.js';
import { type Envelope, EnvelopeSchema } from '../gen/o2c/v1/events_pb.js';
import type { OutboxMessage } from '../store/types.js';
import type { MethodName, RequestOf } from './driver.js';

export { COMMANDS_EXCHANGE, commandRoutingKey, EVENTS_EXCHANGE, REPLY_TYPE } from '../bus/addressing.js';

import { COMMANDS_EXCHANGE, commandRoutingKey, EVENTS_EXCHANGE, REPLY_TYPE } from '../bus/addressing.js';
/** Envelope type of a command, also its AMQP `type`. */
export const COMMAND_TYPE = 'o2c.v1.ConnectorCommand';
/** Reply routing key when a command names none. */
export const DEFAULT_REPLY_TO = REPLY_TYPE;

/** A request with its oneof case: `{ case: 'createSalesOrder', value: {...} }`. */
export type CommandRequest = { [M in MethodName]: { case: M; value: RequestOf<M> } }[MethodName];

export interface CommandInput {
  /** The Connector's namespace (default "default") and name: together the routing key on o2c.commands. */
  namespace?: string;
  connector: string;
  /** The Connector's routing key as the operator rendered it; default commandRoutingKey(namespace, connector). */
  routingKey?: string;
  request: CommandRequest;
  orderId: string;
  step: string;
  /** Routing key of the reply on o2c.events: replyRoutingKey (bus/addressing.ts) of the sender. */
  replyTo: string;
  correlationId: string;
  /** The message that caused this command (e.g. the OrderSubmitted event id). */
  causationId?: string;
  /** Turned into a natural key in the external system; default `<orderId>:<step>`. */
  idempotencyKey?: string;
  /** Producer, e.g. `o2c/default/workflow/distributor`. */
  source?: string;
  traceparent?: string;
  id?: string;
  now?: number;
}

/** Operation name (proto method name) of a local method name: `createSalesOrder` → `CreateSalesOrder`. */
export function operationOf(method: MethodName): string {
  return method.charAt(0).toUpperCase() + method.slice(1);
}

export function buildCommandEnvelope(input: CommandInput): Envelope {
  const command = create(ConnectorCommandSchema, {
    operation: operationOf(input.request.case),
    orderId: input.orderId,
    step: input.step,
    replyTo: input.replyTo,
    request: input.request as ConnectorCommand['request'],
  });
  return create(EnvelopeSchema, {
    id: input.id ?? randomUUID(),
    type: COMMAND_TYPE,
    source: input.source ?? '',
    subject: input.orderId,
    time: timestampFromMs(input.now ?? Date.now()),
    correlationId: input.correlationId,
    causationId: input.causationId ?? '',
    idempotencyKey: input.idempotencyKey ?? `${input.orderId}:${input.step}`,
    traceparent: input.traceparent ?? '',
    orderingKey: input.orderId,
    payload: { case: 'connectorCommand', value: command },
  });
}

/** The outbox row (or direct publish) for a command: write it in the same transaction as the step. */
export function commandMessage(input: CommandInput): OutboxMessage {
  const envelope = buildCommandEnvelope(input);
  return {
    id: envelope.id,
    exchange: COMMANDS_EXCHANGE,
    routingKey: input.routingKey ?? commandRoutingKey(input.namespace ?? 'default', input.connector),
    body: toBinary(EnvelopeSchema, envelope),
    type: COMMAND_TYPE,
    correlationId: envelope.correlationId,
    orderingKey: envelope.orderingKey,
    headers: envelope.traceparent ? { traceparent: envelope.traceparent } : undefined,
  };
}

/** The reply for a command envelope, as an outbox message to o2c.events. */
export function replyMessage(
  commandEnvelope: Envelope,
  command: ConnectorCommand,
  reply: ConnectorReply,
  source: string,
  now = Date.now(),
): OutboxMessage {
  const replyTo = command.replyTo || DEFAULT_REPLY_TO;
  const envelope = create(EnvelopeSchema, {
    id: randomUUID(),
    type: replyTo,
    source,
    subject: command.orderId,
    time: timestampFromMs(now),
    correlationId: commandEnvelope.correlationId,
    causationId: commandEnvelope.id,
    idempotencyKey: commandEnvelope.idempotencyKey,
    traceparent: commandEnvelope.traceparent,
    tracestate: commandEnvelope.tracestate,
    orderingKey: commandEnvelope.orderingKey || command.orderId,
    payload: { case: 'connectorReply', value: reply },
  });
  return {
    id: envelope.id,
    exchange: EVENTS_EXCHANGE,
    routingKey: replyTo,
    body: toBinary(EnvelopeSchema, envelope),
    type: replyTo,
    correlationId: envelope.correlationId,
    orderingKey: envelope.orderingKey,
    headers: envelope.traceparent ? { traceparent: envelope.traceparent } : undefined,
  };
}

/** Decodes a reply envelope: the workflow's side. Undefined when the body is not a connector reply. */
export function decodeReply(body: Uint8Array): { envelope: Envelope; reply: ConnectorReply } | undefined {
  const envelope = fromBinary(EnvelopeSchema, body);
  if (envelope.payload.case !== 'connectorReply') return undefined;
  return { envelope, reply: envelope.payload.value };
}

export function emptyReply(command: ConnectorCommand, connector: string): ConnectorReply {
  return create(ConnectorReplySchema, {
    operation: command.operation,
    orderId: command.orderId,
    step: command.step,
    connector,
  });
}
