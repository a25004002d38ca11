import { type Clock, monotonicClock } from '../../core/clock';
import type { Logger } from '../../core/log';
import { RepeatingWarning } from '../../core/primitives/rateLimitedLog';
import type { ClientRow, ClientUpdate } from './store';
import { classifyError, errorMessage, shortErrorMessage, StorageError } from '../../storage/errors';
import type { DiscoveryUpdate, WriterMetrics } from './hooks';

/** What the batcher and the tracker need from the database (ClientStore has it; tests pass a fake). */
export interface TrackStore {
  writeBatch(rows: readonly ClientUpdate[]): Promise<void>;
  loadIndex(limit: number): Promise<ClientRow[]>;
  pruneBefore(cutoff: number, chunk?: number): Promise<number>;
  /** SQLite: true when the file had been deleted or replaced (now reopened): what was written since the last check is lost. */
  checkFile?(): Promise<boolean>;
  readonly hasFile?: boolean;
}

export interface BatcherOptions {
  /** Rows per transaction; a write starts as soon as this many rows are pending. */
  batch: number;
  /** Pending rows are written at least this often (when there are any). */
  flushMs: number;
  /** Most rows (distinct clients) waiting to be written; beyond it new rows are dropped and counted. */
  maxPending: number;
  logIntervalMs: number;
  /**
   * How long rows failing with an error we do not recognise (neither busy, unavailable nor refused by the
   * schema: a renamed table, a permission change) are kept and retried before the failing batch is dropped
   * and counted. Default 10 minutes.
   */
  giveUpMs?: number;
  /** How often the database file's identity is checked (SQLite; default 1000 ms). */
  fileCheckMs?: number;
  openStore: () => Promise<TrackStore>;
  log: Logger;
  clock?: Clock;
}

/** Told after every batch attempt (the metrics plugin's histograms). */
export type BatchObserver = (rows: number, seconds: number, ok: boolean) => void;

/** Merges `older` into `newer` (newer wins where it carries a field). */
function mergeOlder(newer: ClientUpdate, older: ClientUpdate): void {
  newer.queries += older.queries;
  if (older.lastSeen > newer.lastSeen) newer.lastSeen = older.lastSeen;
  if (older.firstSeen < newer.firstSeen) newer.firstSeen = older.firstSeen;
  if (newer.hostname == null && older.hostname != null) newer.hostname = older.hostname;
  if (newer.mac == null && older.mac != null) newer.mac = older.mac;
  if (newer.vendor == null && older.vendor != null) newer.vendor = older.vendor;
  if (newer.method == null && older.method != null) newer.method = older.method;
  if (newer.discoveredAt == null && older.discoveredAt != null) newer.discoveredAt = older.discoveredAt;
  if (newer.discovering === undefined && older.discovering !== undefined) newer.discovering = older.discovering;
  if (newer.lastError === undefined && older.lastError !== undefined) newer.lastError = older.lastError;
}

/**
 * The write side of tracking: a Map of pending rows (ip → the merged update: queries added, last seen = latest)
 * that workers merge into in O(1), written in batches of `batch` rows, one transaction each, by one writer at a
 * time. A batch starts when `batch` rows are pending, or on the `flush` timer for whatever is pending (a quiet
 * network is written once per `flush` at most, and not at all when nothing happened).
 *
 * Faults: a batch that fails is merged back into the pending rows — nothing is lost while the buffer has room —
 * and the next attempt waits with exponential backoff. That holds for every error retrying can cure: busy,
 * timed out or cancelled, unreachable, read-only, and errors not recognised at all (a renamed table): those
 * last are kept for `giveUpMs` of failures in a row, then the failing batch is dropped and counted. Only a
 * row the schema refuses (a constraint, a value out of range) is dropped at once — after the batch has been
 * split in halves until that row stands alone, so the other rows of its batch are written. Rows that do not
 * fit (`max_pending`) are dropped and counted, never silently; every drop is logged at most once per
 * `log_interval`, with the count.
 */
