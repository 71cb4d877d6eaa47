// Change poller: turns work done inside Tryton (customer shipment done, customer invoice posted or
// paid) into change records, from a persisted watermark. The watermark is the newest write_date
// seen, minus an overlap window that catches transactions committing late; records already emitted
// within the window are remembered in the watermark so they are not emitted twice. Consumers should
// still deduplicate by `key` (delivery is at least once: save() happens after the records are yielded).
import type { TrytonClient } from './client.js';
import { getInvoice, getShipment } from './operations.js';
import type { ChangeKind, ChangeRecord, WatermarkStore } from './types.js';

export interface PollOptions {
  /** Re-read this far behind the watermark (default 60 s). */
  overlapMs?: number;
  /** Records per query (default 100). */
  batchSize?: number;
  /** Start here when the store has no watermark (ISO UTC); default: the beginning. */
  initialSince?: string;
  /** Include the full shipment / invoice in each record (default true). */
  details?: boolean;
}

interface Watermark {
  v: 1;
  /** Newest write_date seen (ISO UTC). */
  since: string;
  /** key → write_date of records emitted within the overlap window. */
  seen: Record<string, string>;
}

const EPOCH = '1970-01-01T00:00:00.000000Z';

function parse(w: string | undefined, initial: string): Watermark {
  if (!w) return { v: 1, since: initial, seen: {} };
  try {
    const p = JSON.parse(w) as Watermark;
    if (p && p.v === 1 && typeof p.since === 'string') return { v: 1, since: p.since, seen: p.seen ?? {} };
  } catch {
    // a bare timestamp
  }
  return { v: 1, since: w, seen: {} };
}

/** Tryton datetimes as a naive UTC value for domains. */
function toTrytonDatetime(iso: string): unknown {
  const d = new Date(iso);
  const micro = Number((iso.match(/\.(\d+)/)?.[1] ?? '0').padEnd(6, '0').slice(0, 6));
  return {
    __class__: 'datetime',
    year: d.getUTCFullYear(),
    month: d.getUTCMonth() + 1,
    day: d.getUTCDate(),
    hour: d.getUTCHours(),
    minute: d.getUTCMinutes(),
    second: d.getUTCSeconds(),
    microsecond: micro,
  };
}

function minus(iso: string, ms: number): string {
  const d = new Date(new Date(iso).getTime() - ms);
  return d.toISOString().replace(/\.(\d{3})Z$/, '.$1000Z');
}

interface Source {
  kind: ChangeKind;
  model: 'stock.shipment.out' | 'account.invoice';
  domain: unknown[];
}

const SOURCES: Source[] = [
  { kind: 'shipment_done', model: 'stock.shipment.out', domain: [['state', '=', 'done']] },
  {
    kind: 'invoice_posted',
    model: 'account.invoice',
    domain: [
      ['type', '=', 'out'],
      ['state', 'in', ['posted', 'paid']],
    ],
  },
  {
    kind: 'invoice_paid',
    model: 'account.invoice',
    domain: [
      ['type', '=', 'out'],
      ['state', '=', 'paid'],
    ],
  },
];

/**
 * One poll: yields every change since the stored watermark, oldest first per kind, then saves the
 * new watermark. Call it on a timer.
 */
export async function* pollChanges(
  c: TrytonClient,
  store: WatermarkStore,
  opts: PollOptions = {},
): AsyncGenerator<ChangeRecord> {
  const overlap = opts.overlapMs ?? 60_000;
  const batch = opts.batchSize ?? 100;
  const details = opts.details ?? true;
  const wm = parse(await store.load(), opts.initialSince ?? EPOCH);
  const from = minus(wm.since, overlap);
  let newest = wm.since;
  const emitted: { key: string; at: string }[] = [];

  for (const source of SOURCES) {
    let offset = 0;
    for (;;) {
      const rows = await c.searchRead<{
        number: string | null;
        write_date: string | null;
        create_date: string;
      }>(
        source.model,
        [...source.domain, ['write_date', '>=', toTrytonDatetime(from)]],
        ['number', 'write_date', 'create_date'],
        {
          offset,
          limit: batch,
          order: [
            ['write_date', 'ASC'],
            ['id', 'ASC'],
          ],
        },
      );
      if (rows.length === 0) break;
      offset += rows.length;
      const fresh = rows.filter((r) => !wm.seen[`tryton:${source.kind}:${r.id}`]);
      const saleRefs = await salesFor(
        c,
        source.model,
        fresh.map((r) => r.id),
      );
      for (const r of fresh) {
        const at = r.write_date ?? r.create_date;
        const key = `tryton:${source.kind}:${r.id}`;
        const sales = saleRefs.get(r.id) ?? [];
        const record: ChangeRecord = {
          kind: source.kind,
          key,
          id: r.id,
          number: r.number,
          at,
          saleIds: sales.map((s) => s.id),
          orderIds: sales.map((s) => s.reference).filter((x): x is string => !!x),
        };
        if (details) {
          if (source.model === 'stock.shipment.out') record.shipment = await getShipment(c, r.id);
          else record.invoice = await getInvoice(c, r.id);
        }
        yield record;
        emitted.push({ key, at });
        if (at > newest) newest = at;
      }
      if (rows.length < batch) break;
    }
  }

  const keepFrom = minus(newest, overlap);
  const seen: Record<string, string> = {};
  for (const [k, at] of Object.entries(wm.seen)) if (at >= keepFrom) seen[k] = at;
  for (const e of emitted) if (e.at >= keepFrom) seen[e.key] = e.at;
  await store.save(JSON.stringify({ v: 1, since: newest, seen } satisfies Watermark));
}

async function salesFor(
  c: TrytonClient,
  model: Source['model'],
  ids: number[],
): Promise<Map<number, { id: number; reference: string | null }[]>> {
  const out = new Map<number, { id: number; reference: string | null }[]>();
  if (ids.length === 0) return out;
  const field = model === 'stock.shipment.out' ? 'shipments' : 'invoices';
  const sales = await c.searchRead<{ reference: string | null; shipments: number[]; invoices: number[] }>(
    'sale.sale',
    [[field, 'in', ids]],
    ['reference', field],
  );
  const wanted = new Set(ids);
  for (const s of sales) {
    for (const id of s[field]) {
      if (!wanted.has(id)) continue;
      const list = out.get(id) ?? [];
      list.push({ id: s.id, reference: s.reference });
      out.set(id, list);
    }
  }
  return out;
}

/** An in-memory WatermarkStore (tests, local runs). */
export function memoryWatermarkStore(initial?: string): WatermarkStore & { value: string | undefined } {
  const store = {
    value: initial,
    async load() {
      return store.value;
    },
    async save(w: string) {
      store.value = w;
    },
  };
  return store;
}
