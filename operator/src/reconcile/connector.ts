// Connector: no Connector references, its credentials and database Secrets, one command queue bound
// on o2c.commands.
import { COMMANDS_EXCHANGE } from '../broker.js';
import { commandRoutingKey } from '../render/runtime-config.js';
import type { Connector } from '../resources.js';
import type { KindHandler, SecretReference } from './kind.js';

export const connectorHandler: KindHandler<Connector> = {
  kind: 'Connector',
  connectorRefs: () => [],
  secretRefs: (c) => {
    const refs: SecretReference[] = [];
    const creds = c.spec.credentialsSecretRef;
    if (creds) refs.push({ field: 'spec.credentialsSecretRef', secret: creds.name, key: creds.key });
    const db = c.spec.store?.postgres?.urlSecretRef;
    if (db) refs.push({ field: 'spec.store.postgres.urlSecretRef', secret: db.name, key: db.key ?? 'url' });
    return refs;
  },
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