export class Batcher {
  readonly batch: number;
  readonly flushMs: number;
  readonly maxPending: number;
  onBatch: BatchObserver | null = null;
  private readonly openStore: () => Promise<TrackStore>;
  private readonly log: Logger;
  private readonly clock: Clock;
  private readonly failWarning: RepeatingWarning;
  private readonly dropWarning: RepeatingWarning;
  private pending = new Map<string, ClientUpdate>();
  private pendingQueries = 0;
  // The rows a running write took (the whole pending Map, swapped out at once: O(1), and no iteration over the
  // holes that deleting from the front of a big Map leaves), written `batch` rows at a time.
  private taking: IterableIterator<ClientUpdate> | null = null;
  private takingRows = 0;
  private takingQueries = 0;
  /** The batch being written now. */
  private inFlightRows = 0;
  private inFlightQueries = 0;
  /** Monotonic start of the running write (0: none): a write older than `flush` is reported as stalled. */
  private writeStartedAt = 0;
  private failingSince = 0;
  private readonly giveUpMs: number;
  private readonly rejectWarning: RepeatingWarning;
  private rejectedRows = 0;
  // Rows committed since the database file was last seen in place (SQLite): written again if it was deleted.
  private unverified = new Map<string, ClientUpdate>();
  private unverifiedQueries = 0;
  private readonly fileCheckMs: number;
  private lastFileCheck: number;
  private fileReplaced = 0;
  private rejectedQueries = 0;
  private writing: Promise<void> | null = null;
  private closed = false;
  private lastFlushAt: number;
  private retryAt = 0;
  private lastErrorText: string | null = null;
  private lastErrorKind: string | null = null;
  private lastRejectText: string | null = null;
  private abandonedRows = 0;
  private abandonedQueries = 0;
  private failuresInARow = 0;
  private readonly backoffCapMs: number;
  // Totals since creation.
  private batches = 0;
  private failedBatches = 0;
  private rowsWritten = 0;
  private queriesWritten = 0;
  private lastBatchSize = 0;
  private lastWriteMs = 0;
  private totalWriteMs = 0;
  private maxWriteMs = 0;
  private droppedUpdates = 0;
  private droppedQueries = 0;
  pruned = 0;

  constructor(opts: BatcherOptions) {
    this.batch = opts.batch;
    this.flushMs = opts.flushMs;
    this.maxPending = opts.maxPending;
    this.openStore = opts.openStore;
    this.log = opts.log;
    this.clock = opts.clock ?? monotonicClock;
    this.lastFlushAt = this.clock.now();
    // Back off up to 10 flush intervals (at most 30 s, at least one interval) while the database is failing.
    this.backoffCapMs = Math.max(this.flushMs, Math.min(30_000, this.flushMs * 10));
    this.giveUpMs = opts.giveUpMs ?? 600_000;
    this.fileCheckMs = opts.fileCheckMs ?? 1000;
    this.lastFileCheck = this.clock.now();
    this.failWarning = new RepeatingWarning({
      intervalMs: opts.logIntervalMs,
      clock: this.clock,
      emit: (count) =>
        this.log.warn('storage write failed; pending rows kept for the next attempt', {
          failures: count,
          pending: this.size,
          kind: this.lastErrorKind,
          error: this.lastErrorText,
        }),
    });
    this.rejectWarning = new RepeatingWarning({
      intervalMs: opts.logIntervalMs,
      clock: this.clock,
      emit: (count) =>
        this.log.error('tracking rows dropped: the database refused them', {
          times: count,
          rejected_rows: this.rejectedRows,
          abandoned_rows: this.abandonedRows,
          dropped_queries: this.rejectedQueries + this.abandonedQueries,
          error: this.lastRejectText,
        }),
    });
    this.dropWarning = new RepeatingWarning({
      intervalMs: opts.logIntervalMs,
      clock: this.clock,
      emit: (count) => this.log.warn('write buffer full, dropping client updates', { dropped: count, pending: this.pending.size, max_pending: this.maxPending }),
    });
  }

  /** Rows waiting to be written (including those a running write has taken but not written yet). */
  get size(): number {
    return this.pending.size + this.takingRows;
  }

  get queuedQueries(): number {
    return this.pendingQueries + this.takingQueries;
  }

  /** Rows held in memory: waiting, taken, and in the batch being written; `max_pending` bounds it. */
  private get buffered(): number {
    return this.pending.size + this.takingRows + this.inFlightRows;
  }

