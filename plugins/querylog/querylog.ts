/**
 * The query log of one server block: the `served` tap pushes into a bounded ring (O(1), nothing else), and a
 * writer drains it on an interval into batches — rows and hourly counts in one transaction. A full ring or a
 * failing database drops entries and counts them; it never holds up a query.
 */
import { isIP } from 'node:net';
import { performance } from 'node:perf_hooks';
import type { QueryContext } from '../../core/context';
import type { Logger } from '../../core/log';
import { RepeatingWarning } from '../../core/primitives/rateLimitedLog';
import type { DnsResponse } from '../../core/response';
import { wireKeyToName } from '../../core/wire/query';
import { CidrSet } from '../pkg/cidr';
import { FLAG_BLOCKED, FLAG_CACHED, FLAG_TRUNCATED, Ring, type RawEntry } from './ring';
import { HOUR, type AggKind, type AggRow, type LogRow, type QuerylogStore } from './store';

export interface QueryLogOptions {
  ring: number;
  batch: number;
  flushMs: number;
  retentionMs: number;
  maxRows: number;
  statsRetentionMs: number;
  maxHourlyKeys: number;
  sample: number;
  excludeClients: readonly string[];
  excludeNames: readonly string[];
  anonymize: { ipv4: number; ipv6: number } | null;
  pruneIntervalMs: number;
  logIntervalMs: number;
}

export interface QueryLogStats {
  logged: number;
  written: number;
  batches: number;
  failedBatches: number;
  droppedRingFull: number;
  droppedStorage: number;
  skippedExcluded: number;
  skippedSampled: number;
  keysOverflow: number;
  pruned: number;
  lastWriteMs: number;
  storageOk: boolean;
  lastError: string | null;
}

/** Extended DNS Errors that say the answer was withheld on purpose (RFC 8914: Blocked, Censored, Filtered). */
const BLOCKED_EDE = new Set([15, 16, 17]);
const OTHER = '(other)';
const MINUTES = 60;

interface Minute {
  minute: number;
  queries: number;
  blocked: number;
  cached: number;
}

export class QueryLog {
  readonly ring: Ring;
  readonly stats: QueryLogStats = {
    logged: 0,
    written: 0,
    batches: 0,
    failedBatches: 0,
    droppedRingFull: 0,
    droppedStorage: 0,
    skippedExcluded: 0,
    skippedSampled: 0,
    keysOverflow: 0,
    pruned: 0,
    lastWriteMs: 0,
    storageOk: true,
    lastError: null,
  };
  /** Where prom-client counters keep the totals they already reported, so a reload never counts twice. */
  readonly metricMarks = new Map<string, number>();
  private readonly excludedClients: CidrSet;
  private readonly names: ReadonlySet<string>;
  private readonly minutes: Minute[] = [];
  /** Distinct keys per kind and hour, to bound the hourly tables (a scan of random names must not grow them). */
  private readonly keysSeen = new Map<number, { c: Set<string>; d: Set<string> }>();
  /** Queries per client since local midnight, for the device list (`queriesToday`); bounded like the hourly keys. */
  private readonly today = new Map<string, number>();
  private todayStart = startOfDay(Date.now());
  private writing: Promise<void> | null = null;
  private lastFlush = performance.now();
  private lastPrune = -Infinity;
  private closed = false;
  private readonly ringFull: RepeatingWarning;
  private readonly storageFailed: RepeatingWarning;
  onBatch: ((rows: number, seconds: number, ok: boolean) => void) | null = null;

