import { type Clock, monotonicClock } from '../clock.js';

export type BreakerState = 'closed' | 'open' | 'half-open';

export interface CircuitBreakerOptions {
  /** Consecutive failures that open the breaker. */
  failures: number;
  /** How long the breaker stays open before letting one trial through. */
  resetMs: number;
  clock?: Clock;
  /** Called once per state change, after the state has changed. */
  onChange?: (from: BreakerState, to: BreakerState) => void;
}

/**
 * Closed / open / half-open breaker, so a failing dependency (discovery probes on a network where they all time
 * out) stops costing work and latency for everyone:
 * - closed: everything is allowed; `failures` consecutive failures open it.
 * - open: everything is denied until `resetMs` has passed, then the next `allow()` moves to half-open and
 *   returns true exactly once — that call is the trial.
 * - half-open: further calls are denied until the trial reports: success closes, failure reopens (and the
 *   reset timer starts again).
 *
 * Reports (success/failure) that arrive while open come from calls allowed before it opened; they are ignored
 * so stragglers neither close the breaker early nor keep extending the open period.
 */
export class CircuitBreaker {
  readonly failureThreshold: number;
  readonly resetMs: number;
  private readonly clock: Clock;
  private readonly onChange: ((from: BreakerState, to: BreakerState) => void) | undefined;
  private current: BreakerState = 'closed';
  private failuresInARow = 0;
  private changes = 0;
  private openedAt = 0;
  private trialStartedAt = 0;
  private trialOutstanding = false;

  constructor(opts: CircuitBreakerOptions) {
    if (!Number.isInteger(opts.failures) || opts.failures < 1) throw new RangeError(`CircuitBreaker failures must be an integer >= 1, got ${opts.failures}`);
    if (!(opts.resetMs >= 0) || !Number.isFinite(opts.resetMs)) throw new RangeError(`CircuitBreaker resetMs must be a finite number >= 0, got ${opts.resetMs}`);
    this.failureThreshold = opts.failures;
    this.resetMs = opts.resetMs;
    this.clock = opts.clock ?? monotonicClock;
    this.onChange = opts.onChange;
  }

  get state(): BreakerState {
    return this.current;
  }

  get consecutiveFailures(): number {
    return this.failuresInARow;
  }

  /** Number of state changes since creation. */
  get transitions(): number {
    return this.changes;
  }

  /** Milliseconds until an open breaker will let a trial through (0 when not open or already due). */
  msUntilTrial(): number {
    if (this.current !== 'open') return 0;
    return Math.max(0, this.openedAt + this.resetMs - this.clock.now());
  }

  allow(): boolean {
    switch (this.current) {
      case 'closed':
        return true;
      case 'open': {
        const now = this.clock.now();
        if (now - this.openedAt < this.resetMs) return false;
        this.startTrial(now);
        this.transition('half-open');
        return true;
      }
      case 'half-open': {
        // A trial that has not reported within resetMs is presumed lost (its outcome was never delivered);
        // without this a single lost report would keep the breaker half-open, and the guarded work disabled,
        // forever. Within resetMs, exactly one trial is outstanding.
        const now = this.clock.now();
        if (this.trialOutstanding && now - this.trialStartedAt < this.resetMs) return false;
        this.startTrial(now);
        return true;
      }
    }
  }

  /**
   * The call that `allow()` admitted was not made after all (a later guard refused it). In half-open this frees
   * the trial slot, so the next `allow()` can run the trial instead of waiting for a report that will not come.
   */
  cancel(): void {
    if (this.current === 'half-open') this.trialOutstanding = false;
  }

  success(): void {
    switch (this.current) {
      case 'closed':
        this.failuresInARow = 0;
        return;
      case 'half-open':
        this.failuresInARow = 0;
        this.trialOutstanding = false;
        this.transition('closed');
        return;
      case 'open':
        return;
    }
  }

  failure(): void {
    switch (this.current) {
      case 'closed':
        this.failuresInARow++;
        if (this.failuresInARow >= this.failureThreshold) {
          this.openedAt = this.clock.now();
          this.transition('open');
        }
        return;
      case 'half-open':
        this.failuresInARow++;
        this.trialOutstanding = false;
        this.openedAt = this.clock.now();
        this.transition('open');
        return;
      case 'open':
        return;
    }
  }

  private startTrial(now: number): void {
    this.trialOutstanding = true;
    this.trialStartedAt = now;
  }

  private transition(to: BreakerState): void {
    const from = this.current;
    this.current = to;
    this.changes++;
    if (this.onChange === undefined) return;
    try {
      this.onChange(from, to);
    } catch {
      // A listener (log line, gauge) must not be able to throw into allow()/failure() on the caller's path:
      // the state change has already happened and is kept.
    }
  }
}
