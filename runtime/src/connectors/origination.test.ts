import { describe, expect, it } from 'vitest';
import { originatedEventId } from './origination.js';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-8[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

describe('the id of an event a connector originates', () => {
  it.each([
    ['the same fact from the same connector is the same message id', 'c/erp', 'k1', 'c/erp', 'k1', true],
    ['another fact is another message', 'c/erp', 'k1', 'c/erp', 'k2', false],
    ['the same key from another connector is another message', 'c/erp', 'k1', 'c/wms', 'k1', false],
    ['source and key do not run into each other', 'c/erp', 'k1', 'c/erpk', '1', false],
  ])('%s', (_name, s1, k1, s2, k2, same) => {
    const a = originatedEventId(s1, k1);
    expect(a).toMatch(UUID);
    expect(a === originatedEventId(s2, k2)).toBe(same);
  });
});
