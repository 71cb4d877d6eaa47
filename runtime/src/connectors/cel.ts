// CEL for request/response mapping: expressions are parsed and planned once, evaluated against plain
// JSON (protobuf JSON of the request, the parsed response body). Integers are CEL ints, so
// `request.lines[0].quantity * 2` works as written.
import { isCelError } from '@bufbuild/cel';
import { fromCel, type JsonValue, planCel, toCel } from '../cel.js';

export type { JsonValue } from '../cel.js';

export class CelMappingError extends Error {
  override readonly name = 'CelMappingError';
}

/** Compiles `expr` (syntax errors surface here, at start-up); the result evaluates it to JSON. */
export function compileCel(expr: string, what: string): (vars: Record<string, unknown>) => JsonValue {
  let evaluate: (ctx: Record<string, unknown>) => unknown;
  try {
    evaluate = planCel(expr);
  } catch (err) {
    throw new CelMappingError(`${what}: invalid CEL ${JSON.stringify(expr)}: ${(err as Error).message}`);
  }
  return (vars) => {
    const bindings: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(vars)) bindings[k] = toCel(v);
    const result = evaluate(bindings);
    if (isCelError(result)) throw new CelMappingError(`${what}: ${result.message}`);
    return fromCel(result);
  };
}
