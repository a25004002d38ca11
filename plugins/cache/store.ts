import { type Clock, monotonicClock } from '../../core/clock';
import { DnsResponse, type ExtendedError } from '../../core/response';
import { Flag, Rcode } from '../../core/wire/constants';
import type { MessageLayout } from '../../core/wire/message';
import type { ParsedQuery } from '../../core/wire/query';
import { HEADER_LEN } from '../../core/wire/constants';
import { wireNameHash } from '../../core/wire/names';
import { put32, u32le } from '../../core/wire/bytes';
import { DetachedChunk, Slab, type ChunkSource } from './slab';

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

/** 16 MiB: the cache of a small box (10,000 entries of ordinary answers take about 2.5 MB: `capacity` binds first). */
export const DEFAULT_MAX_BYTES = 16 * 1024 * 1024;
/** 16 KiB: above any ordinary answer (a signed DNSKEY set is ~1.5 KB), far below the 64 KB a TCP answer may reach. */
export const DEFAULT_MAX_ENTRY_BYTES = 16 * 1024;

/**
 * The heap an entry takes beside its slab chunk: the CacheEntry object (9 fields: 24 + 72 bytes on 64-bit Node
 * without pointer compression) and its slot in the name map (3 words and half a bucket word, the table being
 * 50–100% full: about 40 bytes on average).
 */
export const ENTRY_OVERHEAD = 136;

/** Before the wire bytes in a chunk: wire length, record count, question end (u16 each), minTtl, soaNegativeTtl (i32). */
const CHUNK_HEADER = 14;

/** Chunk bytes an entry needs: header, the wire bytes, and per record its TTL offset (u16) and base TTL (u32). */
function chunkLength(wireLength: number, records: number): number {
  return CHUNK_HEADER + wireLength + 6 * records;
}

/** Size classes of the store's slabs (shared: chunk sizes depend only on the largest chunk). */
const costSlab = new Slab(chunkLength(65535, 0));

/**
 * What an entry is counted as against `max_bytes`: its slab chunk (header, wire bytes, 6 bytes per record, rounded
 * up to its size class) and ENTRY_OVERHEAD for the object and the map slot. The name is not stored apart from the
 * wire bytes (the map is keyed by a hash of it), so `nameLength` no longer adds anything. Against the heap and
 * external memory measured by bench/cache-memory.ts (100,000 A answers) it is within a few percent.
 */
export function entryCost(wireLength: number, nameLength: number, records: number): number {
  void nameLength;
  return costSlab.chunkSize(chunkLength(wireLength, records)) + ENTRY_OVERHEAD;
}

/** Receives changes of the store's contents (set by the plugin instance currently using the store). */
export interface StoreListener {
  evicted(kind: EntryKind): void;
  /** An answer not stored because it is bigger than max_entry_bytes, or an entry evicted to stay within max_bytes. */
  sizeDropped?(reason: SizeDropReason): void;
}

/** Why the byte bounds dropped an answer (a metric label). */
export type SizeDropReason = 'entry_too_big' | 'max_bytes';

/** What only some entries need (an EDE, prefetch counting, refresh state): allocated on first use. */
class EntryAux {
  ede: ExtendedError | undefined = undefined;
  hits = 0;
  windowStart = -Infinity;
  failedAt = -Infinity;
  pending: Promise<DnsResponse | null> | undefined = undefined;
  /** The layout handed out with every render, built at the first (an entry never hit keeps none). */
  layout: MessageLayout | undefined = undefined;
}

/**
 * What a hit entry adds once its layout is kept (the EntryAux object with its two boxed times, the layout object
 * and its offsets array): counted in its size from then on.
 */
function hotCost(records: number): number {
  return 256 + 8 * records;
}

const KIND_MASK = 3;
const USED = 4;
const REFRESHING = 8;
const AUTHORITATIVE = 16;
/** The entry keeps its layout (and EntryAux): `hotCost` is part of its size. */
const HOT = 32;
const VARIANT_SHIFT = 6;

/**
 * One cached response. Its bytes — the wire bytes from below without their OPT record, the TTL offsets and the
 * TTLs at store time — are one chunk of the store's slab (`ref`); the object itself holds only small integers
 * (V8 keeps them unboxed) and two pointers, so it costs what ENTRY_OVERHEAD says. `storedAt` is whole
 * milliseconds of the monotonic clock. Mutable state belongs to the store's eviction (`used`, `next`), to
 * prefetch and to serve-stale.
 */
