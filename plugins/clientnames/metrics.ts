import type { Registry } from 'prom-client';
import type { MetricsFactory, Mirror, ReportedTotals } from '../../core/metricsRegistry';
import type { AnswerStats } from './answer';
import type { NameTable, TableStats } from './nameTable';

/**
 * `codexdns_clientnames_*`. The answer path only bumps plain integers (AnswerStats); the Prometheus series follow
 * them when scraped. The table's totals outlive a reload with the table, so what was already reported is kept
 * beside it (a WeakMap), never counted twice.
 */
interface Source {
  readonly server: string;
  readonly table: NameTable;
  readonly answers: AnswerStats;
  readonly answersReported: ReportedTotals;
}

interface MetricSet {
  readonly sources: Set<Source>;
  readonly mirrors: ReadonlyArray<Mirror<unknown>>;
}

const sets = new WeakMap<Registry, MetricSet>();
const tableReported = new WeakMap<NameTable, ReportedTotals>();

function reportedOf(table: NameTable): ReportedTotals {
  let r = tableReported.get(table);
  if (r === undefined) tableReported.set(table, (r = new Map()));
  return r;
}

const RESULTS: ReadonlyArray<keyof AnswerStats> = ['answered', 'nodata', 'nxdomain', 'ptr', 'passed'];

function metricSet(factory: MetricsFactory): MetricSet {
  const existing = sets.get(factory.registry);
  if (existing !== undefined) return existing;
  const sources = new Set<Source>();
  const subsystem = 'clientnames';
  const gauge = (name: string, help: string, read: (t: NameTable) => number): Mirror<unknown> =>
    factory.mirrorGauge({ subsystem, name, help, labelNames: ['server'], levels: () => [...sources].map((s) => ({ labels: { server: s.server }, value: read(s.table) })) });
  const tableTotal = (name: string, help: string, read: (st: TableStats) => number): Mirror<unknown> =>
    factory.mirrorCounter({
      subsystem,
      name,
      help,
      labelNames: ['server'],
      totals: () => [...sources].map((s) => ({ labels: { server: s.server }, value: read(s.table.stats), reported: reportedOf(s.table) })),
    });
  const mirrors = [
    gauge('devices', 'Client addresses in the name table (bounded by max_names).', (t) => t.size),
    gauge('names', 'Names answered: labels held by a device, plus hosts: entries.', (t) => t.names),
    gauge('capacity', 'The bound on the name table (max_names).', (t) => t.capacity),
    gauge('loaded', '1 once the stored names have been loaded from the database.', (t) => (t.loaded ? 1 : 0)),
    tableTotal('learned_total', 'Identities taken from clienttrack (live and loaded).', (st) => st.learned),
    tableTotal('evicted_total', 'Devices pushed out of the full table (least recently identified first).', (st) => st.evicted),
    tableTotal('forgotten_total', 'Devices removed because clienttrack retention removed them.', (st) => st.forgotten),
    factory.mirrorCounter({
      subsystem,
      name: 'answers_total',
      help: 'Queries in our zones, by result (answered, nodata, nxdomain, ptr, passed).',
      labelNames: ['server', 'result'],
      totals: () => [...sources].flatMap((s) => RESULTS.map((result) => ({ labels: { server: s.server, result }, value: s.answers[result], reported: s.answersReported }))),
    }),
  ];
  const set: MetricSet = { sources, mirrors };
  sets.set(factory.registry, set);
  return set;
}

/** Connects one chain's table and answer counters; `detach` (at shutdown) reports the last of them. */
export function bindMetrics(factory: MetricsFactory, server: string, table: NameTable, answers: AnswerStats): { detach(): void } {
  const m = metricSet(factory);
  const source: Source = { server, table, answers, answersReported: new Map() };
  m.sources.add(source);
  return {
    detach() {
      if (!m.sources.has(source)) return;
      for (const mirror of m.mirrors) mirror.update();
      m.sources.delete(source);
    },
  };
}
