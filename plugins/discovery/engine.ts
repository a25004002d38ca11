/**
 * The discovery engine: which client to discover next, when, on which worker, and what becomes of the result.
 *
 * - Announced clients enter a bounded FIFO (`queue`) served by a bounded WorkerPool (`workers`). A client that
 *   does not fit is counted as dropped and waits in the backlog (due at once): it is not lost.
 * - The backlog holds every client that waits for a later attempt, in two parts served as one by (due time,
 *   arrival): clients waiting for their first attempt, in arrival order (`FreshQueue`: no object per client, so
 *   a storm's tens of thousands of them cost the collector little), and a min-heap by due time of the others —
 *   deferred by a guard, retrying after a failure (exponential backoff), or due for a refresh. It is bounded
 *   (`backlog`): beyond it a client still being discovered is left to the database (its row says
 *   `discovering`) and picked up again from there (`restore`), so nothing is lost.
 * - Before a job runs, `beforeDiscover` asks the guards. A denial pauses the pool for `retryAfterMs` (every
 *   job would be denied by the same guard meanwhile — asking again per client would only burn CPU and inflate
 *   the counts) and puts the client back at the head of the backlog. Jobs that reach a worker while the pool
 *   is paused this way go back the same way without asking the guards.
 * - A job runs the methods in order, each with its own timeout, and stops at the first name unless
 *   `stop_on_first` is false (then everything runs and results merge). Each method attempt that ran is told to
 *   `discovered`. The result goes to clienttrack's `applyDiscovery` — the single writer of the clients table.
 */
import { type Clock, monotonicClock } from '../../core/clock';
import type { Logger } from '../../core/log';
import { LruMap } from '../../core/primitives/lru';
import { RepeatingWarning } from '../../core/primitives/rateLimitedLog';
import { boundedPool, type PoolJobs, type WorkerPool } from '../../core/primitives/workerPool';
import type { DiscoveryUpdate } from '../clienttrack/hooks';
import type { DiscoveryMethod, MethodOutcome } from './methods/types';
import { FreshQueue } from './freshQueue';
import { DiscoveryStats, RateMeter } from './metrics';
import type { DiscoveryDenial, DiscoveryHooks, DiscoveryMetrics, DiscoveryOutcome, DiscoveryReport, DiscoveryRequest, MethodName } from './hooks';

export interface EngineOptions {
  workers: number;
  queue: number;
  backlog: number;
  methods: MethodName[];
  timeoutMs: number;
  stopOnFirst: boolean;
  refreshMs: number;
  retry: { attempts: number; backoffMs: number; maxBackoffMs: number };
}

/** Reads of the clients table (the read connection): never writes. */
export interface EngineStore {
  /** Clients whose row says `discovering`, oldest first. */
  discovering(limit: number): Promise<string[]>;
  /** Clients seen since `seenSince` whose name is older than `discoveredBefore` (wall ms), oldest name first. */
  stale(discoveredBefore: number, seenSince: number, limit: number): Promise<string[]>;
}

export interface EngineDeps {
  methods: ReadonlyMap<MethodName, DiscoveryMethod>;
  log: Logger;
  /** May this address be probed (private, loopback, link-local or on-link)? */
  probeable: (ip: string) => boolean;
  vendorOf: (mac: string) => Promise<string | undefined>;
  store?: EngineStore;
  clock?: Clock;
  wall?: () => number;
  /** Timer period of the engine (promotion of due clients, scans). Default 250 ms. */
  tickMs?: number;
  /** First database restore this long after start (default 5 s), then every `restoreEveryMs` while needed. */
  restoreDelayMs?: number;
  restoreEveryMs?: number;
  /** First refresh scan after (default 60 s); then every min(refresh / 4, 10 min). */
  refreshDelayMs?: number;
  /**
   * Builds the engine's pool with `workers` and `queue` (the `workerpool` plugin's named pool `discovery`);
   * without it the engine builds a plain one with the same bounds.
   */
  pool?: <J>(jobs: PoolJobs<J>) => WorkerPool<J>;
}

/** Where the engine sends things: the current chain's hooks (replaced on every reload). */
export interface EngineHooks {
  readonly own: DiscoveryHooks;
  readonly apply: (update: DiscoveryUpdate) => void;
}

type Reason = 'new' | 'restored' | 'retry' | 'refresh';

