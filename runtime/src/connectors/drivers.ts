// Builds a connector's driver from its runtime config. Built-in drivers register here; the Tryton
// driver module registers itself through `registerDriver('tryton', ...)` when imported.
import type { Store } from '../store/types.js';
import type { Clock } from './clock.js';
import type { ConnectorRuntimeConfig } from './config.js';
import type { CredentialSource } from './credentials.js';
import type { ConnectorDriver } from './driver.js';
import type { Governor } from './governor.js';

export interface DriverContext {
  config: ConnectorRuntimeConfig;
  credentials: CredentialSource;
  clock: Clock;
  /** The connector's governor, for drivers that learn limits from the system (Sforce-Limit-Info). */
  governor?: Governor;
  /** For ID bindings and watermarks, when the role has a store. */
  store?: Store;
}

export type DriverFactory = (ctx: DriverContext) => ConnectorDriver | Promise<ConnectorDriver>;

const factories = new Map<string, DriverFactory>();

export function registerDriver(name: string, factory: DriverFactory): void {
  factories.set(name, factory);
}

/** Modules that register a driver when imported, by driver name; loaded on first use. */
const DRIVER_MODULES: Record<string, string> = {
  simulator: './simulator/index.js',
  http: './http/index.js',
  connect: './connect/index.js',
  salesforce: './salesforce/index.js',
  // Hook for the Tryton driver: its module calls registerDriver('tryton', ...) when imported.
  tryton: './tryton/index.js',
};

export async function createDriver(ctx: DriverContext): Promise<ConnectorDriver> {
  const name = ctx.config.driver;
  if (!factories.has(name) && DRIVER_MODULES[name]) await import(DRIVER_MODULES[name]);
  const factory = factories.get(name);
  if (!factory) throw new Error(`connector ${ctx.config.name}: unknown driver '${name}'`);
  return factory(ctx);
}
