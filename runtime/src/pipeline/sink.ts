// How a Pipeline turns an event into the sink operation's request, by reflection over the contracts:
// the request's entity is its first field (UpsertItemRequest.item, UpsertPriceRequest.price, ...); it
// starts as the event's field of the same type (ItemUpserted.item) and the transform results are laid
// over it by field name (protobuf JSON name or proto name).
import { create, type DescField, type DescMessage, fromJson, type JsonObject } from '@bufbuild/protobuf';
import type { CommandRequest } from '../connectors/commands.js';
import { ConnectorCommandSchema } from '../gen/o2c/v1/connector_service_pb.js';
import { type JsonValue, PipelineEvaluationError } from './cel.js';

type MessageField = DescField & { fieldKind: 'message' };

function isMessageField(f: DescField): f is MessageField {
  return f.fieldKind === 'message';
}

export interface SinkTarget {
  operation: string;
  /** ConnectorCommand.request case, e.g. `upsertItem`. */
  requestCase: string;
  request: DescMessage;
  /** The request's entity field, e.g. UpsertItemRequest.item. */
  entity: MessageField;
}

/** The request shape of a sink operation; undefined for an unknown operation or one without an entity. */
export function sinkTargetOf(operation: string): SinkTarget | undefined {
  const field = ConnectorCommandSchema.fields.find(
    (f): f is MessageField =>
      f.oneof?.name === 'request' && isMessageField(f) && f.message.typeName === `o2c.v1.${operation}Request`,
  );
  const entity = field?.message.fields[0];
  if (!field || !entity || !isMessageField(entity)) return undefined;
  return { operation, requestCase: field.localName, request: field.message, entity };
}

/** The entity field a transform key names (`listPrice` or `list_price`). */
export function entityFieldOf(target: SinkTarget, key: string): DescField | undefined {
  return target.entity.message.fields.find((f) => f.jsonName === key || f.name === key);
}

/** The field of the event payload that carries the sink's entity (ItemUpserted.item for UpsertItem). */
export function eventEntityFieldOf(payload: DescMessage, target: SinkTarget): MessageField | undefined {
  return payload.fields.find(
    (f): f is MessageField => isMessageField(f) && f.message.typeName === target.entity.message.typeName,
  );
}

/**
 * The sink request for one event: the event's entity (protobuf JSON) with the transform results
 * (keyed by JSON name; null clears a field) laid over it. A value of the wrong type for its field is
 * a PipelineEvaluationError.
 */
export function buildSinkRequest(
  target: SinkTarget,
  entityJson: JsonValue | undefined,
  overlay: Record<string, JsonValue>,
): CommandRequest {
  const merged: Record<string, JsonValue> =
    entityJson && typeof entityJson === 'object' && !Array.isArray(entityJson) ? { ...entityJson } : {};
  for (const [jsonName, value] of Object.entries(overlay)) {
    if (value === null) delete merged[jsonName];
    else merged[jsonName] = value;
  }
  let entity: ReturnType<typeof create>;
  try {
    entity = fromJson(target.entity.message, merged as JsonObject);
  } catch (err) {
    throw new PipelineEvaluationError(
      `the transformed ${target.entity.message.typeName} is not valid: ${(err as Error).message}`,
    );
  }
  const request = create(target.request, { [target.entity.localName]: entity } as never);
  return { case: target.requestCase, value: request } as CommandRequest;
}
