// make bench ends here: one table of every benchmark figure from bench/results/*.json, each beside
// its aim from issue 11, the peer where there is one, and the machine it ran on. Reads the results
// the benchmarks wrote (it runs none), prints the table and writes it to bench/results/summary.md.
// A figure a result file does not carry (the benchmark not run, or its format changed) prints as
// "not measured" with the file it was looked for in.
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';

type Json = Record<string, unknown>;

function load(name: string): Json | undefined {
  const path = `bench/results/${name}.json`;
  return existsSync(path) ? (JSON.parse(readFileSync(path, 'utf8')) as Json) : undefined;
}

/** The value at a dotted path ("a.b.0.c"), or undefined. */
function at(doc: unknown, path: string): unknown {
  let v: unknown = doc;
  for (const k of path.split('.')) {
    if (v === null || typeof v !== 'object') return undefined;
    v = (v as Json)[k];
  }
  return v;
}

const num = (v: unknown): number | undefined => (typeof v === 'number' && Number.isFinite(v) ? v : undefined);
const fmt = (n: number | undefined, unit = '') =>
  n === undefined ? '' : `${n.toLocaleString('en-US', { maximumFractionDigits: 2 })}${unit}`;

interface Row {
  figure: string;
  measured: string;
  aim: string;
  met: string;
  peer: string;
  source: string;
}

/** A figure with an aim: met is yes/no from the comparison, blank without an aim. */
function row(
  figure: string,
  source: string,
  value: number | undefined,
  unit: string,
  aim?: { op: '>=' | '<=' | '<'; bound: number },
  peer = '',
): Row {
  const measured = value === undefined ? `not measured (${source})` : fmt(value, unit);
  let met = '';
  if (aim && value !== undefined) {
    const ok =
      aim.op === '>=' ? value >= aim.bound : aim.op === '<=' ? value <= aim.bound : value < aim.bound;
    met = ok ? 'yes' : 'no';
  }
  const sign = aim ? { '>=': '≥', '<=': '≤', '<': '<' }[aim.op] : '';
  return { figure, measured, aim: aim ? `${sign} ${fmt(aim.bound, unit)}` : '', met, peer, source };
}

const workflow = load('workflow');
const api = load('api');
const bus = load('bus');
const operator = load('operator');
const connectors = load('connectors');
const image = load('image');

const rows: Row[] = [];

// ---- the order path: bench/workflow.ts -----------------------------------------------------------
const wf = 'workflow.json';
const runs = (at(workflow, 'runs') as Json[] | undefined) ?? [];
const run = (replicas: number) => runs.find((r) => r.replicas === replicas);
const temporal = (store: string) => {
  const t = at(workflow, `peer.temporal.${store}`) as Json | undefined;
  if (!t) return '';
  if (typeof t.error === 'string') return `Temporal ${store}: could not run`;
  return `Temporal ${store === 'sqlite' ? 'SQLite' : 'in memory'} ${fmt(num(t.completedOrdersPerSecond), '/s')}`;
};
const ratios = at(workflow, 'peer.oursOverTemporal') as Record<string, number> | undefined;
const peerLine = [temporal('sqlite'), temporal('memory')].filter(Boolean).join('; ');
const ratioLine = ratios
  ? ` (ours/Temporal ${Object.entries(ratios)
      .map(([k, v]) => `${fmt(v)}× ${k}`)
      .join(', ')})`
  : '';
rows.push(
  row(
    'completed ten-step orders/s, 1 replica',
    wf,
    num(at(run(1) ?? workflow, 'completedOrdersPerSecond')),
    '/s',
    { op: '>=', bound: 500 },
    peerLine + (peerLine ? ratioLine : ''),
  ),
);
const r2 = run(2);
if (r2 || runs.length) {
  const f = num(at(workflow, 'scaling.completedOrdersPerSecond.factor'));
  rows.push(
    row(
      'completed ten-step orders/s, 2 replicas',
      wf,
      num(at(r2, 'completedOrdersPerSecond')),
      '/s',
      { op: '>=', bound: 500 },
      f === undefined ? '' : `×${fmt(f)} from 1 replica`,
    ),
  );
  for (const n of [1, 2]) {
    const r = run(n);
    rows.push(
      row(
        `workflow run submits, ${n} replica${n > 1 ? 's' : ''}: accepts/s (p99)`,
        wf,
        num(at(r, 'submit.acceptsPerSecond')),
        '/s',
        undefined,
        r ? `p99 ${fmt(num(at(r, 'submit.p99Ms')), ' ms')}` : '',
      ),
    );
  }
  for (const n of [1, 2]) {
    const r = run(n);
    if (!r) continue;
    const c = (k: string) => num(at(r, `counts.${k}`)) ?? 0;
    const bad =
      c('lost') +
      c('duplicated.keysWithTwoOrders') +
      c('duplicated.resubmitsAnsweredAnotherOrder') +
      c('duplicated.completedTwice') +
      c('paidWithoutLastStepRecord') +
      c('erpSalesOrders.zero') +
      c('erpSalesOrders.moreThanOne') +
      c('erpSalesOrders.forNoAcceptedOrder');
    rows.push({
      figure: `orders lost / duplicated / ERP sales orders ≠ 1, ${n} replica${n > 1 ? 's' : ''}`,
      measured: `${c('lost')} / ${c('duplicated.keysWithTwoOrders') + c('duplicated.resubmitsAnsweredAnotherOrder') + c('duplicated.completedTwice')} / ${c('erpSalesOrders.zero') + c('erpSalesOrders.moreThanOne')} of ${c('accepted')} accepted`,
      aim: '0 / 0 / 0',
      met: bad === 0 ? 'yes' : 'no',
      peer: '',
      source: wf,
    });
  }
}

