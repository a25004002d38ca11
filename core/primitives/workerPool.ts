import { type Clock, monotonicClock } from '../clock.js';
import { FifoQueue, type JobPriority, type JobQueue } from './jobQueue.js';

export interface WorkerPoolOptions<J> {
  /** Jobs running at once. */
  workers: number;
  /** Where jobs wait when every worker is busy; its capacity bounds the waiting room. */
  queue: JobQueue<J>;
  /** Runs a job: a promise for asynchronous work, or nothing when the job finished synchronously (no promise to allocate). */
  run: (job: J) => Promise<void> | void;
  /** Used in logs and metric labels by the owner. */
  name: string;
  /** Told about each failed job (rejection or synchronous throw of `run`). */
  onError?: (err: unknown, job: J) => void;
  clock?: Clock;
}

export interface WorkerPoolStats {
  workers: number;
  /** Jobs started and not yet finished (in flight). */
  busy: number;
  queued: number;
  queuedHigh: number;
  queuedLow: number;
  /** Every submit() call, accepted or not: submitted = processed + failed + dropped + queued + busy. */
  submitted: number;
  processed: number;
  failed: number;
  dropped: number;
  droppedHigh: number;
  droppedLow: number;
  /** Jobs that had to wait in the queue (jobs handed straight to an idle worker are not counted here). */
  enqueuedHigh: number;
  enqueuedLow: number;
}

// The rate ring holds one bucket per second; windows longer than this are clamped to it.
const RATE_BUCKETS = 60;

/**
 * Bounded concurrency with a bounded waiting room. `submit` is synchronous and O(1) and never blocks or throws:
 * it is called from the `served` hook on the answer path, where waiting for a slot is exactly what made the
 * original server stop answering. When both the workers and the queue are full the job is dropped and counted.
 *
 * The per-class counters (droppedHigh/Low, enqueuedHigh/Low) follow the priority given to submit() (default
 * 'high'), whatever the queue does with it; queuedHigh/Low come from the queue itself (a FifoQueue reports
 * everything as high).
 */
export class WorkerPool<J> {
  readonly name: string;
  readonly workers: number;
  private readonly queue: JobQueue<J>;
  private readonly runJob: (job: J) => Promise<void> | void;
  private readonly onError: ((err: unknown, job: J) => void) | undefined;
  private readonly clock: Clock;

  private busy = 0;
  private paused = false;
  private closed = false;
  private submitted = 0;
  private processed = 0;
  private failed = 0;
  private droppedHigh = 0;
  private droppedLow = 0;
  private enqueuedHigh = 0;
  private enqueuedLow = 0;
  private idleWaiters: Array<() => void> = [];

  // Sliding-window rate: bucketSecond[i] says which second bucketCount[i] belongs to, so a stale bucket is
  // recognised and reset on reuse instead of being cleared by a timer.
  private readonly bucketSecond = new Float64Array(RATE_BUCKETS).fill(Number.NaN);
  private readonly bucketCount = new Float64Array(RATE_BUCKETS);
  private readonly createdAt: number;

  constructor(opts: WorkerPoolOptions<J>) {
    if (!Number.isInteger(opts.workers) || opts.workers < 1) throw new RangeError(`WorkerPool ${opts.name}: workers must be an integer >= 1, got ${opts.workers}`);
    this.name = opts.name;
    this.workers = opts.workers;
    this.queue = opts.queue;
    this.runJob = opts.run;
    this.onError = opts.onError;
    this.clock = opts.clock ?? monotonicClock;
    this.createdAt = this.clock.now();
  }

  /** Jobs waiting in the queue now. */
  get depth(): number {
    return this.queue.size;
  }

  /** How many jobs the queue can hold (beyond that, submit drops). */
  get capacity(): number {
    return this.queue.capacity;
  }

  /** Jobs refused since creation (queue full, or submitted after close). */
  get dropped(): number {
    return this.droppedHigh + this.droppedLow;
  }

  get isPaused(): boolean {
    return this.paused;
  }

  get isClosed(): boolean {
    return this.closed;
  }

  submit(job: J, priority: JobPriority = 'high'): boolean {
    this.submitted++;
    if (this.closed) return this.drop(priority);
    if (!this.paused && this.busy < this.workers && this.queue.size === 0) {
      this.start(job);
      return true;
    }
    if (!this.queue.push(job, priority)) return this.drop(priority);
    if (priority === 'low') this.enqueuedLow++;
    else this.enqueuedHigh++;
    return true;
  }

  stats(): WorkerPoolStats {
    return {
      workers: this.workers,
      busy: this.busy,
      queued: this.queue.size,
      queuedHigh: this.queue.sizeHigh,
      queuedLow: this.queue.sizeLow,
      submitted: this.submitted,
      processed: this.processed,
      failed: this.failed,
      dropped: this.droppedHigh + this.droppedLow,
      droppedHigh: this.droppedHigh,
      droppedLow: this.droppedLow,
      enqueuedHigh: this.enqueuedHigh,
      enqueuedLow: this.enqueuedLow,
    };
  }

  /** Stops starting jobs; new ones still queue (used while the client index loads). Running jobs finish. */
  pause(): void {
    this.paused = true;
  }