export class CacheEntry {
  /** The next entry under the same name hash (another type, class, DO, CD or AD; rarely another name). */
  next: CacheEntry | undefined = undefined;
  private aux: EntryAux | undefined = undefined;

  constructor(
    /** The store's slab; the entry's own copy of its chunk once detached (see `detach`). */
    private slab: ChunkSource,
    /** The map key: a hash of the lower-cased wire name. */
    readonly hash: number,
    /** Its chunk in the slab. */
    readonly ref: number,
    readonly qtype: number,
    /** variant << 6 | HOT | AUTHORITATIVE | REFRESHING | USED | kind. */
    private bits: number,
    /** Monotonic ms (whole) when stored. */
    readonly storedAt: number,
    /** Lifetime in ms: the entry is fresh while now < storedAt + ttlMs. */
    readonly ttlMs: number,
  ) {}

  get expiresAt(): number {
    return this.storedAt + this.ttlMs;
  }

  get kind(): EntryKind {
    return (this.bits & KIND_MASK) as EntryKind;
  }

  /** qclass << 3 | AD << 2 | CD << 1 | DO: the rest of the key. */
  get variant(): number {
    return this.bits >>> VARIANT_SHIFT;
  }

  /** Hit since the evictor last passed (second-chance LRU). */
  get used(): boolean {
    return (this.bits & USED) !== 0;
  }

  set used(v: boolean) {
    this.bits = v ? this.bits | USED : this.bits & ~USED;
  }

  /** A prefetch for this entry is in flight. */
  get refreshing(): boolean {
    return (this.bits & REFRESHING) !== 0;
  }

  set refreshing(v: boolean) {
    this.bits = v ? this.bits | REFRESHING : this.bits & ~REFRESHING;
  }

  get authoritative(): boolean {
    return (this.bits & AUTHORITATIVE) !== 0;
  }

  get ede(): ExtendedError | undefined {
    return this.aux?.ede;
  }

  set ede(v: ExtendedError | undefined) {
    if (v !== undefined || this.aux !== undefined) this.more().ede = v;
  }

  /** Times the entry was served inside the current popularity window (prefetch). */
  get hits(): number {
    return this.aux?.hits ?? 0;
  }

  set hits(v: number) {
    this.more().hits = v;
  }

  get windowStart(): number {
    return this.aux?.windowStart ?? -Infinity;
  }

  set windowStart(v: number) {
    this.more().windowStart = v;
  }

  /** When the last refresh attempt from below failed (serve-stale recheck, prefetch back-off). */
  get failedAt(): number {
    return this.aux?.failedAt ?? -Infinity;
  }

  set failedAt(v: number) {
    this.more().failedAt = v;
  }

  /** The refresh of an expired entry in flight, shared by every client waiting on it. */
  get pending(): Promise<DnsResponse | null> | undefined {
    return this.aux?.pending;
  }

  set pending(v: Promise<DnsResponse | null> | undefined) {
    if (v !== undefined || this.aux !== undefined) this.more().pending = v;
  }

  /** The buffer holding the entry's chunk (a slab page, or its own copy once detached). */
  chunkBuffer(): Buffer {
    return this.slab.bufferOf(this.ref);
  }

  /** Where the chunk starts in `chunkBuffer()`. */
  chunkOffset(): number {
    return this.slab.offsetOf(this.ref);
  }

  /**
   * Copies the chunk out of the slab before the store frees it: an entry that leaves while a refresh holds it
   * (serve-stale) may still be rendered when that refresh fails, and its chunk may by then hold another answer.
   */
  detach(): void {
    const size = this.slab.sizeOf(this.ref);
    const off = this.slab.offsetOf(this.ref);
    this.slab = new DetachedChunk(Buffer.from(this.slab.bufferOf(this.ref).subarray(off, off + size)));
  }

  private more(): EntryAux {
    if (this.aux === undefined) this.aux = new EntryAux();
    return this.aux;
  }

  /** A copy of the stored wire bytes (without OPT). */
  get wire(): Buffer {
    const buf = this.chunkBuffer();
    const off = this.chunkOffset();
    const len = buf.readUInt16LE(off);
    return Buffer.from(buf.subarray(off + CHUNK_HEADER, off + CHUNK_HEADER + len));
  }

