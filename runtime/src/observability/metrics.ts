// Prometheus metrics: one registry per process, served on the health port.
import { Counter, collectDefaultMetrics, Histogram, Registry } from 'prom-client';

export interface ApiMetrics {
  registry: Registry;
  requests: Counter<'method' | 'code'>;
  duration: Histogram<'method'>;
}

export function createRegistry(defaults = true): Registry {
  const registry = new Registry();
  if (defaults) collectDefaultMetrics({ register: registry, prefix: 'o2c_' });
  return registry;
}

export function createApiMetrics(registry: Registry): ApiMetrics {
  return {
    registry,
    requests: new Counter({
      name: 'o2c_api_requests_total',
      help: 'Order API requests by method and result code',
      labelNames: ['method', 'code'],
      registers: [registry],
    }),
    duration: new Histogram({
      name: 'o2c_api_request_duration_seconds',
      help: 'Order API request latency by method',
      labelNames: ['method'],
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
      registers: [registry],
    }),
  };
}
