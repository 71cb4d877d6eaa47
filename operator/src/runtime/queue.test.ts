import { describe, expect, it } from 'vitest';
import { backoffDelay, WorkQueue } from './queue.js';

const tick = (ms = 5) => new Promise((r) => setTimeout(r, ms));

describe('WorkQueue', () => {
  it('deduplicates a key added while it waits', async () => {
    const q = new WorkQueue();
    const seen: string[] = [];
    q.add('a');
    q.add('a');
    q.add('b');
    q.run(async (key) => {
      seen.push(key);
      return {};
    }, 2);
    await tick(20);
    await q.shutdown();
    expect(seen.sort()).toEqual(['a', 'b']);
  });

  it('never runs one key twice at once, and runs it again when it changed meanwhile', async () => {
    const q = new WorkQueue();
    let inFlight = 0;
    let maxInFlight = 0;
    let runs = 0;
    q.run(async () => {
      inFlight++;
      runs++;
      maxInFlight = Math.max(maxInFlight, inFlight);
      await tick(20);
      inFlight--;
      return {};
    }, 4);
    q.add('a');
    await tick(5);
    q.add('a');
    q.add('a');
    await tick(80);
    await q.shutdown();
    expect(maxInFlight).toBe(1);
    expect(runs).toBe(2);
  });

  it('retries a failing key with growing delays', async () => {
    const q = new WorkQueue({ baseMs: 10, maxMs: 1000 });
    const at: number[] = [];
    q.run(async () => {
      at.push(Date.now());
      if (at.length < 3) throw new Error('boom');
      return {};
    }, 1);
    q.add('a');
    await tick(150);
    await q.shutdown();
    expect(at).toHaveLength(3);
    expect(at[2]! - at[1]!).toBeGreaterThanOrEqual(at[1]! - at[0]!);
  });

  it.each([
    [1, 200],
    [2, 400],
    [5, 3200],
    [20, 60_000],
  ])('waits %i failures -> %i ms (capped)', (failures, ms) => {
    expect(backoffDelay(failures, { baseMs: 200, maxMs: 60_000 })).toBe(ms);
  });
});
