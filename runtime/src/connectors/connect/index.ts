// Registers the connect driver.
import { registerDriver } from '../drivers.js';
import { type ConnectDriverConfig, connectTransport, createConnectDriver } from './driver.js';

export {
  type ConnectDriverConfig,
  connectTransport,
  createConnectDriver,
  failureFromConnectError,
} from './driver.js';

registerDriver('connect', (ctx) => {
  if (!ctx.config.endpoint)
    throw new Error(`connector ${ctx.config.name}: driver connect needs spec.endpoint`);
  const cfg = (ctx.config.options ?? {}) as ConnectDriverConfig;
  return createConnectDriver(connectTransport(ctx.config.endpoint, cfg, ctx.credentials));
});
