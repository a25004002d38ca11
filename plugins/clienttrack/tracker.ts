import type { SyncHook } from 'tapable';
import { type Clock, monotonicClock } from '../../core/clock';
import type { Logger } from '../../core/log';
import { FifoQueue, type JobPriority, type JobQueue, PriorityJobQueue } from '../../core/primitives/jobQueue';
import { RepeatingWarning } from '../../core/primitives/rateLimitedLog';
import { boundedPool, type PoolJobs, type WorkerPool } from '../../core/primitives/workerPool';
import type { ClientRow } from './store';
import { errorMessage } from '../../storage/errors';
import { Batcher, type TrackStore } from './batcher';
import { ANNOUNCED, ClientIndex, DISCOVERING, UNVERIFIED } from './clientIndex';
import type { ClientIdentity, DiscoveryUpdate, NewClientEvent, QueueMetrics } from './hooks';

export interface TrackerOptions {
  /** Jobs running at once. */
  workers: number;
  /** Capacity of the FIFO queue (used when `priority` is absent). */
  queue: number;
  /** Split the queue: known clients (high) before clients still being discovered (low). */
  priority?: { high: number; low: number; lowEvery: number };
  batch: number;
  flushMs: number;
  maxPending: number;
  maxClients: number;
  retentionMs: number;
  pruneIntervalMs: number;
  logIntervalMs: number;
  /** How long jobs are held while the client index loads before tracking goes on without it. */
  indexWaitMs: number;
  shutdownFlushMs: number;
  /** Rows failing with an unrecognised error are retried this long, then dropped and counted (default 10 min). */
  giveUpMs?: number;
}

export interface TrackerDeps {
  openStore: () => Promise<TrackStore>;
  log: Logger;
  clock?: Clock;
  /** Wall-clock epoch ms (rows store wall time). */
  wallClock?: () => number;
  /** Told about every job a worker runs, before it runs (tests observe order and concurrency with it). */
  observe?: (job: TrackJob) => void;
  /**
   * Builds the pool with `workers` and the queue (the `workerpool` plugin's named pool `tracking`); without it
   * the tracker builds a plain one with the same bounds.
   */
  pool?: <J>(jobs: PoolJobs<J>) => WorkerPool<J>;
  /** The split queue (the `priority` plugin's); without it, `opts.priority` (if any) is built here. */
  queue?: <J>() => JobQueue<J>;
}

/** One served query to account for. `key` is the question name in wire form (ctx.query.wireKey: no copy). */
export class QueryJob {
  readonly kind = 0 as const;
  constructor(
    readonly ip: string,
    readonly at: number,
    readonly key: string,
    readonly qtype: number,
    readonly rcode: number,
  ) {}
}

/** A discovery result to store. */
export class DiscoveryJob {
  readonly kind = 1 as const;
  constructor(
    readonly update: DiscoveryUpdate,
    readonly at: number,
  ) {}

  get ip(): string {
    return this.update.ip;
  }
}

export type TrackJob = QueryJob | DiscoveryJob;

type State = 'loading' | 'degraded' | 'ready' | 'closed';

const RATE_WINDOW_MS = 10_000;
/** The first retention run comes this long after start (then every prune_interval). */
const FIRST_PRUNE_MS = 60_000;
const PRUNE_CHUNK = 500;
/**
 * A known client is moved to the newest end of the LRU at most this often: eviction order is then exact to 10 s,
 * and a busy client costs one Map lookup per query instead of a delete + insert in a table of up to
 * `max_clients` entries.
 */
const REFRESH_MS = 10_000;

/**
 * Client tracking: served queries become jobs on a bounded worker pool (submission is O(1) and never blocks the
 * answer path; a full queue drops and counts), workers decide new vs known from an in-memory LRU index and merge
 * the update into the batcher's pending rows; the batcher writes them in batches.
 */
