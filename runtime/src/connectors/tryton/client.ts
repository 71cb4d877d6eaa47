// JSON-RPC client for Tryton 6.0: login with session renewal, the user's context fetched once and
// passed as the last parameter of every model call, Decimal/date encoding, typed errors. Uses Node's
// global fetch (undici), which keeps connections alive.
import { fromHttpStatus, fromRpcError, TrytonError } from './errors.js';

/** A decimal value sent to Tryton as {"__class__": "Decimal"}. Build with `decimal('10.00')`. */
export class TrytonDecimal {
  constructor(readonly value: string) {
    if (!/^-?\d+(\.\d+)?$/.test(value)) throw new TypeError(`not a decimal string: ${value}`);
  }
  toJSON(): unknown {
    return { __class__: 'Decimal', decimal: this.value };
  }
}

/** A date sent to Tryton as {"__class__": "date"}. Build with `date('2026-01-31')`. */
export class TrytonDate {
  constructor(readonly iso: string) {
    if (!/^\d{4}-\d{2}-\d{2}$/.test(iso)) throw new TypeError(`not a YYYY-MM-DD date: ${iso}`);
  }
  toJSON(): unknown {
    const [year, month, day] = this.iso.split('-').map(Number);
    return { __class__: 'date', year, month, day };
  }
}

export const decimal = (v: string | number): TrytonDecimal => new TrytonDecimal(String(v));
export const date = (iso: string): TrytonDate => new TrytonDate(iso);

export type TrytonContext = Record<string, unknown>;

export interface TrytonClientOptions {
  /** Database URL, e.g. http://tryton.erp:8000/o2c/ */
  url: string;
  username: string;
  password: string;
  language?: string;
  /** Per-call timeout in ms (default 30 s). */
  timeoutMs?: number;
  /** Extra context merged into the user's preferences on every call. */
  context?: TrytonContext;
  /** Called after every HTTP exchange (for metrics): method, ms, outcome. */
  onCall?: (method: string, ms: number, error?: TrytonError) => void;
}

export interface CallOptions {
  /** Merged over the client context (model calls only). */
  context?: TrytonContext;
  signal?: AbortSignal;
  timeoutMs?: number;
}

interface Session {
  userId: number;
  key: string;
  header: string;
}

/** Decodes Tryton's JSON classes: Decimal → decimal string, date → YYYY-MM-DD, datetime → ISO (UTC). */
export function reviver(_key: string, value: unknown): unknown {
  if (value && typeof value === 'object' && !Array.isArray(value)) {
    const v = value as Record<string, unknown>;
    switch (v.__class__) {
      case 'Decimal':
        return String(v.decimal);
      case 'date':
        return `${pad(v.year, 4)}-${pad(v.month)}-${pad(v.day)}`;
      case 'datetime':
        return `${pad(v.year, 4)}-${pad(v.month)}-${pad(v.day)}T${pad(v.hour)}:${pad(v.minute)}:${pad(v.second)}.${pad(v.microsecond ?? 0, 6)}Z`;
      case 'time':
        return `${pad(v.hour)}:${pad(v.minute)}:${pad(v.second)}`;
      case 'timedelta':
        return Number(v.seconds);
      case 'bytes':
        return Buffer.from(String(v.base64), 'base64');
      default:
        return value;
    }
  }
  return value;
}

function pad(n: unknown, width = 2): string {
  return String(n ?? 0).padStart(width, '0');
}

export class TrytonClient {
  readonly url: string;
  private readonly opts: TrytonClientOptions;
  private session?: Session;
  private loginInFlight?: Promise<Session>;
  private ctx?: TrytonContext;
  private ctxInFlight?: Promise<TrytonContext>;
  private nextId = 1;

  constructor(opts: TrytonClientOptions) {
    this.opts = opts;
    this.url = opts.url.endsWith('/') ? opts.url : `${opts.url}/`;
  }

  get userId(): number | undefined {
    return this.session?.userId;
  }

  /** Logs in (once for concurrent callers). */
  async login(): Promise<Session> {
    if (!this.loginInFlight) {
      this.loginInFlight = this.doLogin().finally(() => {
        this.loginInFlight = undefined;
      });
    }
    return this.loginInFlight;
  }

  private async doLogin(): Promise<Session> {
    const result = await this.post('common.db.login', [
      this.opts.username,
      { password: this.opts.password },
      this.opts.language ?? 'en',
    ]);
    if (!Array.isArray(result) || result.length < 2) {
      throw new TrytonError('auth', `Tryton login failed for ${this.opts.username}`, {
        method: 'common.db.login',
      });
    }
    const [userId, key] = result as [number, string];
    const header = `Session ${Buffer.from(`${this.opts.username}:${userId}:${key}`).toString('base64')}`;
    this.session = { userId, key, header };
    return this.session;
  }

  /** The user's context (company, language, ...), fetched once. */
  async context(): Promise<TrytonContext> {
    if (this.ctx) return this.ctx;
    if (!this.ctxInFlight) {
      this.ctxInFlight = this.call<TrytonContext>('model.res.user.get_preferences', [true, {}])
        .then((prefs) => {
          this.ctx = { ...prefs, ...(this.opts.context ?? {}) };
          return this.ctx;
        })
        .finally(() => {
          this.ctxInFlight = undefined;
        });
    }
    return this.ctxInFlight;
  }

  /** Raw authenticated call: logs in when needed, re-logs in once on 401. */
  async call<T = unknown>(method: string, params: unknown[], opts: CallOptions = {}): Promise<T> {
    let session = this.session ?? (await this.login());
    try {
      return (await this.post(method, params, session, opts)) as T;
    } catch (err) {
      if (!(err instanceof TrytonError && err.httpStatus === 401)) throw err;
      // Expired or unknown session: log in again (unless a concurrent call already did) and retry once.
      if (this.session === session) this.session = undefined;
      session = this.session ?? (await this.login());
      return (await this.post(method, params, session, opts)) as T;
    }
  }

