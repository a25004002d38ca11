import type { Counter, Gauge } from 'prom-client';
import type { MetricsFactory } from '../../core/metricsRegistry';
import type { PluginApi } from '../../core/plugin';
import type { AnswerStats } from './answer';
import type { NameTable, TableStats } from './nameTable';

/**
 * `codexdns_clientnames_*`. The answer path only bumps plain integers (AnswerStats); the Prometheus series catch
 * up when scraped. The table's totals outlive a reload with the table, so what was already reported is kept
 * beside it (a WeakMap), never counted twice.
 */
interface Source {
  readonly server: string;
  readonly table: NameTable;
  readonly answers: AnswerStats;
  readonly answersReported: AnswerStats;
}

interface MetricSet {
  readonly devices: Gauge<'server'>;
  readonly names: Gauge<'server'>;
  readonly capacity: Gauge<'server'>;
  readonly loaded: Gauge<'server'>;
  readonly learned: Counter<'server'>;
  readonly evicted: Counter<'server'>;
  readonly forgotten: Counter<'server'>;
  readonly answers: Counter<'server' | 'result'>;
  readonly sources: Set<Source>;
}

const tableReported = new WeakMap<NameTable, TableStats>();

const RESULTS: ReadonlyArray<keyof AnswerStats> = ['answered', 'nodata', 'nxdomain', 'ptr', 'passed'];

/** One set of metrics per server, shared by every clientnames instance (every block, across reloads). */
function metricSet(api: Pick<PluginApi, 'metrics' | 'shared'>): MetricSet {
  return api.shared('metric set', () => createMetricSet(api.metrics));
}

function createMetricSet(factory: MetricsFactory): MetricSet {
  const sources = new Set<Source>();
  let set: MetricSet | undefined;
  const flush = (): void => {
    if (set !== undefined) for (const s of sources) flushSource(set, s);
  };
  const subsystem = 'clientnames';
  set = {
    sources,
    devices: factory.gauge({ subsystem, name: 'devices', help: 'Client addresses in the name table (bounded by max_names).', labelNames: ['server'], collect: flush }),
    names: factory.gauge({ subsystem, name: 'names', help: 'Names answered: labels held by a device, plus hosts: entries.', labelNames: ['server'], collect: flush }),
    capacity: factory.gauge({ subsystem, name: 'capacity', help: 'The bound on the name table (max_names).', labelNames: ['server'], collect: flush }),
    loaded: factory.gauge({ subsystem, name: 'loaded', help: '1 once the stored names have been loaded from the database.', labelNames: ['server'], collect: flush }),
    learned: factory.counter({ subsystem, name: 'learned_total', help: 'Identities taken from clienttrack (live and loaded).', labelNames: ['server'], collect: flush }),
    evicted: factory.counter({ subsystem, name: 'evicted_total', help: 'Devices pushed out of the full table (least recently identified first).', labelNames: ['server'], collect: flush }),
    forgotten: factory.counter({ subsystem, name: 'forgotten_total', help: 'Devices removed because clienttrack retention removed them.', labelNames: ['server'], collect: flush }),
    answers: factory.counter({ subsystem, name: 'answers_total', help: 'Queries in our zones, by result (answered, nodata, nxdomain, ptr, passed).', labelNames: ['server', 'result'], collect: flush }),
  };
  return set;
}

function flushSource(m: MetricSet, s: Source): void {
  const server = s.server;
  const st = s.table.stats;
  let r = tableReported.get(s.table);
  if (r === undefined) {
    r = { learned: 0, evicted: 0, forgotten: 0, invalid: 0 };
    tableReported.set(s.table, r);
  }
  // inc(0) too, so every series shows from the first scrape.
  m.learned.inc({ server }, st.learned - r.learned);
  m.evicted.inc({ server }, st.evicted - r.evicted);
  m.forgotten.inc({ server }, st.forgotten - r.forgotten);
  Object.assign(r, st);
  for (const result of RESULTS) {
    m.answers.inc({ server, result }, s.answers[result] - s.answersReported[result]);
    s.answersReported[result] = s.answers[result];
  }
  m.devices.set({ server }, s.table.size);
  m.names.set({ server }, s.table.names);
  m.capacity.set({ server }, s.table.capacity);
  m.loaded.set({ server }, s.table.loaded ? 1 : 0);
}

/** Connects one chain's table and answer counters; `detach` (at shutdown) reports the last of them. */
export function bindMetrics(api: Pick<PluginApi, 'metrics' | 'shared'>, server: string, table: NameTable, answers: AnswerStats): { detach(): void } {
  const m = metricSet(api);
  const source: Source = { server, table, answers, answersReported: { answered: 0, nodata: 0, nxdomain: 0, ptr: 0, passed: 0 } };
  m.sources.add(source);
  return {
    detach() {
      if (!m.sources.delete(source)) return;
      flushSource(m, source);
    },
  };
}