export class Tracker {
  readonly opts: TrackerOptions;
  readonly pool: WorkerPool<TrackJob>;
  readonly batcher: Batcher;
  /** Marks for the Prometheus counters that mirror the totals here (kept with the tracker across reloads). */
  readonly metricMarks = new Map<string, number>();
  private readonly openStore: () => Promise<TrackStore>;
  private readonly log: Logger;
  private readonly clock: Clock;
  private readonly wall: () => number;
  private readonly observe: ((job: TrackJob) => void) | undefined;
  private readonly queueWarning: RepeatingWarning;
  private readonly closedWarning: RepeatingWarning;
  private readonly loadWarning: RepeatingWarning;
  private readonly announceWarning: RepeatingWarning;
  private readonly jobWarning: RepeatingWarning;
  private readonly identityWarning: RepeatingWarning;
  private index: ClientIndex;
  private newClient: SyncHook<[NewClientEvent]> | null = null;
  private identified: SyncHook<[ClientIdentity]> | null = null;
  private forgotten: SyncHook<[readonly string[]]> | null = null;
  private state: State = 'loading';
  private loading = false;
  private loadStartedAt: number;
  private nextLoadAt = 0;
  private loadFailures = 0;
  private pruning = false;
  private nextPruneAt: number;
  private closing: Promise<void> | null = null;
  private lastDroppedIp = '';
  private lastLoadError = '';
  private lastAnnounceError = '';
  private lastJobError = '';
  private lastIdentityError = '';
  // Totals since creation.
  private evictions = 0;
  private newClients = 0;
  private discoveringCount = 0;
  private queriesSubmitted = 0;
  private queriesDropped = 0;

  constructor(opts: TrackerOptions, deps: TrackerDeps) {
    this.opts = opts;
    this.openStore = deps.openStore;
    this.log = deps.log;
    this.clock = deps.clock ?? monotonicClock;
    this.wall = deps.wallClock ?? Date.now;
    this.observe = deps.observe;
    const queue: JobQueue<TrackJob> =
      deps.queue !== undefined && opts.priority !== undefined
        ? deps.queue<TrackJob>()
        : opts.priority
          ? new PriorityJobQueue<TrackJob>({ high: opts.priority.high, low: opts.priority.low, lowEvery: opts.priority.lowEvery })
          : new FifoQueue<TrackJob>(opts.queue);
    const jobs: PoolJobs<TrackJob> = {
      queue,
      clock: this.clock,
      run: (job) => this.process(job),
      onError: (err, job) => {
        this.lastJobError = `${job.ip}: ${errorMessage(err)}`;
        this.jobWarning.hit();
      },
    };
    this.pool = deps.pool !== undefined ? deps.pool(jobs) : boundedPool('tracking', opts, jobs);
    this.index = new ClientIndex(opts.maxClients);
    this.batcher = new Batcher({
      batch: opts.batch,
      flushMs: opts.flushMs,
      maxPending: opts.maxPending,
      logIntervalMs: opts.logIntervalMs,
      giveUpMs: opts.giveUpMs,
      openStore: this.openStore,
      log: this.log,
      clock: this.clock,
    });
    const every = opts.logIntervalMs;
    this.queueWarning = new RepeatingWarning({
      intervalMs: every,
      clock: this.clock,
      emit: (count) => this.log.warn(`queue full, dropping update for ${this.lastDroppedIp}`, { dropped: count }),
    });
    // Not a full queue: updates that arrive while tracking shuts down (a discovery finishing late) have nowhere to go.
    this.closedWarning = new RepeatingWarning({
      intervalMs: every,
      clock: this.clock,
      emit: (count) => this.log.warn(`shutting down, dropping update for ${this.lastDroppedIp}`, { dropped: count }),
    });
    this.loadWarning = new RepeatingWarning({
      intervalMs: every,
      clock: this.clock,
      emit: (count) => this.log.warn('cannot load the client index from the database; retrying', { attempts: count, error: this.lastLoadError }),
    });
    this.announceWarning = new RepeatingWarning({
      intervalMs: every,
      clock: this.clock,
      emit: (count) => this.log.warn('a newClient observer threw', { count, error: this.lastAnnounceError }),
    });
    this.identityWarning = new RepeatingWarning({
      intervalMs: every,
      clock: this.clock,
      emit: (count) => this.log.warn('an identified or forgotten observer threw', { count, error: this.lastIdentityError }),
    });
    this.jobWarning = new RepeatingWarning({
      intervalMs: every,
      clock: this.clock,
      emit: (count) => this.log.error('tracking jobs failed', { count, error: this.lastJobError }),
    });
    this.loadStartedAt = this.clock.now();
    this.nextPruneAt = this.clock.now() + Math.min(opts.pruneIntervalMs, FIRST_PRUNE_MS);
    // Hold the jobs until the index is loaded, so no known client looks new.
    this.pool.pause();
  }

