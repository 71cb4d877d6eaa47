import { describe, expect, it } from 'vitest';
import { GroupCommit, nextGroupSize, type Outcome } from './group-commit.js';

describe('nextGroupSize', () => {
  it.each<[string, { queued: number; inFlight: boolean; maxGroupSize: number }, number]>([
    ['nothing queued commits nothing', { queued: 0, inFlight: false, maxGroupSize: 64 }, 0],
    [
      'a lone caller on an idle store commits at once, alone',
      { queued: 1, inFlight: false, maxGroupSize: 64 },
      1,
    ],
    [
      'callers queued behind a commit in flight wait for it',
      { queued: 40, inFlight: true, maxGroupSize: 64 },
      0,
    ],
    [
      'when the commit in flight ends, everything queued goes together',
      { queued: 40, inFlight: false, maxGroupSize: 64 },
      40,
    ],
    [
      'a queue longer than the maximum sends the maximum, the rest wait',
      { queued: 300, inFlight: false, maxGroupSize: 64 },
      64,
    ],
    ['a maximum below one still lets one caller through', { queued: 3, inFlight: false, maxGroupSize: 0 }, 1],
  ])('%s', (_sentence, state, size) => {
    expect(nextGroupSize(state)).toBe(size);
  });
});

describe('GroupCommit', () => {
  /** A commit that records its groups and waits until the test lets it finish. */
  function gatedCommit() {
    const groups: number[][] = [];
    const gates: (() => void)[] = [];
    const commit = async (items: number[]): Promise<Outcome<string>[]> => {
      groups.push(items);
      await new Promise<void>((release) => gates.push(release));
      return items.map((n) =>
        n < 0 ? { ok: false, error: new Error(`bad ${n}`) } : { ok: true, value: `ok ${n}` },
      );
    };
    const releaseNext = async () => {
      while (gates.length === 0) await new Promise((r) => setImmediate(r));
      gates.shift()?.();
    };
    return { groups, commit, releaseNext };
  }

  const nextTurn = () => new Promise((r) => setImmediate(r));

  it('commits the callers of one event-loop turn together and everyone who came meanwhile in the next group, each with its own answer', async () => {
    const { groups, commit, releaseNext } = gatedCommit();
    const gc = new GroupCommit(commit, { maxGroupSize: 10 });
    const first = Promise.all([gc.run(1), gc.run(5)]);
    await nextTurn();
    const rest = [2, -3, 4].map((n) => gc.run(n).catch((e: Error) => e.message));
    expect(gc.queued).toBe(3);
    await releaseNext();
    expect(await first).toEqual(['ok 1', 'ok 5']);
    await releaseNext();
    expect(await Promise.all(rest)).toEqual(['ok 2', 'bad -3', 'ok 4']);
    expect(groups).toEqual([
      [1, 5],
      [2, -3, 4],
    ]);
  });

  it('never answers a caller before its own group has committed', async () => {
    const { commit, releaseNext } = gatedCommit();
    const gc = new GroupCommit(commit, { maxGroupSize: 10 });
    void gc.run(1);
    await nextTurn();
    let answered = false;
    const second = gc.run(2).then(() => {
      answered = true;
    });
    await releaseNext();
    await new Promise((r) => setImmediate(r));
    expect(answered).toBe(false);
    await releaseNext();
    await second;
    expect(answered).toBe(true);
  });

  it('splits a long queue into groups of at most the maximum, in arrival order', async () => {
    const { groups, commit, releaseNext } = gatedCommit();
    const gc = new GroupCommit(commit, { maxGroupSize: 2 });
    const all = [1, 2, 3, 4, 5].map((n) => gc.run(n));
    for (let i = 0; i < 3; i++) await releaseNext();
    await Promise.all(all);
    expect(groups).toEqual([[1, 2], [3, 4], [5]]);
  });

  it('fails every caller of a group whose commit throws, and goes on with the next group', async () => {
    let calls = 0;
    const gc = new GroupCommit<number, number>(
      async (items) => {
        calls++;
        if (calls === 2) throw new Error('store down');
        return items.map((n) => ({ ok: true, value: n }));
      },
      { maxGroupSize: 10 },
    );
    const first = gc.run(1);
    await nextTurn();
    const second = [gc.run(2), gc.run(3)].map((p) => p.catch((e: Error) => e.message));
    expect(await first).toBe(1);
    expect(await Promise.all(second)).toEqual(['store down', 'store down']);
    expect(await gc.run(4)).toBe(4);
  });

  it('fails the callers queued behind a group that found the store unreachable with the same error at once', async () => {
    const unreachable = new Error('unreachable');
    let release: () => void = () => {};
    const gc = new GroupCommit<number, number>(
      async (items) => {
        if (items[0] === 1) {
          await new Promise<void>((r) => {
            release = r;
          });
          throw unreachable;
        }
        return items.map((n) => ({ ok: true, value: n }));
      },
      { maxGroupSize: 10, failsQueued: (e) => e === unreachable },
    );
    const first = gc.run(1).catch((e: Error) => e.message);
    await nextTurn();
    const all = [first, ...[2, 3].map((n) => gc.run(n).catch((e: Error) => e.message))];
    await nextTurn();
    release();
    expect(await Promise.all(all)).toEqual(['unreachable', 'unreachable', 'unreachable']);
    expect(gc.queued).toBe(0);
    expect(await gc.run(4)).toBe(4);
  });
});
