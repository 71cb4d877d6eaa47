// The Tryton ERP driver: JSON-RPC client, ERP operations, change poller.
export * from './client.js';
export * from './errors.js';
export * from './operations.js';
export * from './poller.js';
export type * from './types.js';