  resume(): void {
    if (!this.paused) return;
    this.paused = false;
    this.pump();
  }

  /**
   * Resolves true once the queue is empty and no job is running, or false after `timeoutMs`. A paused pool
   * with queued jobs does not drain.
   */
  drain(timeoutMs: number): Promise<boolean> {
    if (this.isIdle()) return Promise.resolve(true);
    return new Promise<boolean>((resolve) => {
      let settled = false;
      const onIdle = (): void => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        resolve(true);
      };
      const timer = setTimeout(() => {
        if (settled) return;
        settled = true;
        this.idleWaiters = this.idleWaiters.filter((w) => w !== onIdle);
        resolve(false);
      }, Math.max(0, timeoutMs));
      this.idleWaiters.push(onIdle);
    });
  }

  /** Stops taking jobs: later submits return false and count as dropped. Queued jobs still run (see drain). */
  close(): void {
    this.closed = true;
  }

  /** Jobs finished (processed or failed) per second over the last `windowMs` (1 s to 60 s, whole seconds). */
  rate(windowMs = 10000): number {
    const seconds = Math.min(RATE_BUCKETS, Math.max(1, Math.ceil(windowMs / 1000)));
    const now = this.clock.now();
    const currentSecond = Math.floor(now / 1000);
    let total = 0;
    for (let k = 0; k < seconds; k++) {
      const second = currentSecond - k;
      const i = this.bucketIndex(second);
      if (this.bucketSecond[i] === second) total += this.bucketCount[i];
    }
    // The window covers the current (partial) second plus the whole ones before it, but not time before the
    // pool existed; at least one second, so a burst just after startup does not read as an enormous rate.
    const windowStart = Math.max((currentSecond - seconds + 1) * 1000, this.createdAt);
    const spanMs = Math.max(1000, now - windowStart);
    return (total * 1000) / spanMs;
  }

  private drop(priority: JobPriority): false {
    if (priority === 'low') this.droppedLow++;
    else this.droppedHigh++;
    return false;
  }

  private start(job: J): void {
    this.busy++;
    // Run on a microtask: the submitter (the answer path) must not execute the job's synchronous part.
    queueMicrotask(() => this.execute(job));
  }

  private execute(job: J): void {
    let pending: Promise<void> | void;
    try {
      pending = this.runJob(job);
    } catch (err) {
      this.finish(job, false, err);
      return;
    }
    if (pending === undefined) {
      this.finish(job, true, undefined);
      return;
    }
    Promise.resolve(pending).then(
      () => this.finish(job, true, undefined),
      (err: unknown) => this.finish(job, false, err),
    );
  }

  private finish(job: J, ok: boolean, err: unknown): void {
    this.busy--;
    if (ok) this.processed++;
    else {
      this.failed++;
      if (this.onError !== undefined) {
        try {
          this.onError(err, job);
        } catch {
          // The error reporter failing must not stop the pool from starting the next job.
        }
      }
    }
    this.countFinished();
    this.pump();
    if (this.idleWaiters.length > 0 && this.isIdle()) {
      const waiters = this.idleWaiters;
      this.idleWaiters = [];
      for (const w of waiters) w();
    }
  }

  private pump(): void {
    while (!this.paused && this.busy < this.workers && this.queue.size > 0) {
      // size > 0 was just checked, so shift() returns a job (J itself may include undefined).
      this.start(this.queue.shift() as J);
    }
  }

  private isIdle(): boolean {
    return this.busy === 0 && this.queue.size === 0;
  }

  private countFinished(): void {
    const second = Math.floor(this.clock.now() / 1000);
    const i = this.bucketIndex(second);
    if (this.bucketSecond[i] !== second) {
      this.bucketSecond[i] = second;
      this.bucketCount[i] = 0;
    }
    this.bucketCount[i]++;
  }

  private bucketIndex(second: number): number {
    return ((second % RATE_BUCKETS) + RATE_BUCKETS) % RATE_BUCKETS;
  }
}

/** The two bounds of a pool: jobs running at once, and jobs waiting. */
export interface PoolSettings {
  readonly workers: number;
  readonly queue: number;
}

/** What a pool's owner supplies: the work, and optionally a queue of its own (a priority split). */
export interface PoolJobs<J> {
  run: (job: J) => Promise<void> | void;
  onError?: (err: unknown, job: J) => void;
  clock?: Clock;
  /** Replaces the default FIFO of `settings.queue` jobs; its own capacity is then the bound. */
  queue?: JobQueue<J>;
}

/**
 * A bounded pool from its two bounds: one FIFO of `settings.queue` jobs unless the owner brings a queue. The
 * `workerpool` plugin builds its named pools with it, and a consumer whose chain has no `workerpool` falls back
 * to it with its own defaults, so removing that line changes nothing but the pool's metrics.
 */
export function boundedPool<J>(name: string, settings: PoolSettings, jobs: PoolJobs<J>): WorkerPool<J> {
  return new WorkerPool<J>({
    name,
    workers: settings.workers,
    queue: jobs.queue ?? new FifoQueue<J>(settings.queue),
    run: jobs.run,
    onError: jobs.onError,
    clock: jobs.clock,
  });
}
