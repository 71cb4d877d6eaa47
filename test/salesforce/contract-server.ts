// A local Salesforce contract server: no Salesforce org is reachable from here, so the salesforce
// driver is tested against this reproduction of the documented REST API behaviour (API v60.0):
//   - OAuth 2.0 token endpoint /services/oauth2/token: client_credentials and JWT bearer
//     (urn:ietf:params:oauth:grant-type:jwt-bearer, RS256 assertion), answering
//     {access_token, instance_url, id, token_type, issued_at, signature}; failures 400
//     {error: invalid_client | invalid_grant, error_description}.
//   - sObject Rows by External ID: PATCH /sobjects/{type}/{field}/{value} upserts: 201
//     {id, success, errors: [], created: true} when new, 200 {..., created: false} when matched
//     once, 300 with the matching record URLs when matched more than once; GET reads it.
//   - composite: POST /composite {allOrNone, compositeRequest: [{method, url, referenceId, body}]}
//     → {compositeResponse: [{body, httpHeaders, httpStatusCode, referenceId}]}, "@{ref.id}"
//     references, all-or-none rollback with PROCESSING_HALTED for the rest.
//   - query: GET /query?q=SELECT ... FROM T WHERE SystemModstamp > ts ORDER BY SystemModstamp LIMIT n.
//   - errors as a JSON array [{message, errorCode, fields}]: INVALID_SESSION_ID (401),
//     REQUEST_LIMIT_EXCEEDED (403), NOT_FOUND (404), REQUIRED_FIELD_MISSING, INVALID_FIELD,
//     MALFORMED_ID, JSON_PARSER_ERROR, FIELD_CUSTOM_VALIDATION_EXCEPTION, DUPLICATE_VALUE,
//     UNABLE_TO_LOCK_ROW (400), SERVER_UNAVAILABLE (503).
//   - every API response carries `Sforce-Limit-Info: api-usage=<used>/<limit>`.
import { createVerify, randomBytes } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';

type SObject = Record<string, unknown> & { Id: string; SystemModstamp: string };
export type SalesforceError = { message: string; errorCode: string; fields: string[] };

const API = '/services/data/v60.0';
const KEY_PREFIX: Record<string, string> = {
  Account: '001',
  Product2: '01t',
  PricebookEntry: '01u',
  Order: '801',
  OrderItem: '802',
  Pricebook2: '01s',
};
const STANDARD_FIELDS: Record<string, string[]> = {
  Account: [
    'Name',
    'BillingStreet',
    'BillingCity',
    'BillingState',
    'BillingPostalCode',
    'BillingCountry',
    'AccountNumber',
    'Description',
  ],
  Product2: ['Name', 'ProductCode', 'Description', 'IsActive', 'QuantityUnitOfMeasure'],
  PricebookEntry: ['Pricebook2Id', 'Product2Id', 'UnitPrice', 'IsActive', 'CurrencyIsoCode'],
  Order: [
    'AccountId',
    'EffectiveDate',
    'Status',
    'Pricebook2Id',
    'Description',
    'PoNumber',
    'CurrencyIsoCode',
  ],
  OrderItem: ['OrderId', 'PricebookEntryId', 'Quantity', 'UnitPrice', 'Description'],
  Pricebook2: ['Name', 'IsActive', 'IsStandard'],
};
const REQUIRED: Record<string, string[]> = {
  Account: ['Name'],
  Product2: ['Name'],
  PricebookEntry: ['Pricebook2Id', 'Product2Id', 'UnitPrice'],
  Order: ['AccountId', 'EffectiveDate', 'Status'],
  OrderItem: ['OrderId', 'PricebookEntryId', 'Quantity', 'UnitPrice'],
};
/** Relationship name → (id field, target type) for references by external id in a body. */
const RELATIONSHIPS: Record<string, Record<string, [string, string]>> = {
  PricebookEntry: { Product2: ['Product2Id', 'Product2'], Pricebook2: ['Pricebook2Id', 'Pricebook2'] },
  Order: { Account: ['AccountId', 'Account'], Pricebook2: ['Pricebook2Id', 'Pricebook2'] },
  OrderItem: { Order: ['OrderId', 'Order'], PricebookEntry: ['PricebookEntryId', 'PricebookEntry'] },
};
const ORDER_STATUSES = ['Draft', 'Activated'];

