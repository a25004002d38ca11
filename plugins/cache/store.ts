import { type Clock, monotonicClock } from '../../core/clock';
import { LruMap } from '../../core/primitives/lru';
import { DnsResponse, type ExtendedError } from '../../core/response';
import { Flag, Rcode } from '../../core/wire/constants';
import { type MessageLayout, stripOpt } from '../../core/wire/message';
import type { ParsedQuery } from '../../core/wire/query';

/** What an entry holds, for metrics (`success` / `denial`) and for the rules on what may replace what. */
export const EntryKind = {
  /** NOERROR with answers. */
  Success: 0,
  /** NXDOMAIN or NODATA with an SOA (RFC 2308). */
  Denial: 1,
  /** SERVFAIL from below, kept briefly (`servfail_ttl`) and never in place of a usable entry. */
  Servfail: 2,
} as const;
export type EntryKind = (typeof EntryKind)[keyof typeof EntryKind];

/** Limits of a store, in the units the TTL math works in. */
export interface StoreLimits {
  /** Entries kept at most; the least recently used is evicted beyond it. */
  readonly capacity: number;
  /** Seconds: no entry (and no record TTL handed out) lives longer. */
  readonly maxTtl: number;
  /** Seconds: entries live at least this long (record TTLs below it are raised). */
  readonly minTtl: number;
  /** Seconds: cap on a negative answer's lifetime. */
  readonly denialTtl: number;
  /** Milliseconds a SERVFAIL is kept; 0 = SERVFAIL is never cached. */
  readonly servfailMs: number;
  /** Milliseconds an expired entry may still be served stale (RFC 8767); 0 = never. */
  readonly maxStaleMs: number;
}

/** Receives changes of the store's contents (set by the plugin instance currently using the store). */
export interface StoreListener {
  evicted(kind: EntryKind): void;
}

/**
 * One cached response: the wire bytes from below without their OPT record, the layout of those bytes,
 * the TTL each record gets at store time, and monotonic times. Mutable fields belong to prefetch and serve-stale.
 */
export class CacheEntry {
  /** Times the entry was served inside the current popularity window (prefetch). */
  hits = 0;
  windowStart = -Infinity;
  /** A prefetch for this entry is in flight. */
  refreshing = false;
  /** When the last refresh attempt from below failed (serve-stale recheck, prefetch back-off). */
  failedAt = -Infinity;
  /** The refresh of an expired entry in flight, shared by every client waiting on it. */
  pending: Promise<DnsResponse | null> | undefined = undefined;

  constructor(
    readonly kind: EntryKind,
    readonly wire: Buffer,
    readonly layout: MessageLayout,
    /** Record TTLs (seconds) at store time, parallel to `layout.ttlOffsets`. */
    readonly baseTtls: Uint32Array,
    /** Monotonic ms when stored. */
    readonly storedAt: number,
    /** Lifetime in ms: the entry is fresh while now < storedAt + ttlMs. */
    readonly ttlMs: number,
    readonly authoritative: boolean,
    readonly ede: ExtendedError | undefined,
  ) {}

  get expiresAt(): number {
    return this.storedAt + this.ttlMs;
  }
}

/** Why a response was not stored (or `stored`). */
export type PutOutcome =
  | 'stored'
  | 'dropped'
  | 'malformed'
  | 'question-mismatch'
  | 'truncated'
  | 'rcode'
  | 'no-soa'
  | 'zero-ttl'
  | 'servfail-disabled'
  | 'servfail-behind-good-entry'
  | 'opt-not-last';

/** RFC 2181 §8: a TTL with the top bit set is treated as zero. */
function ttlValue(raw: number): number {
  return raw > 0x7fffffff ? 0 : raw;
}

const FLAG_CD = Flag.CD;

/**
 * The cache key: lower-cased question name (wire form), type, class, and the DO and CD bits, so a DNSSEC-aware
 * client and a plain one, or a validating and a checking-disabled one, never see each other's answers.
 */
export function cacheKey(q: ParsedQuery): string {
  const bits = (q.edns !== null && q.edns.dnssecOk ? 1 : 0) | ((q.flags & FLAG_CD) !== 0 ? 2 : 0);
  return q.wireKey + String.fromCharCode(q.qtype, q.qclass, bits);
}