  /**
   * The serving chain's `identified` and `forgotten` hooks. Called when a chain starts serving, not when it is
   * built: a reload that fails after clienttrack's setup must not leave identities going to a chain that never
   * serves (the tracker outlives a reload; the hooks do not).
   */
  setIdentityHooks(identified: SyncHook<[ClientIdentity]>, forgotten: SyncHook<[readonly string[]]>): void {
    this.identified = identified;
    this.forgotten = forgotten;
  }

  /**
   * The `limit` most recently seen stored clients that have a name or a MAC (the `loadIdentities` hook), among
   * the clients the index would hold (`max_clients` most recent): most stored clients may have neither, so
   * taking `limit` rows and filtering them would return far fewer than asked.
   */
  async loadIdentities(limit: number): Promise<ClientIdentity[]> {
    const want = Math.max(0, Math.floor(limit));
    if (want === 0) return [];
    const store = await this.openStore();
    const rows = await store.loadIndex(Math.max(want, this.opts.maxClients));
    const out: ClientIdentity[] = [];
    for (const r of rows) {
      if (out.length >= want) break;
      if (r.hostname === null && r.mac === null) continue;
      out.push({
        ip: r.ip,
        ...(r.hostname !== null ? { hostname: r.hostname } : {}),
        ...(r.mac !== null ? { mac: r.mac } : {}),
        ...(r.vendor !== null ? { vendor: r.vendor } : {}),
        ...(r.method !== null ? { method: r.method } : {}),
        discovering: r.discovering,
        at: r.lastSeen,
      });
    }
    return out;
  }

  /** The current chain's `newClient` hook (the tracker outlives a reload; the hooks do not). */
  setNewClientHook(hook: SyncHook<[NewClientEvent]>): void {
    this.newClient = hook;
  }

  get indexLoaded(): boolean {
    return this.state === 'ready';
  }

  get isClosed(): boolean {
    return this.closing !== null;
  }

  /**
   * Takes over the index of the tracker this one replaces (a reload that changed clienttrack's options), so
   * clients whose rows the predecessor has not written yet do not look new. The predecessor flushes its own
   * pending rows when it is disposed.
   */
  adoptIndex(prev: Tracker): void {
    if (this.state !== 'loading' || prev.state !== 'ready') return;
    for (const [ip, slot] of prev.index) {
      const flags = prev.index.flags(slot) & (DISCOVERING | ANNOUNCED);
      this.remember(ip, prev.index.seen(slot), flags);
      if (flags & DISCOVERING) this.discoveringCount++;
    }
    this.state = 'ready';
    this.pool.resume();
    this.log.info('client index taken over from the previous configuration', { clients: this.index.size });
  }

  /** Starts loading the index (once). */
  start(): void {
    if (this.state !== 'loading' || this.loading) return;
    this.loadStartedAt = this.clock.now();
    void this.tryLoad();
  }

  /** The `served` path: O(1), never blocks, never throws. */
  track(ip: string, at: number, key: string, qtype: number, rcode: number): void {
    this.queriesSubmitted++;
    let priority: JobPriority = 'high';
    if (this.opts.priority !== undefined) {
      const slot = this.index.slot(ip);
      // While the index loads, an unknown client is most likely a known one not loaded yet.
      if (slot < 0 ? this.state !== 'loading' : (this.index.flags(slot) & DISCOVERING) !== 0) priority = 'low';
    }
    if (!this.pool.submit(new QueryJob(ip, at, key, qtype, rcode), priority)) {
      this.queriesDropped++;
      this.dropped(ip);
    }
  }

  /** A discovery result (the `applyDiscovery` hook): queued at high priority, written with the next batch. */
  applyDiscovery(update: DiscoveryUpdate): void {
    if (update === null || typeof update !== 'object' || typeof update.ip !== 'string' || update.ip === '') {
      this.log.warn('applyDiscovery: ignoring an update without an ip');
      return;
    }
    if (!this.pool.submit(new DiscoveryJob(update, this.wall()), 'high')) {
      this.dropped(update.ip);
      return;
    }
    // The end of a discovery is news even without a name: a name loaded while the client was `discovering`
    // becomes usable (a refresh that found nothing keeps the stored name).
    if ((update.hostname !== undefined || update.mac !== undefined || update.done) && this.identified !== null && this.identified.isUsed()) {
      const { ip, hostname, mac, vendor, method } = update;
      this.identify({
        ip,
        ...(hostname !== undefined ? { hostname } : {}),
        ...(mac !== undefined ? { mac } : {}),
        ...(vendor !== undefined ? { vendor } : {}),
        ...(method !== undefined ? { method } : {}),
        discovering: !update.done,
        at: this.wall(),
      });
    }
  }

