// What one caller may cost the order API (body, headers, streams, connections, time) and where the
// health port listens, read from O2C_* environment variables with defaults that suit a pod.

export interface ApiLimits {
  /** Largest request message (decompressed), refused from Content-Length before the body is read. */
  maxRequestBytes: number;
  /** Largest response message; ListOrders pages stay far below it. */
  maxResponseBytes: number;
  /** Largest request header block (HTTP/1.1 header bytes, HTTP/2 header list size). */
  maxHeaderBytes: number;
  /** Concurrent HTTP/2 streams per connection (SETTINGS_MAX_CONCURRENT_STREAMS). */
  maxStreamsPerConnection: number;
  /** Open TCP connections on the API port. */
  maxConnections: number;
  /** Time for a new connection's first bytes and for a request's complete headers. */
  headersTimeoutMs: number;
  /** Time to receive a whole request (headers and body): a slow body is cut off after it. */
  requestTimeoutMs: number;
  /** A connection with no request in flight is closed after this long. */
  idleTimeoutMs: number;
}

export const DEFAULT_API_LIMITS: ApiLimits = {
  maxRequestBytes: 1024 * 1024,
  maxResponseBytes: 16 * 1024 * 1024,
  maxHeaderBytes: 16 * 1024,
  maxStreamsPerConnection: 100,
  maxConnections: 1024,
  headersTimeoutMs: 10_000,
  requestTimeoutMs: 30_000,
  idleTimeoutMs: 65_000,
};

/** Environment variable per limit; unset, the default above applies (the operator sets none today). */
export const API_LIMIT_ENV: Record<keyof ApiLimits, string> = {
  maxRequestBytes: 'O2C_API_MAX_REQUEST_BYTES',
  maxResponseBytes: 'O2C_API_MAX_RESPONSE_BYTES',
  maxHeaderBytes: 'O2C_API_MAX_HEADER_BYTES',
  maxStreamsPerConnection: 'O2C_API_MAX_STREAMS_PER_CONNECTION',
  maxConnections: 'O2C_API_MAX_CONNECTIONS',
  headersTimeoutMs: 'O2C_API_HEADERS_TIMEOUT_MS',
  requestTimeoutMs: 'O2C_API_REQUEST_TIMEOUT_MS',
  idleTimeoutMs: 'O2C_API_IDLE_TIMEOUT_MS',
};

/** connect-es refuses read/write limits above 2^32 - 1. */
const MAX_MESSAGE_BYTES = 0xffffffff;

export class ApiLimitError extends Error {}

/** The limits in `env`, each a positive integer; an unparsable value is refused, not ignored. */
export function apiLimitsFromEnv(env: Record<string, string | undefined>): ApiLimits {
  const limits = { ...DEFAULT_API_LIMITS };
  for (const key of Object.keys(API_LIMIT_ENV) as (keyof ApiLimits)[]) {
    const name = API_LIMIT_ENV[key];
    const raw = env[name]?.trim();
    if (!raw) continue;
    if (!/^[0-9]+$/.test(raw) || Number(raw) < 1 || !Number.isSafeInteger(Number(raw)))
      throw new ApiLimitError(`${name}=${JSON.stringify(raw)}: must be a positive integer`);
    limits[key] = Number(raw);
  }
  for (const key of ['maxRequestBytes', 'maxResponseBytes'] as const) {
    if (limits[key] > MAX_MESSAGE_BYTES)
      throw new ApiLimitError(`${API_LIMIT_ENV[key]}=${limits[key]}: at most ${MAX_MESSAGE_BYTES}`);
  }
  if (limits.requestTimeoutMs < limits.headersTimeoutMs)
    throw new ApiLimitError(
      `${API_LIMIT_ENV.requestTimeoutMs} (${limits.requestTimeoutMs}) must not be below ${API_LIMIT_ENV.headersTimeoutMs} (${limits.headersTimeoutMs})`,
    );
  return limits;
}

export const HEALTH_ADDRESS_ENV = 'O2C_HEALTH_ADDRESS';

/**
 * Where the unauthenticated health and metrics port listens: O2C_HEALTH_ADDRESS when set; in a
 * pod (KUBERNETES_SERVICE_HOST is set) the pod's own address, since the kubelet probes the pod IP:
 * POD_IP (downward API, status.podIP) when rendered, else 0.0.0.0, which in a pod's network
 * namespace is loopback and the pod IP and nothing more; anywhere else loopback only.
 */
export function healthAddressFromEnv(env: Record<string, string | undefined>): string {
  const configured = env[HEALTH_ADDRESS_ENV]?.trim();
  if (configured) return configured;
  if (env.KUBERNETES_SERVICE_HOST) return env.POD_IP?.trim() || '0.0.0.0';
  return '127.0.0.1';
}
