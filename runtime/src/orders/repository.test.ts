import { describe, expect, it } from 'vitest';
import { roundsOfDistinctIds } from './repository.js';

describe('roundsOfDistinctIds', () => {
  it.each<[string, string[], number[][]]>([
    ['no orders need no statement', [], []],
    ['distinct orders are written in one round', ['a', 'b', 'c'], [[0, 1, 2]]],
    [
      "an order listed twice has its second change in the next round, after the first one's",
      ['a', 'b', 'a'],
      [[0, 1], [2]],
    ],
    [
      'an order listed three times takes three rounds, each in list order',
      ['a', 'a', 'b', 'a', 'b'],
      [[0, 2], [1, 4], [3]],
    ],
  ])('%s', (_sentence, ids, rounds) => {
    expect(roundsOfDistinctIds(ids)).toEqual(rounds);
  });
});