  /** Tells the `identified` observers; one that throws is logged (at most once per interval), never propagated. */
  private identify(id: ClientIdentity): void {
    if (this.identified === null || !this.identified.isUsed()) return;
    try {
      this.identified.call(id);
    } catch (err) {
      this.lastIdentityError = errorMessage(err);
      this.identityWarning.hit();
    }
  }

  /** Whether the index holds `ip`, and its state (tests, API). */
  client(ip: string): { seen: number; discovering: boolean } | undefined {
    const slot = this.index.slot(ip);
    return slot < 0 ? undefined : { seen: this.index.seen(slot), discovering: (this.index.flags(slot) & DISCOVERING) !== 0 };
  }

  /** The timer: flush when due, retry the index load, prune, report repeated warnings. */
  tick(): void {
    if (this.closing !== null) return;
    const now = this.clock.now();
    if (this.state === 'loading' || this.state === 'degraded') {
      if (!this.loading && now >= this.nextLoadAt) void this.tryLoad();
      if (this.state === 'loading' && now - this.loadStartedAt >= this.opts.indexWaitMs) this.enterDegraded();
    }
    if (this.state === 'ready' && now >= this.nextPruneAt) {
      this.nextPruneAt = now + this.opts.pruneIntervalMs;
      void this.prune();
    }
    this.batcher.tick();
    this.queueWarning.flush();
    this.announceWarning.flush();
    this.identityWarning.flush();
    this.jobWarning.flush();
  }

  /** Deletes clients not seen for `retention`, in chunks; forgets them in the index too. */
  async prune(): Promise<number> {
    if (this.pruning || this.closing !== null) return 0;
    this.pruning = true;
    try {
      const store = await this.openStore();
      const cutoff = this.wall() - this.opts.retentionMs;
      const deleted = await store.pruneBefore(cutoff, PRUNE_CHUNK);
      this.batcher.pruned += deleted;
      // The index is in last-seen order, to within REFRESH_MS (a query moves its client to the newest end).
      const gone: string[] = [];
      for (const [ip, slot] of this.index) {
        if (this.index.seen(slot) >= cutoff) break;
        if (this.index.flags(slot) & DISCOVERING) this.discoveringCount--;
        this.index.delete(ip);
        gone.push(ip);
      }
      if (gone.length > 0 && this.forgotten !== null && this.forgotten.isUsed()) {
        // The rows are gone whatever an observer does: its failure must not turn into a failed prune.
        try {
          this.forgotten.call(gone);
        } catch (err) {
          this.lastIdentityError = errorMessage(err);
          this.identityWarning.hit();
        }
      }
      return deleted;
    } catch (err) {
      this.log.warn('retention: pruning old clients failed; will retry', { error: errorMessage(err) });
      return 0;
    } finally {
      this.pruning = false;
    }
  }

  metrics(): QueueMetrics {
    const s = this.pool.stats();
    const prio = this.opts.priority;
    return {
      priority: prio !== undefined,
      workers: s.workers,
      busy: s.busy,
      depth: { high: s.queuedHigh, low: s.queuedLow, total: s.queued },
      capacity: prio ? { high: prio.high, low: prio.low, total: prio.high + prio.low } : { high: this.opts.queue, low: 0, total: this.opts.queue },
      submitted: s.submitted,
      processed: s.processed,
      failed: s.failed,
      dropped: s.dropped,
      droppedHigh: s.droppedHigh,
      droppedLow: s.droppedLow,
      queued: s.queued,
      inFlight: s.busy,
      enqueuedHigh: s.enqueuedHigh,
      enqueuedLow: s.enqueuedLow,
      ratePerSecond: this.pool.rate(RATE_WINDOW_MS),
      rateWindowSeconds: RATE_WINDOW_MS / 1000,
      writer: this.batcher.metrics(),
      clients: {
        indexed: this.index.size,
        capacity: this.opts.maxClients,
        evicted: this.evictions,
        new: this.newClients,
        discovering: this.discoveringCount,
        indexLoaded: this.state === 'ready',
      },
    };
  }

  /** Queries handed to `track`, and those the full queue refused (for accounting: sent = stored + dropped). */
  queryTotals(): { submitted: number; dropped: number } {
    return { submitted: this.queriesSubmitted, dropped: this.queriesDropped };
  }

  /**
   * Stops taking jobs, runs what is queued, writes what is pending — all within `shutdown_flush` — and counts
   * what could not be written. Idempotent.
   */
  close(timeoutMs = this.opts.shutdownFlushMs): Promise<void> {
    this.closing ??= this.doClose(timeoutMs);
    return this.closing;
  }

