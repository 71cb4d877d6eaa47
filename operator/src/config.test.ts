import { describe, expect, it } from 'vitest';
import { settingsFromEnv } from './config.js';

const none = () => undefined;
const base = { O2C_RUNTIME_IMAGE: 'o2c:0.1.0' };

describe('operator settings', () => {
  it('names the broker Secret, in the operator namespace unless told otherwise', () => {
    const s = settingsFromEnv(
      { ...base, O2C_BROKER_SECRET: 'o2c-broker', POD_NAMESPACE: 'o2c-system' },
      none,
    );
    expect(s.brokerSecret).toEqual({ namespace: 'o2c-system', name: 'o2c-broker', key: 'url' });
    expect(s.amqpUrl).toBeUndefined();
  });

  it.each([
    ['no broker at all is refused with what to set', { ...base }, 'set O2C_BROKER_SECRET'],
    ['no runtime image is refused', { O2C_AMQP_URL: 'amqp://x' }, 'O2C_RUNTIME_IMAGE is not set'],
    [
      'a resync period that is not a positive number is refused',
      { ...base, O2C_AMQP_URL: 'amqp://x', O2C_RESYNC_SECONDS: 'soon' },
      'O2C_RESYNC_SECONDS=soon',
    ],
  ])('%s', (_n, env, message) => {
    expect(() => settingsFromEnv(env, none)).toThrow(message);
  });

  it('resyncs every 5 minutes by default, or as O2C_RESYNC_SECONDS says', () => {
    expect(settingsFromEnv({ ...base, O2C_AMQP_URL: 'amqp://x' }, none).resyncMs).toBe(300_000);
    expect(
      settingsFromEnv({ ...base, O2C_AMQP_URL: 'amqp://x', O2C_RESYNC_SECONDS: '2' }, none).resyncMs,
    ).toBe(2000);
  });
});
