import { describe, expect, it } from 'vitest';
import {
  candidateIdentity,
  type LeaseAction,
  type LeaseSpec,
  podOfIdentity,
  shouldAcquire,
} from './leader.js';

const T = { leaseDurationMs: 15_000, renewDeadlineMs: 10_000, retryPeriodMs: 2_000 };
const t0 = Date.parse('2026-12-01T12:00:00.000Z');
const at = (s: number) => t0 + s * 1000;
const renewedAt = (holder: string | null, s: number): LeaseSpec => ({
  holderIdentity: holder,
  leaseDurationSeconds: 15,
  renewTime: new Date(at(s)).toISOString().replace('Z', '000Z'),
});

const ME = 'o2c-operator-7d9f-abcde_11111111-1111-4111-8111-111111111111';
const MY_PREDECESSOR = 'o2c-operator-7d9f-abcde_22222222-2222-4222-8222-222222222222';
const OTHER = 'o2c-operator-7d9f-fghij_33333333-3333-4333-8333-333333333333';

describe('shouldAcquire', () => {
  // [sentence, lease, now (s), this process started at (s), action]
  it.each<[string, LeaseSpec | undefined, number, number, LeaseAction]>([
    ['creates the Lease when there is none', undefined, 10, 0, 'create'],
    ['renews a Lease it holds itself', renewedAt(ME, 8), 10, 0, 'renew'],
    ['renews its own Lease even after expiry (nobody took it)', renewedAt(ME, 0), 30, 0, 'renew'],
    ['takes a Lease released on shutdown at once', renewedAt(null, 9), 10, 0, 'acquire'],
    ['takes a released Lease at once even just after starting', renewedAt(null, 9), 10, 9.5, 'acquire'],
    ['waits while a holder it has seen renew is live', renewedAt(OTHER, 0), 14, -60, 'wait'],
    [
      'takes over as a standby as soon as the holder it watched has expired',
      renewedAt(OTHER, 0),
      15.1,
      -60,
      'acquire',
    ],
    [
      'does not treat a Lease held by its own pod name under another process as its own',
      renewedAt(MY_PREDECESSOR, 0),
      10,
      1,
      'wait',
    ],
    [
      'as a restarted container, still waits just after the dead predecessor expired (the standby goes first)',
      renewedAt(MY_PREDECESSOR, 0),
      16.9,
      1,
      'wait',
    ],
    [
      'as a restarted container, takes over one retry period after expiry when no standby did',
      renewedAt(MY_PREDECESSOR, 0),
      17.1,
      1,
      'acquire',
    ],
    [
      'as any newcomer, waits one retry period past expiry of a holder it never saw',
      renewedAt(OTHER, 0),
      16,
      0.5,
      'wait',
    ],
    [
      'is no newcomer for a holder that renewed after it started (it stood by and watched)',
      renewedAt(OTHER, 5),
      20.1,
      1,
      'acquire',
    ],
    [
      'reads a Lease without a renew time as long expired',
      { holderIdentity: OTHER, leaseDurationSeconds: 15 },
      10,
      0,
      'acquire',
    ],
    [
      "uses the Lease's own duration, not its own configuration",
      { ...renewedAt(OTHER, 0), leaseDurationSeconds: 60 },
      30,
      -60,
      'wait',
    ],
  ])('%s', (_sentence, lease, now, startedAt, action) => {
    expect(shouldAcquire(lease, ME, at(now), at(startedAt), T)).toBe(action);
  });
});

describe('candidate identity', () => {
  it('keeps the pod name readable and differs per process', () => {
    const a = candidateIdentity('o2c-operator-7d9f-abcde');
    const b = candidateIdentity('o2c-operator-7d9f-abcde');
    expect(a).toMatch(/^o2c-operator-7d9f-abcde_[0-9a-f-]{36}$/);
    expect(a).not.toBe(b);
  });

  it.each([
    ['finds the pod of a per-process identity', OTHER, 'o2c-operator-7d9f-fghij'],
    [
      'reads an identity without a process part as the pod itself',
      'o2c-operator-7d9f-fghij',
      'o2c-operator-7d9f-fghij',
    ],
  ])('%s', (_sentence, identity, pod) => {
    expect(podOfIdentity(identity)).toBe(pod);
  });
});