  private async doClose(timeoutMs: number): Promise<void> {
    const deadline = this.clock.now() + timeoutMs;
    this.pool.close();
    // Still waiting for the index: run the held jobs without it rather than lose them (no warning: stopping
    // early, e.g. a listener that could not bind, says nothing about the database).
    if (this.state === 'loading') this.enterDegraded(false);
    const drained = await this.pool.drain(Math.max(0, deadline - this.clock.now()));
    const flushed = await this.batcher.flushAll(deadline);
    const lost = this.batcher.close();
    this.state = 'closed';
    this.queueWarning.flush();
    this.closedWarning.flush();
    const m = this.metrics();
    if (!drained || !flushed || lost.rows > 0) {
      this.log.warn('shutdown: some client updates could not be written in time', {
        queued_jobs: m.queued + m.busy,
        rows: lost.rows,
        queries: lost.queries,
        // A write the database still holds (a lock): it may commit after we are gone, or not.
        in_flight_rows: lost.inFlightRows,
        in_flight_queries: lost.inFlightQueries,
        write_age_ms: Math.round(this.batcher.writeAgeMs),
        error: m.writer.lastError ?? (lost.inFlightRows > 0 ? 'write still running (database blocked)' : null),
      });
    }
    this.log.info('tracking stopped', {
      submitted: m.submitted,
      processed: m.processed,
      failed: m.failed,
      dropped: m.dropped,
      dropped_at_shutdown: this.closedWarning.hits,
      queued: m.queued + m.busy,
      queries: this.queriesSubmitted,
      queries_dropped: this.queriesDropped,
      batches: m.writer.batches,
      failed_batches: m.writer.failedBatches,
      rows_written: m.writer.rowsWritten,
      queries_written: m.writer.queriesWritten,
      dropped_updates: m.writer.droppedUpdates,
      dropped_queries: m.writer.droppedQueries,
      clients: m.clients.indexed,
      new_clients: m.clients.new,
      evicted: m.clients.evicted,
    });
  }

  private process(job: TrackJob): void {
    this.observe?.(job);
    if (job.kind === 0) this.processQuery(job);
    else this.processDiscovery(job);
  }

  /** A job the pool refused: its queue was full, or tracking is shutting down. Counted by the pool; logged here. */
  private dropped(ip: string): void {
    this.lastDroppedIp = ip;
    if (!this.pool.isClosed) {
      this.queueWarning.hit();
      return;
    }
    this.closedWarning.hit();
    // Closing is over (its summary is logged): no later flush would report these.
    if (this.state === 'closed') this.closedWarning.flush();
  }

  private announcing(): boolean {
    return this.newClient !== null && this.newClient.isUsed();
  }

  private announce(ip: string, seenAt: number): void {
    try {
      (this.newClient as SyncHook<[NewClientEvent]>).call({ ip, seenAt });
    } catch (err) {
      this.lastAnnounceError = errorMessage(err);
      this.announceWarning.hit();
    }
  }

  private processQuery(job: QueryJob): void {
    const ip = job.ip;
    const at = job.at;
    const index = this.index;
    const slot = index.slot(ip);
    if (slot < 0) {
      let announce = false;
      let flags = 0;
      if (this.state === 'ready') {
        this.newClients++;
        announce = this.announcing();
        if (announce) {
          flags = DISCOVERING | ANNOUNCED;
          this.discoveringCount++;
        }
      } else {
        // Seen before the index loaded: new or known is decided when it loads (see installIndex).
        flags = UNVERIFIED;
      }
      this.remember(ip, at, flags);
      this.batcher.addActivity(ip, at, 1, announce ? true : undefined);
      if (announce) this.announce(ip, at);
      return;
    }
    if (at > index.seen(slot)) index.setSeen(slot, at);
    if (at - index.touched(slot) >= REFRESH_MS) index.refresh(ip, at);
    const flags = index.flags(slot);
    if ((flags & (DISCOVERING | ANNOUNCED)) === DISCOVERING && this.state === 'ready') {
      // Its discovery had not finished when the previous process stopped (the row says discovering): ask
      // again — or, with no discovery in the chain any more, stop saying it is being discovered.
      if (this.announcing()) {
        index.setFlags(slot, flags | ANNOUNCED);
        this.batcher.addActivity(ip, at, 1);
        this.announce(ip, at);
        return;
      }
      index.setFlags(slot, flags & ~DISCOVERING);
      this.discoveringCount--;
      this.batcher.addActivity(ip, at, 1, false);
      // A stored name held back while the row said `discovering` is final now.
      this.identify({ ip, discovering: false, at: this.wall() });
      return;
    }
    this.batcher.addActivity(ip, at, 1);
  }

