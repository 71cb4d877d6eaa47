// Enforces the protovalidate rules declared in proto/ and turns violations into InvalidArgument with
// the violated field paths in the message and as buf.validate.Violations details (the first ones:
// a 500-line order with every line wrong must not produce a megabyte of error and trailers).
import { createRegistry, type DescMessage, type MessageShape } from '@bufbuild/protobuf';
import { pathToString } from '@bufbuild/protobuf/reflect';
import { createValidator, Violation, violationsToProto } from '@bufbuild/protovalidate';
import { Code, ConnectError } from '@connectrpc/connect';
import { file_o2c_v1_rules, identifier, text } from '../gen/o2c/v1/rules_pb.js';
import { nativeRegexMatch } from './native-regex.js';

// The predefined rules of proto/o2c/v1/rules.proto (identifier, text) are extensions: the validator
// applies them only when it knows them. Every schema pattern, string.pattern and CEL matches() alike,
// runs on the platform RegExp (native-regex.ts).
const validator = createValidator({
  registry: createRegistry(file_o2c_v1_rules),
  regexMatch: nativeRegexMatch,
});

/**
 * o2c's named string rules as proto/ writes them where a field's string.pattern is free: a pattern,
 * which protovalidate checks natively, in place of the predefined CEL rule of
 * proto/o2c/v1/rules.proto (same acceptance; the tests hold each pattern to its rule's expression).
 * A violation of one is reported with the predefined rule's id, message and rule path, as before.
 */
export const NAMED_PATTERNS = [
  {
    rule: identifier,
    ruleId: 'string.identifier',
    pattern: '^[^\\x00-\\x1F\\x7F-\\x9F]*$',
    message: 'must not contain control characters (such as NUL, tab or newline)',
  },
  {
    rule: text,
    ruleId: 'string.text',
    pattern: '^[^\\x00-\\x08\\x0B\\x0C\\x0E-\\x1F\\x7F]*$',
    message: 'must not contain control characters other than tab and newline (such as NUL)',
  },
] as const;

/** protovalidate's message for a string.pattern violation, per pattern, to the named rule. */
const namedByPatternMessage = new Map<string, (typeof NAMED_PATTERNS)[number]>(
  NAMED_PATTERNS.map((r) => [`does not match regex pattern \`${r.pattern}\``, r]),
);

/** `v` as its named rule when it is the violation of a named pattern; otherwise `v`. */
export function nameViolation(v: Violation): Violation {
  const named = v.ruleId === 'string.pattern' ? namedByPatternMessage.get(v.message) : undefined;
  if (!named) return v;
  return new Violation(named.message, named.ruleId, v.field, [...v.rule.slice(0, -1), named.rule], v.forKey);
}

/** A header token o2c accepts from clients (idempotency key, request id): printable ASCII, no spaces. */
export const PRINTABLE_TOKEN = /^[\x21-\x7e]{1,128}$/;

export function violationPath(v: Violation): string {
  return pathToString(v.field);
}

/** Violations named in the error message; the rest are counted. */
export const MAX_VIOLATIONS_IN_MESSAGE = 10;
/** Violations carried as error details. */
export const MAX_VIOLATIONS_IN_DETAILS = 50;

export function describeViolations(violations: Violation[]): string {
  const named = violations
    .slice(0, MAX_VIOLATIONS_IN_MESSAGE)
    .map((v) => `${violationPath(v)}: ${v.message}`);
  const more = violations.length - named.length;
  return more > 0 ? `${named.join('; ')}; and ${more} more` : named.join('; ');
}

/** Throws InvalidArgument when `message` breaks a rule of its schema. */
export function assertValid<Desc extends DescMessage>(schema: Desc, message: MessageShape<Desc>): void {
  const result = validator.validate(schema, message);
  if (result.kind === 'valid') return;
  if (result.kind === 'error')
    throw new ConnectError(`validation could not run: ${result.error.message}`, Code.Internal);
  const violations = result.violations.map(nameViolation);
  const [proto, desc] = violationsToProto(violations.slice(0, MAX_VIOLATIONS_IN_DETAILS));
  throw new ConnectError(describeViolations(violations), Code.InvalidArgument, undefined, [
    { desc, value: proto },
  ]);
}

export function invalidArgument(field: string, message: string): ConnectError {
  return new ConnectError(`${field}: ${message}`, Code.InvalidArgument);
}
