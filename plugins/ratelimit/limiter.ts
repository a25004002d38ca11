/**
 * The two limiters of the `ratelimit` plugin, each on its own:
 * - QueryLimiter: a token bucket per client (or per client network), in a bounded LRU, for the `query` hook.
 * - DiscoveryLimiter: one token bucket for discovery jobs, for discovery's `beforeDiscover` hook.
 * Both take an injectable clock (tests use a ManualClock).
 */
import * as ipaddr from 'ipaddr.js';
import { type Clock, monotonicClock } from '../../core/clock';
import { LruMap } from '../../core/primitives/lru';
import { TokenBucket, TokenBucketMap } from '../../core/primitives/tokenBucket';
import { CidrSet } from '../pkg/cidr';
import type { DiscoveryDenial } from '../discovery/hooks';

export type Per = 'client' | '/24' | '/56';
export type LimitAction = 'refuse' | 'drop' | 'slip';

export interface QueryLimiterOptions {
  rate: number;
  burst: number;
  per: Per;
  allow: readonly string[];
  /** Buckets (clients or networks) remembered at most; the least recently seen is forgotten. */
  maxClients: number;
  clock?: Clock;
}

/** IPv4 clients counted per /24, IPv6 clients per /56 (with `per: /24` or `per: /56`). */
export const V4_PREFIX = 24;
export const V6_PREFIX = 56;

export class QueryLimiter {
  readonly per: Per;
  private readonly buckets: TokenBucketMap;
  private readonly allow: CidrSet;
  /** address → bucket key, or '' when the address is exempt (allow list); bounded like the buckets. */
  private readonly keys: LruMap<string, string>;
  limited = 0;

  constructor(opts: QueryLimiterOptions) {
    this.per = opts.per;
    this.buckets = new TokenBucketMap({ rate: opts.rate, burst: opts.burst, maxKeys: opts.maxClients, clock: opts.clock ?? monotonicClock });
    this.allow = new CidrSet(opts.allow);
    this.keys = new LruMap<string, string>(opts.maxClients);
  }

  get size(): number {
    return this.buckets.size;
  }

  get evictions(): number {
    return this.buckets.evictions;
  }

  /** The bucket key of an address ('' = exempt). */
  keyOf(address: string): string {
    let key = this.keys.get(address);
    if (key === undefined) {
      key = this.computeKey(address);
      this.keys.set(address, key);
    }
    return key;
  }

  /** Takes a token for a query from `address`; false when the client (or its network) is over its budget. */
  take(address: string): boolean {
    const key = this.keyOf(address);
    if (key === '') return true;
    if (this.buckets.take(key)) return true;
    this.limited++;
    return false;
  }

  private computeKey(address: string): string {
    let addr: ipaddr.IPv4 | ipaddr.IPv6;
    try {
      addr = ipaddr.process(address.split('%')[0]);
    } catch {
      return address;
    }
    if (this.allow.has(address)) return '';
    if (this.per === 'client') return addr.toString();
    const bytes = addr.toByteArray();
    const bits = addr.kind() === 'ipv4' ? V4_PREFIX : V6_PREFIX;
    const whole = bits >> 3;
    return `${addr.kind() === 'ipv4' ? '4' : '6'}:${bytes.slice(0, whole).join('.')}/${bits}`;
  }
}

export interface DiscoveryLimiterOptions {
  rate: number;
  burst: number;
  clock?: Clock;
}

export const RATE_LIMITED = 'rate-limited';

/** One bucket for discovery: one token per job. */
export class DiscoveryLimiter {
  readonly rate: number;
  readonly burst: number;
  private readonly bucket: TokenBucket;
  limited = 0;
  allowed = 0;

  constructor(opts: DiscoveryLimiterOptions) {
    this.rate = opts.rate;
    this.burst = opts.burst;
    this.bucket = new TokenBucket(opts.rate, opts.burst, opts.clock ?? monotonicClock);
  }

  /** The `beforeDiscover` tap: a denial (with the time until the next token) when the bucket is empty. */
  beforeDiscover(): DiscoveryDenial | undefined {
    if (this.bucket.take(1)) {
      this.allowed++;
      return undefined;
    }
    this.limited++;
    const ms = this.bucket.msUntil(1);
    return { reason: RATE_LIMITED, retryAfterMs: Number.isFinite(ms) ? Math.max(1, ms) : 1000 };
  }

  tokens(): number {
    return this.bucket.tokens();
  }
}