  private processDiscovery(job: DiscoveryJob): void {
    const u = job.update;
    const slot = this.index.slot(u.ip);
    let seen = job.at;
    if (slot >= 0) {
      const flags = this.index.flags(slot);
      const discovering = !u.done;
      if (((flags & DISCOVERING) !== 0) !== discovering) this.discoveringCount += discovering ? 1 : -1;
      this.index.setFlags(slot, (discovering ? flags | DISCOVERING : flags & ~DISCOVERING) | ANNOUNCED);
      seen = this.index.seen(slot);
    }
    this.batcher.addDiscovery(u, seen, job.at);
  }

  private remember(ip: string, seen: number, flags: number): void {
    const evicted = this.index.add(ip, seen, flags);
    if (evicted >= 0) {
      this.evictions++;
      if (evicted & DISCOVERING) this.discoveringCount--;
    }
  }

  private enterDegraded(warn = true): void {
    if (this.state !== 'loading') return;
    this.state = 'degraded';
    if (warn) this.log.warn('client index not loaded (database unavailable): tracking without it until it loads; clients seen meanwhile are sorted into new and known then', {
      waited_ms: Math.round(this.clock.now() - this.loadStartedAt),
    });
    this.pool.resume();
  }

  private async tryLoad(): Promise<void> {
    if (this.loading || this.closing !== null) return;
    if (this.state !== 'loading' && this.state !== 'degraded') return;
    this.loading = true;
    const t0 = this.clock.now();
    try {
      const store = await this.openStore();
      const rows = await store.loadIndex(this.opts.maxClients);
      if (this.closing !== null) return;
      this.installIndex(rows);
      const wasDegraded = this.state === 'degraded';
      this.state = 'ready';
      this.pool.resume();
      this.log.info('client index loaded', { clients: rows.length, ms: Math.round(this.clock.now() - t0), ...(wasDegraded ? { after_outage: true } : {}) });
    } catch (err) {
      this.loadFailures++;
      this.lastLoadError = errorMessage(err);
      this.loadWarning.hit();
      const delay = Math.min(30_000, 500 * 2 ** Math.min(6, this.loadFailures - 1));
      this.nextLoadAt = this.clock.now() + delay;
      if (this.state === 'loading' && this.clock.now() - this.loadStartedAt >= this.opts.indexWaitMs) this.enterDegraded();
    } finally {
      this.loading = false;
    }
  }

  /**
   * Builds the index from the database's most recent clients (oldest first, so LRU order is last-seen order),
   * then replays the clients seen while it was loading: those the database knows are known; the others are new
   * (announced now).
   */
  private installIndex(rows: readonly ClientRow[]): void {
    const live = this.index;
    const next = new ClientIndex(this.opts.maxClients);
    let byIp: Map<string, ClientRow> | undefined;
    if (live.size > 0) byIp = new Map(rows.map((r) => [r.ip, r]));
    for (let i = rows.length - 1; i >= 0; i--) {
      const r = rows[i];
      if (live.has(r.ip)) continue;
      if (next.add(r.ip, r.lastSeen, r.discovering ? DISCOVERING : 0) >= 0) this.evictions++;
    }
    this.index = next;
    const announceNow: Array<[string, number]> = [];
    for (const [ip, slot] of live) {
      let flags = live.flags(slot);
      const seen = live.seen(slot);
      if (flags & UNVERIFIED) {
        const row = byIp?.get(ip);
        flags &= ~UNVERIFIED;
        if (row !== undefined) {
          if (row.discovering) flags |= DISCOVERING;
        } else {
          this.newClients++;
          if (this.announcing()) {
            flags |= DISCOVERING | ANNOUNCED;
            this.batcher.addActivity(ip, seen, 0, true);
            announceNow.push([ip, seen]);
          }
        }
      }
      if (next.add(ip, seen, flags) >= 0) this.evictions++;
    }
    let discovering = 0;
    for (const [, slot] of next) if (next.flags(slot) & DISCOVERING) discovering++;
    this.discoveringCount = discovering;
    for (const [ip, seen] of announceNow) this.announce(ip, seen);
  }
}
