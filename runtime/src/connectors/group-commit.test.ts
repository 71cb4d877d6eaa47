import { setImmediate as nextTurn } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import { GroupCommit } from './group-commit.js';

/** A flush that records each group it was given and can be held open or made to fail. */
function recorder(opts: { maxItems?: number; failOn?: number } = {}) {
  const groups: number[][] = [];
  let release: () => void = () => {};
  let held: Promise<void> | undefined;
  const commit = new GroupCommit<number, string>(async (items) => {
    groups.push(items);
    if (held) await held;
    if (opts.failOn !== undefined && items.includes(opts.failOn)) throw new Error(`flush of ${opts.failOn}`);
    return items.map((i) => `done ${i}`);
  }, opts.maxItems);
  return {
    commit,
    groups,
    hold() {
      held = new Promise<void>((r) => {
        release = r;
      });
    },
    release() {
      held = undefined;
      release();
    },
  };
}

describe('GroupCommit', () => {
  it.each([
    {
      sentence: 'items submitted in one turn are flushed together',
      items: [1, 2, 3],
      max: 10,
      groups: [[1, 2, 3]],
    },
    { sentence: 'a lone item is flushed by itself', items: [7], max: 10, groups: [[7]] },
    {
      sentence: 'no flush takes more than maxItems',
      items: [1, 2, 3, 4, 5],
      max: 2,
      groups: [[1, 2], [3, 4], [5]],
    },
  ])('$sentence', async ({ items, max, groups }) => {
    const r = recorder({ maxItems: max });
    const results = await Promise.all(items.map((i) => r.commit.submit(i)));
    expect(results).toEqual(items.map((i) => `done ${i}`));
    expect(r.groups).toEqual(groups);
  });

  it('items submitted while a flush runs go together in the next flush', async () => {
    const r = recorder();
    r.hold();
    const first = r.commit.submit(1);
    await nextTurn();
    expect(r.groups).toEqual([[1]]);
    const later = [r.commit.submit(2), r.commit.submit(3)];
    await nextTurn();
    expect(r.groups, 'nothing flushes beside a running flush').toEqual([[1]]);
    r.release();
    expect(await Promise.all([first, ...later])).toEqual(['done 1', 'done 2', 'done 3']);
    expect(r.groups).toEqual([[1], [2, 3]]);
  });

  it('a flush that throws rejects every item of it, and the next flush still runs', async () => {
    const r = recorder({ failOn: 2 });
    r.hold();
    const first = r.commit.submit(1);
    await nextTurn();
    const failing = [r.commit.submit(2), r.commit.submit(3)];
    r.release();
    expect(await first).toBe('done 1');
    for (const p of failing) await expect(p).rejects.toThrow('flush of 2');
    expect(await r.commit.submit(4)).toBe('done 4');
    await r.commit.idle();
    expect(r.commit.waiting).toBe(0);
  });
});