  get isWriting(): boolean {
    return this.writing !== null;
  }

  /** A query (or several) from `ip` at wall time `at`; `discovering` is set only when it changes. */
  addActivity(ip: string, at: number, queries: number, discovering?: boolean): boolean {
    let u = this.pending.get(ip);
    if (u === undefined) {
      if (this.buffered >= this.maxPending) return this.drop(queries);
      u = { ip, firstSeen: at, lastSeen: at, queries };
      if (discovering !== undefined) u.discovering = discovering;
      this.pending.set(ip, u);
    } else {
      u.queries += queries;
      if (at > u.lastSeen) u.lastSeen = at;
      else if (at < u.firstSeen) u.firstSeen = at;
      if (discovering !== undefined) u.discovering = discovering;
    }
    this.pendingQueries += queries;
    if (this.pending.size >= this.batch) this.kick();
    return true;
  }

  /** A discovery result; `seen` is the client's last known activity (the row's last_seen must not jump). */
  addDiscovery(d: DiscoveryUpdate, seen: number, now: number): boolean {
    let u = this.pending.get(d.ip);
    if (u === undefined) {
      if (this.buffered >= this.maxPending) return this.drop(0);
      u = { ip: d.ip, firstSeen: seen, lastSeen: seen, queries: 0 };
      this.pending.set(d.ip, u);
    }
    if (d.hostname !== undefined) u.hostname = d.hostname;
    if (d.mac !== undefined) u.mac = d.mac;
    if (d.vendor !== undefined) u.vendor = d.vendor;
    if (d.method !== undefined) u.method = d.method;
    if (d.done) {
      u.discovering = false;
      if (d.error === undefined) {
        u.discoveredAt = now;
        u.lastError = null;
      } else {
        u.lastError = d.error;
      }
    } else {
      u.discovering = true;
      if (d.error !== undefined) u.lastError = d.error;
    }
    if (this.pending.size >= this.batch) this.kick();
    return true;
  }

  /** Starts writing full batches now, unless a write is running or the database is being given time. */
  kick(): void {
    if (this.writing !== null || this.closed || this.clock.now() < this.retryAt) return;
    this.start('full', Infinity);
  }

  /** The flush timer: writes everything pending once per `flush` interval. */
  tick(): void {
    this.failWarning.flushDue();
    this.dropWarning.flushDue();
    this.rejectWarning.flushDue();
    if (this.writing !== null || this.closed) return;
    const now = this.clock.now();
    if (this.pending.size === 0) {
      // Idle: the file check runs on its own (a busy writer runs it before its next batch).
      if (this.fileCheckDue(now)) this.serialize(this.verifyFile(null));
      return;
    }
    if (now < this.retryAt) return;
    if (now - this.lastFlushAt < this.flushMs && this.pending.size < this.batch) return;
    this.start('all', Infinity);
  }

  /**
   * Writes everything pending now (ignoring the backoff), waiting for a running write first; gives up at
   * `deadline` (monotonic ms). Resolves true when nothing is left pending.
   */
  async flushAll(deadline: number): Promise<boolean> {
    for (let round = 0; round < 1000; round++) {
      if (this.writing !== null) {
        const left = deadline - this.clock.now();
        if (left <= 0) return false;
        const finished = await raceTimeout(this.writing, left);
        if (!finished) return false;
        continue;
      }
      if (this.size === 0) return true;
      if (this.clock.now() >= deadline) return false;
      const failuresBefore = this.failedBatches;
      this.start('all', deadline);
      const finished = await raceTimeout(this.writing ?? Promise.resolve(), Math.max(0, deadline - this.clock.now()));
      if (!finished) return false;
      if (this.failedBatches !== failuresBefore) return this.size === 0;
    }
    return this.size === 0;
  }

  /**
   * Stops writing: what is still pending is counted as dropped (the caller has flushed what it could). A write
   * still running (a blocked database) is reported apart: it may yet commit, or not.
   */
  close(): { rows: number; queries: number; inFlightRows: number; inFlightQueries: number } {
    this.closed = true;
    this.failWarning.flush();
    this.dropWarning.flush();
    this.rejectWarning.flush();
    const rows = this.size;
    const queries = this.queuedQueries;
    const inFlightRows = this.inFlightRows;
    const inFlightQueries = this.inFlightQueries;
    if (rows > 0) {
      this.droppedUpdates += rows;
      this.droppedQueries += queries;
    }
    this.pending = new Map();
    this.pendingQueries = 0;
    this.taking = null;
    this.takingRows = 0;
    this.takingQueries = 0;
    return { rows, queries, inFlightRows, inFlightQueries };
  }

