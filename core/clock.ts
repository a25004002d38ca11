import { performance } from 'node:perf_hooks';

/**
 * A source of time in milliseconds for TTLs, token buckets, breakers and rates.
 *
 * The value is only meaningful as a difference between two readings: it comes from a monotonic source because
 * a NAS without a real-time clock steps its wall time at boot (often by years), which would expire every cache
 * entry, refill every bucket and close every breaker at once if we used Date.now().
 */
export interface Clock {
  now(): number;
}

/** The process-wide monotonic clock (performance.now(): never steps, never goes backwards). */
export const monotonicClock: Clock = Object.freeze({
  now: (): number => performance.now(),
});

/** A clock that only moves when told to, so tests of time-based behaviour are exact and need no sleeps. */
export class ManualClock implements Clock {
  private current: number;

  constructor(start = 0) {
    this.current = start;
  }

  now(): number {
    return this.current;
  }

  /** Moves time forward; refuses to go backwards because no monotonic clock can. */
  advance(ms: number): void {
    if (!(ms >= 0) || !Number.isFinite(ms)) throw new RangeError(`ManualClock.advance: ms must be a finite number >= 0, got ${ms}`);
    this.current += ms;
  }
}
