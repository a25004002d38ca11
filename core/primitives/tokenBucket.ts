import { type Clock, monotonicClock } from '../clock.js';
import { LruMap } from './lru.js';

// Refills are computed in floating point (e.g. 10 tokens/s over 33.3 ms steps); without a tolerance a bucket
// that should hold exactly 1 token can hold 0.9999999999 and refuse a take it should grant.
const EPSILON = 1e-9;

/**
 * Token bucket: `burst` tokens at most, refilled at `rate` tokens per second. Refill is lazy — computed from the
 * monotonic clock when the bucket is used — so an idle bucket costs nothing and no timer runs per bucket.
 * Starts full, so the first `burst` events after startup pass.
 */
export class TokenBucket {
  readonly rate: number;
  readonly burst: number;
  private readonly clock: Clock;
  private level: number;
  private last: number;

  constructor(rate: number, burst: number, clock: Clock = monotonicClock) {
    if (!(rate >= 0) || !Number.isFinite(rate)) throw new RangeError(`TokenBucket rate must be a finite number >= 0, got ${rate}`);
    if (!(burst > 0) || !Number.isFinite(burst)) throw new RangeError(`TokenBucket burst must be a finite number > 0, got ${burst}`);
    this.rate = rate;
    this.burst = burst;
    this.clock = clock;
    this.level = burst;
    this.last = clock.now();
  }

  /** Takes `n` tokens if they are all there; otherwise takes none (no partial debt) and returns false. */
  take(n = 1): boolean {
    this.refill();
    if (this.level + EPSILON < n) return false;
    this.level = Math.max(0, this.level - n);
    return true;
  }

  /** Tokens available now (fractional). */
  tokens(): number {
    this.refill();
    return this.level;
  }

  /** Milliseconds until `n` tokens will be available: 0 if now, Infinity if never (n > burst or rate 0). */
  msUntil(n = 1): number {
    this.refill();
    if (this.level + EPSILON >= n) return 0;
    if (n > this.burst || this.rate === 0) return Infinity;
    return Math.ceil(((n - this.level) * 1000) / this.rate);
  }

  private refill(): void {
    const now = this.clock.now();
    const elapsed = now - this.last;
    // A non-advancing clock (same tick, or a test clock) adds nothing; keep `last` so no elapsed time is lost.
    if (elapsed <= 0) return;
    this.last = now;
    this.level = Math.min(this.burst, this.level + (elapsed * this.rate) / 1000);
  }
}

export interface TokenBucketMapOptions {
  rate: number;
  burst: number;
  /** Most keys tracked at once; the least recently used key's bucket is forgotten beyond that. */
  maxKeys: number;
  clock?: Clock;
}

/**
 * One token bucket per key (per client address) with the number of keys bounded by an LRU: a flood of forged
 * source addresses cannot grow memory. The trade-off is that an evicted key comes back with a full bucket; the
 * eviction counter makes that visible so `maxKeys` can be raised.
 */
export class TokenBucketMap {
  readonly rate: number;
  readonly burst: number;
  private readonly clock: Clock;
  private readonly buckets: LruMap<string, TokenBucket>;

  constructor(opts: TokenBucketMapOptions) {
    // Validate rate/burst once here so a bad option fails at startup, not on the first packet.
    new TokenBucket(opts.rate, opts.burst, opts.clock ?? monotonicClock);
    this.rate = opts.rate;
    this.burst = opts.burst;
    this.clock = opts.clock ?? monotonicClock;
    this.buckets = new LruMap<string, TokenBucket>(opts.maxKeys);
  }

  get size(): number {
    return this.buckets.size;
  }

  get evictions(): number {
    return this.buckets.evictions;
  }

  get maxKeys(): number {
    return this.buckets.capacity;
  }

  take(key: string, n = 1): boolean {
    let bucket = this.buckets.get(key);
    if (bucket === undefined) {
      bucket = new TokenBucket(this.rate, this.burst, this.clock);
      this.buckets.set(key, bucket);
    }
    return bucket.take(n);
  }

  /** Milliseconds until `key` may take `n` tokens (0 for an unknown key: it would start full). */
  msUntil(key: string, n = 1): number {
    const bucket = this.buckets.peek(key);
    if (bucket === undefined) return n <= this.burst ? 0 : Infinity;
    return bucket.msUntil(n);
  }

  delete(key: string): boolean {
    return this.buckets.delete(key);
  }

  clear(): void {
    this.buckets.clear();
  }
}
