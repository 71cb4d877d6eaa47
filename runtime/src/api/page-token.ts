// Opaque, stable page tokens for ListOrders: the position of the last order returned plus a
// fingerprint of the filter, so a token is only accepted with the filter it was made for.
import { createHash } from 'node:crypto';
import type { ListFilter, PageCursor } from '../orders/repository.js';

interface TokenBody {
  t: number;
  i: string;
  f: string;
}

export function filterFingerprint(filter: ListFilter): string {
  const canonical = JSON.stringify([
    [...(filter.states ?? [])].sort(),
    filter.customerId ?? '',
    filter.createdAfterMs ?? null,
    filter.createdBeforeMs ?? null,
  ]);
  return createHash('sha256').update(canonical).digest('base64url').slice(0, 16);
}

export function encodePageToken(cursor: PageCursor, filter: ListFilter): string {
  const body: TokenBody = { t: cursor.createdAt, i: cursor.id, f: filterFingerprint(filter) };
  return Buffer.from(JSON.stringify(body)).toString('base64url');
}

export class PageTokenError extends Error {}

export function decodePageToken(token: string, filter: ListFilter): PageCursor {
  let body: TokenBody;
  try {
    body = JSON.parse(Buffer.from(token, 'base64url').toString('utf8')) as TokenBody;
  } catch {
    throw new PageTokenError('not a page token from this API');
  }
  if (typeof body?.t !== 'number' || typeof body.i !== 'string' || typeof body.f !== 'string') {
    throw new PageTokenError('not a page token from this API');
  }
  if (body.f !== filterFingerprint(filter)) {
    throw new PageTokenError('the filter differs from the one this page token was made for');
  }
  return { createdAt: body.t, id: body.i };
}
