// Time-ordered ids: 10 characters of milliseconds in Crockford base32, then 16 random ones, so ids
// sort by creation time and never collide across replicas.
import { randomBytes } from 'node:crypto';

const ALPHABET = '0123456789ABCDEFGHJKMNPQRSTVWXYZ';

export function newUlid(now: number = Date.now()): string {
  let time = '';
  let t = now;
  for (let i = 0; i < 10; i++) {
    time = ALPHABET[t % 32] + time;
    t = Math.floor(t / 32);
  }
  const bytes = randomBytes(16);
  let rand = '';
  for (let i = 0; i < 16; i++) rand += ALPHABET[(bytes[i] ?? 0) % 32];
  return time + rand;
}

export function newOrderId(): string {
  return `ord_${newUlid()}`;
}

export function newEventId(): string {
  return `evt_${newUlid()}`;
}