  constructor(readonly opts: QueryLogOptions, private readonly openStore: () => Promise<QuerylogStore>, private readonly log: Logger) {
    this.ring = new Ring(opts.ring);
    this.excludedClients = new CidrSet(opts.excludeClients);
    this.names = new Set(opts.excludeNames.map((n) => n.toLowerCase().replace(/\.$/, '')));
    for (let i = 0; i < MINUTES; i++) this.minutes.push({ minute: -1, queries: 0, blocked: 0, cached: 0 });
    this.ringFull = new RepeatingWarning({ intervalMs: opts.logIntervalMs, emit: (count) => this.log.warn('query log ring full, entries dropped (raise ring or lower flush)', { count, ring: opts.ring }) });
    this.storageFailed = new RepeatingWarning({ intervalMs: opts.logIntervalMs, emit: (count) => this.log.warn('query log batch not written, entries dropped', { count, error: this.stats.lastError }) });
  }

  get pending(): number {
    return this.ring.size;
  }

  /** The `served` tap: O(1), no allocation beyond the entry, no I/O. */
  record(ctx: QueryContext, res: DnsResponse): void {
    if (this.opts.sample < 1 && Math.random() >= this.opts.sample) {
      this.stats.skippedSampled++;
      return;
    }
    if (this.excludedClients.has(ctx.client.address)) {
      this.stats.skippedExcluded++;
      return;
    }
    if (this.names.size > 0 && this.nameExcluded(ctx.qname)) {
      this.stats.skippedExcluded++;
      return;
    }
    const flagsWord = res.dropped ? 0 : ctx.replyFlags ?? res.wire.readUInt16BE(2);
    let flags = 0;
    if ((flagsWord & 0x0200) !== 0) flags |= FLAG_TRUNCATED;
    if (res.ede !== undefined && BLOCKED_EDE.has(res.ede.code)) flags |= FLAG_BLOCKED;
    if (res.plugin === 'cache') flags |= FLAG_CACHED;
    const e: RawEntry = {
      t: Date.now(),
      client: ctx.client.address,
      wireKey: ctx.query.wireKey,
      qtype: ctx.query.qtype,
      rcode: res.dropped ? -1 : flagsWord & 0x0f,
      answeredBy: res.plugin === '' ? 'core' : res.plugin,
      upstream: res.upstream ?? null,
      durationUs: Math.round((performance.now() - ctx.startedAt) * 1000),
      flags,
    };
    if (this.ring.push(e)) this.stats.logged++;
    else {
      this.stats.droppedRingFull++;
      this.ringFull.hit();
    }
  }

  private nameExcluded(name: string): boolean {
    let n = name;
    for (;;) {
      if (this.names.has(n)) return true;
      const dot = n.indexOf('.');
      if (dot < 0) return false;
      n = n.slice(dot + 1);
    }
  }

  /** Called every second or so: writes when a batch is due (by size or by the flush interval), prunes on schedule. */
  tick(now = performance.now()): void {
    if (this.writing !== null || this.closed) return;
    const due = this.ring.size >= this.opts.batch || (this.ring.size > 0 && now - this.lastFlush >= this.opts.flushMs);
    const pruneDue = now - this.lastPrune >= this.opts.pruneIntervalMs;
    if (!due && !pruneDue) return;
    this.writing = (due ? this.flush() : Promise.resolve())
      .then(() => (pruneDue ? this.prune() : undefined))
      .finally(() => {
        this.writing = null;
      });
  }

  /** Writes everything in the ring now (used by tick, shutdown and tests). */
  async flush(): Promise<void> {
    this.lastFlush = performance.now();
    while (this.ring.size > 0) {
      const entries = this.ring.drain(this.opts.batch);
      await this.writeBatch(entries);
    }
  }