  /** How long the running write has been running (0 when none). */
  get writeAgeMs(): number {
    return this.writeStartedAt === 0 ? 0 : this.clock.now() - this.writeStartedAt;
  }

  metrics(): WriterMetrics {
    const now = this.clock.now();
    return {
      pending: this.size,
      pendingCapacity: this.maxPending,
      pendingQueries: this.queuedQueries,
      batch: this.batch,
      batches: this.batches,
      failedBatches: this.failedBatches,
      rowsWritten: this.rowsWritten,
      queriesWritten: this.queriesWritten,
      lastBatchSize: this.lastBatchSize,
      avgBatchSize: this.batches === 0 ? 0 : this.rowsWritten / this.batches,
      lastWriteMs: this.lastWriteMs,
      avgWriteMs: this.batches === 0 ? 0 : this.totalWriteMs / this.batches,
      maxWriteMs: this.maxWriteMs,
      droppedUpdates: this.droppedUpdates,
      droppedQueries: this.droppedQueries,
      rejectedRows: this.rejectedRows,
      abandonedRows: this.abandonedRows,
      inFlightRows: this.inFlightRows,
      writeAgeMs: this.writeAgeMs,
      stalled: this.writeAgeMs > this.flushMs,
      storageOk: this.failuresInARow === 0,
      lastError: this.lastErrorText,
      lastErrorKind: this.lastErrorKind,
      consecutiveFailures: this.failuresInARow,
      retryInMs: Math.max(0, this.retryAt - now),
      pruned: this.pruned,
    };
  }

  private drop(queries: number): false {
    this.droppedUpdates++;
    this.droppedQueries += queries;
    this.dropWarning.hit();
    return false;
  }

  private start(mode: 'full' | 'all', deadline: number): void {
    if (mode === 'all') this.lastFlushAt = this.clock.now();
    this.serialize(this.run(mode, deadline));
  }

  /** One thing at a time on the writer: a batch run, or a check of the database file. */
  private serialize(work: Promise<void>): void {
    const run = work.catch((err: unknown) => {
      this.log.error('tracking writer failed unexpectedly', { error: errorMessage(err) });
    });
    this.writing = run.finally(() => {
      this.writing = null;
      if (this.pending.size >= this.batch) this.kick();
    });
  }

  private async run(mode: 'full' | 'all', deadline: number): Promise<void> {
    let store: TrackStore;
    try {
      store = await this.openStore();
    } catch (err) {
      this.failed(err, null);
      return;
    }
    if (this.fileCheckDue(this.clock.now())) await this.verifyFile(store);
    for (;;) {
      if (this.closed) return;
      if (this.taking === null) {
        const n = this.pending.size;
        if (n === 0) return;
        if (mode === 'full' && n < this.batch) return;
        if (this.clock.now() >= deadline) return;
        this.taking = this.pending.values();
        this.takingRows = n;
        this.takingQueries = this.pendingQueries;
        this.pending = new Map();
        this.pendingQueries = 0;
      }
      // A write started by a full batch writes whole batches only: a remainder goes back to wait (with what
      // arrives meanwhile) for the next full batch or the flush timer, however the rows happened to arrive.
      if (mode === 'full' && this.takingRows < this.batch) {
        this.giveBack();
        return;
      }
      const chunk = this.next(this.batch);
      if (chunk.length === 0) {
        this.taking = null;
        continue;
      }
      if (!(await this.write(store, chunk))) return;
      if (this.clock.now() >= deadline) {
        this.giveBack();
        return;
      }
    }
  }