export interface ContractServerOptions {
  clientId?: string;
  clientSecret?: string;
  /** PEM public key for JWT bearer assertions, and the username they must name. */
  jwtPublicKey?: string;
  jwtUsername?: string;
  /** Daily API request allocation reported in Sforce-Limit-Info. */
  apiLimit?: number;
}

export class SalesforceContractServer {
  readonly records = new Map<string, Map<string, SObject>>();
  readonly requests: { method: string; path: string; at: number }[] = [];
  apiUsed = 0;
  apiLimit: number;
  tokensIssued = 0;
  private readonly tokens = new Set<string>();
  private readonly failures: { status: number; errors: SalesforceError[] }[] = [];
  private seq = 0;
  private clock = Date.parse('2026-01-01T00:00:00Z');
  private server: Server | undefined;
  url = '';
  readonly standardPricebookId: string;

  constructor(private readonly opts: ContractServerOptions = {}) {
    this.apiLimit = opts.apiLimit ?? 15_000;
    this.standardPricebookId = this.insert('Pricebook2', {
      Name: 'Standard Price Book',
      IsActive: true,
      IsStandard: true,
    }).Id;
  }

  async start(): Promise<string> {
    this.server = createServer((req, res) => void this.handle(req, res));
    await new Promise<void>((r) => this.server?.listen(0, '127.0.0.1', r));
    const addr = this.server.address();
    this.url = `http://127.0.0.1:${typeof addr === 'object' && addr ? addr.port : 0}`;
    return this.url;
  }

  stop(): Promise<void> {
    return new Promise((r) => (this.server ? this.server.close(() => r()) : r()));
  }

  /** Every issued access token stops working (session timeout, revoked). */
  expireSessions(): void {
    this.tokens.clear();
  }

  /** The next API call fails with this documented error. */
  failNext(status: number, errorCode: string, message: string, fields: string[] = []): void {
    this.failures.push({ status, errors: [{ message, errorCode, fields }] });
  }

  all(type: string): SObject[] {
    return [...(this.records.get(type)?.values() ?? [])];
  }

  /** Changes a record as a Salesforce user would, moving its SystemModstamp. */
  touch(type: string, id: string, fields: Record<string, unknown>): void {
    const r = this.records.get(type)?.get(id);
    if (r) Object.assign(r, fields, { SystemModstamp: this.stamp() });
  }

  private stamp(): string {
    this.clock += 1000;
    return new Date(this.clock).toISOString().replace('Z', '+0000');
  }

  private newId(type: string): string {
    const prefix = KEY_PREFIX[type] ?? 'a00';
    return `${prefix}5g00000${String(++this.seq).padStart(5, '0')}AAA`.slice(0, 18);
  }

  private insert(type: string, fields: Record<string, unknown>): SObject {
    const rec: SObject = { ...fields, Id: this.newId(type), SystemModstamp: this.stamp() };
    if (!this.records.has(type)) this.records.set(type, new Map());
    this.records.get(type)?.set(rec.Id, rec);
    return rec;
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://x');
    let raw = '';
    for await (const c of req) raw += c;
    this.requests.push({ method: req.method ?? '', path: url.pathname, at: Date.now() });
    const send = (status: number, body: unknown, headers: Record<string, string> = {}) => {
      res.writeHead(status, { 'Content-Type': 'application/json;charset=UTF-8', ...headers });
      res.end(body === undefined ? undefined : JSON.stringify(body));
    };
    if (url.pathname === '/services/oauth2/token' && req.method === 'POST') {
      this.token(new URLSearchParams(raw), send);
      return;
    }
    if (!url.pathname.startsWith(API))
      return send(404, [{ message: 'The requested resource does not exist', errorCode: 'NOT_FOUND' }]);

    const limitHeader = () => ({ 'Sforce-Limit-Info': `api-usage=${this.apiUsed}/${this.apiLimit}` });
    const token = (req.headers.authorization ?? '').replace(/^Bearer /, '');
    if (!this.tokens.has(token)) {
      return send(401, [{ message: 'Session expired or invalid', errorCode: 'INVALID_SESSION_ID' }]);
    }
    if (this.apiUsed >= this.apiLimit) {
      return send(
        403,
        [{ message: 'TotalRequests Limit exceeded.', errorCode: 'REQUEST_LIMIT_EXCEEDED' }],
        limitHeader(),
      );
    }
    this.apiUsed++;
    const failure = this.failures.shift();
    if (failure) return send(failure.status, failure.errors, limitHeader());
    let body: unknown;
    if (raw) {
      try {
        body = JSON.parse(raw);
      } catch {
        return send(
          400,
          [
            {
              message: `Unexpected character ('${raw[0]}' (code ${raw.charCodeAt(0)})): expected a valid value at [line:1, column:1]`,
              errorCode: 'JSON_PARSER_ERROR',
            },
          ],
          limitHeader(),
        );
      }
    }
    const path = url.pathname.slice(API.length);
    const result =
      path === '/composite' && req.method === 'POST'
        ? this.composite(body as CompositeBody)
        : path === '/query' && req.method === 'GET'
          ? this.query(url.searchParams.get('q') ?? '')
          : this.sobject(req.method ?? 'GET', path, body as Record<string, unknown>);
    send(result.status, result.body, limitHeader());
  }