  /** The layout of `wire` (built on each call: the entry keeps none). */
  get layout(): MessageLayout {
    return layoutFromChunk(this.chunkBuffer(), this.chunkOffset());
  }

  /** The lower-cased question name in wire form. */
  get name(): string {
    const buf = this.chunkBuffer();
    const off = this.chunkOffset() + CHUNK_HEADER;
    const qEnd = buf.readUInt16LE(off - CHUNK_HEADER + 4);
    return buf.toString('latin1', off + HEADER_LEN, off + qEnd - 4).toLowerCase();
  }

  /** What it counts against max_bytes (`entryCost`). */
  get size(): number {
    const base = this.slab.sizeOf(this.ref) + ENTRY_OVERHEAD;
    return (this.bits & HOT) === 0 ? base : base + hotCost(this.records());
  }

  private records(): number {
    const buf = this.chunkBuffer();
    const off = this.chunkOffset();
    return buf[off + 2] | (buf[off + 3] << 8);
  }

  /** The layout kept by an earlier render, if any. */
  keptLayout(): MessageLayout | undefined {
    return this.aux?.layout;
  }

  /** Keeps `layout` for the renders to come; returns the bytes this adds to the entry's size. */
  keepLayout(layout: MessageLayout): number {
    this.more().layout = layout;
    if ((this.bits & HOT) !== 0) return 0;
    this.bits |= HOT;
    return hotCost(layout.ttlOffsets.length);
  }

  /** Whether the entry reads its bytes from `slab` (false once detached). */
  isIn(slab: ChunkSource): boolean {
    return this.slab === slab;
  }

  /** Record TTLs (seconds) at store time, parallel to `layout.ttlOffsets`. */
  get baseTtls(): Uint32Array {
    const buf = this.chunkBuffer();
    const off = this.chunkOffset();
    const len = buf.readUInt16LE(off);
    const n = buf.readUInt16LE(off + 2);
    const out = new Uint32Array(n);
    const base = off + CHUNK_HEADER + len + 2 * n;
    for (let i = 0; i < n; i++) out[i] = buf.readUInt32LE(base + 4 * i);
    return out;
  }
}