class Entry {
  /** Consecutive failed attempts. */
  attempts = 0;
  heapIndex = -1;
  where: 'queued' | 'running' | 'waiting' = 'waiting';
  constructor(
    readonly ip: string,
    public reason: Reason,
    public dueAt: number,
    public seq: number,
    /** Announced and not finished: the row says `discovering`. */
    public open: boolean,
  ) {}
}

/** A binary min-heap of entries by (dueAt, seq); each entry knows its index, so removal is O(log n). */
class DueHeap {
  private readonly a: Entry[] = [];

  get size(): number {
    return this.a.length;
  }

  peek(): Entry | undefined {
    return this.a[0];
  }

  push(e: Entry): void {
    e.heapIndex = this.a.length;
    this.a.push(e);
    this.up(e.heapIndex);
  }

  pop(): Entry | undefined {
    const a = this.a;
    if (a.length === 0) return undefined;
    const top = a[0];
    const last = a.pop() as Entry;
    if (a.length > 0) {
      a[0] = last;
      last.heapIndex = 0;
      this.down(0);
    }
    top.heapIndex = -1;
    return top;
  }

  remove(e: Entry): void {
    const i = e.heapIndex;
    if (i < 0) return;
    const a = this.a;
    const last = a.pop() as Entry;
    if (i < a.length) {
      a[i] = last;
      last.heapIndex = i;
      this.down(i);
      this.up(last.heapIndex);
    }
    e.heapIndex = -1;
  }

  /** Entries due at `now` or before (counts from the top; stops at the first not due). O(due). */
  countDue(now: number, limit = Infinity): number {
    let n = 0;
    const stack = [0];
    while (stack.length > 0 && n < limit) {
      const i = stack.pop() as number;
      if (i >= this.a.length || this.a[i].dueAt > now) continue;
      n++;
      stack.push(2 * i + 1, 2 * i + 2);
    }
    return n;
  }

  private less(x: Entry, y: Entry): boolean {
    return x.dueAt < y.dueAt || (x.dueAt === y.dueAt && x.seq < y.seq);
  }

  private up(i: number): void {
    const a = this.a;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (!this.less(a[i], a[p])) break;
      this.swap(i, p);
      i = p;
    }
  }

  private down(i: number): void {
    const a = this.a;
    for (;;) {
      const l = 2 * i + 1;
      const r = l + 1;
      let m = i;
      if (l < a.length && this.less(a[l], a[m])) m = l;
      if (r < a.length && this.less(a[r], a[m])) m = r;
      if (m === i) return;
      this.swap(i, m);
      i = m;
    }
  }

  private swap(i: number, j: number): void {
    const a = this.a;
    const t = a[i];
    a[i] = a[j];
    a[j] = t;
    a[i].heapIndex = i;
    a[j].heapIndex = j;
  }
}

/** What one job found, before it is written. */
interface JobFindings {
  hostname?: string;
  nameMethod?: MethodName;
  mac?: string;
  macMethod?: MethodName;
  problems: string[];
}

/** The MAC's best source: the neighbour table, then the DHCP server's leases, then NetBIOS. */
const MAC_PREFERENCE: readonly MethodName[] = ['arp', 'dhcp', 'netbios', 'mdns', 'rdns'];
/** Abort a method this long after its own timeout, should it not end by itself. */
const ABORT_GRACE_MS = 250;
const DEFAULT_RETRY_AFTER_MS = 1000;
const MIN_RETRY_AFTER_MS = 10;
const RECENT_MS = 120_000;
const RATE_WINDOW_MS = 10_000;
/** The heap's part of `backlog.due` is counted up to this (a walk of its due part; the metrics must stay cheap). */
const DUE_COUNT_LIMIT = 10_000;

