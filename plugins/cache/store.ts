import { type Clock, monotonicClock } from '../../core/clock';
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
  /** Bytes all entries may take at most (their estimated memory: `entryCost`); default DEFAULT_MAX_BYTES. */
  readonly maxBytes?: number;
  /** Largest answer (wire bytes, without OPT) that is stored at all; default DEFAULT_MAX_ENTRY_BYTES. */
  readonly maxEntryBytes?: number;
}

/** 16 MiB: the cache of a small box (10,000 entries of ordinary answers take about 5 MB: `capacity` binds first). */
export const DEFAULT_MAX_BYTES = 16 * 1024 * 1024;
/** 16 KiB: above any ordinary answer (a signed DNSKEY set is ~1.5 KB), far below the 64 KB a TCP answer may reach. */
export const DEFAULT_MAX_ENTRY_BYTES = 16 * 1024;

/**
 * What an entry is counted as against `max_bytes`: its wire bytes, its key string, 8 bytes per record (TTL offset
 * and base TTL) and a fixed 300 for the objects around them (entry, layout, arrays, the map slot). Against the
 * heap growth measured on Node 20 (20,000 entries of 1, 2 and 40 A records: 412, 528 and 1,955 bytes each) it is
 * within 15%.
 */
export function entryCost(wireLength: number, nameLength: number, records: number): number {
  return wireLength + nameLength + 8 * records + 300;
}

/** Receives changes of the store's contents (set by the plugin instance currently using the store). */
export interface StoreListener {
  evicted(kind: EntryKind): void;
  /** An answer not stored because it is bigger than max_entry_bytes, or an entry evicted to stay within max_bytes. */
  sizeDropped?(reason: SizeDropReason): void;
}

/** Why the byte bounds dropped an answer (a metric label). */
export type SizeDropReason = 'entry_too_big' | 'max_bytes';

/**
 * One cached response: the wire bytes from below without their OPT record, the layout of those bytes,
 * the TTL each record gets at store time, and monotonic times. Mutable fields belong to the store's
 * eviction (`used`, `next`), to prefetch and to serve-stale.
 */
export class CacheEntry {
  /** Hit since the evictor last passed (second-chance LRU). */
  used = false;
  /** The next entry for the same name (another type, class, DO or CD). */
  next: CacheEntry | undefined = undefined;
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
    /** The lower-cased question name in wire form (the store's map key). */
    readonly name: string,
    readonly qtype: number,
    /** qclass << 3 | AD << 2 | CD << 1 | DO: the rest of the key. */
    readonly variant: number,
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
    /** What it counts against max_bytes (`entryCost`). */
    readonly size: number,
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
  | 'opt-not-last'
  | 'too-big';

/** The longest a SERVFAIL this server made itself (no upstream answered: `localFailure`) is kept. */
export const LOCAL_FAILURE_MAX_MS = 1_000;

/** RFC 2181 §8: a TTL with the top bit set is treated as zero. */
function ttlValue(raw: number): number {
  return raw > 0x7fffffff ? 0 : raw;
}

const FLAG_CD = Flag.CD;
const FLAG_AD = Flag.AD;

/**
 * The part of the cache key beside the name: class, AD, CD and DO, so a DNSSEC-aware client and a plain one, a
 * validating one and a checking-disabled one, or one that asked for the AD bit (RFC 6840 §5.7–5.8) and one that
 * did not, never see each other's answers.
 */
export function variantOf(q: ParsedQuery): number {
  return (q.qclass << 3) | ((q.flags & FLAG_AD) !== 0 ? 4 : 0) | ((q.flags & FLAG_CD) !== 0 ? 2 : 0) | (q.edns !== null && q.edns.dnssecOk ? 1 : 0);
}

/** The whole key as one string (for logs and tests): name, type, class, DO, CD. */
export function cacheKey(q: ParsedQuery): string {
  return `${q.wireKey}/${q.qtype}/${variantOf(q)}`;
}

/**
 * The cache's entries with eviction and the TTL math (RFC 1035 §7.3, RFC 2308 §5, RFC 8767).
 *
 * Entries are found by the question name's wire key (already a flat string from the query parser, so the lookup
 * hashes it once and builds no key string), then by type and variant along a short per-name list. Eviction is
 * second-chance LRU ("CLOCK"): a hit only sets `used`; when the store is over capacity the oldest name is looked
 * at, moved to the back with its marks cleared if any of its still-servable entries was used, else evicted. A Map re-insert
 * per hit (strict LRU) costs more than the rest of a hit together, because V8 compacts the table as deleted
 * slots pile up. Time is read from an injected monotonic clock; TTLs handed out count down in whole seconds.
 */
export class CacheStore {
  readonly limits: StoreLimits;
  readonly clock: Clock;
  listener: StoreListener | null = null;
  private readonly names = new Map<string, CacheEntry>();
  private count = 0;
  private evicted = 0;
  private byteCount = 0;
  readonly maxBytes: number;
  readonly maxEntryBytes: number;
  /** Entries by kind: [success, denial (negative + SERVFAIL)]. */
  private readonly counts = [0, 0];

