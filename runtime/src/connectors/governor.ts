// Client-side governance of one external system: a token-bucket rate limit, a concurrency cap, a
// per-call timeout and a circuit breaker. Pure apart from the injected clock.
import { ErrorClass } from '../gen/o2c/v1/common_pb.js';
import { type Clock, sleep, systemClock } from './clock.js';
import { ConnectorFailure, toConnectorFailure } from './driver.js';

export interface GovernorLimits {
  /** Steady request rate; tokens refill continuously. */
  requestsPerSecond: number;
  /** Tokens the bucket holds; 1 spaces requests evenly at 1/rate. */
  burst?: number;
  maxConcurrency: number;
  timeoutMs: number;
  /** Failures in a row that open the circuit. */
  consecutiveFailures: number;
  /** How long the circuit stays open before one trial call. */
  openForMs: number;
}

export const DEFAULT_LIMITS: GovernorLimits = {
  requestsPerSecond: 20,
  maxConcurrency: 4,
  timeoutMs: 10_000,
  consecutiveFailures: 5,
  openForMs: 30_000,
};

export type CircuitState = 'closed' | 'open' | 'half-open';

/**
 * Whether a failure says the system is unhealthy. Business answers (validation, credit, stock, not
 * found, conflict, auth, ownership, rate limited) prove it is up and do not move the breaker.
 */
export function countsAgainstCircuit(f: ConnectorFailure): boolean {
  return f.errorClass === ErrorClass.UNAVAILABLE || f.errorClass === ErrorClass.TIMEOUT;
}

/** A token bucket with reservations: a caller takes a token now and waits until it would exist. */
export class TokenBucket {
  private tokens: number;
  private last: number;

  constructor(
    private readonly ratePerSec: number,
    private readonly capacity: number,
    private readonly clock: Clock,
  ) {
    this.tokens = capacity;
    this.last = clock.now();
  }

  /** Milliseconds to wait before the reserved token is due; 0 when one is available now. */
  reserve(): number {
    const now = this.clock.now();
    this.tokens = Math.min(this.capacity, this.tokens + ((now - this.last) * this.ratePerSec) / 1000);
    this.last = now;
    this.tokens -= 1;
    return this.tokens >= 0 ? 0 : Math.ceil((-this.tokens * 1000) / this.ratePerSec);
  }

  /** Gives back a reservation whose caller gave up before using it. */
  cancel(): void {
    this.tokens = Math.min(this.capacity, this.tokens + 1);
  }

  /** Holds the bucket empty for `ms` (the system said "retry after"). */
  pause(ms: number): void {
    this.reserve();
    this.tokens = Math.min(this.tokens, -(ms * this.ratePerSec) / 1000);
  }
}

/** A counting semaphore with FIFO waiters. */
export class Semaphore {
  private inUse = 0;
  private waiters: Array<() => void> = [];

  constructor(private readonly max: number) {}

  get active(): number {
    return this.inUse;
  }

  get waiting(): number {
    return this.waiters.length;
  }

  async acquire(signal?: AbortSignal): Promise<() => void> {
    if (signal?.aborted) throw signal.reason;
    if (this.inUse < this.max) {
      this.inUse++;
      return this.releaser();
    }
    await new Promise<void>((resolve, reject) => {
      const waiter = () => {
        signal?.removeEventListener('abort', onAbort);
        resolve();
      };
      const onAbort = () => {
        this.waiters = this.waiters.filter((w) => w !== waiter);
        reject(signal?.reason);
      };
      this.waiters.push(waiter);
      signal?.addEventListener('abort', onAbort, { once: true });
    });
    return this.releaser();
  }

  private releaser(): () => void {
    let done = false;
    return () => {
      if (done) return;
      done = true;
      const next = this.waiters.shift();
      if (next) next();
      else this.inUse--;
    };
  }
}

/** The breaker: closed → open after N failures in a row → one half-open probe after openFor. */
export class CircuitBreaker {
  private failures = 0;
  private openedAt = 0;
  private current: CircuitState = 'closed';
  private probing = false;

  constructor(
    private readonly threshold: number,
    private readonly openForMs: number,
    private readonly clock: Clock,
    private readonly onChange?: (state: CircuitState) => void,
  ) {}

  get state(): CircuitState {
    if (this.current === 'open' && this.clock.now() - this.openedAt >= this.openForMs) return 'half-open';
    return this.current;
  }

  /** Takes permission to call; false means fail fast. A true in half-open makes this call the probe. */
  tryAcquire(): boolean {
    const state = this.state;
    if (state === 'closed') return true;
    if (state === 'half-open' && !this.probing) {
      this.probing = true;
      this.set('half-open');
      return true;
    }
    return false;
  }

  /** Milliseconds until a probe may go, for the fail-fast error's retry hint. */
  remainingOpenMs(): number {
    return Math.max(0, this.openForMs - (this.clock.now() - this.openedAt));
  }

  onSuccess(): void {
    this.failures = 0;
    this.probing = false;
    if (this.current !== 'closed') this.set('closed');
  }

  onFailure(): void {
    this.failures++;
    if (this.probing || this.failures >= this.threshold) {
      this.probing = false;
      this.openedAt = this.clock.now();
      this.set('open');
    }
  }

