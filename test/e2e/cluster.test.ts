import { describe, expect, it } from 'vitest';
import { changed, containerPid } from './cluster.js';

const TASKS = `TASK                                                                PID      STATUS
4f1c0ab2e9d1c3f4a5b6c7d8e9f0a1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d6e7f8    31337    RUNNING
9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a2f1e0d9c8b7a6f5e4d3c2b1a0f9e8d    4242     RUNNING
`;

describe('containerPid', () => {
  it.each([
    [
      'the pid of a listed container',
      '4f1c0ab2e9d1c3f4a5b6c7d8e9f0a1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d6e7f8',
      31337,
    ],
    [
      'the pid of the second container',
      '9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a2f1e0d9c8b7a6f5e4d3c2b1a0f9e8d',
      4242,
    ],
  ])('finds %s', (_s, id, pid) => {
    expect(containerPid(TASKS, id)).toBe(pid);
  });

  it.each([
    ['a container containerd does not run', 'feedface'],
    ['the header line', 'TASK'],
  ])('refuses %s', (_s, id) => {
    expect(() => containerPid(TASKS, id)).toThrow(/is not among containerd's tasks/);
  });
});

describe('changed', () => {
  it.each([
    ['nothing when no template changed', { a: '1', b: '2' }, { a: '1', b: '2' }, []],
    ['the one whose template changed', { a: '1', b: '2' }, { a: '1', b: '3' }, ['b']],
    ['not one that is gone afterwards', { a: '1', b: '2' }, { a: '1' }, []],
    ['not one that is new afterwards', { a: '1' }, { a: '1', c: '9' }, []],
    ['several, sorted', { z: '1', a: '1' }, { z: '2', a: '2' }, ['a', 'z']],
  ])('names %s', (_s, before, after, want) => {
    expect(changed(new Map(Object.entries(before)), new Map(Object.entries(after)))).toEqual(want);
  });
});