  constructor(limits: StoreLimits, clock: Clock = monotonicClock) {
    if (!Number.isInteger(limits.capacity) || limits.capacity < 1) throw new RangeError(`capacity must be an integer >= 1, got ${limits.capacity}`);
    if (limits.minTtl > limits.maxTtl) throw new RangeError(`min_ttl (${limits.minTtl}s) is above max_ttl (${limits.maxTtl}s)`);
    this.maxBytes = limits.maxBytes ?? DEFAULT_MAX_BYTES;
    this.maxEntryBytes = Math.min(limits.maxEntryBytes ?? DEFAULT_MAX_ENTRY_BYTES, this.maxBytes);
    if (entryCost(this.maxEntryBytes, 0, 0) > this.maxBytes) throw new RangeError(`max_bytes (${this.maxBytes}) cannot hold one entry of max_entry_bytes (${this.maxEntryBytes})`);
    this.limits = limits;
    this.clock = clock;
  }

  /** Entries held. */
  get size(): number {
    return this.count;
  }

  /** Entries holding positive answers. */
  get successCount(): number {
    return this.counts[0];
  }

  /** Entries holding negative answers or SERVFAIL. */
  get denialCount(): number {
    return this.counts[1];
  }

  /** Estimated bytes held by the entries (`entryCost` each), bounded by max_bytes. */
  get bytes(): number {
    return this.byteCount;
  }

  /** Entries evicted because the store was full. */
  get evictions(): number {
    return this.evicted;
  }

  /** The entry for a query, marked used (whatever its age: the caller decides fresh / stale / dead). */
  get(q: ParsedQuery): CacheEntry | undefined {
    let e = this.names.get(q.wireKey);
    if (e === undefined) return undefined;
    const qtype = q.qtype;
    const variant = (q.qclass << 3) | ((q.flags & FLAG_AD) !== 0 ? 4 : 0) | ((q.flags & FLAG_CD) !== 0 ? 2 : 0) | (q.edns !== null && q.edns.dnssecOk ? 1 : 0);
    while (e !== undefined && (e.qtype !== qtype || e.variant !== variant)) e = e.next;
    if (e !== undefined) e.used = true;
    return e;
  }

  /** Reads without marking the entry used. */
  peek(q: ParsedQuery): CacheEntry | undefined {
    return this.find(q.wireKey, q.qtype, variantOf(q));
  }

