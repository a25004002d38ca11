/**
 * One circuit breaker per discovery method, and what the `breaker` plugin does with discovery's hooks. Kept
 * apart from the plugin so it can be driven with a ManualClock (`createDiscoveryBreakers({ clock })`).
 *
 * - beforeDiscover: each method whose breaker denies (open, or half-open with its trial outstanding) is added
 *   to the job's `skip`; a method let through while half-open is the trial and goes to `trial` (the job runs
 *   it even after a name was found). When every method is skipped the job is denied `circuit-open`, with the
 *   time until the first breaker will let a trial through.
 * - attemptDenied: a later guard refused the job, so the trials granted to it are given back (`cancel()`).
 * - discovered: `failure` counts against the method's breaker (an outage of its infrastructure); `found` and
 *   `negative` are successes — the method worked, even if the device had nothing to say.
 */
import { type Clock, monotonicClock } from '../../core/clock';
import { CircuitBreaker, type BreakerState } from '../../core/primitives/circuitBreaker';
import type { DiscoveryDenial, DiscoveryOutcome, DiscoveryRequest, MethodName } from '../discovery/hooks';

export interface DiscoveryBreakerOptions {
  /** Consecutive failures that open a method's breaker. */
  failures: number;
  /** Time a breaker stays open before it lets one trial through. */
  resetMs: number;
  clock?: Clock;
  /** Told once per state change of a method's breaker. */
  onChange?: (method: MethodName, from: BreakerState, to: BreakerState, failures: number) => void;
  /** Told each time a method is skipped because its breaker denied it. */
  onReject?: (method: MethodName) => void;
}

export interface BreakerSnapshot {
  readonly state: BreakerState;
  readonly consecutiveFailures: number;
  /** Milliseconds until an open breaker lets a trial through (0 otherwise). */
  readonly retryInMs: number;
  readonly transitions: number;
  /** Jobs in which this method was skipped. */
  readonly rejected: number;
}

export const CIRCUIT_OPEN = 'circuit-open';
/** While a trial is out, a denied job asks again this soon. */
const HALF_OPEN_RECHECK_MS = 100;

export class DiscoveryBreakers {
  readonly failures: number;
  readonly resetMs: number;
  private readonly clock: Clock;
  private readonly breakers = new Map<MethodName, CircuitBreaker>();
  private readonly rejected = new Map<MethodName, number>();
  private readonly trials = new WeakMap<DiscoveryRequest, MethodName[]>();
  /** Replaceable listeners (the plugin points them at the current chain's logger and metrics on reload). */
  onChange: DiscoveryBreakerOptions['onChange'];
  onReject: DiscoveryBreakerOptions['onReject'];

  constructor(opts: DiscoveryBreakerOptions) {
    // Validate once, here, so a bad option fails at start-up.
    new CircuitBreaker({ failures: opts.failures, resetMs: opts.resetMs });
    this.failures = opts.failures;
    this.resetMs = opts.resetMs;
    this.clock = opts.clock ?? monotonicClock;
    this.onChange = opts.onChange;
    this.onReject = opts.onReject;
  }

  /** The breaker of a method (created closed on first use). */
  breaker(method: MethodName): CircuitBreaker {
    let b = this.breakers.get(method);
    if (b === undefined) {
      const created: CircuitBreaker = new CircuitBreaker({
        failures: this.failures,
        resetMs: this.resetMs,
        clock: this.clock,
        onChange: (from, to) => this.onChange?.(method, from, to, created.consecutiveFailures),
      });
      b = created;
      this.breakers.set(method, b);
    }
    return b;
  }

  state(method: MethodName): BreakerState {
    return this.breakers.get(method)?.state ?? 'closed';
  }

  /** The `beforeDiscover` tap. */
  beforeDiscover(req: DiscoveryRequest): DiscoveryDenial | undefined {
    let granted: MethodName[] | undefined;
    let open = 0;
    let soonest = Infinity;
    for (const m of req.methods) {
      if (req.skip.has(m)) {
        open++;
        continue;
      }
      const b = this.breaker(m);
      if (b.allow()) {
        if (b.state === 'half-open') {
          req.trial.add(m);
          (granted ??= []).push(m);
        }
        continue;
      }
      req.skip.add(m);
      open++;
      this.rejected.set(m, (this.rejected.get(m) ?? 0) + 1);
      this.onReject?.(m);
      // Half-open with a trial outstanding: ask again soon — the trial's report (or cancellation) frees it.
      soonest = Math.min(soonest, b.state === 'open' ? b.msUntilTrial() : Math.min(this.resetMs, HALF_OPEN_RECHECK_MS));
    }
    if (granted !== undefined) this.trials.set(req, granted);
    if (req.methods.length > 0 && open === req.methods.length) {
      return { reason: CIRCUIT_OPEN, retryAfterMs: Number.isFinite(soonest) ? Math.max(1, soonest) : this.resetMs };
    }
    return undefined;
  }

  /** The `attemptDenied` tap: give back the trials granted to a job that a later guard refused. */
  attemptDenied(req: DiscoveryRequest): void {
    const granted = this.trials.get(req);
    if (granted === undefined) return;
    this.trials.delete(req);
    for (const m of granted) this.breakers.get(m)?.cancel();
  }

  /** The `discovered` tap. */
  discovered(o: DiscoveryOutcome): void {
    const b = this.breaker(o.method);
    if (o.kind === 'failure') b.failure();
    else b.success();
  }

  snapshot(): Partial<Record<MethodName, BreakerSnapshot>> {
    const out: Partial<Record<MethodName, BreakerSnapshot>> = {};
    for (const [m, b] of this.breakers) {
      out[m] = { state: b.state, consecutiveFailures: b.consecutiveFailures, retryInMs: Math.round(b.msUntilTrial()), transitions: b.transitions, rejected: this.rejected.get(m) ?? 0 };
    }
    return out;
  }
}

/** The factory the plugin uses, exported for tests that drive it with a ManualClock. */
export function createDiscoveryBreakers(opts: DiscoveryBreakerOptions): DiscoveryBreakers {
  return new DiscoveryBreakers(opts);
}
