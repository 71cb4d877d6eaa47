import { describe, expect, it } from 'vitest';
import { needsReconcile, type WatchedChange } from './event-filter.js';

describe('a watch event', () => {
  it.each<[string, WatchedChange, boolean]>([
    ['of a new resource needs a reconcile', { event: 'add', resourceVersion: '5' }, true],
    [
      'that carries the version our own finalizer write produced needs none',
      { event: 'update', resourceVersion: '6', ownVersion: '6', signature: { before: 'a', now: 'b' } },
      false,
    ],
    [
      'of a child our apply created, showing the version the apply returned, needs none',
      { event: 'add', resourceVersion: '7', ownVersion: '7' },
      false,
    ],
    [
      'of a child someone else changed after our apply needs a reconcile',
      { event: 'update', resourceVersion: '9', ownVersion: '7' },
      true,
    ],
    [
      'of a child the Deployment controller updated (status) needs a reconcile',
      { event: 'update', resourceVersion: '12' },
      true,
    ],
    [
      'deleting a child needs a reconcile, even at the version we wrote',
      { event: 'delete', resourceVersion: '7', ownVersion: '7' },
      true,
    ],
    [
      'that changes only the status of a resource needs none',
      { event: 'update', resourceVersion: '8', signature: { before: 'g1', now: 'g1' } },
      false,
    ],
    [
      'that changes the spec of a resource (a new generation) needs a reconcile',
      { event: 'update', resourceVersion: '8', signature: { before: 'g1', now: 'g2' } },
      true,
    ],
    [
      'of a resource seen for the first time needs a reconcile',
      { event: 'add', resourceVersion: '3', signature: { before: undefined, now: 'g1' } },
      true,
    ],
  ])('%s', (_name, change, expected) => {
    expect(needsReconcile(change)).toBe(expected);
  });
});
