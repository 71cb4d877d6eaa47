// Inbound changes from Salesforce by polling: records whose SystemModstamp moved past the persisted
// watermark, oldest first, handed on in the same transaction that advances the watermark (so a
// crash repeats a batch rather than losing it; consumers deduplicate by record id + stamp).
import type { Store, Tx } from '../../store/types.js';
import { readWatermark, writeWatermark } from '../bindings.js';
import type { CallContext } from '../driver.js';
import type { SalesforceDriver } from './driver.js';

export interface PolledRecord {
  Id: string;
  SystemModstamp: string;
  [field: string]: unknown;
}

export class SalesforceChangePoller {
  constructor(
    private readonly driver: SalesforceDriver,
    private readonly store: Store,
    private readonly opts: {
      system: string;
      sobject: string;
      fields: string[];
      batchSize?: number;
      /** First watermark when none is stored, e.g. "2026-01-01T00:00:00Z". */
      since?: string;
      onRecords: (records: PolledRecord[], tx: Tx) => Promise<void>;
    },
  ) {}

  /** Polls one batch; returns how many records it handed on. */
  async pollOnce(signal: AbortSignal = AbortSignal.timeout(30_000)): Promise<number> {
    const name = `${this.opts.sobject}.SystemModstamp`;
    const since =
      (await this.store.transaction((tx) => readWatermark(tx, this.opts.system, name))) ??
      this.opts.since ??
      '1970-01-01T00:00:00Z';
    const fields = [
      'Id',
      'SystemModstamp',
      ...this.opts.fields.filter((f) => f !== 'Id' && f !== 'SystemModstamp'),
    ];
    const soql = `SELECT ${fields.join(', ')} FROM ${this.opts.sobject} WHERE SystemModstamp > ${toSoqlDateTime(since)} ORDER BY SystemModstamp ASC LIMIT ${this.opts.batchSize ?? 200}`;
    const ctx: CallContext = { signal, idempotencyKey: '', correlationId: '' };
    const res = (await this.driver.api(
      'GET',
      `/query?q=${encodeURIComponent(soql)}`,
      undefined,
      ctx,
      `poll ${this.opts.sobject}`,
    )) as {
      records: PolledRecord[];
    };
    if (res.records.length === 0) return 0;
    const last = res.records.at(-1)?.SystemModstamp ?? since;
    await this.store.transaction(async (tx) => {
      await this.opts.onRecords(res.records, tx);
      await writeWatermark(tx, this.opts.system, name, last);
    });
    return res.records.length;
  }
}

/** SOQL dateTime literals are unquoted ISO 8601 with Z or an offset. */
function toSoqlDateTime(v: string): string {
  return v.replace(/\.\d{3}/, '').replace('+0000', 'Z');
}
