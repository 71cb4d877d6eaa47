import { describe, expect, it } from 'vitest';
import { childNameOf, fitName, MAX_CHILD_NAME } from './names.js';

const fifty = 'a'.repeat(50);

describe('child names', () => {
  it.each([
    ['a short name stays readable', 'connector', 'erp', undefined, 'o2c-connector-erp'],
    ['a short name with a suffix', 'workflow', 'distributor', 'data', 'o2c-workflow-distributor-data'],
  ] as const)('%s', (_n, role, name, suffix, expected) => {
    expect(childNameOf(role, name, suffix)).toBe(expected);
  });

  it.each([
    ['a 50-character Connector name', 'connector', fifty, undefined],
    ['a 50-character Pipeline name', 'pipeline', fifty, undefined],
    ['a 50-character Workflow name with the data suffix', 'workflow', fifty, 'data'],
    ['a name ending in dashes where it is cut', 'connector', `${'a'.repeat(44)}------`, 'conn'],
  ] as const)('%s fits a DNS-1035 label, ends in its suffix, and is stable', (_n, role, name, suffix) => {
    const child = childNameOf(role, name, suffix);
    expect(child.length).toBeLessThanOrEqual(MAX_CHILD_NAME);
    expect(child).toMatch(/^[a-z]([-a-z0-9]*[a-z0-9])?$/);
    if (suffix) expect(child.endsWith(`-${suffix}`)).toBe(true);
    expect(childNameOf(role, name, suffix)).toBe(child);
  });

  it('two long names that share the first 50 characters get different children', () => {
    expect(childNameOf('connector', `${fifty}x`)).not.toBe(childNameOf('connector', `${fifty}y`));
  });

  it('two long Secret volume names that share a prefix stay apart', () => {
    const a = fitName(`secret-${'s'.repeat(60)}-a`);
    const b = fitName(`secret-${'s'.repeat(60)}-b`);
    expect(a).not.toBe(b);
    expect(a.length).toBeLessThanOrEqual(MAX_CHILD_NAME);
  });
});
