// CEL in o2c (connector mappings, Pipeline filters and transforms, Workflow guards): one
// environment, and the conversions between plain JSON and CEL values. Expressions are parsed and
// planned once and evaluated against protobuf JSON.
import {
  CelScalar,
  celEnv,
  celFunc,
  isCelList,
  isCelMap,
  isCelUint,
  mapType,
  parse,
  plan,
} from '@bufbuild/cel';
import { strings } from '@bufbuild/cel/ext';
import { parseDecimalNanos } from './connectors/money.js';

export type JsonValue = null | boolean | number | string | JsonValue[] | { [k: string]: JsonValue };

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

/** The one CEL environment of o2c: the standard library, the strings extension and money(). */
export const env = celEnv({ funcs: [...strings, moneyFunc] });

/** JSON → CEL values: objects become maps and integral numbers ints, so `event.x.qty + 1` works. */
export function toCel(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(toCel);
  if (v !== null && typeof v === 'object') return new Map(Object.entries(v).map(([k, x]) => [k, toCel(x)]));
  if (typeof v === 'number' && Number.isInteger(v)) return BigInt(v);
  return v;
}

/** CEL values → JSON. */
export function fromCel(v: unknown): JsonValue {
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

/** Parses and plans `source`; throws the parser's error when it does not compile. */
export function planCel(source: string): (bindings: Record<string, unknown>) => unknown {
  return plan(env, parse(source)) as unknown as (bindings: Record<string, unknown>) => unknown;
}