export class DiscoveryEngine {
  readonly opts: EngineOptions;
  readonly stats = new DiscoveryStats();
  /** Discoveries finished (not jobs handed back by a guard), per second. */
  private readonly finished: RateMeter;
  readonly pool: WorkerPool<Entry>;
  private readonly heap = new DueHeap();
  /** Clients waiting for their first attempt, in arrival order: given an Entry only when they leave for the queue. */
  private readonly fresh = new FreshQueue();
  /** Clients queued, running, or waiting in the heap (retry, refresh, deferred by a guard). */
  private readonly entries = new Map<string, Entry>();
  /** Clients finished recently: a restore must not pick them up before their row is written. */
  private readonly recent = new LruMap<string, number>(20_000);
  private readonly deps: EngineDeps;
  private readonly clock: Clock;
  private readonly wall: () => number;
  private readonly log: Logger;
  private hooks: EngineHooks | null = null;
  private seq = 0;
  private openCount = 0;
  private overflowed = 0;
  private gateUntil = 0;
  private gateTimer: NodeJS.Timeout | undefined;
  private readonly ticker: NodeJS.Timeout;
  private readonly aborts = new Set<AbortController>();
  private closed = false;
  private readonly startedAt: number;
  private nextRestoreAt: number;
  private needRestore: boolean;
  private restoring = false;
  private nextRefreshAt: number;
  private refreshing = false;
  private readonly overflowWarning: RepeatingWarning;
  private readonly storeWarning: RepeatingWarning;
  private readonly hookWarning: RepeatingWarning;
  private lastOverflowIp = '';
  private lastStoreError = '';
  private lastHookError = '';

  constructor(opts: EngineOptions, deps: EngineDeps) {
    this.opts = opts;
    this.deps = deps;
    this.log = deps.log;
    this.clock = deps.clock ?? monotonicClock;
    this.wall = deps.wall ?? Date.now;
    this.finished = new RateMeter(this.clock);
    const jobs: PoolJobs<Entry> = {
      clock: this.clock,
      run: (e) => this.run(e),
      onError: (err) => this.log.error('discovery job failed', { error: err instanceof Error ? err.message : String(err) }),
    };
    this.pool = deps.pool !== undefined ? deps.pool(jobs) : boundedPool('discovery', opts, jobs);
    const now = this.clock.now();
    this.startedAt = now;
    this.needRestore = deps.store !== undefined;
    this.nextRestoreAt = now + (deps.restoreDelayMs ?? 5_000);
    this.nextRefreshAt = now + (deps.refreshDelayMs ?? 60_000);
    const every = 10_000;
    this.overflowWarning = new RepeatingWarning({
      intervalMs: every,
      clock: this.clock,
      emit: (count) => this.log.warn(`discovery backlog full: ${this.lastOverflowIp} stays discovering, to be picked up from the database`, { clients: count, backlog: opts.backlog }),
    });
    this.storeWarning = new RepeatingWarning({
      intervalMs: 60_000,
      clock: this.clock,
      emit: (count) => this.log.warn('discovery: cannot read the clients table; will retry', { attempts: count, error: this.lastStoreError }),
    });
    this.hookWarning = new RepeatingWarning({
      intervalMs: every,
      clock: this.clock,
      emit: (count) => this.log.warn('discovery: a hook tap threw', { count, error: this.lastHookError }),
    });
    this.ticker = setInterval(() => this.tick(), deps.tickMs ?? 250);
    this.ticker.unref();
  }

  /** Points the engine at the current chain's hooks (the engine outlives a reload; the hooks do not). */
  connect(hooks: EngineHooks): void {
    this.hooks = hooks;
  }

  get isClosed(): boolean {
    return this.closed;
  }

  /** clienttrack's `newClient`: O(log n), never blocks, never throws. */
  announce(ip: string): void {
    this.stats.announced++;
    this.add(ip, 'new');
  }

  /** Whether the engine holds this client (queued, running or waiting), and why. */
  client(ip: string): { where: 'queued' | 'running' | 'waiting'; reason: Reason; attempts: number; dueInMs: number } | undefined {
    const e = this.entries.get(ip);
    if (e !== undefined) return { where: e.where, reason: e.reason, attempts: e.attempts, dueInMs: Math.max(0, e.dueAt - this.clock.now()) };
    const f = this.fresh.get(ip);
    return f && { where: 'waiting', reason: f.restored ? 'restored' : 'new', attempts: 0, dueInMs: Math.max(0, f.dueAt - this.clock.now()) };
  }

  /** Whether the engine holds this client in any of its places. */
  private holds(ip: string): boolean {
    return this.entries.has(ip) || this.fresh.has(ip);
  }

  /** Clients waiting for an attempt (not queued, not running). */
  private get backlogSize(): number {
    return this.heap.size + this.fresh.size;
  }

