// Bearer-token authentication for the order API. Tokens come from a mounted file (one per line,
// '#' comments), re-read when the file changes; comparison is constant-time.
import { createHash, timingSafeEqual } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import { Code, ConnectError, type Interceptor } from '@connectrpc/connect';

function digest(value: string): Buffer {
  return createHash('sha256').update(value).digest();
}

export class TokenFile {
  private digests: Buffer[] = [];
  private mtimeMs = -1;

  constructor(private readonly path: string) {
    this.reload();
  }

  private reload(): void {
    const stat = statSync(this.path);
    if (stat.mtimeMs === this.mtimeMs) return;
    this.mtimeMs = stat.mtimeMs;
    this.digests = readFileSync(this.path, 'utf8')
      .split('\n')
      .map((l) => l.trim())
      .filter((l) => l && !l.startsWith('#'))
      .map(digest);
  }

  /** True when `token` is one of the file's tokens. Every token is compared, so timing says nothing. */
  accepts(token: string): boolean {
    try {
      this.reload();
    } catch {
      // Keep the last good token set while the file is being replaced.
    }
    const candidate = digest(token);
    let ok = false;
    for (const d of this.digests) ok = timingSafeEqual(d, candidate) || ok;
    return ok;
  }
}

export function bearerAuthInterceptor(tokens: TokenFile): Interceptor {
  return (next) => async (req) => {
    const header = req.header.get('authorization') ?? '';
    const match = /^Bearer\s+(\S+)$/i.exec(header);
    if (!match)
      throw new ConnectError('missing bearer token (Authorization: Bearer <token>)', Code.Unauthenticated);
    if (!tokens.accepts(match[1]!)) throw new ConnectError('invalid bearer token', Code.Unauthenticated);
    return next(req);
  };
}
