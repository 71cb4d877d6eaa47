// OAuth 2.0 token sources shared by the http and salesforce drivers: client credentials (RFC 6749
// §4.4) and the JWT bearer grant (RFC 7523). Tokens are cached until shortly before they expire, and
// dropped when the mounted credentials change or the system answers 401.
import { createSign } from 'node:crypto';
import { ErrorClass } from '../gen/o2c/v1/common_pb.js';
import type { CredentialSource } from './credentials.js';
import { ConnectorFailure, errorClassForHttpStatus } from './driver.js';

export interface AccessToken {
  accessToken: string;
  /** Salesforce answers with the org's instance URL, to send API calls to. */
  instanceUrl?: string;
  expiresAt: number;
}

export interface TokenSource {
  get(signal?: AbortSignal): Promise<AccessToken>;
  /** Forget the cached token (after a 401). */
  invalidate(): void;
}

export type OAuthGrant =
  | { type: 'client_credentials'; tokenUrl: string; scope?: string }
  | { type: 'jwt_bearer'; tokenUrl: string; audience: string; lifetimeSec?: number };

/** Default lifetime when the server gives no expires_in (Salesforce does not); re-fetched on 401. */
const DEFAULT_TTL_MS = 30 * 60_000;

export class OAuthTokenSource implements TokenSource {
  private cached: AccessToken | undefined;
  private credentialsVersion = -1;
  private inflight: Promise<AccessToken> | undefined;
  /** Token requests made; tests assert refreshes with it. */
  fetches = 0;

  constructor(
    private readonly grant: OAuthGrant,
    private readonly credentials: CredentialSource,
    private readonly now: () => number = Date.now,
  ) {}

  invalidate(): void {
    this.cached = undefined;
  }

  async get(signal?: AbortSignal): Promise<AccessToken> {
    if (this.credentials.version !== this.credentialsVersion) this.cached = undefined;
    if (this.cached && this.cached.expiresAt - 60_000 > this.now()) return this.cached;
    this.inflight ??= this.fetchToken(signal).finally(() => {
      this.inflight = undefined;
    });
    return this.inflight;
  }

  private async fetchToken(signal?: AbortSignal): Promise<AccessToken> {
    const version = this.credentials.version;
    const form = new URLSearchParams();
    if (this.grant.type === 'client_credentials') {
      form.set('grant_type', 'client_credentials');
      form.set('client_id', this.credentials.require('client_id'));
      form.set('client_secret', this.credentials.require('client_secret'));
      if (this.grant.scope) form.set('scope', this.grant.scope);
    } else {
      form.set('grant_type', 'urn:ietf:params:oauth:grant-type:jwt-bearer');
      form.set('assertion', this.jwtAssertion());
    }
    this.fetches++;
    const res = await fetch(this.grant.tokenUrl, {
      method: 'POST',
      headers: { 'Content-Type': 'application/x-www-form-urlencoded', Accept: 'application/json' },
      body: form,
      signal,
    });
    const text = await res.text();
    let body: Record<string, unknown> = {};
    try {
      body = JSON.parse(text) as Record<string, unknown>;
    } catch {
      // A non-JSON answer (a proxy's error page) is reported by status below.
    }
    if (!res.ok || typeof body.access_token !== 'string') {
      // invalid_client / invalid_grant are credential problems; 5xx is an outage.
      const errorClass = res.status >= 500 ? errorClassForHttpStatus(res.status) : ErrorClass.AUTH;
      throw new ConnectorFailure(
        errorClass,
        `token request to ${this.grant.tokenUrl} failed (${res.status}): ${String(body.error ?? '')} ${String(body.error_description ?? text.slice(0, 200))}`.trim(),
        { code: String(body.error ?? `HTTP_${res.status}`) },
      );
    }
    const expiresIn = Number(body.expires_in);
    const token: AccessToken = {
      accessToken: body.access_token,
      instanceUrl: typeof body.instance_url === 'string' ? body.instance_url : undefined,
      expiresAt:
        this.now() + (Number.isFinite(expiresIn) && expiresIn > 0 ? expiresIn * 1000 : DEFAULT_TTL_MS),
    };
    this.cached = token;
    this.credentialsVersion = version;
    return token;
  }

  /** RS256-signed assertion: iss = client_id, sub = username, aud = login URL. */
  private jwtAssertion(): string {
    if (this.grant.type !== 'jwt_bearer') throw new Error('not a JWT bearer grant');
    const b64 = (v: string | Buffer) => Buffer.from(v).toString('base64url');
    const header = b64(JSON.stringify({ alg: 'RS256', typ: 'JWT' }));
    const nowSec = Math.floor(this.now() / 1000);
    const claims = b64(
      JSON.stringify({
        iss: this.credentials.require('client_id'),
        sub: this.credentials.require('username'),
        aud: this.grant.audience,
        exp: nowSec + (this.grant.lifetimeSec ?? 180),
      }),
    );
    const signer = createSign('RSA-SHA256');
    signer.update(`${header}.${claims}`);
    return `${header}.${claims}.${b64(signer.sign(this.credentials.require('private_key')))}`;
  }
}
