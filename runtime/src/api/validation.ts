// Enforces the protovalidate rules declared in proto/ and turns violations into InvalidArgument with
// the violated field paths in the message and as buf.validate.Violations details (the first ones:
// a 500-line order with every line wrong must not produce a megabyte of error and trailers).
import { createRegistry, type DescMessage, type MessageShape } from '@bufbuild/protobuf';
import { pathToString } from '@bufbuild/protobuf/reflect';
import { createValidator, type Violation, violationsToProto } from '@bufbuild/protovalidate';
import { Code, ConnectError } from '@connectrpc/connect';
import { file_o2c_v1_rules } from '../gen/o2c/v1/rules_pb.js';
import { nativeRegexMatch } from './native-regex.js';

// The predefined rules of proto/o2c/v1/rules.proto (identifier, text) are extensions: the validator
// applies them only when it knows them. Their patterns run on the platform RegExp (native-regex.ts).
const validator = createValidator({
  registry: createRegistry(file_o2c_v1_rules),
  regexMatch: nativeRegexMatch,
});

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
  const [proto, desc] = violationsToProto(result.violations.slice(0, MAX_VIOLATIONS_IN_DETAILS));
  throw new ConnectError(describeViolations(result.violations), Code.InvalidArgument, undefined, [
    { desc, value: proto },
  ]);
}

export function invalidArgument(field: string, message: string): ConnectError {
  return new ConnectError(`${field}: ${message}`, Code.InvalidArgument);
}
