import { describe, expect, it } from 'vitest';
import { type ApiLimits, apiLimitsFromEnv, DEFAULT_API_LIMITS, healthAddressFromEnv } from './limits.js';

describe('apiLimitsFromEnv', () => {
  it.each<[string, Record<string, string>, Partial<ApiLimits>]>([
    ['gives the defaults for an empty environment', {}, {}],
    ['reads the request size limit', { O2C_API_MAX_REQUEST_BYTES: '65536' }, { maxRequestBytes: 65_536 }],
    [
      'reads the stream and connection limits',
      { O2C_API_MAX_STREAMS_PER_CONNECTION: '10', O2C_API_MAX_CONNECTIONS: '50' },
      { maxStreamsPerConnection: 10, maxConnections: 50 },
    ],
    [
      'reads the timeouts',
      {
        O2C_API_HEADERS_TIMEOUT_MS: '2000',
        O2C_API_REQUEST_TIMEOUT_MS: '5000',
        O2C_API_IDLE_TIMEOUT_MS: '9000',
      },
      { headersTimeoutMs: 2_000, requestTimeoutMs: 5_000, idleTimeoutMs: 9_000 },
    ],
    ['ignores an empty value', { O2C_API_MAX_HEADER_BYTES: ' ' }, {}],
  ])('%s', (_name, env, expected) => {
    expect(apiLimitsFromEnv(env)).toEqual({ ...DEFAULT_API_LIMITS, ...expected });
  });

  it.each<[string, Record<string, string>, RegExp]>([
    ['refuses a negative number', { O2C_API_MAX_REQUEST_BYTES: '-1' }, /O2C_API_MAX_REQUEST_BYTES.*positive/],
    ['refuses zero', { O2C_API_MAX_CONNECTIONS: '0' }, /O2C_API_MAX_CONNECTIONS/],
    ['refuses a unit suffix', { O2C_API_MAX_REQUEST_BYTES: '1MiB' }, /positive integer/],
    [
      'refuses a message limit connect-es cannot hold',
      { O2C_API_MAX_REQUEST_BYTES: '5000000000' },
      /at most/,
    ],
    [
      'refuses a request timeout shorter than the headers timeout',
      { O2C_API_HEADERS_TIMEOUT_MS: '20000', O2C_API_REQUEST_TIMEOUT_MS: '10000' },
      /must not be below/,
    ],
  ])('%s', (_name, env, message) => {
    expect(() => apiLimitsFromEnv(env)).toThrow(message);
  });
});

describe('healthAddressFromEnv', () => {
  it.each([
    ['listens on loopback by default outside Kubernetes', {}, '127.0.0.1'],
    ['listens where O2C_HEALTH_ADDRESS says', { O2C_HEALTH_ADDRESS: '0.0.0.0' }, '0.0.0.0'],
    ['keeps loopback for an empty value', { O2C_HEALTH_ADDRESS: '' }, '127.0.0.1'],
    [
      'listens on the pod IP in a pod that knows it',
      { KUBERNETES_SERVICE_HOST: '10.96.0.1', POD_IP: '10.1.2.3' },
      '10.1.2.3',
    ],
    [
      'listens where the kubelet can probe in a pod that does not',
      { KUBERNETES_SERVICE_HOST: '10.96.0.1' },
      '0.0.0.0',
    ],
    [
      'prefers O2C_HEALTH_ADDRESS in a pod too',
      { KUBERNETES_SERVICE_HOST: '10.96.0.1', POD_IP: '10.1.2.3', O2C_HEALTH_ADDRESS: '127.0.0.1' },
      '127.0.0.1',
    ],
  ])('%s', (_name, env, expected) => {
    expect(healthAddressFromEnv(env)).toBe(expected);
  });
});