  private find(name: string, qtype: number, variant: number): CacheEntry | undefined {
    let e = this.names.get(name);
    while (e !== undefined && (e.qtype !== qtype || e.variant !== variant)) e = e.next;
    return e;
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

  /** Removes this entry (if it is still the one stored for its key). */
  delete(e: CacheEntry): void {
    const head = this.names.get(e.name);
    if (head === undefined) return;
    if (head === e) {
      if (e.next === undefined) this.names.delete(e.name);
      else this.names.set(e.name, e.next);
    } else {
      let prev = head;
      while (prev.next !== undefined && prev.next !== e) prev = prev.next;
      if (prev.next !== e) return;
      prev.next = e.next;
    }
    this.forget(e);
  }

  clear(): void {
    this.names.clear();
    this.count = 0;
    this.byteCount = 0;
    this.counts[0] = 0;
    this.counts[1] = 0;
  }

  private forget(e: CacheEntry): void {
    this.count--;
    this.byteCount -= e.size;
    this.counts[e.kind === EntryKind.Success ? 0 : 1]--;
  }

  /**
   * Stores a response that came from below for query `q`, when it may be cached; says why not otherwise.
   * The bytes are copied (without OPT): the caller keeps `res` for its client.
   */
  put(q: ParsedQuery, res: DnsResponse, now: number = this.clock.now()): PutOutcome {
    if (res.dropped) return 'dropped';
    const wire = res.wire;
    const layout = res.layout;
    if (layout === null || wire.readUInt16BE(4) !== 1) return 'malformed';
    if (layout.questionEnd !== q.questionEnd) return 'question-mismatch';
    if ((wire.readUInt16BE(2) & Flag.TC) !== 0) return 'truncated';
    const rcode = res.rcode;
    const lim = this.limits;
    const variant = variantOf(q);
    let kind: EntryKind;
    let ttlMs: number;
    /** Highest TTL any record may show. */
    let cap: number;
    if (rcode === Rcode.NOERROR && layout.answerCount > 0) {
      kind = EntryKind.Success;
      ttlMs = Math.min(Math.max(ttlValue(layout.minTtl), lim.minTtl), lim.maxTtl) * 1000;
      cap = lim.maxTtl;
    } else if (rcode === Rcode.NOERROR || rcode === Rcode.NXDOMAIN) {
      // NODATA or NXDOMAIN: RFC 2308 §5, min(SOA TTL, SOA MINIMUM); without an SOA it is not cached.
      if (layout.soaNegativeTtl < 0) return 'no-soa';
      kind = EntryKind.Denial;
      const ttl = Math.min(Math.max(ttlValue(layout.soaNegativeTtl), lim.minTtl), lim.denialTtl, lim.maxTtl);
      ttlMs = ttl * 1000;
      cap = ttl;
    } else if (rcode === Rcode.SERVFAIL) {
      if (lim.servfailMs <= 0) return 'servfail-disabled';
      const existing = this.find(q.wireKey, q.qtype, variant);
      if (existing !== undefined && existing.kind !== EntryKind.Servfail && this.isUsable(existing, now)) return 'servfail-behind-good-entry';
      kind = EntryKind.Servfail;
      // A SERVFAIL made here because nothing answered in time is no upstream's verdict on the name.
      ttlMs = res.localFailure ? Math.min(lim.servfailMs, LOCAL_FAILURE_MAX_MS) : lim.servfailMs;
      cap = Math.ceil(ttlMs / 1000);
    } else {
      return 'rcode';
    }
    if (ttlMs <= 0) return 'zero-ttl';
    const stripped = stripOpt(wire, layout);
    if (stripped === null) return 'opt-not-last';
    if (stripped.length > this.maxEntryBytes) {
      // One big answer (a client's huge TXT) may not take the room of hundreds of ordinary ones.
      if (this.listener !== null && this.listener.sizeDropped !== undefined) this.listener.sizeDropped('entry_too_big');
      return 'too-big';
    }
    // Own the bytes: the response object travels on to the client and plugins may replace or reuse it.
    const bytes = stripped === wire ? Buffer.from(wire) : stripped;
    const offsets = layout.ttlOffsets;
    const base = new Uint32Array(offsets.length);
    for (let i = 0; i < offsets.length; i++) {
      const t = ttlValue(bytes.readUInt32BE(offsets[i]));
      base[i] = Math.min(Math.max(t, lim.minTtl), cap);
    }
    const entryLayout: MessageLayout = layout.optStart === -1 ? layout : { ...layout, optStart: -1, optEnd: -1, optTtl: 0 };
    const size = entryCost(bytes.length, q.wireKey.length, offsets.length);
    const entry = new CacheEntry(q.wireKey, q.qtype, variant, kind, bytes, entryLayout, base, now, ttlMs, res.authoritative, res.ede, size);
    this.insert(entry);
    return 'stored';
  }

  /** Puts the entry in place of any with the same key, at the back of the eviction order, then evicts if full. */
  private insert(entry: CacheEntry): void {
    const name = entry.name;
    const head = this.names.get(name);
    let chain: CacheEntry | undefined = entry;
    if (head !== undefined) {
      // Keep the name's other entries; drop the one this replaces.
      let tail = entry;
      for (let e: CacheEntry | undefined = head; e !== undefined; e = e.next) {
        if (e.qtype === entry.qtype && e.variant === entry.variant) {
          this.forget(e);
          continue;
        }
        tail.next = e;
        tail = e;
      }
      tail.next = undefined;
      chain = entry;
      this.names.delete(name);
    }
    this.names.set(name, chain);
    this.count++;
    this.byteCount += entry.size;
    this.counts[entry.kind === EntryKind.Success ? 0 : 1]++;
    if (this.count > this.limits.capacity || this.byteCount > this.maxBytes) this.evict(entry);
  }

  /** Second-chance eviction from the oldest name until within capacity and max_bytes; never evicts `keep` (just stored). */
  private evict(keep: CacheEntry): void {
    const names = this.names;
    const capacity = this.limits.capacity;
    const maxBytes = this.maxBytes;
    const now = this.clock.now();
    while (this.count > capacity || this.byteCount > maxBytes) {
      const oldest = names.entries().next();
      if (oldest.done === true) return;
      const [name, head] = oldest.value;
      let used = false;
      for (let e: CacheEntry | undefined = head; e !== undefined; e = e.next) {
        // A used entry gets a second chance, unless it can no longer be served at all.
        if (e.used && this.isUsable(e, now)) used = true;
        e.used = false;
      }
      names.delete(name);
      if (used) {
        names.set(name, head);
        continue;
      }
      let kept: CacheEntry | undefined;
      for (let e: CacheEntry | undefined = head; e !== undefined; e = e.next) {
        if (e === keep) {
          kept = e;
          continue;
        }
        const forSize = this.count <= capacity;
        this.forget(e);
        this.evicted++;
        if (this.listener !== null) {
          this.listener.evicted(e.kind);
          if (forSize && this.listener.sizeDropped !== undefined) this.listener.sizeDropped('max_bytes');
        }
      }
      if (kept !== undefined) {
        kept.next = undefined;
        names.set(name, kept);
        // Only the new entry is left and the store is still over capacity: nothing else can go.
        if (names.size === 1) return;
      }
    }
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
    // `now` may be a query's arrival time, a little before an entry stored while the query waited its turn.
    const elapsed = now > e.storedAt ? Math.floor((now - e.storedAt) / 1000) : 0;
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

  /** Every entry, oldest name first (for dumps and tests). */
  *entries(): IterableIterator<CacheEntry> {
    for (const head of this.names.values()) for (let e: CacheEntry | undefined = head; e !== undefined; e = e.next) yield e;
  }
}

function writeTtl(buf: Buffer, off: number, v: number): void {
  buf[off] = v >>> 24;
  buf[off + 1] = (v >>> 16) & 0xff;
  buf[off + 2] = (v >>> 8) & 0xff;
  buf[off + 3] = v & 0xff;
}
