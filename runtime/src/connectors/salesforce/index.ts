// Registers the salesforce driver.
import { registerDriver } from '../drivers.js';
import { type SalesforceConfig, SalesforceDriver } from './driver.js';

export { type SalesforceConfig, SalesforceDriver } from './driver.js';
export { SalesforceChangePoller } from './poller.js';

registerDriver('salesforce', (ctx) => {
  if (!ctx.config.endpoint)
    throw new Error(`connector ${ctx.config.name}: driver salesforce needs spec.endpoint`);
  return new SalesforceDriver(
    ctx.config.name,
    ctx.config.endpoint,
    (ctx.config.options ?? {}) as SalesforceConfig,
    ctx.credentials,
    ctx.governor,
  );
});
