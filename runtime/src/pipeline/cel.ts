// CEL of a Pipeline: the filter, the per-field transform and the ordering key, compiled once with
// @bufbuild/cel and evaluated over `event` = the event payload in protobuf JSON (e.g. `event.item.sku`).
// Compile problems are reported per spec field, so the operator and `o2c validate` can name them.

import { isCelError } from '@bufbuild/cel';
import { create, type DescMessage, toJson } from '@bufbuild/protobuf';
import type { JsonValue } from '../cel.js';
import { fromCel, planCel, toCel } from '../cel.js';

export type { JsonValue } from '../cel.js';

/** A CEL expression that could not be evaluated for one event: a permanent failure of that event. */
export class PipelineEvaluationError extends Error {
  override readonly name = 'PipelineEvaluationError';
}

export interface CompiledExpression {
  /** The spec field it came from, e.g. `spec.transform.name`. */
  readonly field: string;
  readonly source: string;
  /** Evaluates over `event` (protobuf JSON); throws PipelineEvaluationError. */
  evaluate(event: JsonValue): JsonValue;
}

/** Parses and plans `source`; a syntax error is thrown as `<field>: ...`. */
export function compileExpression(field: string, source: string): CompiledExpression {
  let run: (ctx: Record<string, unknown>) => unknown;
  try {
    run = planCel(source);
  } catch (err) {
    throw new Error(`${field}: invalid CEL ${JSON.stringify(source)}: ${(err as Error).message}`);
  }
  return {
    field,
    source,
    evaluate(event) {
      let result: unknown;
      try {
        result = run({ event: toCel(event) });
      } catch (err) {
        throw new PipelineEvaluationError(`${field} (${source}): ${(err as Error).message}`);
      }
      if (isCelError(result)) throw new PipelineEvaluationError(`${field} (${source}): ${result.message}`);
      return fromCel(result);
    },
  };
}

/** `event` for a compile-time probe: every field of `schema` present, nested messages filled in. */
export function sampleEvent(schema: DescMessage, depth = 6): JsonValue {
  const json = toJson(schema, create(schema), { alwaysEmitImplicit: true }) as Record<string, JsonValue>;
  if (depth <= 0) return json;
  for (const f of schema.fields) {
    if (f.fieldKind !== 'message' || f.oneof) continue;
    if (f.message.typeName === 'google.protobuf.Timestamp') json[f.jsonName] = '1970-01-01T00:00:00Z';
    else if (!f.message.typeName.startsWith('google.protobuf.'))
      json[f.jsonName] = sampleEvent(f.message, depth - 1);
  }
  return json;
}

/**
 * Problems a probe over a fully populated sample event reveals at compile time: only references to
 * fields the event type does not have (typos), never value-dependent errors such as an index out of range.
 */
export function probeFieldReferences(
  expr: CompiledExpression,
  sample: JsonValue,
  eventType: string,
): string[] {
  try {
    expr.evaluate(sample);
  } catch (err) {
    const m = /field not found: (\w+)/.exec((err as Error).message);
    // Only a name the expression selects (`.name`): a map lookup that misses on the sample's empty
    // values (`{'ea': 'unit'}[event.item.uom]`) is value-dependent, not a typo.
    if (m && new RegExp(`\\.${m[1]}\\b`).test(expr.source))
      return [`${expr.field}: ${eventType} has no field '${m[1]}' (${JSON.stringify(expr.source)})`];
  }
  return [];
}
