// Registers the http driver.
import { registerDriver } from '../drivers.js';
import { createHttpDriver, type HttpDriverConfig } from './driver.js';

export { createHttpDriver, type HttpAuth, type HttpDriverConfig, type HttpOperation } from './driver.js';
export { signPayload, startWebhookReceiver, verifySignature, type WebhookOptions } from './webhook.js';

registerDriver('http', (ctx) => {
  if (!ctx.config.endpoint) throw new Error(`connector ${ctx.config.name}: driver http needs spec.endpoint`);
  return createHttpDriver(
    ctx.config.endpoint,
    (ctx.config.options ?? { operations: {} }) as unknown as HttpDriverConfig,
    ctx.credentials,
  );
});