  /** Adds a client to discover (`new`/`restored`: it is `discovering`; `refresh`: a known name to renew). */
  add(rawIp: string, reason: 'new' | 'restored' | 'refresh'): void {
    if (this.closed) return;
    const ip = rawIp;
    const now = this.clock.now();
    const existing = this.entries.get(ip);
    if (existing !== undefined) {
      // Announced again while waiting for a refresh (a row left `discovering`): make it due now.
      if (reason !== 'refresh' && existing.where === 'waiting' && !existing.open) {
        existing.open = true;
        this.openCount++;
        existing.reason = reason;
        existing.attempts = 0;
        this.heap.remove(existing);
        existing.dueAt = now;
        this.heap.push(existing);
        this.promote();
      }
      return;
    }
    if (this.fresh.has(ip)) return;
    const open = reason !== 'refresh';
    if (!this.deps.probeable(ip)) {
      if (open) {
        this.stats.skip();
        this.markRecent(ip);
        this.apply({ ip, done: true, error: 'not probed: not a private, loopback, link-local or on-link address' });
      }
      return;
    }
    if (this.backlogSize >= this.opts.backlog && this.pool.depth >= this.pool.capacity) {
      // Nowhere to keep it in memory. A client being discovered stays so in the database and is restored
      // from there; a refresh is simply tried at a later scan.
      if (open) {
        this.overflowed++;
        this.stats.overflow();
        this.needRestore = true;
        this.lastOverflowIp = ip;
        this.overflowWarning.hit();
      }
      return;
    }
    if (open) this.openCount++;
    if (reason === 'refresh') this.stats.refreshed++;
    if (reason === 'restored') this.stats.restored++;
    if (this.pool.depth >= this.pool.capacity) this.stats.drop();
    if (open) {
      this.fresh.push(ip, now, this.seq++, reason === 'restored');
    } else {
      const e = new Entry(ip, reason, now, this.seq++, open);
      this.entries.set(ip, e);
      this.heap.push(e);
    }
    this.promote();
  }

  /** Moves due clients from the backlog into the queue while it has room. */
  private promote(): void {
    if (this.closed) return;
    const now = this.clock.now();
    while (this.pool.depth < this.pool.capacity) {
      // The earlier of the two heads by (due time, sequence), as if both were one backlog.
      let top = this.heap.peek();
      if (top !== undefined && top.dueAt > now) top = undefined;
      const freshDue = this.fresh.headDue();
      if (freshDue !== undefined && freshDue <= now && (top === undefined || freshDue < top.dueAt || (freshDue === top.dueAt && this.fresh.headSeq() < top.seq))) {
        const reason = this.fresh.headRestored() ? 'restored' : 'new';
        const seq = this.fresh.headSeq();
        const ip = this.fresh.shift() as string;
        top = new Entry(ip, reason, freshDue, seq, true);
        this.entries.set(ip, top);
      } else if (top !== undefined) {
        this.heap.pop();
      } else {
        return;
      }
      top.where = 'queued';
      if (!this.pool.submit(top)) {
        // Cannot happen while the queue has room (the pool is never closed before the engine); be safe.
        top.where = 'waiting';
        this.heap.push(top);
        return;
      }
    }
  }

  private backToBacklog(e: Entry): void {
    e.where = 'waiting';
    this.heap.push(e);
  }

  /** A guard said no: pause every job until it is worth asking again. */
  private closeGate(retryAfterMs: number | undefined): void {
    const ms = Math.max(MIN_RETRY_AFTER_MS, Number.isFinite(retryAfterMs) && retryAfterMs !== undefined ? retryAfterMs : DEFAULT_RETRY_AFTER_MS);
    const now = this.clock.now();
    const until = now + ms;
    if (until <= this.gateUntil) return;
    this.gateUntil = until;
    this.pool.pause();
    if (this.gateTimer !== undefined) clearTimeout(this.gateTimer);
    this.gateTimer = setTimeout(() => this.openGate(), Math.ceil(ms));
    this.gateTimer.unref();
  }

  private openGate(): void {
    this.gateTimer = undefined;
    if (this.closed) return;
    if (this.clock.now() < this.gateUntil) {
      // A test clock, or the timer fired early: wait the rest.
      this.gateTimer = setTimeout(() => this.openGate(), Math.max(1, Math.ceil(this.gateUntil - this.clock.now())));
      this.gateTimer.unref();
      return;
    }
    this.gateUntil = 0;
    this.promote();
    this.pool.resume();
  }

