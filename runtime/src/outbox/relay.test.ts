import { describe, expect, it } from 'vitest';
import { REPLY_TYPE, replyRoutingKey } from '../bus/addressing.js';
import { ConnectionLostError, PublishNackedError, UnroutableError } from '../bus/errors.js';
import { afterFailedPublish } from './relay.js';

const toWorkflow = replyRoutingKey({ namespace: 'shop', kind: 'workflow', name: 'distributor' });
const toReplica = replyRoutingKey({ namespace: 'shop', kind: 'pipeline', name: 'feed' }, 'ab12');
const event = 'shop.workflow.distributor.o2c.v1.OrderSubmitted';
const command = 'shop.erp';
const unroutable = (key: string) => new UnroutableError('o2c.events', key, 'm-1', 'NO_ROUTE');

describe('afterFailedPublish', () => {
  it.each([
    ['a reply whose Workflow is gone is dropped', toWorkflow, unroutable(toWorkflow), 'drop'],
    ['a reply whose Pipeline replica is gone is dropped', toReplica, unroutable(toReplica), 'drop'],
    ['a reply to a command that named no reply-to is dropped', REPLY_TYPE, unroutable(REPLY_TYPE), 'drop'],
    ['an unroutable event is retried (its queues are not declared yet)', event, unroutable(event), 'retry'],
    [
      'an unroutable command is retried (its Connector is not declared yet)',
      command,
      unroutable(command),
      'retry',
    ],
    ['a nacked reply is retried', toWorkflow, new PublishNackedError('m-1'), 'retry'],
    ['a reply that lost its connection is retried', toWorkflow, new ConnectionLostError('gone'), 'retry'],
  ])('%s', (_sentence, routingKey, error, outcome) => {
    expect(afterFailedPublish({ routingKey }, error)).toBe(outcome);
  });
});