  private async writeBatch(entries: RawEntry[]): Promise<void> {
    // Converted and counted in slices with a turn of the event loop between them: a 5,000-entry batch is
    // tens of milliseconds of work, which must not sit in front of the queries arriving meanwhile.
    const rows: LogRow[] = [];
    const acc: AggAcc = { hours: new Map(), out: [] };
    for (let i = 0; i < entries.length; i += SLICE) {
      const end = Math.min(entries.length, i + SLICE);
      const start = rows.length;
      for (let k = i; k < end; k++) rows.push(this.toRow(entries[k]));
      this.aggregate(rows, start, acc);
      if (end < entries.length) await new Promise<void>((r) => setImmediate(r));
    }
    const aggs = acc.out;
    const started = performance.now();
    try {
      const store = await this.openStore();
      await store.write(rows, aggs);
      const s = (performance.now() - started) / 1000;
      this.stats.written += rows.length;
      this.stats.batches++;
      this.stats.lastWriteMs = s * 1000;
      this.stats.storageOk = true;
      this.onBatch?.(rows.length, s, true);
    } catch (err) {
      // Entries are not kept for a retry: a database that stays down must not grow memory, and the next
      // batch is already filling the ring.
      this.stats.failedBatches++;
      this.stats.droppedStorage += rows.length;
      this.stats.storageOk = false;
      this.stats.lastError = err instanceof Error ? err.message : String(err);
      this.storageFailed.hit();
      this.onBatch?.(rows.length, (performance.now() - started) / 1000, false);
    }
  }

  private toRow(e: RawEntry): LogRow {
    let name = wireKeyToName(e.wireKey);
    if (name.length > 255) name = name.slice(0, 255);
    return {
      t: e.t,
      client: this.opts.anonymize === null ? e.client : maskAddress(e.client, this.opts.anonymize.ipv4, this.opts.anonymize.ipv6),
      name,
      qtype: e.qtype,
      rcode: e.rcode,
      answeredBy: e.answeredBy.slice(0, 64),
      upstream: e.upstream,
      durationUs: Math.min(e.durationUs, 2_147_483_647),
      flags: e.flags,
    };
  }

  /** Per-batch hourly counts (merged into the stored ones by the write), and the in-memory minute counts. */
  private aggregate(rows: readonly LogRow[], from: number, acc: AggAcc): void {
    // Keyed by number and by the plain key, one map per kind: no key string is built per row.
    const hours = acc.hours;
    const out = acc.out;
    const day = startOfDay(Date.now());
    if (day !== this.todayStart) {
      this.todayStart = day;
      this.today.clear();
    }
    for (let i = from; i < rows.length; i++) {
      const r = rows[i];
      const hour = Math.floor(r.t / HOUR) * HOUR;
      if (r.t >= day) this.countToday(r.client, 1);
      let h = hours.get(hour);
      if (h === undefined) {
        h = { t: null, c: new Map(), d: new Map(), r: new Map(), a: new Map(), seen: this.seenFor(hour) };
        hours.set(hour, h);
      }
      if (h.t === null) {
        h.t = newAgg(hour, 't', '');
        out.push(h.t);
      }
      count(h.t, r);
      count(this.slot(h.c, hour, 'c', h.seen.c, r.client, out), r);
      count(this.slot(h.d, hour, 'd', h.seen.d, r.name, out), r);
      count(slotOf(h.r, hour, 'r', r.rcode, out), r);
      count(slotOf(h.a, hour, 'a', r.answeredBy, out), r);
      const minute = Math.floor(r.t / 60_000);
      const m = this.minutes[minute % MINUTES];
      if (m.minute !== minute) {
        if (m.minute > minute) continue;
        m.minute = minute;
        m.queries = m.blocked = m.cached = 0;
      }
      m.queries++;
      if ((r.flags & FLAG_BLOCKED) !== 0) m.blocked++;
      if ((r.flags & FLAG_CACHED) !== 0) m.cached++;
    }
  }

  /** The count for a client or a name, or `(other)` once the hour has `max_hourly_keys` of them. */
  private slot(map: Map<string, AggRow>, hour: number, kind: 'c' | 'd', seen: Set<string>, key: string, out: AggRow[]): AggRow {
    const a = map.get(key);
    if (a !== undefined) return a;
    let k = key;
    if (!seen.has(key)) {
      if (seen.size >= this.opts.maxHourlyKeys) {
        this.stats.keysOverflow++;
        k = OTHER;
        const other = map.get(OTHER);
        if (other !== undefined) return other;
      } else seen.add(key);
    }
    const fresh = newAgg(hour, kind, k);
    map.set(k, fresh);
    out.push(fresh);
    return fresh;
  }

