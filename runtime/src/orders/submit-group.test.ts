import { create } from '@bufbuild/protobuf';
import { describe, expect, it } from 'vitest';
import { type Order, OrderSchema } from '../gen/o2c/v1/entities_pb.js';
import {
  answerSubmit,
  type StoredSubmit,
  type SubmitAnswer,
  type SubmitAttempt,
  writersOf,
} from './submit-group.js';

const anOrder = (id: string): Order => create(OrderSchema, { id });
const anAttempt = (key: string, fingerprint: string, orderId: string): SubmitAttempt => ({
  key,
  fingerprint,
  order: anOrder(orderId),
});

describe('writersOf', () => {
  it.each<[string, string[], number[]]>([
    ['an empty group writes nothing', [], []],
    ['every submit with a key of its own writes, in key order', ['k2', 'k3', 'k1'], [2, 0, 1]],
    ['of submits sharing a key only the first writes', ['k1', 'k1', 'k2', 'k1'], [0, 2]],
  ])('%s', (_sentence, keys, writers) => {
    expect(writersOf(keys.map((key) => ({ key })))).toEqual(writers);
  });
});

describe('answerSubmit', () => {
  const mine = anAttempt('k1', 'fp-a', 'ord_mine');
  it.each<[string, SubmitAttempt, StoredSubmit | undefined, SubmitAnswer]>([
    [
      'the submit whose row was inserted gets its order, created',
      mine,
      { requestHash: 'fp-a', order: mine.order },
      { kind: 'created', order: mine.order },
    ],
    [
      'a repeated key with the same request gets the order stored before, not created',
      mine,
      { requestHash: 'fp-a', order: anOrder('ord_earlier') },
      { kind: 'existing', order: anOrder('ord_earlier') },
    ],
    [
      'a repeated key with the same request in the same group gets the first submit’s order',
      anAttempt('k1', 'fp-a', 'ord_second'),
      { requestHash: 'fp-a', order: mine.order },
      { kind: 'existing', order: mine.order },
    ],
    [
      'a repeated key with a different request is a conflict naming the stored order',
      anAttempt('k1', 'fp-b', 'ord_other'),
      { requestHash: 'fp-a', order: anOrder('ord_earlier') },
      { kind: 'conflict', existingOrderId: 'ord_earlier' },
    ],
    [
      'a different request in the same group as the first one of its key is a conflict naming that order',
      anAttempt('k1', 'fp-b', 'ord_second'),
      { requestHash: 'fp-a', order: mine.order },
      { kind: 'conflict', existingOrderId: 'ord_mine' },
    ],
    ['a key with no row at all is missing', mine, undefined, { kind: 'missing' }],
  ])('%s', (_sentence, attempt, stored, answer) => {
    expect(answerSubmit(attempt, stored)).toEqual(answer);
  });
});
