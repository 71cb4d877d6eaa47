// Money arithmetic on o2c.v1.Money in integer nano units (never floats), for drivers and simulators.
import { create } from '@bufbuild/protobuf';
import { type Money, MoneySchema } from '../gen/o2c/v1/common_pb.js';

const NANO = 1_000_000_000n;

export function toNanos(m: Money | undefined): bigint {
  if (!m) return 0n;
  return m.units * NANO + BigInt(m.nanos);
}

export function fromNanos(currencyCode: string, nanos: bigint): Money {
  return create(MoneySchema, { currencyCode, units: nanos / NANO, nanos: Number(nanos % NANO) });
}

/** Parses a decimal string such as "12.5" or "-0.0825" into nano units. */
export function parseDecimalNanos(value: string): bigint {
  const m = /^(-)?(\d+)(?:\.(\d{1,9}))?$/.exec(value.trim());
  if (!m) throw new Error(`not a decimal amount: ${JSON.stringify(value)}`);
  const nanos = BigInt(m[2] ?? '0') * NANO + BigInt((m[3] ?? '').padEnd(9, '0'));
  return m[1] ? -nanos : nanos;
}

export function money(currencyCode: string, decimal: string): Money {
  return fromNanos(currencyCode, parseDecimalNanos(decimal));
}

/** A decimal string with the given number of fraction digits (half away from zero). */
export function formatDecimal(m: Money | undefined, digits = 2): string {
  const nanos = roundNanos(toNanos(m), digits);
  const neg = nanos < 0n;
  const abs = neg ? -nanos : nanos;
  const units = abs / NANO;
  const frac = (abs % NANO).toString().padStart(9, '0').slice(0, digits);
  return `${neg ? '-' : ''}${units}${digits > 0 ? `.${frac}` : ''}`;
}

/** Rounds nano units to `digits` fraction digits, half away from zero. */
export function roundNanos(nanos: bigint, digits = 2): bigint {
  const step = 10n ** BigInt(9 - digits);
  const half = step / 2n;
  const abs = nanos < 0n ? -nanos : nanos;
  const rounded = ((abs + half) / step) * step;
  return nanos < 0n ? -rounded : rounded;
}

/** amount × rate (a decimal string), rounded to cents. */
export function multiplyRate(nanos: bigint, rate: string, digits = 2): bigint {
  return roundNanos((nanos * parseDecimalNanos(rate)) / NANO, digits);
}

export function formatNanos(nanos: bigint, digits = 2): string {
  return formatDecimal(fromNanos('XXX', nanos), digits);
}