  /** Distinct clients and names counted for an hour, across batches. */
  private seenFor(hour: number): { c: Set<string>; d: Set<string> } {
    let s = this.keysSeen.get(hour);
    if (s === undefined) {
      s = { c: new Set(), d: new Set() };
      this.keysSeen.set(hour, s);
      // Only the current and the previous hour still get entries (a batch can straddle an hour).
      for (const k of this.keysSeen.keys()) if (k < hour - HOUR) this.keysSeen.delete(k);
    }
    return s;
  }

  private countToday(client: string, n: number): void {
    const v = this.today.get(client);
    if (v !== undefined) this.today.set(client, v + n);
    else if (this.today.size < this.opts.maxHourlyKeys * 4) this.today.set(client, n);
    else this.stats.keysOverflow++;
  }

  /** Distinct keys held in memory for the counts: this hour's clients and names, and today's clients. */
  get trackedKeys(): number {
    let n = this.today.size;
    for (const s of this.keysSeen.values()) n += s.c.size + s.d.size;
    return n;
  }

  /** Queries today by this client (null when none was logged). */
  queriesToday(client: string): number | null {
    return this.today.get(client) ?? null;
  }

  /** Seeds today's per-client counts from the stored hourly counts (once, when the store opens). */
  seedToday(counts: readonly { key: string; queries: number }[], since: number): void {
    if (since !== this.todayStart) return;
    for (const c of counts) this.countToday(c.key, c.queries);
  }

  get dayStart(): number {
    return this.todayStart;
  }

  /** Per-minute counts of the last hour (oldest first; minutes without queries are zeros). */
  minuteSeries(now = Date.now()): { t: number; queries: number; blocked: number; cached: number }[] {
    const current = Math.floor(now / 60_000);
    const out = [];
    for (let m = current - MINUTES + 1; m <= current; m++) {
      const b = this.minutes[m % MINUTES];
      out.push(b.minute === m ? { t: m * 60_000, queries: b.queries, blocked: b.blocked, cached: b.cached } : { t: m * 60_000, queries: 0, blocked: 0, cached: 0 });
    }
    return out;
  }

  /** Entries still waiting in the ring, newest first (the live log shows them before they are written). */
  pendingEntries(): LogRow[] {
    const all = this.ring.peekAll();
    const out: LogRow[] = [];
    for (let i = all.length - 1; i >= 0; i--) out.push(this.toRow(all[i]));
    return out;
  }

  async prune(): Promise<void> {
    this.lastPrune = performance.now();
    try {
      const store = await this.openStore();
      const now = Date.now();
      this.stats.pruned += await store.prune(now - this.opts.retentionMs, this.opts.maxRows, now - this.opts.statsRetentionMs);
    } catch (err) {
      this.stats.lastError = err instanceof Error ? err.message : String(err);
      this.storageFailed.hit();
    }
  }

  /** Writes what is left, within `ms`; anything still unwritten then is dropped (and counted). */
  async close(ms = 5000): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.writing !== null) await this.writing.catch(() => undefined);
    const left = this.ring.size;
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<'timeout'>((r) => {
      timer = setTimeout(() => r('timeout'), ms);
    });
    const done = await Promise.race([this.flush().then(() => 'ok' as const), timeout]);
    clearTimeout(timer);
    if (done === 'timeout') {
      this.stats.droppedStorage += this.ring.size;
      this.log.warn('query log: shutdown flush timed out, entries dropped', { dropped: this.ring.size, pending: left });
      this.ring.drain(this.ring.size);
    }
    this.storageFailed.flush();
    this.ringFull.flush();
  }

  /** For tests: wait for the write in progress. */
  async idle(): Promise<void> {
    if (this.writing !== null) await this.writing.catch(() => undefined);
  }
}