  private token(form: URLSearchParams, send: (s: number, b: unknown) => void): unknown {
    const grant = form.get('grant_type');
    const issue = () => {
      const accessToken = `00D5g000000TEST!${randomBytes(24).toString('base64url')}`;
      this.tokens.add(accessToken);
      this.tokensIssued++;
      send(200, {
        access_token: accessToken,
        instance_url: this.url,
        id: `${this.url}/id/00D5g000000TEST/0055g000000USER`,
        token_type: 'Bearer',
        issued_at: String(Date.now()),
        signature: randomBytes(32).toString('base64'),
      });
    };
    if (grant === 'client_credentials') {
      if (
        form.get('client_id') !== (this.opts.clientId ?? 'o2c-client') ||
        form.get('client_secret') !== (this.opts.clientSecret ?? 'o2c-secret')
      ) {
        return send(400, { error: 'invalid_client', error_description: 'invalid client credentials' });
      }
      return issue();
    }
    if (grant === 'urn:ietf:params:oauth:grant-type:jwt-bearer') {
      const [h, c, s] = (form.get('assertion') ?? '').split('.');
      if (!h || !c || !s || !this.opts.jwtPublicKey)
        return send(400, { error: 'invalid_grant', error_description: 'invalid assertion' });
      const verifier = createVerify('RSA-SHA256');
      verifier.update(`${h}.${c}`);
      if (!verifier.verify(this.opts.jwtPublicKey, Buffer.from(s, 'base64url'))) {
        return send(400, { error: 'invalid_grant', error_description: 'invalid assertion' });
      }
      const claims = JSON.parse(Buffer.from(c, 'base64url').toString()) as {
        sub?: string;
        exp?: number;
        iss?: string;
      };
      if ((claims.exp ?? 0) * 1000 < Date.now())
        return send(400, { error: 'invalid_grant', error_description: 'expired authorization code' });
      if (claims.sub !== this.opts.jwtUsername)
        return send(400, { error: 'invalid_grant', error_description: "user hasn't approved this consumer" });
      return issue();
    }
    send(400, { error: 'unsupported_grant_type', error_description: 'grant type not supported' });
  }

  private fieldError(
    type: string,
    fields: Record<string, unknown>,
  ): { status: number; body: SalesforceError[] } | undefined {
    for (const f of Object.keys(fields)) {
      if (f === 'attributes' || f === 'Id' || STANDARD_FIELDS[type]?.includes(f) || f.endsWith('__c'))
        continue;
      if (RELATIONSHIPS[type]?.[f]) continue;
      return {
        status: 400,
        body: [
          {
            message: `No such column '${f}' on sobject of type ${type}`,
            errorCode: 'INVALID_FIELD',
            fields: [],
          },
        ],
      };
    }
    if (type === 'Order' && fields.Status !== undefined && !ORDER_STATUSES.includes(String(fields.Status))) {
      return {
        status: 400,
        body: [
          {
            message: `Status: bad value for restricted picklist field: ${String(fields.Status)}`,
            errorCode: 'INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST',
            fields: ['Status'],
          },
        ],
      };
    }
    return undefined;
  }

  /** Resolves `"Account": {"O2C_Id__c": "c-1"}` references into AccountId. */
  private resolveRelationships(type: string, fields: Record<string, unknown>): SalesforceError | undefined {
    for (const [rel, [idField, target]] of Object.entries(RELATIONSHIPS[type] ?? {})) {
      const ref = fields[rel] as Record<string, unknown> | undefined;
      if (!ref || typeof ref !== 'object') continue;
      const [extField, value] = Object.entries(ref)[0] ?? [];
      const match = this.all(target).filter((r) => extField !== undefined && r[extField] === value);
      if (match.length !== 1) {
        return {
          message: `Foreign key external ID: ${String(value)} not found for field ${extField} in entity ${target}`,
          errorCode: 'INVALID_FIELD',
          fields: [],
        };
      }
      delete fields[rel];
      fields[idField] = match[0]?.Id;
    }
    return undefined;
  }

