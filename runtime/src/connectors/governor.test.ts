import { describe, expect, it } from 'vitest';
import { ErrorClass } from '../gen/o2c/v1/common_pb.js';
import { ManualClock } from './clock.js';
import { ConnectorFailure } from './driver.js';
import { Governor, type GovernorLimits } from './governor.js';

const unlimited: GovernorLimits = {
  requestsPerSecond: 1000,
  maxConcurrency: 100,
  timeoutMs: 1000,
  consecutiveFailures: 3,
  openForMs: 5000,
};

function aGovernor(overrides: Partial<GovernorLimits> = {}) {
  const clock = new ManualClock(1_000_000);
  return { clock, governor: new Governor({ ...unlimited, ...overrides }, clock) };
}

const down = () => Promise.reject(new ConnectorFailure(ErrorClass.UNAVAILABLE, 'connection refused'));
const ok = () => Promise.resolve('ok');

/** Starts a call and records how it settled, without awaiting it. */
function track<T>(p: Promise<T>) {
  const t: { value?: T; error?: unknown; settled: boolean } = { settled: false };
  p.then(
    (v) => Object.assign(t, { value: v, settled: true }),
    (e) => Object.assign(t, { error: e, settled: true }),
  );
  return t;
}

describe('rate limit', () => {
  it('spaces calls at 1/rate once the burst is used', async () => {
    const { clock, governor } = aGovernor({ requestsPerSecond: 10 });
    const started: number[] = [];
    const calls = Array.from({ length: 5 }, () =>
      track(
        governor.run(async () => {
          started.push(clock.now());
        }),
      ),
    );
    await clock.advance(1000);
    expect(calls.every((c) => c.settled)).toBe(true);
    expect(started.map((t) => t - 1_000_000)).toEqual([0, 100, 200, 300, 400]);
  });

  it('never lets more than rate + burst calls start in one second', async () => {
    const { clock, governor } = aGovernor({ requestsPerSecond: 5, burst: 2 });
    const started: number[] = [];
    for (let i = 0; i < 30; i++) track(governor.run(async () => void started.push(clock.now())));
    await clock.advance(1000);
    expect(started.length).toBeLessThanOrEqual(5 + 2);
    expect(started.length).toBeGreaterThanOrEqual(5);
  });

  it('holds calls back after the system asked to retry later', async () => {
    const { clock, governor } = aGovernor({ requestsPerSecond: 100 });
    const limited = track(
      governor.run(() =>
        Promise.reject(new ConnectorFailure(ErrorClass.RATE_LIMITED, 'slow down', { retryAfterMs: 2000 })),
      ),
    );
    await clock.advance(1);
    expect((limited.error as ConnectorFailure).errorClass).toBe(ErrorClass.RATE_LIMITED);
    const next = track(governor.run(ok));
    await clock.advance(1500);
    expect(next.settled).toBe(false);
    await clock.advance(600);
    expect(next.value).toBe('ok');
  });
});

describe('concurrency', () => {
  it('keeps at most maxConcurrency calls in flight', async () => {
    const { clock, governor } = aGovernor({ maxConcurrency: 2 });
    let inFlight = 0;
    let peak = 0;
    const slow = async () => {
      inFlight++;
      peak = Math.max(peak, inFlight);
      await new Promise<void>((r) => clock.setTimeout(r, 50));
      inFlight--;
    };
    const calls = Array.from({ length: 6 }, () => track(governor.run(slow)));
    await clock.advance(10);
    expect(governor.stats().inFlight).toBe(2);
    expect(governor.stats().waiting).toBe(4);
    await clock.advance(500);
    expect(calls.every((c) => c.settled && !c.error)).toBe(true);
    expect(peak).toBe(2);
  });
});

describe('timeout', () => {
  it('fails a call that does not answer in time as a retryable TIMEOUT and aborts its signal', async () => {
    const { clock, governor } = aGovernor({ timeoutMs: 200 });
    let aborted = false;
    const call = track(
      governor.run(
        (signal) =>
          new Promise(() => {
            signal.addEventListener('abort', () => {
              aborted = true;
            });
          }),
      ),
    );
    await clock.advance(199);
    expect(call.settled).toBe(false);
    await clock.advance(1);
    const failure = call.error as ConnectorFailure;
    expect(failure.errorClass).toBe(ErrorClass.TIMEOUT);
    expect(failure.retryable).toBe(true);
    expect(aborted).toBe(true);
    expect(governor.stats().inFlight).toBe(0);
  });
});

describe('circuit breaker', () => {
  it.each([
    ['stays closed below the threshold', 2, 'closed'],
    ['opens after the threshold of consecutive failures', 3, 'open'],
  ])('%s', async (_name, failures, state) => {
    const { clock, governor } = aGovernor();
    for (let i = 0; i < failures; i++) track(governor.run(down));
    await clock.advance(10);
    expect(governor.circuit).toBe(state);
  });

  it('does not count business errors such as a credit refusal', async () => {
    const { clock, governor } = aGovernor();
    for (let i = 0; i < 5; i++)
      track(governor.run(() => Promise.reject(new ConnectorFailure(ErrorClass.CREDIT, 'limit'))));
    await clock.advance(10);
    expect(governor.circuit).toBe('closed');
  });

  it('fails fast as retryable UNAVAILABLE while open, without calling the system', async () => {
    const { clock, governor } = aGovernor();
    for (let i = 0; i < 3; i++) track(governor.run(down));
    await clock.advance(10);
    let called = false;
    const call = track(
      governor.run(async () => {
        called = true;
      }),
    );
    await clock.advance(1);
    const failure = call.error as ConnectorFailure;
    expect(failure.errorClass).toBe(ErrorClass.UNAVAILABLE);
    expect(failure.retryable).toBe(true);
    expect(failure.code).toBe('CIRCUIT_OPEN');
    expect(called).toBe(false);
  });

  it('lets one probe through after openFor and closes when it succeeds', async () => {
    const { clock, governor } = aGovernor();
    for (let i = 0; i < 3; i++) track(governor.run(down));
    await clock.advance(5010);
    expect(governor.circuit).toBe('half-open');
    let release: () => void = () => {};
    const probe = track(governor.run(() => new Promise<string>((r) => (release = () => r('probe')))));
    await clock.advance(1);
    const second = track(governor.run(ok));
    await clock.advance(1);
    expect((second.error as ConnectorFailure).code).toBe('CIRCUIT_OPEN');
    release();
    await clock.advance(1);
    expect(probe.value).toBe('probe');
    expect(governor.circuit).toBe('closed');
  });

  it('opens again when the probe fails', async () => {
    const { clock, governor } = aGovernor();
    for (let i = 0; i < 3; i++) track(governor.run(down));
    await clock.advance(5010);
    track(governor.run(down));
    await clock.advance(1);
    expect(governor.circuit).toBe('open');
    await clock.advance(4999);
    expect(governor.circuit).toBe('half-open');
  });
});