  /**
   * Writes one batch. A batch the schema refuses is split in halves until the refused rows stand alone: they
   * are dropped and counted, the others written. Any other failure puts back every row not written yet and
   * ends the run (false).
   */
  private async write(store: TrackStore, chunk: ClientUpdate[]): Promise<boolean> {
    const parts: ClientUpdate[][] = [chunk];
    while (parts.length > 0) {
      const part = parts.pop() as ClientUpdate[];
      const t0 = this.clock.now();
      this.inFlightRows = part.length;
      this.inFlightQueries = 0;
      for (const u of part) this.inFlightQueries += u.queries;
      this.writeStartedAt = t0 || 1;
      let error: unknown = null;
      try {
        await store.writeBatch(part);
      } catch (err) {
        error = err ?? new Error('write failed');
      }
      this.writeStartedAt = 0;
      this.inFlightRows = 0;
      this.inFlightQueries = 0;
      if (error === null) {
        this.succeeded(part, this.clock.now() - t0);
        continue;
      }
      this.onBatch?.(part.length, (this.clock.now() - t0) / 1000, false);
      if (classifyError(error) === 'permanent') {
        if (part.length === 1) {
          this.reject(part, error, 'rejected');
          continue;
        }
        const mid = part.length >>> 1;
        parts.push(part.slice(mid), part.slice(0, mid));
        continue;
      }
      const rest: ClientUpdate[] = part;
      for (const p of parts) for (const u of p) rest.push(u);
      this.failed(error, rest);
      return false;
    }
    return true;
  }

  /** Rows given up on: counted, and logged at most once per interval with the count. */
  private reject(rows: readonly ClientUpdate[], err: unknown, why: 'rejected' | 'abandoned'): void {
    let queries = 0;
    for (const u of rows) queries += u.queries;
    this.droppedUpdates += rows.length;
    this.droppedQueries += queries;
    if (why === 'rejected') {
      this.rejectedRows += rows.length;
      this.rejectedQueries += queries;
    } else {
      this.abandonedRows += rows.length;
      this.abandonedQueries += queries;
    }
    this.lastRejectText = `${why === 'abandoned' ? `still failing after ${Math.round(this.giveUpMs / 1000)} s: ` : ''}${shortErrorMessage(err)}`;
    this.rejectWarning.hit();
  }

  /**
   * The database file still in place: what was committed since the last check is safe. Deleted or replaced
   * (the store has reopened it): those rows went to the old file and are written again.
   */
  private fileCheckDue(now: number): boolean {
    if (this.fileCheckMs <= 0 || now - this.lastFileCheck < this.fileCheckMs) return false;
    this.lastFileCheck = now;
    return true;
  }

  private async verifyFile(opened: TrackStore | null): Promise<void> {
    let store: TrackStore;
    try {
      store = opened ?? (await this.openStore());
    } catch {
      return; // the next write reports the outage
    }
    if (store.checkFile === undefined || store.hasFile === false) {
      this.unverified.clear();
      this.unverifiedQueries = 0;
      return;
    }
    let replaced: boolean;
    try {
      replaced = await store.checkFile();
    } catch (err) {
      this.failed(err, null);
      return;
    }
    const rows = [...this.unverified.values()];
    const queries = this.unverifiedQueries;
    this.unverified = new Map();
    this.unverifiedQueries = 0;
    if (!replaced) return;
    this.fileReplaced++;
    this.log.warn('tracking: rows written to the deleted database file are written again', { rows: rows.length, queries });
    // Rewritten rows must be counted once in the totals: they were counted as written into the lost file.
    this.rowsWritten -= rows.length;
    this.queriesWritten -= queries;
    this.requeue(rows);
    if (this.pending.size > 0) this.retryAt = 0;
  }

  /** Up to `n` of the rows taken by the running write. */
  private next(n: number): ClientUpdate[] {
    const out: ClientUpdate[] = [];
    if (this.taking === null) return out;
    let queries = 0;
    while (out.length < n) {
      const r = this.taking.next();
      if (r.done === true) {
        this.taking = null;
        break;
      }
      out.push(r.value);
      queries += r.value.queries;
    }
    this.takingRows -= out.length;
    this.takingQueries -= queries;
    if (this.taking === null) {
      this.takingRows = 0;
      this.takingQueries = 0;
    }
    return out;
  }

  /** The taken rows not written yet go back to the pending ones (a write stopped early). */
  private giveBack(): void {
    if (this.taking === null) return;
    const rest = this.next(Number.MAX_SAFE_INTEGER);
    this.taking = null;
    this.requeue(rest);
  }

