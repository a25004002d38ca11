/**
 * `codexdns_filter_*`: queries and blocked answers per group, each source's size and health, the tables' memory,
 * and every bound (identities kept, group decisions cached, names tracked for the top list).
 */
import type { Counter } from 'prom-client';
import { forSource, type MetricsFactory, type MirroredTotal, type ReportedTotals } from '../../core/metricsRegistry';
import type { FilterState } from './filterState';

const SUBSYSTEM = 'filter';

export interface FilterMetrics {
  readonly refreshes: Counter<'server' | 'source' | 'result'>;
  /** At shutdown: stop reading this block's state (kept when a reload's successor took its place). */
  release(): void;
}

type Counts = FilterState['counters'][number];

// What was reported of a state's totals stays with that state: a new state (options changed) starts from 0.
const reported = new WeakMap<FilterState, ReportedTotals>();

function reportedOf(st: FilterState): ReportedTotals {
  let r = reported.get(st);
  if (r === undefined) reported.set(st, (r = new Map()));
  return r;
}

export function registerFilterMetrics(shared: MetricsFactory, server: string, state: () => FilterState): FilterMetrics {
  // Each server block's filter is a source of its own: with two blocks, both blocks' series are read.
  const factory = forSource(shared, server);
  /** Per-group totals kept as plain numbers by the state (no prom-client call per query); a group's series appears with its first count. */
  const perGroup = <L extends string>(name: string, help: string, labelNames: readonly L[], parts: readonly [(group: string) => Record<L, string>, (c: Counts) => number][]): void => {
    factory.mirrorCounter<L>({
      subsystem: SUBSYSTEM,
      name,
      help,
      labelNames,
      reported: () => reportedOf(state()),
      totals: () => {
        const st = state();
        const out: MirroredTotal<L>[] = [];
        for (const [labels, read] of parts) st.counters.forEach((c, i) => {
          const value = read(c);
          if (value > 0) out.push({ labels: labels(st.groupNames[i]), value });
        });
        return out;
      },
    });
  };
  /** A total of the state's, by server only. */
  const total = (name: string, help: string, read: () => number): void => {
    factory.mirrorCounter({ subsystem: SUBSYSTEM, name, help, labelNames: ['server'] as const, reported: () => reportedOf(state()), totals: () => [{ labels: { server }, value: read() }] });
  };
  perGroup('queries_total', 'Queries the filter looked at, by client group', ['server', 'group'] as const, [[(group) => ({ server, group }), (c) => c.queries]]);
  perGroup('blocked_total', 'Queries answered as blocked, by group and stage (query: the name was listed; cname: a CNAME target of its answer was)', ['server', 'group', 'stage'] as const, [
    [(group) => ({ server, group, stage: 'query' }), (c) => c.blocked - c.blockedCname],
    [(group) => ({ server, group, stage: 'cname' }), (c) => c.blockedCname],
  ]);
  perGroup('allowed_total', 'Queries an allow rule or exception let through (whether or not a block rule also matched)', ['server', 'group'] as const, [[(group) => ({ server, group }), (c) => c.allowed]]);
  const refreshes = factory.counter({ subsystem: SUBSYSTEM, name: 'source_refreshes_total', help: 'Source loads and downloads, by result (updated, unchanged, failed)', labelNames: ['server', 'source', 'result'] as const });
  const perSource = (name: string, help: string, read: (s: FilterState['sources'][number]) => number): void => {
    factory.mirrorGauge({
      subsystem: SUBSYSTEM,
      name,
      help,
      labelNames: ['server', 'source', 'kind'] as const,
      reset: true,
      levels: () => state().sources.map((s) => ({ labels: { server, source: s.id, kind: s.kind }, value: read(s) })),
    });
  };
  perSource('source_names', 'Names (and patterns) a source holds now', (s) => s.tables.names);
  perSource('source_bad_lines', 'Lines of a source that could not be read (the first few are quoted in the log and the API)', (s) => s.tables.badLines);
  perSource('source_unsupported_lines', 'Adblock rules a DNS filter cannot apply (cosmetic, paths, modifiers), and patterns over max_patterns', (s) => s.tables.unsupported);
  perSource('source_ok', '1 when the last load or download of a source succeeded', (s) => (s.ok ? 1 : 0));
  perSource('source_age_seconds', 'Seconds since a source was last refreshed successfully (-1: never)', (s) => (s.lastRefresh === null ? -1 : Math.max(0, (Date.now() - s.lastRefresh) / 1000)));
  perSource('source_bytes', 'Memory held by a source\'s tables', (s) => s.byteLength);
  const simple = (name: string, help: string, read: () => number): void => {
    factory.mirrorGauge({ subsystem: SUBSYSTEM, name, help, labelNames: ['server'] as const, reset: true, levels: () => [{ labels: { server }, value: read() }] });
  };
  simple('names', 'Names in all tables (after dropping duplicates and names under a listed parent)', () => state().engine.names);
  simple('table_bytes', 'Memory held by all name tables', () => state().engine.byteLength);
  simple('patterns', 'Regular expressions and wildcards held (each is tried per query: keep them few)', () => state().engine.patterns);
  simple('identities', 'Clients whose MAC or name is known (bounded by max_identities)', () => state().groups.identityCount);
  simple('group_cache_entries', 'Client addresses whose group is decided (bounded by max_clients)', () => state().groups.cacheSize);
  simple('verdict_cache_entries', 'Verdicts remembered for repeated names (at most 4096 per group; emptied when a table changes)', () => state().engine.recentSize);
  simple('top_names', 'Blocked names counted for the top list (bounded by top_names)', () => state().top.size);
  factory.mirrorGauge({
    subsystem: SUBSYSTEM,
    name: 'paused',
    help: '1 while filtering is paused for a group (group="*" for all)',
    labelNames: ['server', 'group'] as const,
    reset: true,
    levels: () => {
      const st = state();
      return [{ labels: { server, group: '*' }, value: st.pausedAllMs() > 0 ? 1 : 0 }, ...st.groupNames.map((group) => ({ labels: { server, group }, value: st.pausedGroupMs(group) > 0 ? 1 : 0 }))];
    },
  });
  total('identities_dropped_total', 'Client identities not kept because max_identities was reached', () => state().groups.identitiesDropped);
  total('group_cache_evictions_total', 'Group decisions forgotten because max_clients was reached (recomputed on the next query)', () => state().groups.cacheEvictions);
  total('verdict_cache_clears_total', 'Times a group\'s remembered verdicts were dropped because the bound was reached', () => state().engine.recentClears);
  total('top_names_dropped_total', 'Blocked names not counted in the top list because it was full of busier names', () => state().top.dropped);
  total('client_counts_dropped_total', 'Blocked queries not counted per client because max_clients addresses were already counted', () => state().blockedByClientDropped);
  return { refreshes, release: () => factory.release() };
}
