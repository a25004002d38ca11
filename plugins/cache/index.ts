import { Duration, Type } from '../../config/types';
import { definePlugin } from '../../core/plugin';
import { CacheHandler } from './handler';
import { CacheStats, bindCacheMetrics } from './metrics';
import type { PrefetchConfig, StaleConfig } from './settings';
import { CacheStore, DEFAULT_MAX_BYTES, DEFAULT_MAX_ENTRY_BYTES, EntryKind, entryCost, type StoreListener } from './store';
import { OptionError } from '../../config/errors';

export { CacheStore, CacheEntry, EntryKind, cacheKey, variantOf, entryCost, DEFAULT_MAX_BYTES, DEFAULT_MAX_ENTRY_BYTES, type StoreLimits, type PutOutcome } from './store';
export { CacheHandler } from './handler';
export { CacheStats } from './metrics';

/** The TTL options are written as durations; the store counts whole seconds. */
const seconds = (ms: number): number => Math.floor(ms / 1000);

const PrefetchOptions = Type.Object(
  {
    enabled: Type.Boolean({ default: true, description: 'Set false to keep the block but switch prefetching off.' }),
    amount: Type.Integer({ minimum: 1, default: 1, description: 'Hits within `within` that make an entry popular.' }),
    within: Duration(60_000, 'The popularity window.'),
    percentage: Type.Integer({ minimum: 1, maximum: 100, default: 10, description: 'Refresh when the remaining TTL is at most this percentage of the original.' }),
  },
  { description: 'Refresh popular entries before they expire (CoreDNS prefetch). Absent: off.' },
);

const ServeStaleOptions = Type.Object(
  {
    enabled: Type.Boolean({ default: true, description: 'Set false to keep the block but switch serving stale off.' }),
    max_stale: Duration(86_400_000, 'How long after expiry an entry may still be served (the stale window).'),
    client_timeout: Duration(1_800, 'RFC 8767 client response timer: wait this long for the answer from below, then answer stale.'),
    recheck: Duration(30_000, 'RFC 8767 failure recheck timer: after a failed refresh, answer stale without asking below for this long.'),
    answer_ttl: Duration(30_000, 'TTL of the records in a stale answer.'),
  },
  { description: 'Answer expired entries when the answer from below fails or is late (RFC 8767). Absent: off.' },
);

export const CacheOptions = Type.Object({
  capacity: Type.Integer({ minimum: 1, default: 10_000, description: 'Entries kept at most; the least recently used is evicted (and counted).' }),
  max_bytes: Type.Integer({ minimum: 65_536, default: DEFAULT_MAX_BYTES, description: 'Bytes all entries may take at most (wire bytes plus about 300 per entry); the least recently used are evicted (and counted). Default 16 MiB.' }),
  max_entry_bytes: Type.Integer({ minimum: 512, maximum: 65_535, default: DEFAULT_MAX_ENTRY_BYTES, description: 'Largest answer (wire bytes) that is cached at all; bigger ones are passed on uncached (and counted). Default 16 KiB.' }),
  max_ttl: Duration(3_600_000, 'Longest an entry lives, whatever the records say (whole seconds).'),
  min_ttl: Duration(0, 'Shortest an entry lives: lower record TTLs are raised (whole seconds).'),
  denial_ttl: Duration(1_800_000, 'Cap on how long NXDOMAIN / NODATA is kept (whole seconds).'),
  servfail_ttl: Duration(5_000, 'How long a SERVFAIL from below is kept (0 = never); it never replaces a usable entry.'),
  prefetch: Type.Optional(PrefetchOptions),
  serve_stale: Type.Optional(ServeStaleOptions),
});

/**
 * `cache`: positive and negative caching of what the chain below answers, served from wire bytes.
 * Placed above `forward`; guards (acl, ratelimit) belong above it, since a hit ends the walk.
 */
export const cachePlugin = definePlugin({
  name: 'cache',
  description: 'Caches answers from the plugins below it (positive, negative, briefly SERVFAIL), with prefetch and serve-stale.',
  options: CacheOptions,
  role: 'answers',
  // Here, not in setup: `codexdns validate` runs it too, and each is reported at its option's line.
  check(o) {
    if (seconds(o.min_ttl) > seconds(o.max_ttl)) throw new OptionError('min_ttl', `min_ttl (${seconds(o.min_ttl)}s) is above max_ttl (${seconds(o.max_ttl)}s)`);
    if (entryCost(o.max_entry_bytes, 0, 0) > o.max_bytes) throw new OptionError('max_bytes', `${o.max_bytes} cannot hold one answer of max_entry_bytes (${o.max_entry_bytes}) and its overhead`);
  },
  setup(api, o) {
    const prefetch: PrefetchConfig | null =
      o.prefetch !== undefined && o.prefetch.enabled ? { amount: o.prefetch.amount, withinMs: o.prefetch.within, percentage: o.prefetch.percentage } : null;
    const stale: StaleConfig | null =
      o.serve_stale !== undefined && o.serve_stale.enabled
        ? { maxStaleMs: o.serve_stale.max_stale, clientTimeoutMs: o.serve_stale.client_timeout, recheckMs: o.serve_stale.recheck, answerTtl: seconds(o.serve_stale.answer_ttl) }
        : null;
    const limits = {
      capacity: o.capacity,
      maxTtl: seconds(o.max_ttl),
      minTtl: seconds(o.min_ttl),
      denialTtl: seconds(o.denial_ttl),
      servfailMs: o.servfail_ttl,
      maxStaleMs: stale !== null ? stale.maxStaleMs : 0,
      maxBytes: o.max_bytes,
      maxEntryBytes: o.max_entry_bytes,
    };
    // Same options as before a reload: keep the entries (the signature covers every option, so the limits match).
    const store = api.retain('store', () => new CacheStore(limits), (s) => s.clear());
    const stats = new CacheStats();
    const listener: StoreListener = {
      evicted(kind) {
        if (kind === EntryKind.Success) stats.evictedSuccess++;
        else stats.evictedDenial++;
      },
      sizeDropped(reason) {
        if (reason === 'entry_too_big') stats.tooBig++;
        else stats.evictedForBytes++;
      },
    };
    store.listener = listener;
    const metrics = bindCacheMetrics(api.metrics, api.block.name, stats, store);
    const handler = new CacheHandler(store, stats, api.log, prefetch, stale);
    api.hooks.query.tapAsync('cache', handler.query);
    api.hooks.shutdown.tap('cache', () => {
      metrics.detach();
      if (store.listener === listener) store.listener = null;
    });
  },
});

export default cachePlugin;