  /** `model.<model>.<method>(...args, context)` */
  async model<T = unknown>(
    model: string,
    method: string,
    args: unknown[],
    opts: CallOptions = {},
  ): Promise<T> {
    const ctx = await this.context();
    const context = opts.context ? { ...ctx, ...opts.context } : ctx;
    return this.call<T>(`model.${model}.${method}`, [...args, context], opts);
  }

  async search(
    model: string,
    domain: unknown[],
    opts: CallOptions & { offset?: number; limit?: number | null; order?: [string, string][] | null } = {},
  ): Promise<number[]> {
    return this.model<number[]>(
      model,
      'search',
      [domain, opts.offset ?? 0, opts.limit ?? null, opts.order ?? null],
      opts,
    );
  }

  async read<T = Record<string, unknown>>(
    model: string,
    ids: number[],
    fields: string[],
    opts: CallOptions = {},
  ): Promise<(T & { id: number })[]> {
    if (ids.length === 0) return [];
    return this.model<(T & { id: number })[]>(model, 'read', [ids, fields], opts);
  }

  async searchRead<T = Record<string, unknown>>(
    model: string,
    domain: unknown[],
    fields: string[],
    opts: CallOptions & { offset?: number; limit?: number | null; order?: [string, string][] | null } = {},
  ): Promise<(T & { id: number })[]> {
    return this.model<(T & { id: number })[]>(
      model,
      'search_read',
      [domain, opts.offset ?? 0, opts.limit ?? null, opts.order ?? null, fields],
      opts,
    );
  }

  async create(model: string, values: Record<string, unknown>[], opts: CallOptions = {}): Promise<number[]> {
    return this.model<number[]>(model, 'create', [values], opts);
  }

  async write(
    model: string,
    ids: number[],
    values: Record<string, unknown>,
    opts: CallOptions = {},
  ): Promise<void> {
    await this.model(model, 'write', [ids, values], opts);
  }

  /** A workflow button such as sale.sale quote / confirm. */
  async button<T = unknown>(model: string, name: string, ids: number[], opts: CallOptions = {}): Promise<T> {
    return this.model<T>(model, name, [ids], opts);
  }

  /**
   * Runs a wizard: create, execute `state` with `data`, delete. `active` sets active_model/id/ids.
   * Returns the result of the execute call.
   */
  async wizard<T = unknown>(
    name: string,
    state: string,
    data: Record<string, unknown>,
    active: { model: string; ids: number[] },
    opts: CallOptions = {},
  ): Promise<T> {
    const ctx = await this.context();
    const context = {
      ...ctx,
      ...(opts.context ?? {}),
      active_model: active.model,
      active_id: active.ids[0],
      active_ids: active.ids,
    };
    const [sid] = await this.call<[number, string, string]>(`wizard.${name}.create`, [context], opts);
    try {
      return await this.call<T>(`wizard.${name}.execute`, [sid, data, state, context], opts);
    } finally {
      await this.call(`wizard.${name}.delete`, [sid, context], opts).catch(() => undefined);
    }
  }

  /** One HTTP exchange. */
  private async post(
    method: string,
    params: unknown[],
    session?: Session,
    opts: CallOptions = {},
  ): Promise<unknown> {
    const started = performance.now();
    const timeoutMs = opts.timeoutMs ?? this.opts.timeoutMs ?? 30_000;
    const timeout = AbortSignal.timeout(timeoutMs);
    const signal = opts.signal ? AbortSignal.any([opts.signal, timeout]) : timeout;
    const headers: Record<string, string> = {
      'content-type': 'application/json',
      accept: 'application/json',
    };
    if (session) headers.authorization = session.header;
    let error: TrytonError | undefined;
    try {
      let res: Response;
      let text: string;
      try {
        res = await fetch(this.url, {
          method: 'POST',
          headers,
          body: JSON.stringify({ id: this.nextId++, method, params }),
          signal,
        });
        text = await res.text();
      } catch (err) {
        throw transportError(err, method, timeout.aborted, timeoutMs);
      }
      if (res.status !== 200) throw fromHttpStatus(res.status, method, text);
      let body: { result?: unknown; error?: unknown };
      try {
        body = JSON.parse(text, reviver) as typeof body;
      } catch (err) {
        throw new TrytonError('unavailable', `Tryton sent invalid JSON for ${method}`, {
          method,
          cause: err,
        });
      }
      if (body.error !== undefined && body.error !== null) throw fromRpcError(body.error, method);
      return body.result;
    } catch (err) {
      error = err as TrytonError;
      throw err;
    } finally {
      this.opts.onCall?.(method, performance.now() - started, error);
    }
  }
}

function transportError(err: unknown, method: string, timedOut: boolean, timeoutMs: number): TrytonError {
  if (timedOut) {
    return new TrytonError('timeout', `Tryton did not answer ${method} within ${timeoutMs} ms`, {
      method,
      cause: err,
    });
  }
  const e = err as { name?: string; message?: string; cause?: { code?: string; message?: string } };
  if (e?.name === 'AbortError') {
    return new TrytonError('timeout', `call ${method} aborted by the caller`, { method, cause: err });
  }
  const code = e?.cause?.code ?? '';
  const msg = e?.cause?.message ?? e?.message ?? String(err);
  return new TrytonError('unavailable', `Tryton unreachable for ${method}: ${code ? `${code} ` : ''}${msg}`, {
    method,
    cause: err,
  });
}
