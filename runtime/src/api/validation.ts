// Enforces the protovalidate rules declared in proto/ and turns violations into InvalidArgument with
// every violated field path in the message and as buf.validate.Violations details.
import { createRegistry, type DescMessage, type MessageShape } from '@bufbuild/protobuf';
import { pathToString } from '@bufbuild/protobuf/reflect';
import { createValidator, type Violation, violationsToProto } from '@bufbuild/protovalidate';
import { Code, ConnectError } from '@connectrpc/connect';
import { file_o2c_v1_rules } from '../gen/o2c/v1/rules_pb.js';

// The predefined rules of proto/o2c/v1/rules.proto (identifier, text) are extensions: the validator
// applies them only when it knows them.
const validator = createValidator({ registry: createRegistry(file_o2c_v1_rules) });

export function violationPath(v: Violation): string {
  return pathToString(v.field);
}

export function describeViolations(violations: Violation[]): string {
  return violations.map((v) => `${violationPath(v)}: ${v.message}`).join('; ');
}

/** Throws InvalidArgument when `message` breaks a rule of its schema. */
export function assertValid<Desc extends DescMessage>(schema: Desc, message: MessageShape<Desc>): void {
  const result = validator.validate(schema, message);
  if (result.kind === 'valid') return;
  if (result.kind === 'error')
    throw new ConnectError(`validation could not run: ${result.error.message}`, Code.Internal);
  const [proto, desc] = violationsToProto(result.violations);
  throw new ConnectError(describeViolations(result.violations), Code.InvalidArgument, undefined, [
    { desc, value: proto },
  ]);
}

export function invalidArgument(field: string, message: string): ConnectError {
  return new ConnectError(`${field}: ${message}`, Code.InvalidArgument);
}
