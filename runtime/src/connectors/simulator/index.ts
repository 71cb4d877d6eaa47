// Registers the simulator driver.
import { registerDriver } from '../drivers.js';
import { type SimulatorConfig, SimulatorDriver } from './driver.js';

export { type SimulatorChange, type SimulatorConfig, SimulatorDriver } from './driver.js';

registerDriver(
  'simulator',
  (ctx) =>
    new SimulatorDriver((ctx.config.options ?? {}) as SimulatorConfig, ctx.clock, {
      system: ctx.config.name,
    }),
);