  /** One job on a worker. */
  private async run(e: Entry): Promise<void> {
    if (this.closed) return;
    const hooks = this.hooks;
    if (hooks === null || this.gateUntil > this.clock.now()) {
      // Paused by a guard (or not connected yet): back to the head of the backlog without asking anyone.
      this.backToBacklog(e);
      return;
    }
    e.where = 'running';
    const req: DiscoveryRequest = { ip: e.ip, methods: this.opts.methods, skip: new Set(), trial: new Set() };
    let denial: DiscoveryDenial | undefined;
    try {
      denial = hooks.own.beforeDiscover.call(req) ?? undefined;
    } catch (err) {
      // A guard that throws must not stop discovery for good: count it, and run the job.
      this.hookFailed(err);
    }
    if (denial !== undefined) {
      try {
        hooks.own.attemptDenied.call(req, denial);
      } catch (err) {
        this.hookFailed(err);
      }
      this.stats.deny(String(denial.reason));
      this.closeGate(denial.retryAfterMs);
      this.backToBacklog(e);
      return;
    }
    this.stats.total++;
    const t0 = this.clock.now();
    const found = await this.runMethods(e.ip, req, hooks);
    if (this.closed || found === undefined) return;
    const ms = this.clock.now() - t0;
    this.finished.add();
    await this.finish(e, found, ms);
  }

  private async runMethods(ip: string, req: DiscoveryRequest, hooks: EngineHooks): Promise<JobFindings | undefined> {
    const f: JobFindings = { problems: [] };
    const macs = new Map<MethodName, string>();
    for (const name of this.opts.methods) {
      if (this.closed) return undefined;
      if (f.hostname !== undefined && this.opts.stopOnFirst && !req.trial.has(name)) continue;
      if (req.skip.has(name)) {
        this.stats.methodSkipped(name);
        f.problems.push(`${name}: circuit open`);
        continue;
      }
      const method = this.deps.methods.get(name);
      if (method === undefined) continue;
      const ac = new AbortController();
      this.aborts.add(ac);
      const timer = setTimeout(() => ac.abort(), this.opts.timeoutMs + ABORT_GRACE_MS);
      const t = this.clock.now();
      let outcome: MethodOutcome;
      try {
        outcome = await method.lookup(ip, ac.signal);
      } catch (err) {
        outcome = { kind: 'failure', error: `${name}: ${err instanceof Error ? err.message : String(err)}` };
      } finally {
        clearTimeout(timer);
        this.aborts.delete(ac);
      }
      // Shutting down: the lookup was aborted; nothing is reported (the row stays discovering for next time).
      if (this.closed) return undefined;
      const latencyMs = this.clock.now() - t;
      const event: { -readonly [K in keyof DiscoveryOutcome]: DiscoveryOutcome[K] } = { ip, method: name, ok: outcome.kind === 'found', kind: outcome.kind, latencyMs };
      if (outcome.kind === 'found') {
        const r = outcome.result;
        if (r.hostname !== undefined) event.hostname = r.hostname;
        if (r.mac !== undefined) event.mac = r.mac;
        if (r.hostname !== undefined && f.hostname === undefined) {
          f.hostname = r.hostname;
          f.nameMethod = name;
        }
        if (r.mac !== undefined && !macs.has(name)) macs.set(name, r.mac);
      } else if (outcome.kind === 'failure') {
        event.error = outcome.error;
        f.problems.push(outcome.error);
      }
      this.stats.attempt(name, outcome.kind, latencyMs);
      try {
        hooks.own.discovered.call(event);
      } catch (err) {
        this.hookFailed(err);
      }
    }
    for (const m of MAC_PREFERENCE) {
      const mac = macs.get(m);
      if (mac !== undefined) {
        f.mac = mac;
        f.macMethod = m;
        break;
      }
    }
    return f;
  }

