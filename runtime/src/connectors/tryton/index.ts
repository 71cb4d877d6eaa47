// The Tryton ERP driver: JSON-RPC client, ERP operations, change poller, and the ConnectorService
// driver, registered as `driver: tryton` when this module is imported.
import { registerDriver } from '../drivers.js';
import { TrytonDriver } from './driver.js';

export * from './client.js';
export {
  type ChangeFeedOptions,
  databaseUrl,
  type OperationStats,
  parseOptions as parseTrytonOptions,
  type TrytonChangeEvent,
  TrytonDriver,
  type TrytonDriverInit,
  type TrytonDriverOptions,
  trytonFailure,
} from './driver.js';
export * from './errors.js';
export * from './operations.js';
export * from './poller.js';
export type * from './types.js';

registerDriver(
  'tryton',
  (ctx) =>
    new TrytonDriver({
      config: ctx.config,
      credentials: ctx.credentials,
      clock: ctx.clock,
      store: ctx.store,
    }),
);
