// Connector: no Connector references, its credentials Secret, one command queue bound on o2c.commands.
import { COMMANDS_EXCHANGE } from '../broker.js';
import { commandRoutingKey } from '../render/runtime-config.js';
import type { Connector } from '../resources.js';
import type { KindHandler } from './kind.js';

export const connectorHandler: KindHandler<Connector> = {
  kind: 'Connector',
  connectorRefs: () => [],
  secretRefs: (c) =>
    c.spec.credentialsSecretRef
      ? [
          {
            field: 'spec.credentialsSecretRef',
            secret: c.spec.credentialsSecretRef.name,
            key: c.spec.credentialsSecretRef.key,
          },
        ]
      : [],
  purposes: (c) => [
    {
      purpose: 'commands',
      bindings: [
        {
          exchange: COMMANDS_EXCHANGE,
          routingKey: commandRoutingKey(c.metadata.namespace!, c.metadata.name),
        },
      ],
    },
  ],
  allPurposes: [{ purpose: 'commands' }],
  ports: () => ({}),
};
