import type { DnsResponse } from '../../core/response';
import type { ParsedQuery } from '../../core/wire/query';
import { type CacheCore, isFailure } from './common';
import { type CacheEntry, EntryKind } from './store';

/**
 * Called on every fresh hit when prefetch is on (CoreDNS's rule): counts the hit in the entry's popularity window
 * (the window restarts when its start is older than `within`) and says whether to refresh the entry now: it is
 * popular, its remaining lifetime is at most `percentage` of the original, no refresh is in flight for it, and the
 * last one did not fail recently. A true answer marks the refresh as in flight.
 */
export function wantsPrefetch(core: CacheCore, e: CacheEntry, now: number): boolean {
  const cfg = core.prefetch;
  if (cfg === null) return false;
  if (now - e.windowStart > cfg.withinMs) {
    e.windowStart = now;
    e.hits = 1;
  } else {
    e.hits++;
  }
  if (e.refreshing || e.hits < cfg.amount || e.kind === EntryKind.Servfail) return false;
  const left = e.storedAt + e.ttlMs - now;
  if (left * 100 > e.ttlMs * cfg.percentage) return false;
  if (now - e.failedAt < core.retryMs) return false;
  e.refreshing = true;
  return true;
}

/**
 * Refreshes the entry from below, detached from the client (called after the client got its cached answer).
 * `next` is `ctx.boundNext()`, taken while the cache's tap ran: it starts below the cache whatever the walk
 * did with the context since. A failure keeps the old entry.
 */
export function startPrefetch(core: CacheCore, q: ParsedQuery, next: () => Promise<DnsResponse>, e: CacheEntry): void {
  core.stats.prefetch++;
  let refresh: Promise<DnsResponse>;
  try {
    refresh = next();
  } catch (err) {
    e.refreshing = false;
    e.failedAt = core.clock.now();
    return;
  }
  refresh.then(
    (res) => {
      e.refreshing = false;
      if (isFailure(res) || core.storeFromBelow(q, res) !== 'stored') e.failedAt = core.clock.now();
    },
    (err: unknown) => {
      e.refreshing = false;
      e.failedAt = core.clock.now();
      core.log.debug('prefetch failed', { error: err instanceof Error ? err.message : String(err) });
    },
  );
}
