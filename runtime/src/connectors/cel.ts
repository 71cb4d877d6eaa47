// CEL for request/response mapping: expressions are parsed and planned once, evaluated against plain
// JSON (protobuf JSON of the request, the parsed response body). Integers are CEL ints, so
// `request.lines[0].quantity * 2` works as written.
import {
  CelScalar,
  celEnv,
  celFunc,
  isCelError,
  isCelList,
  isCelMap,
  isCelUint,
  mapType,
  parse,
  plan,
} from '@bufbuild/cel';
import { strings } from '@bufbuild/cel/ext';
import { parseDecimalNanos } from './money.js';

export type JsonValue = null | boolean | number | string | JsonValue[] | { [k: string]: JsonValue };

export class CelMappingError extends Error {
  override readonly name = 'CelMappingError';
}

/**
 * `money("USD", "7.50")` → an o2c.v1.Money in protobuf JSON ({currencyCode, units, nanos}), so
 * mappings never go through floating point.
 */
const moneyFunc = celFunc(
  'money',
  [CelScalar.STRING, CelScalar.STRING],
  mapType(CelScalar.STRING, CelScalar.DYN),
  (currency, decimal) => {
    const nanos = parseDecimalNanos(decimal);
    return new Map<string, unknown>([
      ['currencyCode', currency],
      ['units', (nanos / 1_000_000_000n).toString()],
      ['nanos', nanos % 1_000_000_000n],
    ]) as never;
  },
);

const env = celEnv({ funcs: [...strings, moneyFunc] });

function toCel(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(toCel);
  if (v !== null && typeof v === 'object') return new Map(Object.entries(v).map(([k, x]) => [k, toCel(x)]));
  if (typeof v === 'number' && Number.isInteger(v)) return BigInt(v);
  return v;
}

function fromCel(v: unknown): JsonValue {
  if (typeof v === 'bigint') return Number.isSafeInteger(Number(v)) ? Number(v) : v.toString();
  if (isCelUint(v)) return fromCel(v.value);
  if (isCelMap(v)) {
    const out: Record<string, JsonValue> = {};
    for (const [k, x] of v) out[String(k)] = fromCel(x);
    return out;
  }
  if (isCelList(v)) return [...v].map(fromCel);
  if (v instanceof Uint8Array) return Buffer.from(v).toString('base64');
  if (v === undefined) return null;
  if (typeof v === 'object' && v !== null) return String(v);
  return v as JsonValue;
}

/** Compiles `expr` (syntax errors surface here, at start-up); the result evaluates it to JSON. */
export function compileCel(expr: string, what: string): (vars: Record<string, unknown>) => JsonValue {
  let evaluate: (ctx: Record<string, unknown>) => unknown;
  try {
    evaluate = plan(env, parse(expr)) as unknown as (ctx: Record<string, unknown>) => unknown;
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
