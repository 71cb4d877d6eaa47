import { describe, expect, it } from 'vitest';
import {
  addressOfSource,
  commandRoutingKey,
  EVENT_LOG_BINDING_KEYS,
  eventBindingKey,
  eventLogTakes,
  eventRoutingKey,
  isReplyRoutingKey,
  kindOf,
  queueName,
  REPLY_TYPE,
  replyRoutingKey,
  sourceOf,
  topicMatches,
} from './addressing.js';

const wfA = sourceOf({ namespace: 'shop-a', kind: 'workflow', name: 'distributor' });
const erpA = sourceOf({ namespace: 'shop-a', kind: 'connector', name: 'erp' });
const erpB = sourceOf({ namespace: 'shop-b', kind: 'connector', name: 'erp' });
const SHIPPED = 'o2c.v1.ShipmentDispatched';

describe('addressing', () => {
  it.each([
    [
      'a Workflow queue carries the kind',
      queueName('shop', 'workflow', 'distributor', 'orders'),
      'o2c.shop.workflow.distributor.orders',
    ],
    [
      'a Pipeline queue carries the kind',
      queueName('shop', 'pipeline', 'distributor', 'events'),
      'o2c.shop.pipeline.distributor.events',
    ],
    [
      'a Connector queue carries the kind',
      queueName('shop', 'connector', 'erp', 'commands'),
      'o2c.shop.connector.erp.commands',
    ],
    ['an event is keyed by its publisher', eventRoutingKey(erpA, SHIPPED), `shop-a.connector.erp.${SHIPPED}`],
    [
      'an order event by its Workflow',
      eventRoutingKey(wfA, 'o2c.v1.OrderSubmitted'),
      'shop-a.workflow.distributor.o2c.v1.OrderSubmitted',
    ],
    [
      'a Workflow reply-to names kind and name',
      replyRoutingKey({ namespace: 'shop', kind: 'workflow', name: 'd' }),
      'o2c.v1.ConnectorReply.shop.workflow.d',
    ],
    [
      'a Pipeline replica reply-to adds its instance',
      replyRoutingKey({ namespace: 'shop', kind: 'pipeline', name: 'd' }, 'ab12'),
      'o2c.v1.ConnectorReply.shop.pipeline.d.ab12',
    ],
    ['a command key names namespace and Connector', commandRoutingKey('shop', 'erp'), 'shop.erp'],
    ['a Kubernetes kind is a bus kind', kindOf('Pipeline'), 'pipeline'],
  ])('%s', (_sentence, actual, expected) => {
    expect(actual).toBe(expected);
  });

  it.each([
    [
      'a Workflow takes its own orders',
      eventBindingKey('shop-a', 'workflow', 'distributor', 'o2c.v1.OrderSubmitted'),
      eventRoutingKey(wfA, 'o2c.v1.OrderSubmitted'),
      true,
    ],
    [
      'a Workflow of the same name elsewhere does not',
      eventBindingKey('shop-b', 'workflow', 'distributor', 'o2c.v1.OrderSubmitted'),
      eventRoutingKey(wfA, 'o2c.v1.OrderSubmitted'),
      false,
    ],
    [
      'another Workflow of the namespace does not',
      eventBindingKey('shop-a', 'workflow', 'other', 'o2c.v1.OrderSubmitted'),
      eventRoutingKey(wfA, 'o2c.v1.OrderSubmitted'),
      false,
    ],
    [
      'an await takes any Connector of its namespace',
      eventBindingKey('shop-a', 'connector', undefined, SHIPPED),
      eventRoutingKey(erpA, SHIPPED),
      true,
    ],
    [
      'an await takes a dotted Connector name',
      eventBindingKey('shop-a', 'connector', undefined, SHIPPED),
      eventRoutingKey(sourceOf({ namespace: 'shop-a', kind: 'connector', name: 'erp.eu' }), SHIPPED),
      true,
    ],
    [
      'an await never takes another namespace',
      eventBindingKey('shop-a', 'connector', undefined, SHIPPED),
      eventRoutingKey(erpB, SHIPPED),
      false,
    ],
    [
      'an await never takes another type',
      eventBindingKey('shop-a', 'connector', undefined, SHIPPED),
      eventRoutingKey(erpA, 'o2c.v1.PaymentReceived'),
      false,
    ],
    [
      'an await never takes a Workflow event',
      eventBindingKey('shop-a', 'connector', undefined, SHIPPED),
      eventRoutingKey(wfA, SHIPPED),
      false,
    ],
    [
      'a Pipeline takes its source Connector',
      eventBindingKey('shop-a', 'connector', 'erp', SHIPPED),
      eventRoutingKey(erpA, SHIPPED),
      true,
    ],
    [
      'a Pipeline skips another Connector',
      eventBindingKey('shop-a', 'connector', 'wms', SHIPPED),
      eventRoutingKey(erpA, SHIPPED),
      false,
    ],
    [
      'a Workflow reply binding skips a same-named Pipeline replica',
      replyRoutingKey({ namespace: 'shop-a', kind: 'workflow', name: 'd' }),
      replyRoutingKey({ namespace: 'shop-a', kind: 'pipeline', name: 'd' }, 'ab'),
      false,
    ],
  ])('%s', (_sentence, binding, key, matches) => {
    expect(topicMatches(binding, key)).toBe(matches);
  });

  const pipelineA = sourceOf({ namespace: 'shop-a', kind: 'pipeline', name: 'distributor' });
  it.each([
    ['takes an order event of a Workflow', eventRoutingKey(wfA, 'o2c.v1.OrderSubmitted'), true],
    ['takes an event a Connector originates', eventRoutingKey(erpA, SHIPPED), true],
    [
      'takes an event of a Connector with a dotted name',
      eventRoutingKey(sourceOf({ namespace: 'shop-a', kind: 'connector', name: 'erp.eu' }), SHIPPED),
      true,
    ],
    ['takes an event a Pipeline publishes', eventRoutingKey(pipelineA, 'o2c.v1.DeliveryFailed'), true],
    [
      'takes an event of a namespace called o2c',
      eventRoutingKey(sourceOf({ namespace: 'o2c', kind: 'workflow', name: 'v1' }), 'o2c.v1.OrderSubmitted'),
      true,
    ],
    [
      'leaves a reply to a Workflow',
      replyRoutingKey({ namespace: 'shop-a', kind: 'workflow', name: 'd' }),
      false,
    ],
    [
      'leaves a reply to a Pipeline replica',
      replyRoutingKey({ namespace: 'shop-a', kind: 'pipeline', name: 'd' }, 'ab12'),
      false,
    ],
    [
      'leaves a reply to a namespace called o2c',
      replyRoutingKey({ namespace: 'o2c', kind: 'connector', name: 'workflow' }),
      false,
    ],
    ['leaves a reply to a command that named no reply-to', REPLY_TYPE, false],
    ['leaves a command key', 'shop-a.erp', false],
  ])('the event log %s', (_sentence, key, logged) => {
    expect(eventLogTakes(key)).toBe(logged);
    expect(isReplyRoutingKey(key)).toBe(!logged && key !== 'shop-a.erp');
  });

  it('binds the event log once per resource kind, never with a bare #', () => {
    expect(EVENT_LOG_BINDING_KEYS).toEqual(['*.connector.#', '*.pipeline.#', '*.workflow.#']);
  });

  it.each([
    ['a namespace with a dot', () => queueName('a.b', 'workflow', 'w', 'orders'), /namespace/],
    ['an upper-case name', () => queueName('shop', 'workflow', 'W', 'orders'), /name/],
    ['an unknown kind', () => kindOf('Secret'), /no queues/],
    ['a source that names no resource', () => eventRoutingKey('api', SHIPPED), /names no resource/],
  ])('refuses %s', (_sentence, fn, error) => {
    expect(fn).toThrow(error);
  });

  it('reads back the address a source names', () => {
    expect(addressOfSource(erpA)).toEqual({ namespace: 'shop-a', kind: 'connector', name: 'erp' });
    expect(addressOfSource('o2c/shop/secret/x')).toBeUndefined();
  });
});
