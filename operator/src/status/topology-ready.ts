// TopologyReady: the broker answered and the resource's queues exist.
import type { ComputedCondition } from './condition.js';

export const TopologyReason = {
  Declared: 'QueuesDeclared',
  BrokerUnreachable: 'BrokerUnreachable',
} as const;

export function topologyReady(result: { queues: readonly string[] } | { error: string }): ComputedCondition {
  const type = 'TopologyReady';
  if ('error' in result) {
    return {
      type,
      status: 'False',
      reason: TopologyReason.BrokerUnreachable,
      message: `Could not declare the RabbitMQ queues: ${result.error}. Retrying with backoff.`,
    };
  }
  return {
    type,
    status: 'True',
    reason: TopologyReason.Declared,
    message: `Queues ${result.queues.join(', ')} declared.`,
  };
}