  /** Writes the result through clienttrack and decides what comes next for this client. */
  private async finish(e: Entry, f: JobFindings, ms: number): Promise<void> {
    let vendor: string | undefined;
    if (f.mac !== undefined) {
      try {
        vendor = await this.deps.vendorOf(f.mac);
      } catch {
        vendor = undefined;
      }
      if (this.closed) return;
    }
    const fields: { -readonly [K in keyof DiscoveryUpdate]: DiscoveryUpdate[K] } = { ip: e.ip, done: true };
    if (f.hostname !== undefined) fields.hostname = f.hostname;
    if (f.mac !== undefined) fields.mac = f.mac;
    if (vendor !== undefined) fields.vendor = vendor;
    const method = f.nameMethod ?? f.macMethod;
    if (method !== undefined) fields.method = method;

    const failed = f.hostname === undefined && f.problems.length > 0;
    const now = this.clock.now();
    if (!failed) {
      this.stats.job(f.hostname !== undefined || f.mac !== undefined ? 'succeeded' : 'not_found', ms);
      this.apply(fields);
      this.done(e);
      return;
    }
    this.stats.job('failed', ms);
    const error = f.problems.join('; ');
    fields.error = error;
    if (e.reason === 'refresh') {
      // A refresh that fails keeps the old name; the next scan tries again (its name is still old).
      this.apply(fields);
      this.done(e);
      return;
    }
    e.attempts++;
    if (e.attempts < this.opts.retry.attempts) {
      this.stats.retry();
      fields.done = false;
      this.apply(fields);
      const backoff = Math.min(this.opts.retry.maxBackoffMs, this.opts.retry.backoffMs * 2 ** (e.attempts - 1));
      e.reason = 'retry';
      e.dueAt = now + backoff;
      this.backToBacklog(e);
      return;
    }
    // Given up: the row stops saying discovering, with the error; tried again after `refresh`.
    this.stats.giveUp();
    this.apply(fields);
    this.markRecent(e.ip);
    if (e.open) {
      e.open = false;
      this.openCount--;
    }
    e.attempts = 0;
    e.reason = 'refresh';
    e.dueAt = now + this.opts.refreshMs;
    if (this.backlogSize < this.opts.backlog) this.backToBacklog(e);
    else this.entries.delete(e.ip);
  }

  private done(e: Entry): void {
    this.entries.delete(e.ip);
    if (e.open) {
      e.open = false;
      this.openCount--;
    }
    this.markRecent(e.ip);
  }

  private markRecent(ip: string): void {
    this.recent.set(ip, this.clock.now());
  }

  private apply(update: DiscoveryUpdate): void {
    const hooks = this.hooks;
    if (hooks === null) return;
    try {
      hooks.apply(update);
    } catch (err) {
      this.hookFailed(err);
    }
  }

  private hookFailed(err: unknown): void {
    this.lastHookError = err instanceof Error ? err.message : String(err);
    this.hookWarning.hit();
  }

  /** The timer: promote due clients, restore from the database, refresh old names. */
  tick(): void {
    if (this.closed) return;
    this.promote();
    const now = this.clock.now();
    if (this.deps.store !== undefined) {
      if (this.needRestore && !this.restoring && now >= this.nextRestoreAt) void this.restore();
      if (!this.refreshing && now >= this.nextRefreshAt) void this.refreshScan();
    }
    this.overflowWarning.flush();
    this.hookWarning.flush();
  }

  /** Picks up clients whose row says `discovering` and that the engine does not hold (restart, reload, overflow). */
  async restore(): Promise<number> {
    const store = this.deps.store;
    if (store === undefined || this.restoring || this.closed) return 0;
    this.restoring = true;
    const overflowAtStart = this.overflowed;
    try {
      const room = this.opts.backlog - this.backlogSize;
      const limit = Math.min(1000, Math.max(0, room));
      if (limit === 0) return 0;
      const ips = await store.discovering(limit);
      if (this.closed) return 0;
      const now = this.clock.now();
      let added = 0;
      for (const ip of ips) {
        if (this.holds(ip)) continue;
        const at = this.recent.peek(ip);
        if (at !== undefined && now - at < RECENT_MS) continue;
        this.add(ip, 'restored');
        if (this.holds(ip)) added++;
      }
      // Done when the table had no more than we asked for and nothing overflowed meanwhile; overflowed
      // clients may not be written yet, so look again a while after the last overflow.
      if (ips.length < limit && this.overflowed === overflowAtStart && now - this.startedAt > (this.deps.restoreDelayMs ?? 5_000)) this.needRestore = false;
      return added;
    } catch (err) {
      return this.storeFailed(err);
    } finally {
      this.restoring = false;
      this.nextRestoreAt = this.clock.now() + (this.deps.restoreEveryMs ?? 30_000);
    }
  }