/**
 * The cache's entries with LRU eviction and the TTL math (RFC 1035 §7.3, RFC 2308 §5, RFC 8767).
 * Time is read from an injected monotonic clock; the TTLs handed out count down in whole seconds.
 */
export class CacheStore {
  readonly limits: StoreLimits;
  readonly clock: Clock;
  listener: StoreListener | null = null;
  private readonly map: LruMap<string, CacheEntry>;
  /** Entries by kind: [success, denial (negative + SERVFAIL)]. */
  private readonly counts = [0, 0];

  constructor(limits: StoreLimits, clock: Clock = monotonicClock) {
    if (limits.minTtl > limits.maxTtl) throw new RangeError(`min_ttl (${limits.minTtl}s) is above max_ttl (${limits.maxTtl}s)`);
    this.limits = limits;
    this.clock = clock;
    this.map = new LruMap(limits.capacity);
  }

  get size(): number {
    return this.map.size;
  }

  /** Entries holding positive answers. */
  get successCount(): number {
    return this.counts[0];
  }

  /** Entries holding negative answers or SERVFAIL. */
  get denialCount(): number {
    return this.counts[1];
  }

  get evictions(): number {
    return this.map.evictions;
  }

  /** Reads an entry and marks it recently used (whatever its age: the caller decides fresh / stale / dead). */
  get(key: string): CacheEntry | undefined {
    return this.map.get(key);
  }

  /** Reads without touching recency. */
  peek(key: string): CacheEntry | undefined {
    return this.map.peek(key);
  }

  isFresh(e: CacheEntry, now: number): boolean {
    return now < e.storedAt + e.ttlMs;
  }

  /** Expired but inside the stale window (never true for SERVFAIL entries). */
  isStale(e: CacheEntry, now: number): boolean {
    return e.kind !== EntryKind.Servfail && now >= e.storedAt + e.ttlMs && now < e.storedAt + e.ttlMs + this.limits.maxStaleMs;
  }

  /** Fresh, or stale but still servable: a SERVFAIL must not replace it. */
  isUsable(e: CacheEntry, now: number): boolean {
    return e.kind === EntryKind.Servfail ? this.isFresh(e, now) : now < e.storedAt + e.ttlMs + this.limits.maxStaleMs;
  }

  delete(key: string): void {
    const e = this.map.peek(key);
    if (e === undefined) return;
    this.map.delete(key);
    this.counts[e.kind === EntryKind.Success ? 0 : 1]--;
  }

  clear(): void {
    this.map.clear();
    this.counts[0] = 0;
    this.counts[1] = 0;
  }

