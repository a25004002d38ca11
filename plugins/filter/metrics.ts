/**
 * `codexdns_filter_*`: queries and blocked answers per group, each source's size and health, the tables' memory,
 * and every bound (identities kept, group decisions cached, names tracked for the top list).
 */
import type { Counter, Gauge } from 'prom-client';
import type { MetricsFactory } from '../../core/metricsRegistry';
import type { FilterState } from './filterState';

const SUBSYSTEM = 'filter';

export interface FilterMetrics {
  readonly refreshes: Counter<'server' | 'source' | 'result'>;
}

/** Cumulative numbers kept by the state, exported as counters by difference at each scrape. */
function countFrom(counter: Counter<'server'>, server: string, read: () => number): void {
  let mark = 0;
  (counter as unknown as { collect: () => void }).collect = () => {
    const n = read();
    if (n < mark) mark = 0;
    counter.labels(server).inc(n - mark);
    mark = n;
  };
}

type Counts = FilterState['counters'][number];

/** Per-group counters kept as plain numbers by the state (no prom-client call per query), exported by difference. */
function groupCounter<L extends string>(counter: Counter<L>, state: () => FilterState, parts: readonly [(group: string) => Record<L, string>, (c: Counts) => number][]): void {
  let marks: number[][] = [];
  let seen: FilterState | undefined;
  (counter as unknown as { collect: () => void }).collect = () => {
    const st = state();
    if (st !== seen) {
      // A new state (options changed): its numbers start from 0.
      seen = st;
      marks = parts.map(() => st.counters.map(() => 0));
    }
    parts.forEach(([labels, read], p) => {
      st.counters.forEach((c, i) => {
        const n = read(c);
        if (n > marks[p][i]) counter.inc(labels(st.groupNames[i]), n - marks[p][i]);
        marks[p][i] = n;
      });
    });
  };
}

export function registerFilterMetrics(factory: MetricsFactory, server: string, state: () => FilterState): FilterMetrics {
  const queries = factory.counter({ subsystem: SUBSYSTEM, name: 'queries_total', help: 'Queries the filter looked at, by client group', labelNames: ['server', 'group'] as const });
  const blocked = factory.counter({ subsystem: SUBSYSTEM, name: 'blocked_total', help: 'Queries answered as blocked, by group and stage (query: the name was listed; cname: a CNAME target of its answer was)', labelNames: ['server', 'group', 'stage'] as const });
  const allowed = factory.counter({ subsystem: SUBSYSTEM, name: 'allowed_total', help: 'Queries an allow rule or exception let through (whether or not a block rule also matched)', labelNames: ['server', 'group'] as const });
  const refreshes = factory.counter({ subsystem: SUBSYSTEM, name: 'source_refreshes_total', help: 'Source loads and downloads, by result (updated, unchanged, failed)', labelNames: ['server', 'source', 'result'] as const });
  const perSource = (name: string, help: string, read: (s: FilterState['sources'][number]) => number): void => {
    factory.gauge({
      subsystem: SUBSYSTEM,
      name,
      help,
      labelNames: ['server', 'source', 'kind'] as const,
      collect(this: Gauge<'server' | 'source' | 'kind'>) {
        this.reset();
        for (const s of state().sources) this.labels(server, s.id, s.kind).set(read(s));
      },
    });
  };
  perSource('source_names', 'Names (and patterns) a source holds now', (s) => s.tables.names);
  perSource('source_bad_lines', 'Lines of a source that could not be read (the first few are quoted in the log and the API)', (s) => s.tables.badLines);
  perSource('source_unsupported_lines', 'Adblock rules a DNS filter cannot apply (cosmetic, paths, modifiers), and patterns over max_patterns', (s) => s.tables.unsupported);
  perSource('source_ok', '1 when the last load or download of a source succeeded', (s) => (s.ok ? 1 : 0));
  perSource('source_age_seconds', 'Seconds since a source was last refreshed successfully (-1: never)', (s) => (s.lastRefresh === null ? -1 : Math.max(0, (Date.now() - s.lastRefresh) / 1000)));
  perSource('source_bytes', 'Memory held by a source\'s tables', (s) => s.byteLength);
  const simple = (name: string, help: string, read: () => number): void => {
    factory.gauge({ subsystem: SUBSYSTEM, name, help, labelNames: ['server'] as const, collect(this: Gauge<'server'>) { this.labels(server).set(read()); } });
  };
  simple('names', 'Names in all tables (after dropping duplicates and names under a listed parent)', () => state().engine.names);
  simple('table_bytes', 'Memory held by all name tables', () => state().engine.byteLength);
  simple('patterns', 'Regular expressions and wildcards held (each is tried per query: keep them few)', () => state().engine.patterns);
  simple('identities', 'Clients whose MAC or name is known (bounded by max_identities)', () => state().groups.identityCount);
  simple('group_cache_entries', 'Client addresses whose group is decided (bounded by max_clients)', () => state().groups.cacheSize);
  simple('verdict_cache_entries', 'Verdicts remembered for repeated names (at most 4096 per group; emptied when a table changes)', () => state().engine.recentSize);
  simple('top_names', 'Blocked names counted for the top list (bounded by top_names)', () => state().top.size);
  factory.gauge({
    subsystem: SUBSYSTEM,
    name: 'paused',
    help: '1 while filtering is paused for a group (group="*" for all)',
    labelNames: ['server', 'group'] as const,
    collect(this: Gauge<'server' | 'group'>) {
      this.reset();
      const st = state();
      this.labels(server, '*').set(st.pausedAllMs() > 0 ? 1 : 0);
      for (const g of st.groupNames) this.labels(server, g).set(st.pausedGroupMs(g) > 0 ? 1 : 0);
    },
  });
  countFrom(factory.counter({ subsystem: SUBSYSTEM, name: 'identities_dropped_total', help: 'Client identities not kept because max_identities was reached', labelNames: ['server'] as const }), server, () => state().groups.identitiesDropped);
  countFrom(factory.counter({ subsystem: SUBSYSTEM, name: 'group_cache_evictions_total', help: 'Group decisions forgotten because max_clients was reached (recomputed on the next query)', labelNames: ['server'] as const }), server, () => state().groups.cacheEvictions);
  countFrom(factory.counter({ subsystem: SUBSYSTEM, name: 'verdict_cache_clears_total', help: 'Times a group\'s remembered verdicts were dropped because the bound was reached', labelNames: ['server'] as const }), server, () => state().engine.recentClears);
  countFrom(factory.counter({ subsystem: SUBSYSTEM, name: 'top_names_dropped_total', help: 'Blocked names not counted in the top list because it was full of busier names', labelNames: ['server'] as const }), server, () => state().top.dropped);
  groupCounter(queries, state, [[(group) => ({ server, group }), (c) => c.queries]]);
  groupCounter(blocked, state, [
    [(group) => ({ server, group, stage: 'query' }), (c) => c.blocked - c.blockedCname],
    [(group) => ({ server, group, stage: 'cname' }), (c) => c.blockedCname],
  ]);
  groupCounter(allowed, state, [[(group) => ({ server, group }), (c) => c.allowed]]);
  countFrom(factory.counter({ subsystem: SUBSYSTEM, name: 'client_counts_dropped_total', help: 'Blocked queries not counted per client because max_clients addresses were already counted', labelNames: ['server'] as const }), server, () => state().blockedByClientDropped);
  return { refreshes };
}
