import type { Clock } from '../../core/clock';
import type { QueryContext } from '../../core/context';
import type { Logger } from '../../core/log';
import type { DnsResponse } from '../../core/response';
import type { CacheCore, QueryCallback } from './common';
import type { CacheStats } from './metrics';
import { maybePrefetch, type PrefetchConfig } from './prefetch';
import { answerExpired, type StaleConfig } from './serveStale';
import { type CacheStore, EntryKind, type PutOutcome, cacheKey } from './store';

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

  constructor(store: CacheStore, stats: CacheStats, log: Logger, prefetch: PrefetchConfig | null, stale: StaleConfig | null) {
    this.store = store;
    this.stats = stats;
    this.clock = store.clock;
    this.log = log;
    this.prefetch = prefetch;
    this.stale = stale;
    this.retryMs = stale !== null ? stale.recheckMs : 30_000;
  }

  /** The tapAsync function (an arrow: passed around without `this`). */
  readonly query = (ctx: QueryContext, cb: QueryCallback): void => {
    const key = cacheKey(ctx.query);
    const store = this.store;
    const e = store.get(key);
    if (e !== undefined) {
      const now = this.clock.now();
      if (now < e.storedAt + e.ttlMs) {
        if (e.kind === EntryKind.Success) this.stats.hitsSuccess++;
        else this.stats.hitsDenial++;
        const res = store.render(e, now);
        if (this.prefetch !== null) maybePrefetch(this, ctx, key, e, now);
        cb(null, res);
        return;
      }
      if (this.stale !== null && store.isStale(e, now)) {
        answerExpired(this, ctx, key, e, now, cb);
        return;
      }
      store.delete(key);
    }
    this.stats.misses++;
    this.miss(ctx, key, cb);
  };

  private miss(ctx: QueryContext, key: string, cb: QueryCallback): void {
    const questionEnd = ctx.query.questionEnd;
    ctx.next().then(
      (res) => {
        this.storeFromBelow(key, res, questionEnd);
        this.deliver(cb, null, res);
      },
      (err: unknown) => this.deliver(cb, err instanceof Error ? err : new Error(String(err))),
    );
  }

  storeFromBelow(key: string, res: DnsResponse, questionEnd: number): PutOutcome {
    try {
      return this.store.put(key, res, questionEnd, this.clock.now());
    } catch (err) {
      this.log.warn('could not cache a response', { error: err instanceof Error ? err.message : String(err) });
      return 'malformed';
    }
  }

  deliver(cb: QueryCallback, err: Error | null, res?: DnsResponse): void {
    try {
      cb(err, res);
    } catch (e) {
      this.log.error('the chain failed after the cache answered', { error: e instanceof Error ? e.message : String(e) });
    }
  }
}