  /** A call that ended without telling anything about health (a business error, cancellation). */
  onNeutral(): void {
    if (this.probing) {
      this.probing = false;
      this.failures = 0;
      this.set('closed');
    }
  }

  private set(state: CircuitState): void {
    if (this.current === state) return;
    this.current = state;
    this.onChange?.(state);
  }
}

export interface GovernorStats {
  calls: number;
  failures: number;
  rejectedOpen: number;
  timeouts: number;
  inFlight: number;
  waiting: number;
  circuit: CircuitState;
}

export class Governor {
  readonly limits: GovernorLimits;
  private readonly bucket: TokenBucket;
  private readonly slots: Semaphore;
  private readonly breaker: CircuitBreaker;
  private readonly counters = { calls: 0, failures: 0, rejectedOpen: 0, timeouts: 0 };

  constructor(
    limits: Partial<GovernorLimits> = {},
    private readonly clock: Clock = systemClock,
    onCircuitChange?: (state: CircuitState) => void,
  ) {
    this.limits = { ...DEFAULT_LIMITS, ...limits };
    this.bucket = new TokenBucket(this.limits.requestsPerSecond, this.limits.burst ?? 1, clock);
    this.slots = new Semaphore(this.limits.maxConcurrency);
    this.breaker = new CircuitBreaker(
      this.limits.consecutiveFailures,
      this.limits.openForMs,
      clock,
      onCircuitChange,
    );
  }

  get circuit(): CircuitState {
    return this.breaker.state;
  }

  stats(): GovernorStats {
    return {
      ...this.counters,
      inFlight: this.slots.active,
      waiting: this.slots.waiting,
      circuit: this.breaker.state,
    };
  }

  /** Holds calls back for `ms`, e.g. after the system answered "request limit exceeded". */
  backOff(ms: number): void {
    this.bucket.pause(ms);
  }

  /**
   * Runs one external call under the limits. `signal` bounds the wait for a slot and a token (the
   * caller's shutdown); the timeout bounds the call itself. Failures come out as ConnectorFailure.
   */
  async run<T>(call: (signal: AbortSignal) => Promise<T>, signal?: AbortSignal): Promise<T> {
    this.failFastWhenOpen();
    const release = await this.slots.acquire(signal);
    try {
      const wait = this.bucket.reserve();
      try {
        await sleep(this.clock, wait, signal);
      } catch (err) {
        this.bucket.cancel();
        throw err;
      }
      if (!this.breaker.tryAcquire()) this.failFast();
      this.counters.calls++;
      try {
        const result = await this.withTimeout(call, signal);
        this.breaker.onSuccess();
        return result;
      } catch (err) {
        const failure = toConnectorFailure(err);
        this.counters.failures++;
        if (failure.errorClass === ErrorClass.TIMEOUT) this.counters.timeouts++;
        if (countsAgainstCircuit(failure)) this.breaker.onFailure();
        else this.breaker.onNeutral();
        if (failure.errorClass === ErrorClass.RATE_LIMITED && failure.retryAfterMs)
          this.backOff(failure.retryAfterMs);
        throw failure;
      }
    } finally {
      release();
    }
  }

  private failFastWhenOpen(): void {
    if (this.breaker.state === 'open') this.failFast();
  }

  private failFast(): never {
    this.counters.rejectedOpen++;
    throw new ConnectorFailure(
      ErrorClass.UNAVAILABLE,
      `circuit open after ${this.limits.consecutiveFailures} consecutive failures; next trial in ${this.breaker.remainingOpenMs()} ms`,
      { code: 'CIRCUIT_OPEN', retryable: true, retryAfterMs: this.breaker.remainingOpenMs() },
    );
  }

  private withTimeout<T>(call: (signal: AbortSignal) => Promise<T>, outer?: AbortSignal): Promise<T> {
    const controller = new AbortController();
    // Built only when the timer fires: an Error captures a stack, too dear to make for every call.
    let timeout: ConnectorFailure | undefined;
    const timedOut = () =>
      (timeout ??= new ConnectorFailure(ErrorClass.TIMEOUT, `no answer within ${this.limits.timeoutMs} ms`, {
        code: 'TIMEOUT',
      }));
    return new Promise<T>((resolve, reject) => {
      const onOuterAbort = () => {
        controller.abort(outer?.reason);
        finish(() => reject(outer?.reason));
      };
      const handle = this.clock.setTimeout(() => {
        controller.abort(timedOut());
        finish(() => reject(timedOut()));
      }, this.limits.timeoutMs);
      let done = false;
      const finish = (settle: () => void) => {
        if (done) return;
        done = true;
        this.clock.clearTimeout(handle);
        outer?.removeEventListener('abort', onOuterAbort);
        settle();
      };
      if (outer?.aborted) return onOuterAbort();
      outer?.addEventListener('abort', onOuterAbort, { once: true });
      // A driver that ignores the signal still gets cut off: the race settles on the timer.
      call(controller.signal).then(
        (v) => finish(() => resolve(v)),
        (e) => finish(() => reject(controller.signal.aborted && !outer?.aborted ? timedOut() : e)),
      );
    });
  }
}