  private succeeded(chunk: ClientUpdate[], ms: number): void {
    let queries = 0;
    for (const u of chunk) queries += u.queries;
    if (this.fileCheckMs > 0) this.keepUnverified(chunk, queries);
    this.batches++;
    this.rowsWritten += chunk.length;
    this.queriesWritten += queries;
    this.lastBatchSize = chunk.length;
    this.lastWriteMs = ms;
    this.totalWriteMs += ms;
    if (ms > this.maxWriteMs) this.maxWriteMs = ms;
    if (this.failuresInARow > 0) {
      this.failWarning.flush();
      this.log.info('storage writes recovered', { failed_attempts: this.failuresInARow, pending: this.size });
      this.failuresInARow = 0;
      this.failingSince = 0;
      this.retryAt = 0;
    }
    // /health must not keep reporting an error that is over.
    this.lastErrorText = null;
    this.lastErrorKind = null;
    this.onBatch?.(chunk.length, ms / 1000, true);
    // Once per batch (not per query); the totals let a reader check what a crash may lose (nothing committed).
    this.log.debug('batch written', { rows: chunk.length, queries, ms: Math.round(ms * 10) / 10, rows_written: this.rowsWritten, queries_written: this.queriesWritten });
  }

  private failed(err: unknown, chunk: ClientUpdate[] | null): void {
    const kind = classifyError(err);
    const now = this.clock.now();
    this.lastErrorText = shortErrorMessage(err);
    // The typed error says busy; its cause says more (a lock or statement timeout, a cancelled statement).
    const cause = err instanceof StorageError && err.cause !== undefined ? classifyError(err.cause) : 'other';
    this.lastErrorKind = cause !== 'other' ? cause : kind;
    if (chunk !== null) this.failedBatches++;
    if (this.failuresInARow === 0) this.failingSince = now;
    // The rows this write took but did not reach go back too (not failed, not counted as such).
    this.giveBack();
    if (kind === 'other' && chunk !== null && now - this.failingSince >= this.giveUpMs) {
      // An error we cannot name, lasting this long, is not going away by itself: stop carrying this batch.
      this.reject(chunk, err, 'abandoned');
    } else if (chunk !== null) {
      this.requeue(chunk);
    }
    this.failuresInARow++;
    const delay = Math.min(this.backoffCapMs, this.flushMs * 2 ** Math.min(16, this.failuresInARow - 1));
    this.retryAt = this.clock.now() + delay;
    this.failWarning.hit();
  }

  /** Bounded by `max_pending` like the pending rows: beyond it, rows are not kept for a rewrite. */
  private keepUnverified(chunk: ClientUpdate[], queries: number): void {
    if (this.unverified.size + chunk.length > this.maxPending) return;
    for (const u of chunk) {
      const prev = this.unverified.get(u.ip);
      if (prev === undefined) this.unverified.set(u.ip, u);
      else mergeOlder(u, prev), this.unverified.set(u.ip, u);
    }
    this.unverifiedQueries += queries;
  }

  /** Puts a failed batch back, merged under what arrived meanwhile (newer values win); counts what does not fit. */
  private requeue(chunk: ClientUpdate[]): void {
    for (const old of chunk) {
      if (this.closed) {
        this.droppedUpdates++;
        this.droppedQueries += old.queries;
        continue;
      }
      const newer = this.pending.get(old.ip);
      if (newer !== undefined) {
        mergeOlder(newer, old);
        this.pendingQueries += old.queries;
      } else if (this.pending.size < this.maxPending) {
        this.pending.set(old.ip, old);
        this.pendingQueries += old.queries;
      } else {
        this.droppedUpdates++;
        this.droppedQueries += old.queries;
        this.dropWarning.hit();
      }
    }
  }
}

/** Resolves true when `p` settles within `ms`, false otherwise (p keeps running). */
function raceTimeout(p: Promise<unknown>, ms: number): Promise<boolean> {
  return new Promise<boolean>((resolve) => {
    const timer = setTimeout(() => resolve(false), ms);
    p.then(
      () => {
        clearTimeout(timer);
        resolve(true);
      },
      () => {
        clearTimeout(timer);
        resolve(true);
      },
    );
  });
}
