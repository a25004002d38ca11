import { type Clock, monotonicClock } from '../clock.js';

export interface RepeatingWarningOptions {
  /** At most one emission per this many milliseconds. */
  intervalMs: number;
  clock?: Clock;
  /** Writes the line; `count` is the number of hits since the previous emission, this one included. */
  emit: (count: number) => void;
}

/**
 * Collapses a warning that can fire per packet ("queue full, dropping update for <ip>") into at most one line
 * per interval carrying the count, so an overload does not also flood the log (and the SD card it lives on).
 * The first hit emits at once with count 1; hits within the interval are counted and reported by the first hit
 * after the interval, or by `flush()` (e.g. from a periodic timer or at shutdown).
 */
export class RepeatingWarning {
  readonly intervalMs: number;
  private readonly clock: Clock;
  private readonly emit: (count: number) => void;
  private lastEmit = 0;
  private emittedOnce = false;
  private waiting = 0;
  private total = 0;

  constructor(opts: RepeatingWarningOptions) {
    if (!(opts.intervalMs >= 0) || !Number.isFinite(opts.intervalMs)) throw new RangeError(`RepeatingWarning intervalMs must be a finite number >= 0, got ${opts.intervalMs}`);
    this.intervalMs = opts.intervalMs;
    this.clock = opts.clock ?? monotonicClock;
    this.emit = opts.emit;
  }

  /** Hits counted but not yet emitted. */
  get pending(): number {
    return this.waiting;
  }

  /** All hits since creation. */
  get hits(): number {
    return this.total;
  }

  hit(): void {
    this.total++;
    this.waiting++;
    const now = this.clock.now();
    if (this.emittedOnce && now - this.lastEmit < this.intervalMs) return;
    this.send(now);
  }

  /** Emits the hits counted since the last emission, if any, regardless of the interval. */
  flush(): void {
    if (this.waiting > 0) this.send(this.clock.now());
  }

  /**
   * Emits the hits counted since the last emission once the interval has passed: for a periodic timer, which
   * must not turn a one-line-per-interval warning into one line per tick.
   */
  flushDue(): void {
    if (this.waiting === 0) return;
    const now = this.clock.now();
    if (this.emittedOnce && now - this.lastEmit < this.intervalMs) return;
    this.send(now);
  }

  private send(now: number): void {
    const count = this.waiting;
    // State first: if emit throws, the hits are not reported twice and the interval still holds.
    this.waiting = 0;
    this.lastEmit = now;
    this.emittedOnce = true;
    this.emit(count);
  }
}
