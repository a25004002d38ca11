import type { QueryContext } from '../../core/context';
import { type CacheCore, isFailure } from './common';
import { type CacheEntry, EntryKind } from './store';

/** `prefetch` options, in milliseconds. */
export interface PrefetchConfig {
  /** Hits within `withinMs` that make an entry popular. */
  readonly amount: number;
  readonly withinMs: number;
  /** Refresh once the remaining TTL falls to this percentage of the original. */
  readonly percentage: number;
}

/**
 * Called on every fresh hit when prefetch is on (CoreDNS's rule): count the hit in the entry's popularity window
 * (the window restarts when its start is older than `within`); when the entry is popular and its remaining
 * lifetime is at most `percentage` of the original, refresh it from below with `ctx.next()`, detached from the
 * client (which already has its answer). One refresh per entry at a time; a failed one is not retried for a while.
 */
export function maybePrefetch(core: CacheCore, ctx: QueryContext, key: string, e: CacheEntry, now: number): void {
  const cfg = core.prefetch;
  if (cfg === null) return;
  if (now - e.windowStart > cfg.withinMs) {
    e.windowStart = now;
    e.hits = 1;
  } else {
    e.hits++;
  }
  if (e.refreshing || e.hits < cfg.amount || e.kind === EntryKind.Servfail) return;
  const left = e.storedAt + e.ttlMs - now;
  if (left * 100 > e.ttlMs * cfg.percentage) return;
  if (now - e.failedAt < core.retryMs) return;
  e.refreshing = true;
  core.stats.prefetch++;
  const questionEnd = ctx.query.questionEnd;
  ctx.next().then(
    (res) => {
      e.refreshing = false;
      if (isFailure(res) || core.storeFromBelow(key, res, questionEnd) !== 'stored') e.failedAt = core.clock.now();
    },
    (err: unknown) => {
      e.refreshing = false;
      e.failedAt = core.clock.now();
      core.log.debug('prefetch failed', { error: err instanceof Error ? err.message : String(err) });
    },
  );
}
