import type { Clock } from '../../core/clock';
import type { QueryContext } from '../../core/context';
import type { Logger } from '../../core/log';
import type { DnsResponse } from '../../core/response';
import type { CacheCore, QueryCallback } from './common';
import type { CacheStats } from './metrics';
import { startPrefetch, wantsPrefetch } from './prefetch';
import { answerExpired } from './serveStale';
import type { PrefetchConfig, StaleConfig } from './settings';
import { type CacheStore, EntryKind, type PutOutcome } from './store';
import { monotonicClock } from '../../core/clock';
import { RepeatingWarning } from '../../core/primitives/rateLimitedLog';
import type { ParsedQuery } from '../../core/wire/query';
import { Flag } from '../../core/wire/constants';
import { replyOptLength } from '../../core/wire/finalize';

const FLAG_RD = Flag.RD;

/**
 * The `query` tap. A fresh hit answers synchronously through the callback (no Promise, no decode: a copy of the
 * stored bytes with the TTLs counted down); a miss asks the chain below with `ctx.next()` and stores what it returns.
 */
export class CacheHandler implements CacheCore {
  readonly store: CacheStore;
  readonly stats: CacheStats;
  readonly clock: Clock;
  readonly log: Logger;
  readonly prefetch: PrefetchConfig | null;
  readonly stale: StaleConfig | null;
  readonly retryMs: number;
  /** The store runs on the process's monotonic clock, so the query's arrival time can stand for "now". */
  private readonly arrivalIsNow: boolean;
  /** Per-packet failures are logged at most once a minute, with their count. */
  private readonly storeWarning: RepeatingWarning;
  private readonly deliverWarning: RepeatingWarning;
  private lastStoreError = '';
  private lastDeliverError = '';

  constructor(store: CacheStore, stats: CacheStats, log: Logger, prefetch: PrefetchConfig | null, stale: StaleConfig | null) {
    this.store = store;
    this.stats = stats;
    this.clock = store.clock;
    this.log = log;
    this.prefetch = prefetch;
    this.stale = stale;
    this.retryMs = stale !== null ? stale.recheckMs : 30_000;
    this.arrivalIsNow = store.clock === monotonicClock;
    this.storeWarning = new RepeatingWarning({ intervalMs: 60_000, emit: (count) => log.warn('could not cache a response', { error: this.lastStoreError, count }) });
    this.deliverWarning = new RepeatingWarning({ intervalMs: 60_000, emit: (count) => log.error('the chain failed after the cache answered', { error: this.lastDeliverError, count }) });
  }

  /** The tapAsync function (an arrow: passed around without `this`). */
  readonly query = (ctx: QueryContext, cb: QueryCallback): void => {
    const store = this.store;
    const e = store.get(ctx.query);
    if (e !== undefined) {
      // ctx.startedAt is performance.now() at arrival: the same clock, one clock read saved per hit.
      const now = this.arrivalIsNow ? ctx.startedAt : this.clock.now();
      if (now < e.storedAt + e.ttlMs) {
        if (e.kind === EntryKind.Success) this.stats.hitsSuccess++;
        else this.stats.hitsDenial++;
        const res = store.render(e, now, replyOptLength(ctx.query, e.ede));
        // RD=0 reads what is held; it never makes the server recurse, not even a prefetch.
        if (this.prefetch === null || (ctx.query.flags & FLAG_RD) === 0 || !wantsPrefetch(this, e, now)) {
          cb(null, res);
          return;
        }
        // The client gets its answer first; the refresh goes out after.
        const next = ctx.boundNext();
        this.deliver(cb, null, res);
        startPrefetch(this, ctx.query, next, e);
        return;
      }
      if ((ctx.query.flags & FLAG_RD) === 0) {
        // Not fresh, and RD=0 may not refresh it (a refused refresh would count as a failure against the entry).
        this.stats.misses++;
        this.miss(ctx, cb);
        return;
      }
      if (this.stale !== null && store.isStale(e, now)) {
        answerExpired(this, ctx, e, now, cb);
        return;
      }
      store.delete(e);
    }
    this.stats.misses++;
    this.miss(ctx, cb);
  };

  private miss(ctx: QueryContext, cb: QueryCallback): void {
    const q = ctx.query;
    // The callback form: no promise per miss (storeFromBelow and deliver do not throw).
    ctx.nextThen((err, res) => {
      if (err !== null) return this.deliver(cb, err);
      this.storeFromBelow(q, res as DnsResponse);
      this.deliver(cb, null, res);
    });
  }

  storeFromBelow(q: ParsedQuery, res: DnsResponse): PutOutcome {
    try {
      return this.store.put(q, res, this.clock.now());
    } catch (err) {
      this.lastStoreError = err instanceof Error ? err.message : String(err);
      this.storeWarning.hit();
      return 'malformed';
    }
  }

  deliver(cb: QueryCallback, err: Error | null, res?: DnsResponse): void {
    try {
      cb(err, res);
    } catch (e) {
      this.lastDeliverError = e instanceof Error ? e.message : String(e);
      this.deliverWarning.hit();
    }
  }
}
