import { describe, expect, it } from 'vitest';
import { parseRuntimeConfig, RUNTIME_CONFIG_API_VERSION, runtimeCommand } from './runtime-config.js';

const aConfig = (patch: Record<string, unknown> = {}) =>
  JSON.stringify({
    apiVersion: RUNTIME_CONFIG_API_VERSION,
    role: 'connector',
    namespace: 'shop',
    name: 'erp',
    generation: 1,
    spec: { system: 'erp', driver: 'simulator' },
    connectors: {},
    broker: {
      urlFile: '/etc/o2c/connections/broker-url',
      exchanges: { events: 'o2c.events', commands: 'o2c.commands' },
      queues: { commands: { queue: 'o2c.shop.connector.erp.commands', deadLetter: 'x', bindings: [] } },
    },
    secrets: {},
    ...patch,
  });

describe('the runtime config contract', () => {
  it('accepts what the operator renders', () => {
    expect(parseRuntimeConfig(aConfig(), 'config.json')).toMatchObject({ role: 'connector', name: 'erp' });
  });

  it.each([
    [
      'an unknown apiVersion is refused and names the one it reads',
      { apiVersion: 'o2c.dev/runtime/v2' },
      'apiVersion "o2c.dev/runtime/v2" is not supported: this runtime reads o2c.dev/runtime/v1',
    ],
    ['a missing apiVersion is refused', { apiVersion: undefined }, 'apiVersion undefined is not supported'],
    ['an unknown role is refused', { role: 'cron' }, 'role must be one of connector, pipeline, workflow'],
    [
      'a missing broker URL file is a start-up error, not a default host',
      { broker: { queues: {}, exchanges: {} } },
      'broker.urlFile is missing',
    ],
    ['a missing name is named', { name: '' }, 'name is missing'],
    [
      'exchanges other than the ones the bus uses are refused',
      {
        broker: {
          urlFile: '/u',
          queues: {},
          exchanges: { events: 'other.events', commands: 'o2c.commands' },
        },
      },
      'broker.exchanges.events is "other.events", but this runtime uses o2c.events',
    ],
  ])('%s', (_name, patch, message) => {
    expect(() => parseRuntimeConfig(aConfig(patch), 'config.json')).toThrow(message);
  });

  it('refuses a file that is not JSON, naming the file', () => {
    expect(() => parseRuntimeConfig('{', '/etc/o2c/config.json')).toThrow('/etc/o2c/config.json: not JSON');
  });

  it('runs the compiled entry point, no TypeScript loader', () => {
    expect(runtimeCommand('pipeline')).toEqual([
      'node',
      '/app/dist/runtime/src/main.js',
      '--role',
      'pipeline',
      '--config',
      '/etc/o2c/config.json',
    ]);
  });
});