// ---- SubmitOrder intake: bench/api.ts ------------------------------------------------------------
const apiRows = (at(api, 'results') as Json[] | undefined) ?? [];
const pg64 = apiRows.find((r) => r.store === 'postgres' && r.concurrency === 64 && (r.replicas ?? 1) === 1);
rows.push(
  row('SubmitOrder durable accepts/s, c=64, PostgreSQL', 'api.json', num(pg64?.ordersPerSecond), '/s', {
    op: '>=',
    bound: 2000,
  }),
);
rows.push(
  row('SubmitOrder p99, c=64, PostgreSQL', 'api.json', num(pg64?.p99Ms), ' ms', { op: '<=', bound: 20 }),
);
const pg64r2 = apiRows.find((r) => r.store === 'postgres' && r.concurrency === 64 && r.replicas === 2);
if (pg64r2)
  rows.push(
    row(
      'SubmitOrder durable accepts/s, c=64, PostgreSQL, 2 replicas',
      'api.json',
      num(pg64r2.ordersPerSecond),
      '/s',
      { op: '>=', bound: 2000 },
      `p99 ${fmt(num(pg64r2.p99Ms), ' ms')}`,
    ),
  );

// ---- the bus: bench/bus.ts -----------------------------------------------------------------------
rows.push(
  row('confirmed publishes/s', 'bus.json', num(at(bus, 'publishOnly.msgsPerSecond')), '/s', {
    op: '>=',
    bound: 20_000,
  }),
);
rows.push(
  row(
    'deduplicated consumes/s (inbox on PostgreSQL)',
    'bus.json',
    num(at(bus, 'consumeWithInboxOnPostgres.msgsPerSecond')),
    '/s',
    { op: '>=', bound: 5_000 },
  ),
);

// ---- the operator: bench/operator.ts -------------------------------------------------------------
rows.push(
  row('1,000 Pipelines Ready', 'operator.json', num(at(operator, 'allReadySeconds')), ' s', {
    op: '<=',
    bound: 30,
  }),
);
rows.push(
  row('operator peak RSS', 'operator.json', num(at(operator, 'operatorPeakRssMb')), ' MB', {
    op: '<',
    bound: 150,
  }),
);

// ---- figures without an aim in issue 11 ----------------------------------------------------------
if (connectors)
  rows.push(
    row(
      'simulator connector commands/s through the broker',
      'connectors.json',
      num(at(connectors, 'simulatorThroughBroker.opsPerSecond')),
      '/s',
    ),
  );
if (image) {
  rows.push(
    row('image size', 'image.json', num(at(image, 'sizeMb')), ' MB', {
      op: '<=',
      bound: num(at(image, 'aim.sizeMb')) ?? 250,
    }),
  );
  rows.push(
    row(
      'docker start -> /readyz, workflow on PostgreSQL',
      'image.json',
      num(at(image, 'startToReadyMs.workflow-postgres')),
      ' ms',
      {
        op: '<=',
        bound: num(at(image, 'aim.startToReadyMs')) ?? 1000,
      },
    ),
  );
}

// ---- the table ----------------------------------------------------------------------------------
const dates = Object.entries({ workflow, api, bus, operator, connectors, image })
  .filter(([, d]) => d)
  .map(([k, d]) => {
    const load = [
      'runs.0.loadAverageAtStart',
      'machine.loadAverageAtStart',
      'machine.loadAverageBefore',
      'loadAverageAtStart',
      'loadAverage',
      'machine.loadAverageAtEnd',
      'loadAverageAtEnd',
    ]
      .map((p) => at(d, p))
      .find((v) => v !== undefined);
    const first = Array.isArray(load) ? load[0] : load;
    const when = String(at(d, 'date') ?? at(d, 'when') ?? '?').slice(0, 16);
    return `${k} ${when}${typeof first === 'number' ? ` (load ${fmt(first)})` : ''}`;
  });
const host = at(workflow, 'machine');
const machine =
  host && typeof host === 'object' && 'cores' in host
    ? (({ cores, cpu, memoryGiB, node, postgres, rabbitmq }: Json) =>
        `${cores} cores (${cpu}), ${memoryGiB} GiB, Node ${node}, PostgreSQL ${postgres}, RabbitMQ ${rabbitmq}; services, benchmarks and the peer on the same host`)(
        host as Json,
      )
    : `${cpus().length} cores (${cpus()[0]?.model ?? 'unknown cpu'}), Node ${process.version}; services and benchmarks on the same host`;

const header: Row = {
  figure: 'figure',
  measured: 'measured',
  aim: 'aim',
  met: 'met',
  peer: 'peer / growth',
  source: 'from',
};
const cols = Object.keys(header) as (keyof Row)[];
const width = Object.fromEntries(
  cols.map((c) => [c, Math.max(...[header, ...rows].map((r) => r[c].length))]),
) as Record<keyof Row, number>;
const line = (r: Row) => `| ${cols.map((c) => r[c].padEnd(width[c])).join(' | ')} |`;
const table = [
  line(header),
  `|${cols.map((c) => '-'.repeat(width[c] + 2)).join('|')}|`,
  ...rows.map(line),
].join('\n');
const text = `Machine: ${machine}\nResults: ${dates.join(', ')}\n\n${table}\n`;
console.log(`\n${text}`);
writeFileSync('bench/results/summary.md', `# make bench summary\n\n${text}`);
