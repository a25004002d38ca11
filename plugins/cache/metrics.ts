import type { Registry } from 'prom-client';
import type { MetricsFactory, Mirror, MirroredLevel, MirroredTotal, ReportedTotals } from '../../core/metricsRegistry';
import type { CacheStore } from './store';

/**
 * Plain counters bumped on the answer path. prom-client's `inc()` hashes the label set on every call, even on a
 * child bound with `.labels()`, which costs more than a cache hit itself: the hit path only does `n++` here,
 * and the Prometheus metrics follow these totals when scraped (`api.metrics.mirrorCounter`).
 */
export class CacheStats {
  hitsSuccess = 0;
  hitsDenial = 0;
  misses = 0;
  prefetch = 0;
  servedStale = 0;
  evictedSuccess = 0;
  evictedDenial = 0;
  /** Answers not stored for being above max_entry_bytes. */
  tooBig = 0;
  /** Entries evicted to stay within max_bytes. */
  evictedForBytes = 0;
}

interface Source {
  readonly server: string;
  readonly stats: CacheStats;
  readonly store: CacheStore;
  /** What was already added to the Prometheus counters. */
  readonly reported: ReportedTotals;
}

/** One set of metrics per registry (one per process, one per test server), shared by every cache instance. */
interface MetricSet {
  readonly sources: Set<Source>;
  readonly mirrors: ReadonlyArray<Mirror<unknown>>;
}

const sets = new WeakMap<Registry, MetricSet>();

function metricSet(factory: MetricsFactory): MetricSet {
  const existing = sets.get(factory.registry);
  if (existing !== undefined) return existing;
  const sources = new Set<Source>();
  const subsystem = 'cache';
  const counter = <L extends string>(name: string, help: string, labelNames: readonly L[], read: (s: Source) => MirroredTotal<L>[]): Mirror<unknown> =>
    factory.mirrorCounter<L>({ subsystem, name, help, labelNames, totals: () => [...sources].flatMap(read) });
  const gauge = <L extends string>(name: string, help: string, labelNames: readonly L[], read: (s: Source) => MirroredLevel<L>[]): Mirror<unknown> =>
    // reset: a cache that went away (its server block removed) leaves no series behind.
    factory.mirrorGauge<L>({ subsystem, name, help, labelNames, reset: true, levels: () => [...sources].flatMap(read) });
  const mirrors = [
    counter('hits_total', 'Queries answered from the cache, by type (success, denial).', ['server', 'type'], (s) => [
      { labels: { server: s.server, type: 'success' }, value: s.stats.hitsSuccess, reported: s.reported },
      { labels: { server: s.server, type: 'denial' }, value: s.stats.hitsDenial, reported: s.reported },
    ]),
    counter('misses_total', 'Queries the cache could not answer and passed down the chain.', ['server'], (s) => [{ labels: { server: s.server }, value: s.stats.misses, reported: s.reported }]),
    gauge('entries', 'Entries in the cache, by type (success, denial).', ['server', 'type'], (s) => [
      { labels: { server: s.server, type: 'success' }, value: s.store.successCount },
      { labels: { server: s.server, type: 'denial' }, value: s.store.denialCount },
    ]),
    counter('evictions_total', 'Entries pushed out of a full cache (least recently used first).', ['server', 'type'], (s) => nonZero([
      { labels: { server: s.server, type: 'success' }, value: s.stats.evictedSuccess, reported: s.reported },
      { labels: { server: s.server, type: 'denial' }, value: s.stats.evictedDenial, reported: s.reported },
    ])),
    counter('prefetch_total', 'Popular entries refreshed before they expired.', ['server'], (s) => [{ labels: { server: s.server }, value: s.stats.prefetch, reported: s.reported }]),
    counter('served_stale_total', 'Expired entries served because the answer from below failed or was late (RFC 8767).', ['server'], (s) => [
      { labels: { server: s.server }, value: s.stats.servedStale, reported: s.reported },
    ]),
    gauge('bytes', 'Memory held by cache entries (each its slab chunk plus its object and map slot), bounded by max_bytes.', ['server'], (s) => [{ labels: { server: s.server }, value: s.store.bytes }]),
    gauge('slab_bytes', 'Slab pages the cache holds (chunks in use and free): the wire part of cache_bytes plus the pages\' free room.', ['server'], (s) => [
      { labels: { server: s.server }, value: s.store.slabBytes },
    ]),
    counter(
      'size_drops_total',
      'Answers the byte bounds kept out: entry_too_big (above max_entry_bytes, not stored), max_bytes (evicted to stay within max_bytes).',
      ['server', 'reason'],
      (s) => [
        { labels: { server: s.server, reason: 'entry_too_big' }, value: s.stats.tooBig, reported: s.reported },
        { labels: { server: s.server, reason: 'max_bytes' }, value: s.stats.evictedForBytes, reported: s.reported },
      ],
    ),
  ];
  const set: MetricSet = { sources, mirrors };
  sets.set(factory.registry, set);
  return set;
}

/** Evictions show once there are some (as before: no series created ahead for them). */
function nonZero<L extends string>(totals: MirroredTotal<L>[]): MirroredTotal<L>[] {
  return totals.filter((t) => t.value > 0);
}

/** Connects one cache instance's numbers to the registry; `detach` (at shutdown) reports the last of them. */
export function bindCacheMetrics(factory: MetricsFactory, server: string, stats: CacheStats, store: CacheStore): { detach(): void } {
  const m = metricSet(factory);
  const source: Source = { server, stats, store, reported: new Map() };
  m.sources.add(source);
  return {
    detach(): void {
      if (!m.sources.has(source)) return;
      for (const mirror of m.mirrors) mirror.update();
      m.sources.delete(source);
    },
  };
}