/** The MessageLayout of the wire bytes of a chunk at `off` (no OPT: it was stripped). */
function layoutFromChunk(buf: Buffer, off: number): MessageLayout {
  const len = buf.readUInt16LE(off);
  const n = buf.readUInt16LE(off + 2);
  const w = off + CHUNK_HEADER;
  const ttlOffsets = new Array<number>(n);
  const t = w + len;
  for (let i = 0; i < n; i++) ttlOffsets[i] = buf.readUInt16LE(t + 2 * i);
  return {
    questionEnd: buf.readUInt16LE(off + 4),
    answerCount: (buf[w + 6] << 8) | buf[w + 7],
    authorityCount: (buf[w + 8] << 8) | buf[w + 9],
    ttlOffsets,
    optStart: -1,
    optEnd: -1,
    optTtl: 0,
    minTtl: buf.readInt32LE(off + 6),
    soaNegativeTtl: buf.readInt32LE(off + 10),
  };
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
 * Entries are found by a 31-bit hash of the question name's wire key (a small-integer map key: no key string is
 * kept per entry), then by type, variant and the name itself (compared with the chunk's question) along a short
 * per-hash list. Eviction is
 * second-chance LRU ("CLOCK"): a hit only sets `used`; when the store is over capacity the oldest name is looked
 * at, moved to the back with its marks cleared if any of its still-servable entries was used, else evicted. A Map re-insert
 * per hit (strict LRU) costs more than the rest of a hit together, because V8 compacts the table as deleted
 * slots pile up. Time is read from an injected monotonic clock; TTLs handed out count down in whole seconds.
 */
export class CacheStore {
  readonly limits: StoreLimits;
  readonly clock: Clock;
  listener: StoreListener | null = null;
  /** Entries by the hash of their name; each heads a short list (`next`) of the name's other entries. */
  private readonly names = new Map<number, CacheEntry>();
  private readonly slab: Slab;
  private count = 0;
  private evicted = 0;
  private byteCount = 0;
  readonly maxBytes: number;
  readonly maxEntryBytes: number;
  /** Entries by kind: [success, denial (negative + SERVFAIL)]. */
  private readonly counts = [0, 0];
  /**
   * The evictor's hand: a live iterator over the names, kept between evictions. Every name it has passed was
   * either evicted or moved to the back, so where it stands is the oldest name; starting a new iterator per
   * eviction would skip the deleted slots at the front of V8's table each time (4.5% of a miss run's CPU).
   */
  private hand: IterableIterator<[number, CacheEntry]> | null = null;

  constructor(limits: StoreLimits, clock: Clock = monotonicClock) {
    if (!Number.isInteger(limits.capacity) || limits.capacity < 1) throw new RangeError(`capacity must be an integer >= 1, got ${limits.capacity}`);
    if (limits.minTtl > limits.maxTtl) throw new RangeError(`min_ttl (${limits.minTtl}s) is above max_ttl (${limits.maxTtl}s)`);
    this.maxBytes = limits.maxBytes ?? DEFAULT_MAX_BYTES;
    this.maxEntryBytes = Math.min(limits.maxEntryBytes ?? DEFAULT_MAX_ENTRY_BYTES, this.maxBytes, 65535);
    if (entryCost(this.maxEntryBytes, 0, 0) > this.maxBytes) throw new RangeError(`max_bytes (${this.maxBytes}) cannot hold one entry of max_entry_bytes (${this.maxEntryBytes})`);
    this.limits = limits;
    this.clock = clock;
    // Records of at most 4 bytes of TTL offsets and TTLs per 16 wire bytes (a record is at least 11 bytes).
    this.slab = new Slab(chunkLength(this.maxEntryBytes, Math.ceil(this.maxEntryBytes / 11)));
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

  /** Bytes held by the entries (`entryCost` each: slab chunk + object + map slot), bounded by max_bytes. */
  get bytes(): number {
    return this.byteCount;
  }

  /** Bytes of slab pages held (chunks in use and free ones): `bytes` minus the objects, plus the pages' slack. */
  get slabBytes(): number {
    return this.slab.allocatedBytes;
  }

  /** Entries evicted because the store was full. */
  get evictions(): number {
    return this.evicted;
  }

  /** The entry for a query, marked used (whatever its age: the caller decides fresh / stale / dead). */
  get(q: ParsedQuery): CacheEntry | undefined {
    const e = this.find(q, (q.qclass << 3) | ((q.flags & FLAG_AD) !== 0 ? 4 : 0) | ((q.flags & FLAG_CD) !== 0 ? 2 : 0) | (q.edns !== null && q.edns.dnssecOk ? 1 : 0));
    if (e !== undefined) e.used = true;
    return e;
  }

  /** The entry for the query's name (read from the client's bytes: a hit makes no name string), type and variant. */
  private find(q: ParsedQuery, variant: number): CacheEntry | undefined {
    const raw = q.raw;
    const nameEnd = q.questionEnd - 4;
    const qtype = q.qtype;
    let e = this.names.get(wireNameHash(raw, HEADER_LEN, nameEnd));
    while (e !== undefined && (e.qtype !== qtype || e.variant !== variant || !this.sameWireName(e, raw, nameEnd))) e = e.next;
    return e;
  }

  /** The entry's question name equals raw[HEADER_LEN, nameEnd), letters compared without case. */
  private sameWireName(e: CacheEntry, raw: Buffer, nameEnd: number): boolean {
    const buf = e.chunkBuffer();
    const off = e.chunkOffset();
    const n = nameEnd - HEADER_LEN;
    if (buf[off + 4] + (buf[off + 5] << 8) - 4 - HEADER_LEN !== n) return false;
    const w = off + CHUNK_HEADER + HEADER_LEN;
    for (let i = 0; i < n; i++) {
      let a = buf[w + i];
      let b = raw[HEADER_LEN + i];
      if (a >= 65 && a <= 90) a += 32;
      if (b >= 65 && b <= 90) b += 32;
      if (a !== b) return false;
    }
    return true;
  }

  /** Reads without marking the entry used. */
  peek(q: ParsedQuery): CacheEntry | undefined {
    return this.find(q, variantOf(q));
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
    const head = this.names.get(e.hash);
    if (head === undefined) return;
    if (head === e) {
      if (e.next === undefined) this.names.delete(e.hash);
      else this.names.set(e.hash, e.next);
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
    this.hand = null;
    this.slab.clear();
    this.count = 0;
    this.byteCount = 0;
    this.counts[0] = 0;
    this.counts[1] = 0;
  }

  /** Accounts for an entry leaving and gives its chunk back (the entry object must not be read after). */
  private forget(e: CacheEntry): void {
    this.count--;
    this.byteCount -= e.size;
    this.counts[e.kind === EntryKind.Success ? 0 : 1]--;
    if (e.pending !== undefined) e.detach();
    this.slab.free(e.ref);
  }

  /**
   * Stores a response that came from below for query `q`, when it may be cached; says why not otherwise.
   * The bytes are copied (without OPT) into a slab chunk: the caller keeps `res` for its client.
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
      const existing = this.find(q, variant);
      if (existing !== undefined && existing.kind !== EntryKind.Servfail && this.isUsable(existing, now)) return 'servfail-behind-good-entry';
      kind = EntryKind.Servfail;
      // A SERVFAIL made here because nothing answered in time is no upstream's verdict on the name.
      ttlMs = res.localFailure ? Math.min(lim.servfailMs, LOCAL_FAILURE_MAX_MS) : lim.servfailMs;
      cap = Math.ceil(ttlMs / 1000);
    } else {
      return 'rcode';
    }
    if (ttlMs <= 0) return 'zero-ttl';
    // Without OPT: the OPT, when there is one, must be the last record (else later pointers would shift).
    const optStart = layout.optStart;
    if (optStart !== -1 && layout.optEnd !== wire.length) return 'opt-not-last';
    const wireLength = optStart === -1 ? wire.length : optStart;
    if (wireLength > this.maxEntryBytes) {
      // One big answer (a client's huge TXT) may not take the room of hundreds of ordinary ones.
      if (this.listener !== null && this.listener.sizeDropped !== undefined) this.listener.sizeDropped('entry_too_big');
      return 'too-big';
    }
    const offsets = layout.ttlOffsets;
    const n = offsets.length;
    const slab = this.slab;
    const ref = slab.alloc(chunkLength(wireLength, n));
    const buf = slab.bufferOf(ref);
    const off = slab.offsetOf(ref);
    buf.writeUInt16LE(wireLength, off);
    buf.writeUInt16LE(n, off + 2);
    buf.writeUInt16LE(layout.questionEnd, off + 4);
    buf.writeInt32LE(layout.minTtl, off + 6);
    buf.writeInt32LE(layout.soaNegativeTtl, off + 10);
    const w = off + CHUNK_HEADER;
    wire.copy(buf, w, 0, wireLength);
    // One record fewer in the additional count when the OPT was cut off.
    if (optStart !== -1) buf.writeUInt16BE(wire.readUInt16BE(10) - 1, w + 10);
    const t = w + wireLength;
    for (let i = 0; i < n; i++) {
      buf.writeUInt16LE(offsets[i], t + 2 * i);
      const v = ttlValue(wire.readUInt32BE(offsets[i]));
      buf.writeUInt32LE(Math.min(Math.max(v, lim.minTtl), cap), t + 2 * n + 4 * i);
    }
    const bits = (variant << VARIANT_SHIFT) | (res.authoritative ? AUTHORITATIVE : 0) | kind;
    const entry = new CacheEntry(slab, wireNameHash(q.raw, HEADER_LEN, q.questionEnd - 4), ref, q.qtype, bits, Math.floor(now), ttlMs);
    if (res.ede !== undefined) entry.ede = res.ede;
    this.insert(entry, q);
    return 'stored';
  }

  /** Puts the entry in place of any with the same key, at the back of the eviction order, then evicts if full. */
  private insert(entry: CacheEntry, q: ParsedQuery): void {
    const nameEnd = q.questionEnd - 4;
    const hash = entry.hash;
    const head = this.names.get(hash);
    if (head !== undefined) {
      // Keep the name's (and any hash neighbour's) other entries; drop the one this replaces.
      let tail = entry;
      for (let e: CacheEntry | undefined = head; e !== undefined; ) {
        const next: CacheEntry | undefined = e.next;
        if (e.qtype === entry.qtype && e.variant === entry.variant && this.sameWireName(e, q.raw, nameEnd)) {
          this.forget(e);
        } else {
          tail.next = e;
          tail = e;
        }
        e = next;
      }
      tail.next = undefined;
      this.names.delete(hash);
    }
    this.names.set(hash, entry);
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
      if (this.hand === null) this.hand = names.entries();
      let oldest = this.hand.next();
      if (oldest.done === true) {
        // Past the end (names were all passed, or added behind a finished hand): start over from the oldest.
        this.hand = names.entries();
        oldest = this.hand.next();
        if (oldest.done === true) return;
      }
      const [hash, head] = oldest.value;
      let used = false;
      for (let e: CacheEntry | undefined = head; e !== undefined; e = e.next) {
        // A used entry gets a second chance, unless it can no longer be served at all.
        if (e.used && this.isUsable(e, now)) used = true;
        e.used = false;
      }
      names.delete(hash);
      if (used) {
        names.set(hash, head);
        continue;
      }
      let kept: CacheEntry | undefined;
      for (let e: CacheEntry | undefined = head; e !== undefined; ) {
        const next: CacheEntry | undefined = e.next;
        if (e === keep) {
          kept = e;
          e = next;
          continue;
        }
        const forSize = this.count <= capacity;
        const kind = e.kind;
        this.forget(e);
        this.evicted++;
        if (this.listener !== null) {
          this.listener.evicted(kind);
          if (forSize && this.listener.sizeDropped !== undefined) this.listener.sizeDropped('max_bytes');
        }
        e = next;
      }
      if (kept !== undefined) {
        kept.next = undefined;
        names.set(hash, kept);
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
   * The copy keeps the stored bytes pristine and is the only one a hit makes: it leaves `room` bytes for our
   * OPT record, and the core writer turns it into the client's reply where it lies (ID, flags, question case,
   * OPT), copying again only when the client needs it truncated or the room is short. A room of exactly the
   * OPT's size (none for a client without EDNS) makes the reply the buffer itself, with no view of it made.
   */
  render(e: CacheEntry, now: number, room = REPLY_ROOM): DnsResponse {
    // `now` may be a query's arrival time, a little before an entry stored while the query waited its turn.
    const elapsed = now > e.storedAt ? Math.floor((now - e.storedAt) / 1000) : 0;
    return this.renderWith(e, elapsed, -1, room);
  }

  /** A stale response (RFC 8767 §4): every TTL set to `ttl` seconds. The caller adds the EDE. */
  renderStale(e: CacheEntry, ttl: number): DnsResponse {
    const res = this.renderWith(e, 0, ttl, REPLY_ROOM);
    res.ede = undefined;
    return res;
  }

  /** The entry's bytes copied out with TTLs of base − elapsed (≥ 0), or all `fixed` when fixed ≥ 0. */
  private renderWith(e: CacheEntry, elapsed: number, fixed: number, room: number): DnsResponse {
    const src = e.chunkBuffer();
    const off = e.chunkOffset();
    const len = src[off] | (src[off + 1] << 8);
    const n = src[off + 2] | (src[off + 3] << 8);
    const w = off + CHUNK_HEADER;
    const out = Buffer.allocUnsafe(len + room);
    src.copy(out, 0, w, w + len);
    let layout = e.keptLayout();
    if (layout === undefined) {
      layout = layoutFromChunk(src, off);
      // A hit entry keeps its layout (one object per entry, as many renders as it gets), and pays for it.
      if (e.isIn(this.slab)) {
        this.byteCount += e.keepLayout(layout);
        if (this.byteCount > this.maxBytes) this.evict(e);
      }
    }
    const offsets = layout.ttlOffsets;
    const t = w + len + 2 * n;
    for (let i = 0; i < n; i++) {
      let v = fixed;
      if (v < 0) {
        v = u32le(src, t + 4 * i) - elapsed;
        if (v < 0) v = 0;
      }
      put32(out, offsets[i], v);
    }
    const res = DnsResponse.fromRender(out, len, layout);
    if (e.authoritative) res.authoritative = true;
    const ede = e.ede;
    if (ede !== undefined) res.ede = ede;
    return res;
  }

  /** Every entry, oldest name first (for dumps and tests). */
  *entries(): IterableIterator<CacheEntry> {
    for (const head of this.names.values()) for (let e: CacheEntry | undefined = head; e !== undefined; e = e.next) yield e;
  }
}

/** Room after a rendered answer for the OPT record the writer adds: 11 bytes, 17 with a stale answer's EDE. */
const REPLY_ROOM = 32;