  private sobject(
    method: string,
    path: string,
    body: Record<string, unknown> | undefined,
  ): { status: number; body: unknown } {
    const parts = path.split('/').filter(Boolean).map(decodeURIComponent);
    if (parts[0] !== 'sobjects' || !parts[1] || !STANDARD_FIELDS[parts[1]]) {
      return {
        status: 404,
        body: [{ message: 'The requested resource does not exist', errorCode: 'NOT_FOUND' }],
      };
    }
    const type = parts[1];
    if (parts.length === 3) {
      const rec = this.records.get(type)?.get(parts[2] ?? '');
      if (!rec) {
        return /^[a-zA-Z0-9]{15}([a-zA-Z0-9]{3})?$/.test(parts[2] ?? '')
          ? {
              status: 404,
              body: [{ message: 'The requested resource does not exist', errorCode: 'NOT_FOUND' }],
            }
          : {
              status: 400,
              body: [{ message: `Invalid id: ${parts[2]}`, errorCode: 'MALFORMED_ID', fields: [] }],
            };
      }
      if (method === 'GET') return { status: 200, body: { attributes: { type }, ...rec } };
      if (method === 'PATCH') {
        const fields = { ...(body ?? {}) };
        const invalid = this.fieldError(type, fields);
        if (invalid) return invalid;
        const relErr = this.resolveRelationships(type, fields);
        if (relErr) return { status: 400, body: [relErr] };
        Object.assign(rec, fields, { SystemModstamp: this.stamp() });
        return { status: 204, body: undefined };
      }
    }
    if (parts.length !== 4)
      return {
        status: 404,
        body: [{ message: 'The requested resource does not exist', errorCode: 'NOT_FOUND' }],
      };
    const [, , extField, value] = parts as [string, string, string, string];
    if (!extField.endsWith('__c') && extField !== 'Id') {
      return {
        status: 404,
        body: [{ message: 'The requested resource does not exist', errorCode: 'NOT_FOUND' }],
      };
    }
    const matches = this.all(type).filter((r) => r[extField] === value);
    if (matches.length > 1)
      return { status: 300, body: matches.map((r) => `${API}/sobjects/${type}/${r.Id}`) };
    if (method === 'GET') {
      return matches[0]
        ? {
            status: 200,
            body: { attributes: { type, url: `${API}/sobjects/${type}/${matches[0].Id}` }, ...matches[0] },
          }
        : {
            status: 404,
            body: [{ message: 'The requested resource does not exist', errorCode: 'NOT_FOUND' }],
          };
    }
    if (method !== 'PATCH')
      return {
        status: 405,
        body: [
          {
            message: `HTTP Method '${method}' not allowed. Allowed are GET,PATCH`,
            errorCode: 'METHOD_NOT_ALLOWED',
          },
        ],
      };
    const fields = { ...(body ?? {}) };
    if (extField in fields) {
      return {
        status: 400,
        body: [
          {
            message: `The external ID field ${extField} should not be specified in the sobject data.`,
            errorCode: 'INVALID_FIELD',
            fields: [],
          },
        ],
      };
    }
    const invalid = this.fieldError(type, fields);
    if (invalid) return invalid;
    const relErr = this.resolveRelationships(type, fields);
    if (relErr) return { status: 400, body: [relErr] };
    const existing = matches[0];
    if (existing) {
      Object.assign(existing, fields, { SystemModstamp: this.stamp() });
      return { status: 200, body: { id: existing.Id, success: true, errors: [], created: false } };
    }
    const missing = (REQUIRED[type] ?? []).filter(
      (f) => fields[f] === undefined || fields[f] === null || fields[f] === '',
    );
    if (missing.length > 0) {
      return {
        status: 400,
        body: [
          {
            message: `Required fields are missing: [${missing.join(', ')}]`,
            errorCode: 'REQUIRED_FIELD_MISSING',
            fields: missing,
          },
        ],
      };
    }
    if (type === 'OrderItem') {
      const order = this.records.get('Order')?.get(String(fields.OrderId));
      if (order?.Status === 'Activated') {
        return {
          status: 400,
          body: [
            {
              message: "You can't add products to an activated order.",
              errorCode: 'FIELD_INTEGRITY_EXCEPTION',
              fields: [],
            },
          ],
        };
      }
    }
    const rec = this.insert(type, { ...fields, [extField]: value });
    return { status: 201, body: { id: rec.Id, success: true, errors: [], created: true } };
  }