  /** A database read failed (restore, refresh scan): remembered for the repeating warning; nothing added. */
  private storeFailed(err: unknown): 0 {
    this.lastStoreError = err instanceof Error ? err.message : String(err);
    this.storeWarning.hit();
    return 0;
  }

  /** Queues a refresh of clients still seen whose name is older than `refresh`. */
  async refreshScan(): Promise<number> {
    const store = this.deps.store;
    if (store === undefined || this.refreshing || this.closed) return 0;
    this.refreshing = true;
    try {
      const room = Math.min(this.opts.backlog - this.backlogSize, this.pool.capacity);
      const limit = Math.min(500, Math.max(0, room));
      if (limit === 0) return 0;
      const wallNow = this.wall();
      const cutoff = wallNow - this.opts.refreshMs;
      const ips = await store.stale(cutoff, cutoff, limit);
      let added = 0;
      for (const ip of ips) {
        if (this.closed) break;
        if (this.holds(ip)) continue;
        this.add(ip, 'refresh');
        if (this.holds(ip)) added++;
      }
      return added;
    } catch (err) {
      return this.storeFailed(err);
    } finally {
      this.refreshing = false;
      const every = Math.max(1000, Math.min(this.opts.refreshMs / 4, 600_000));
      this.nextRefreshAt = this.clock.now() + every;
    }
  }

  metrics(report?: (r: DiscoveryReport) => void): DiscoveryMetrics {
    const now = this.clock.now();
    const s = this.stats;
    const denied = s.deniedTotals();
    const guards: Record<string, unknown> = {};
    if (report !== undefined) {
      try {
        report({ guards });
      } catch (err) {
        this.hookFailed(err);
      }
    }
    const ps = this.pool.stats();
    return {
      methods: [...this.opts.methods],
      workers: this.opts.workers,
      busy: ps.busy,
      queue: { depth: this.pool.depth, capacity: this.pool.capacity },
      backlog: { size: this.backlogSize, due: this.fresh.size + this.heap.countDue(now, DUE_COUNT_LIMIT), capacity: this.opts.backlog, overflowed: this.overflowed },
      discovering: this.openCount,
      totals: {
        announced: s.announced,
        total: s.total,
        succeeded: s.succeeded,
        failed: s.failed,
        notFound: s.notFound,
        gaveUp: s.gaveUp,
        retries: s.retries,
        denied,
        rateLimited: denied['rate-limited'] ?? 0,
        breakerRejected: denied['circuit-open'] ?? 0,
        dropped: s.dropped,
        skipped: s.skipped,
        refreshed: s.refreshed,
        restored: s.restored,
      },
      ratePerSecond: this.finished.rate(RATE_WINDOW_MS),
      latency: s.latency.stats(),
      perMethod: s.methodStats(),
      guards,
    };
  }

  /** Small numbers for the Prometheus gauges. */
  gauges(): { queue: number; backlog: number; busy: number; discovering: number; rate: number; workers: number } {
    return { queue: this.pool.depth, backlog: this.backlogSize, busy: this.pool.stats().busy, discovering: this.openCount, rate: this.finished.rate(RATE_WINDOW_MS), workers: this.opts.workers };
  }

  /** Stops: lookups in flight are aborted and report nothing; clients not finished stay `discovering` in the database. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.ticker);
    if (this.gateTimer !== undefined) clearTimeout(this.gateTimer);
    this.pool.close();
    for (const ac of this.aborts) ac.abort();
    this.aborts.clear();
    for (const m of this.deps.methods.values()) {
      try {
        m.close?.();
      } catch {
        // closing a method must not stop closing the others
      }
    }
    this.overflowWarning.flush();
    this.log.info('discovery stopped', {
      announced: this.stats.announced,
      jobs: this.stats.total,
      succeeded: this.stats.succeeded,
      failed: this.stats.failed,
      not_found: this.stats.notFound,
      still_discovering: this.openCount,
      backlog: this.backlogSize,
      queued: this.pool.depth,
      dropped: this.stats.dropped,
      overflowed: this.overflowed,
    });
  }
}
