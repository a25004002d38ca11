import type { Clock } from '../../core/clock';
import type { Logger } from '../../core/log';
import { DnsResponse } from '../../core/response';
import { Rcode } from '../../core/wire/constants';
import type { CacheStats } from './metrics';
import type { PrefetchConfig, StaleConfig } from './settings';
import type { CacheStore, PutOutcome } from './store';
import type { ParsedQuery } from '../../core/wire/query';

export type QueryCallback = (err: Error | null, res?: DnsResponse) => void;

/** What prefetch and serve-stale share with the hit/miss path. */
export interface CacheCore {
  readonly store: CacheStore;
  readonly stats: CacheStats;
  readonly clock: Clock;
  readonly log: Logger;
  readonly prefetch: PrefetchConfig | null;
  readonly stale: StaleConfig | null;
  /** Back-off after a failed refresh from below (prefetch; serve-stale uses its `recheck`). */
  readonly retryMs: number;
  /** Stores what came from below (never what a plugin above the cache made). */
  storeFromBelow(q: ParsedQuery, res: DnsResponse): PutOutcome;
  /** Calls the chain's callback once, never letting its exception escape into a promise. */
  deliver(cb: QueryCallback, err: Error | null, res?: DnsResponse): void;
}

/** A response from below that means "no answer": serve-stale steps in, prefetch keeps the old entry. */
export function isFailure(res: DnsResponse): boolean {
  if (res.dropped) return true;
  const rcode = res.rcode;
  return rcode !== Rcode.NOERROR && rcode !== Rcode.NXDOMAIN;
}

/**
 * A separate response with a copy of the bytes, for a second client waiting on one refresh: the first
 * client's reply may be written over the original's bytes (DnsResponse.fromRender).
 */
export function cloneResponse(res: DnsResponse): DnsResponse {
  if (res.dropped) return DnsResponse.drop();
  const c = DnsResponse.fromWire(Buffer.from(res.wire), res.layout ?? undefined);
  c.ede = res.ede;
  c.authoritative = res.authoritative;
  return c;
}