  private composite(body: CompositeBody): { status: number; body: unknown } {
    const results: {
      body: unknown;
      httpHeaders: Record<string, string>;
      httpStatusCode: number;
      referenceId: string;
    }[] = [];
    const ids = new Map<string, string>();
    const snapshot = new Map(
      [...this.records].map(([t, m]) => [t, new Map([...m].map(([id, r]) => [id, { ...r }]))]),
    );
    let failed = false;
    for (const sub of body?.compositeRequest ?? []) {
      if (failed && body.allOrNone) {
        results.push({
          body: [
            {
              errorCode: 'PROCESSING_HALTED',
              message:
                'The transaction was rolled back since another operation in the same transaction failed.',
            },
          ],
          httpHeaders: {},
          httpStatusCode: 400,
          referenceId: sub.referenceId,
        });
        continue;
      }
      const resolve = (s: string) => s.replace(/@\{([^.}]+)\.id\}/g, (_m, ref: string) => ids.get(ref) ?? '');
      const url = resolve(sub.url);
      const subBody = sub.body
        ? (JSON.parse(resolve(JSON.stringify(sub.body))) as Record<string, unknown>)
        : undefined;
      const r = this.sobject(sub.method, url.replace(API, ''), subBody);
      const id =
        (r.body as { id?: string; Id?: string } | undefined)?.id ??
        (r.body as { Id?: string } | undefined)?.Id;
      if (id) ids.set(sub.referenceId, id);
      if (r.status >= 400) failed = true;
      results.push({
        body: r.body ?? null,
        httpHeaders: {},
        httpStatusCode: r.status,
        referenceId: sub.referenceId,
      });
    }
    if (failed && body.allOrNone) {
      this.records.clear();
      for (const [t, m] of snapshot) this.records.set(t, m);
      for (const r of results)
        if (r.httpStatusCode < 400)
          Object.assign(r, {
            httpStatusCode: 400,
            body: [
              {
                errorCode: 'PROCESSING_HALTED',
                message:
                  'The transaction was rolled back since another operation in the same transaction failed.',
              },
            ],
          });
    }
    return { status: 200, body: { compositeResponse: results } };
  }

  private query(q: string): { status: number; body: unknown } {
    const m =
      /^SELECT\s+(.+?)\s+FROM\s+(\w+)(?:\s+WHERE\s+SystemModstamp\s*>\s*(\S+))?(?:\s+ORDER\s+BY\s+SystemModstamp(?:\s+ASC)?)?(?:\s+LIMIT\s+(\d+))?$/i.exec(
        q.trim(),
      );
    if (!m)
      return {
        status: 400,
        body: [
          { message: `unexpected token: '${q.split(' ')[0]}'`, errorCode: 'MALFORMED_QUERY', fields: [] },
        ],
      };
    const [, fieldList, type, after, limit] = m as unknown as [
      string,
      string,
      string,
      string | undefined,
      string | undefined,
    ];
    if (!STANDARD_FIELDS[type])
      return {
        status: 400,
        body: [
          { message: `sObject type '${type}' is not supported.`, errorCode: 'INVALID_TYPE', fields: [] },
        ],
      };
    const fields = fieldList.split(',').map((f) => f.trim());
    const afterMs = after ? Date.parse(after.replace('+0000', 'Z')) : Number.NEGATIVE_INFINITY;
    const rows = this.all(type)
      .filter((r) => Date.parse(r.SystemModstamp.replace('+0000', 'Z')) > afterMs)
      .sort((a, b) => a.SystemModstamp.localeCompare(b.SystemModstamp))
      .slice(0, limit ? Number(limit) : 2000)
      .map((r) => ({
        attributes: { type, url: `${API}/sobjects/${type}/${r.Id}` },
        ...Object.fromEntries(fields.map((f) => [f, r[f] ?? null])),
      }));
    return { status: 200, body: { totalSize: rows.length, done: true, records: rows } };
  }
}

interface CompositeBody {
  allOrNone?: boolean;
  compositeRequest: { method: string; url: string; referenceId: string; body?: Record<string, unknown> }[];
}
