import type { Counter, Gauge } from 'prom-client';
import type { MetricsFactory } from '../../core/metricsRegistry';
import type { PluginApi } from '../../core/plugin';
import type { CacheStore } from './store';

/**
 * Plain counters bumped on the answer path. prom-client's `inc()` hashes the label set on every call, even on a
 * child bound with `.labels()`, which costs more than a cache hit itself: the hit path only does `n++` here,
 * and the Prometheus metrics catch up when they are scraped (their `collect` adds what changed since).
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
  readonly reported: CacheStats;
}

interface MetricSet {
  readonly hits: Counter<'server' | 'type'>;
  readonly misses: Counter<'server'>;
  readonly entries: Gauge<'server' | 'type'>;
  readonly evictions: Counter<'server' | 'type'>;
  readonly prefetch: Counter<'server'>;
  readonly servedStale: Counter<'server'>;
  readonly bytes: Gauge<'server'>;
  readonly slabBytes: Gauge<'server'>;
  readonly sizeDrops: Counter<'server' | 'reason'>;
  readonly sources: Set<Source>;
}

/** One set of metrics per server, shared by every cache instance (every block, across reloads): `api.shared`. */
function metricSet(api: Pick<PluginApi, 'metrics' | 'shared'>): MetricSet {
  return api.shared('metric set', () => createMetricSet(api.metrics));
}

function createMetricSet(factory: MetricsFactory): MetricSet {
  const sources = new Set<Source>();
  let set: MetricSet | undefined;
  const flush = (): void => {
    if (set !== undefined) for (const s of sources) flushSource(set, s);
  };
  const subsystem = 'cache';
  set = {
    sources,
    hits: factory.counter({ subsystem, name: 'hits_total', help: 'Queries answered from the cache, by type (success, denial).', labelNames: ['server', 'type'], collect: flush }),
    misses: factory.counter({ subsystem, name: 'misses_total', help: 'Queries the cache could not answer and passed down the chain.', labelNames: ['server'], collect: flush }),
    entries: factory.gauge({ subsystem, name: 'entries', help: 'Entries in the cache, by type (success, denial).', labelNames: ['server', 'type'], collect: flush }),
    evictions: factory.counter({ subsystem, name: 'evictions_total', help: 'Entries pushed out of a full cache (least recently used first).', labelNames: ['server', 'type'], collect: flush }),
    prefetch: factory.counter({ subsystem, name: 'prefetch_total', help: 'Popular entries refreshed before they expired.', labelNames: ['server'], collect: flush }),
    servedStale: factory.counter({ subsystem, name: 'served_stale_total', help: 'Expired entries served because the answer from below failed or was late (RFC 8767).', labelNames: ['server'], collect: flush }),
    bytes: factory.gauge({ subsystem, name: 'bytes', help: 'Memory held by cache entries (each its slab chunk plus its object and map slot), bounded by max_bytes.', labelNames: ['server'], collect: flush }),
    slabBytes: factory.gauge({ subsystem, name: 'slab_bytes', help: 'Slab pages the cache holds (chunks in use and free): the wire part of cache_bytes plus the pages\' free room.', labelNames: ['server'], collect: flush }),
    sizeDrops: factory.counter({
      subsystem,
      name: 'size_drops_total',
      help: 'Answers the byte bounds kept out: entry_too_big (above max_entry_bytes, not stored), max_bytes (evicted to stay within max_bytes).',
      labelNames: ['server', 'reason'],
      collect: flush,
    }),
  };
  return set;
}

function flushSource(m: MetricSet, s: Source): void {
  const st = s.stats;
  const r = s.reported;
  const server = s.server;
  if (st.hitsSuccess !== r.hitsSuccess) m.hits.inc({ server, type: 'success' }, st.hitsSuccess - r.hitsSuccess);
  if (st.hitsDenial !== r.hitsDenial) m.hits.inc({ server, type: 'denial' }, st.hitsDenial - r.hitsDenial);
  if (st.misses !== r.misses) m.misses.inc({ server }, st.misses - r.misses);
  if (st.evictedSuccess !== r.evictedSuccess) m.evictions.inc({ server, type: 'success' }, st.evictedSuccess - r.evictedSuccess);
  if (st.evictedDenial !== r.evictedDenial) m.evictions.inc({ server, type: 'denial' }, st.evictedDenial - r.evictedDenial);
  if (st.prefetch !== r.prefetch) m.prefetch.inc({ server }, st.prefetch - r.prefetch);
  if (st.servedStale !== r.servedStale) m.servedStale.inc({ server }, st.servedStale - r.servedStale);
  if (st.tooBig !== r.tooBig) m.sizeDrops.inc({ server, reason: 'entry_too_big' }, st.tooBig - r.tooBig);
  if (st.evictedForBytes !== r.evictedForBytes) m.sizeDrops.inc({ server, reason: 'max_bytes' }, st.evictedForBytes - r.evictedForBytes);
  Object.assign(r, st);
  m.entries.set({ server, type: 'success' }, s.store.successCount);
  m.entries.set({ server, type: 'denial' }, s.store.denialCount);
  m.bytes.set({ server }, s.store.bytes);
  m.slabBytes.set({ server }, s.store.slabBytes);
}

/** Connects one cache instance's numbers to the registry; `detach` (at shutdown) reports the last of them. */
export function bindCacheMetrics(api: Pick<PluginApi, 'metrics' | 'shared'>, server: string, stats: CacheStats, store: CacheStore): { detach(): void } {
  const m = metricSet(api);
  const source: Source = { server, stats, store, reported: new CacheStats() };
  // Children exist from the start (a board shows 0, not "no data").
  m.hits.inc({ server, type: 'success' }, 0);
  m.hits.inc({ server, type: 'denial' }, 0);
  m.misses.inc({ server }, 0);
  m.prefetch.inc({ server }, 0);
  m.servedStale.inc({ server }, 0);
  m.sizeDrops.inc({ server, reason: 'entry_too_big' }, 0);
  m.sizeDrops.inc({ server, reason: 'max_bytes' }, 0);
  m.sources.add(source);
  return {
    detach(): void {
      if (!m.sources.has(source)) return;
      flushSource(m, source);
      m.sources.delete(source);
      let shared = false;
      for (const s of m.sources) if (s.server === server) shared = true;
      if (!shared) {
        m.entries.remove({ server, type: 'success' });
        m.entries.remove({ server, type: 'denial' });
        m.bytes.remove({ server });
        m.slabBytes.remove({ server });
      }
    },
  };
}
