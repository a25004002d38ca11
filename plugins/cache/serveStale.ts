import type { QueryContext } from '../../core/context';
import type { DnsResponse } from '../../core/response';
import { EDE_STALE_ANSWER } from '../../core/wire/constants';
import { type CacheCore, type QueryCallback, cloneResponse, isFailure } from './common';
import type { StaleConfig } from './settings';
import type { CacheEntry } from './store';

const STALE_EDE = Object.freeze({ code: EDE_STALE_ANSWER });

/**
 * An expired entry inside the stale window (RFC 8767). Within `recheck` of a failed refresh: answer stale at
 * once. Otherwise ask below (one refresh per entry, shared by every client that arrives meanwhile) and give the
 * client the fresh answer if it comes within `client_timeout` and is not a failure, else the stale entry with
 * TTL 30 s and Extended DNS Error 3 (Stale Answer). A late refresh still updates the cache when it lands.
 */
export function answerExpired(core: CacheCore, ctx: QueryContext, e: CacheEntry, now: number, cb: QueryCallback): void {
  const cfg = core.stale;
  if (cfg === null) return;
  if (now - e.failedAt < cfg.recheckMs) {
    serveStale(core, cfg, e, cb);
    return;
  }
  core.stats.misses++;
  let pending = e.pending;
  const initiator = pending === undefined;
  if (pending === undefined) {
    pending = refresh(core, ctx, e);
    e.pending = pending;
  }
  let done = false;
  const timer = setTimeout(() => {
    if (done) return;
    done = true;
    serveStale(core, cfg, e, cb);
  }, cfg.clientTimeoutMs);
  void pending.then((res) => {
    if (done) return;
    done = true;
    clearTimeout(timer);
    if (res === null) serveStale(core, cfg, e, cb);
    else core.deliver(cb, null, initiator ? res : cloneResponse(res));
  });
}

/** Asks below for a fresh copy; resolves with the response, or null when it failed (and marks the failure). */
function refresh(core: CacheCore, ctx: QueryContext, e: CacheEntry): Promise<DnsResponse | null> {
  const q = ctx.query;
  return ctx.next().then(
    (res) => {
      e.pending = undefined;
      if (isFailure(res)) {
        e.failedAt = core.clock.now();
        return null;
      }
      core.storeFromBelow(q, res);
      return res;
    },
    (err: unknown) => {
      e.pending = undefined;
      e.failedAt = core.clock.now();
      core.log.debug('refresh of an expired entry failed', { error: err instanceof Error ? err.message : String(err) });
      return null;
    },
  );
}

function serveStale(core: CacheCore, cfg: StaleConfig, e: CacheEntry, cb: QueryCallback): void {
  core.stats.servedStale++;
  const res = core.store.renderStale(e, cfg.answerTtl);
  res.ede = STALE_EDE;
  core.deliver(cb, null, res);
}
