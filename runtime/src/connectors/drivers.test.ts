import { describe, expect, it } from 'vitest';
import { systemClock } from './clock.js';
import { StaticCredentials } from './credentials.js';
import { createDriver } from './drivers.js';

describe('createDriver', () => {
  it('loads a built-in driver by its name', async () => {
    const driver = await createDriver({
      config: { name: 'sim', system: 'erp', driver: 'simulator', options: { seed: 3 } },
      credentials: new StaticCredentials(),
      clock: systemClock,
    });
    expect(driver.driverName).toBe('simulator');
  });

  it('names the connector and the driver when the driver is unknown', async () => {
    await expect(
      createDriver({
        config: { name: 'x', system: 'erp', driver: 'sap' },
        credentials: new StaticCredentials(),
        clock: systemClock,
      }),
    ).rejects.toThrow("connector x: unknown driver 'sap'");
  });
});