  /**
   * Stores a response that came from below for the query whose question ends at `questionEnd`, when it may be
   * cached; says why not otherwise. The bytes are copied (without OPT): the caller keeps `res` for its client.
   */
  put(key: string, res: DnsResponse, questionEnd: number, now: number = this.clock.now()): PutOutcome {
    if (res.dropped) return 'dropped';
    const wire = res.wire;
    const layout = res.layout;
    if (layout === null || wire.readUInt16BE(4) !== 1) return 'malformed';
    if (layout.questionEnd !== questionEnd) return 'question-mismatch';
    if ((wire.readUInt16BE(2) & Flag.TC) !== 0) return 'truncated';
    const rcode = res.rcode;
    const lim = this.limits;
    let kind: EntryKind;
    let ttl: number;
    let ttlMs: number;
    /** Highest TTL any record may show. */
    let cap: number;
    if (rcode === Rcode.NOERROR && layout.answerCount > 0) {
      kind = EntryKind.Success;
      ttl = Math.min(Math.max(ttlValue(layout.minTtl), lim.minTtl), lim.maxTtl);
      ttlMs = ttl * 1000;
      cap = lim.maxTtl;
    } else if (rcode === Rcode.NOERROR || rcode === Rcode.NXDOMAIN) {
      // NODATA or NXDOMAIN: RFC 2308 §5, min(SOA TTL, SOA MINIMUM); without an SOA it is not cached.
      if (layout.soaNegativeTtl < 0) return 'no-soa';
      kind = EntryKind.Denial;
      ttl = Math.min(Math.max(ttlValue(layout.soaNegativeTtl), lim.minTtl), lim.denialTtl, lim.maxTtl);
      ttlMs = ttl * 1000;
      cap = ttl;
    } else if (rcode === Rcode.SERVFAIL) {
      if (lim.servfailMs <= 0) return 'servfail-disabled';
      const existing = this.map.peek(key);
      if (existing !== undefined && existing.kind !== EntryKind.Servfail && this.isUsable(existing, now)) return 'servfail-behind-good-entry';
      kind = EntryKind.Servfail;
      ttlMs = lim.servfailMs;
      ttl = Math.ceil(ttlMs / 1000);
      cap = ttl;
    } else {
      return 'rcode';
    }
    if (ttlMs <= 0) return 'zero-ttl';
    const stripped = stripOpt(wire, layout);
    if (stripped === null) return 'opt-not-last';
    // Own the bytes: the response object travels on to the client and plugins may replace or reuse it.
    const bytes = stripped === wire ? Buffer.from(wire) : stripped;
    const offsets = layout.ttlOffsets;
    const base = new Uint32Array(offsets.length);
    for (let i = 0; i < offsets.length; i++) {
      const t = ttlValue(bytes.readUInt32BE(offsets[i]));
      base[i] = Math.min(Math.max(t, lim.minTtl), cap);
    }
    const entryLayout: MessageLayout = layout.optStart === -1 ? layout : { ...layout, optStart: -1, optEnd: -1, optTtl: 0 };
    const entry = new CacheEntry(kind, bytes, entryLayout, base, now, ttlMs, res.authoritative, res.ede);
    const previous = this.map.peek(key);
    if (previous !== undefined) this.counts[previous.kind === EntryKind.Success ? 0 : 1]--;
    this.counts[kind === EntryKind.Success ? 0 : 1]++;
    const evicted = this.map.set(key, entry);
    if (evicted !== undefined) {
      const ek = evicted[1].kind;
      this.counts[ek === EntryKind.Success ? 0 : 1]--;
      if (this.listener !== null) this.listener.evicted(ek);
    }
    return 'stored';
  }

  /** Seconds the entry's shortest-lived answer or authority record has left (0 once expired). */
  remainingTtl(e: CacheEntry, now: number): number {
    const left = e.storedAt + e.ttlMs - now;
    return left > 0 ? Math.ceil(left / 1000) : 0;
  }

  /**
   * A response from the entry with every TTL counted down: max(base − elapsed whole seconds, 0).
   * The copy keeps the stored bytes pristine; the core writer then patches ID, question case, OPT and truncation.
   */
  render(e: CacheEntry, now: number): DnsResponse {
    const elapsed = Math.floor((now - e.storedAt) / 1000);
    const src = e.wire;
    const out = Buffer.allocUnsafe(src.length);
    src.copy(out, 0, 0, src.length);
    const offsets = e.layout.ttlOffsets;
    const base = e.baseTtls;
    for (let i = 0; i < offsets.length; i++) {
      const t = base[i] - elapsed;
      writeTtl(out, offsets[i], t > 0 ? t : 0);
    }
    const res = DnsResponse.fromWire(out, e.layout);
    if (e.authoritative) res.authoritative = true;
    if (e.ede !== undefined) res.ede = e.ede;
    return res;
  }

  /** A stale response (RFC 8767 §4): every TTL set to `ttl` seconds. The caller adds the EDE. */
  renderStale(e: CacheEntry, ttl: number): DnsResponse {
    const out = Buffer.from(e.wire);
    const offsets = e.layout.ttlOffsets;
    for (let i = 0; i < offsets.length; i++) writeTtl(out, offsets[i], ttl);
    const res = DnsResponse.fromWire(out, e.layout);
    if (e.authoritative) res.authoritative = true;
    return res;
  }

  /** Iterates keys and entries from the least recently used (for dumps and tests). */
  entries(): IterableIterator<[string, CacheEntry]> {
    return this.map.entries();
  }
}

function writeTtl(buf: Buffer, off: number, v: number): void {
  buf[off] = v >>> 24;
  buf[off + 1] = (v >>> 16) & 0xff;
  buf[off + 2] = (v >>> 8) & 0xff;
  buf[off + 3] = v & 0xff;
}