/** Entries converted between two turns of the event loop. */
const SLICE = 500;

interface AggAcc {
  hours: Map<number, HourAggs>;
  out: AggRow[];
}

interface HourAggs {
  t: AggRow | null;
  c: Map<string, AggRow>;
  d: Map<string, AggRow>;
  r: Map<number, AggRow>;
  a: Map<string, AggRow>;
  seen: { c: Set<string>; d: Set<string> };
}

function newAgg(hour: number, kind: AggKind, key: string): AggRow {
  return { hour, kind, key, queries: 0, blocked: 0, cached: 0, failed: 0, durationUs: 0 };
}

function slotOf<K extends string | number>(map: Map<K, AggRow>, hour: number, kind: AggKind, key: K, out: AggRow[]): AggRow {
  let a = map.get(key);
  if (a === undefined) {
    a = newAgg(hour, kind, String(key));
    map.set(key, a);
    out.push(a);
  }
  return a;
}

function count(a: AggRow, r: LogRow): void {
  a.queries++;
  if ((r.flags & FLAG_BLOCKED) !== 0) a.blocked++;
  if ((r.flags & FLAG_CACHED) !== 0) a.cached++;
  if (r.rcode === 2) a.failed++;
  a.durationUs += r.durationUs;
}

function startOfDay(t: number): number {
  const d = new Date(t);
  d.setHours(0, 0, 0, 0);
  return d.getTime();
}

/** The address with its host bits cleared, written as a network (`192.168.1.0/24`). */
export function maskAddress(address: string, v4bits: number, v6bits: number): string {
  if (isIP(address) === 4) {
    const parts = address.split('.').map(Number);
    let n = ((parts[0] << 24) | (parts[1] << 16) | (parts[2] << 8) | parts[3]) >>> 0;
    n = v4bits === 0 ? 0 : (n & (0xffffffff << (32 - v4bits))) >>> 0;
    return `${n >>> 24}.${(n >>> 16) & 255}.${(n >>> 8) & 255}.${n & 255}/${v4bits}`;
  }
  if (isIP(address) === 6) {
    const groups = expandV6(address);
    const out: number[] = [];
    for (let i = 0; i < 8; i++) {
      const keep = Math.max(0, Math.min(16, v6bits - i * 16));
      out.push(keep === 0 ? 0 : groups[i] & ((0xffff << (16 - keep)) & 0xffff));
    }
    return `${compressV6(out)}/${v6bits}`;
  }
  return address;
}

function expandV6(a: string): number[] {
  const zone = a.indexOf('%');
  if (zone >= 0) a = a.slice(0, zone);
  if (a.includes('.')) {
    // An IPv4 tail (::ffff:192.0.2.1): as two hex groups.
    const last = a.lastIndexOf(':');
    const v4 = a.slice(last + 1).split('.').map(Number);
    a = `${a.slice(0, last + 1)}${((v4[0] << 8) | v4[1]).toString(16)}:${((v4[2] << 8) | v4[3]).toString(16)}`;
  }
  const [head, rest] = a.split('::');
  const h = head === '' ? [] : head.split(':').map((x) => parseInt(x, 16));
  if (rest === undefined) return h.slice(0, 8);
  const r = rest === '' ? [] : rest.split(':').map((x) => parseInt(x, 16));
  return [...h, ...new Array<number>(Math.max(0, 8 - h.length - r.length)).fill(0), ...r].slice(0, 8);
}

function compressV6(g: number[]): string {
  let best = -1;
  let bestLen = 0;
  for (let i = 0; i < 8; ) {
    if (g[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && g[j] === 0) j++;
    if (j - i > bestLen && j - i > 1) {
      best = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = g.map((x) => x.toString(16));
  if (best < 0) return hex.join(':');
  return `${hex.slice(0, best).join(':')}::${hex.slice(best + bestLen).join(':')}`;
}
