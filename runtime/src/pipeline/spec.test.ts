import { create, toJson } from '@bufbuild/protobuf';
import { describe, expect, it } from 'vitest';
import { ItemSchema } from '../gen/o2c/v1/entities_pb.js';
import { PipelineEvaluationError } from './cel.js';
import { buildSinkRequest } from './sink.js';
import { compilePipelineSpec, type PipelineSpec, validatePipelineSpec } from './spec.js';

const aPipeline = (change: Partial<PipelineSpec> = {}): PipelineSpec => ({
  source: { connector: 'erp', events: ['o2c.v1.ItemUpserted'] },
  filter: 'event.item.active',
  transform: { name: 'event.item.name.upperAscii()', list_price: 'event.item.listPrice' },
  sink: { connector: 'crm', operation: 'UpsertItem' },
  delivery: { orderingKey: 'event.item.sku' },
  ...change,
});

describe('validatePipelineSpec', () => {
  it.each([
    ['the reference pipeline is valid', {}, []],
    ['a filter that does not parse names spec.filter', { filter: 'event.item.active &&' }, ['spec.filter:']],
    [
      'a misspelt event field names the field',
      { filter: 'event.item.activ' },
      ["spec.filter: o2c.v1.ItemUpserted has no field 'activ'"],
    ],
    [
      'a transform target the Item lacks names it',
      { transform: { product_code: 'event.item.sku' } },
      ['spec.transform.product_code: o2c.v1.Item has no field'],
    ],
    [
      'an unknown event type names its index',
      { source: { connector: 'erp', events: ['o2c.v1.Nope'] } },
      ['spec.source.events[0]:'],
    ],
    [
      'an event without the entity and no transform is refused',
      {
        source: { connector: 'erp', events: ['o2c.v1.PriceChanged'] },
        transform: undefined,
        filter: undefined,
        delivery: { orderingKey: 'event.price.sku' },
      },
      ['spec.sink.operation: o2c.v1.PriceChanged carries no o2c.v1.Item'],
    ],
    [
      'a lookup table is not mistaken for a typo',
      { transform: { uom: `{'ea': 'unit'}[event.item.uom]` } },
      [],
    ],
  ])('%s', (_, change, expected) => {
    const problems = validatePipelineSpec(aPipeline(change as Partial<PipelineSpec>));
    expect(problems).toHaveLength(expected.length);
    for (const [i, prefix] of expected.entries()) expect(problems[i]).toContain(prefix);
  });
});

describe('buildSinkRequest', () => {
  const pipeline = compilePipelineSpec(aPipeline());
  const item = toJson(ItemSchema, create(ItemSchema, { sku: 'A', name: 'x', uom: 'kg', active: true }));

  it('lays the transform results over the event entity by JSON name', () => {
    const req = buildSinkRequest(pipeline.target, item, { name: 'X', description: 'd' });
    expect(req.case).toBe('upsertItem');
    expect(req.value).toMatchObject({ item: { sku: 'A', name: 'X', description: 'd', uom: 'kg' } });
  });

  it('refuses a value of the wrong type as an evaluation error', () => {
    expect(() => buildSinkRequest(pipeline.target, item, { active: 'yes' })).toThrow(PipelineEvaluationError);
  });
});
