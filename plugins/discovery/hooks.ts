/**
 * The hooks the `discovery` plugin publishes, and the shapes that travel through them.
 *
 * Guards (`breaker`, `ratelimit`, or a custom plugin) reach them in their `setup` with
 * `api.hooksOf('discovery')`; see plugins/discovery/README.md § Hooks.
 */
import type { SyncBailHook, SyncHook } from 'tapable';
import type { MethodName } from './methods/types';

export type { MethodName } from './methods/types';

/** Every method name, in the default order of `methods`. */
export const METHOD_NAMES: readonly MethodName[] = ['dhcp', 'arp', 'rdns', 'netbios', 'mdns'];

/**
 * One discovery job, as the guards see it before it runs (`beforeDiscover`). A guard may add methods to
 * `skip` (they are not run for this job) and `trial` (see below); it must not change `methods`.
 */
export interface DiscoveryRequest {
  /** The client's address. */
  readonly ip: string;
  /** The configured methods, in order. */
  readonly methods: readonly MethodName[];
  /** Methods not to run this time (the breaker adds those whose circuit is open). */
  readonly skip: Set<MethodName>;
  /**
   * Methods let through as a half-open trial: the job runs them even when `stop_on_first` has already found a
   * name, so that every trial ends in a `discovered` outcome (success closes the circuit, failure reopens it).
   */
  readonly trial: Set<MethodName>;
}

/** Why a guard refused a job. The job is deferred, not lost: the client stays `discovering`. */
export interface DiscoveryDenial {
  /** `rate-limited` (ratelimit), `circuit-open` (breaker), or a custom guard's reason: a metrics label. */
  readonly reason: string;
  /**
   * When asking again makes sense, in milliseconds (a token bucket's refill time, the breaker's time to its
   * next trial). Discovery pauses every job for this long (at least 10 ms; 1 s when absent): every job would
   * be refused by the same guard meanwhile.
   */
  readonly retryAfterMs?: number;
}

/**
 * The outcome of one method attempt that was let through (one per method run, success or not). A half-open
 * trial always ends in one.
 */
export interface DiscoveryOutcome {
  readonly ip: string;
  readonly method: MethodName;
  /** kind === 'found'. */
  readonly ok: boolean;
  /**
   * found: a name and/or MAC; negative: the method worked but knows nothing of this client (no PTR, no lease,
   * a device that does not answer NetBIOS/mDNS); failure: the method's own infrastructure is out (resolver
   * timeout or SERVFAIL, socket or file error). Only `failure` is what a circuit breaker counts.
   */
  readonly kind: 'found' | 'negative' | 'failure';
  readonly latencyMs: number;
  readonly error?: string;
  readonly hostname?: string;
  readonly mac?: string;
}

/** Latency figures, in milliseconds (0 when count is 0). */
export interface LatencyStats {
  readonly count: number;
  readonly min: number;
  readonly avg: number;
  readonly max: number;
}

export interface MethodStats {
  /** Attempts let through (= found + negative + failures). */
  readonly attempts: number;
  readonly found: number;
  readonly negative: number;
  readonly failures: number;
  /** Jobs in which a guard skipped this method (its circuit open). */
  readonly skipped: number;
  readonly latency: LatencyStats;
}

/** What `getDiscoveryMetrics()` (and the `snapshot` hook) return: plain numbers for the API and dashboard. */
export interface DiscoveryMetrics {
  readonly methods: readonly MethodName[];
  readonly workers: number;
  /** Jobs running now. */
  readonly busy: number;
  /** Jobs admitted and waiting for a worker. */
  readonly queue: { readonly depth: number; readonly capacity: number };
  /**
   * Clients waiting for a later attempt (deferred by a guard, did not fit in the queue, retrying after a
   * failure, or due for a refresh), and how many of them are due now (every client waiting for its first
   * attempt, plus the others counted up to 10,000).
   */
  readonly backlog: { readonly size: number; readonly due: number; readonly capacity: number; readonly overflowed: number };
  /** Clients announced and not yet finished (queued, running or waiting): still `discovering`. */
  readonly discovering: number;
  readonly totals: {
    /** New clients announced by clienttrack. */
    readonly announced: number;
    /** Jobs run (let through by every guard). */
    readonly total: number;
    /** A name (or, with no failure, a MAC) was found. */
    readonly succeeded: number;
    /** No name, and a method failed or was skipped: retried with backoff. */
    readonly failed: number;
    /** Every method answered, none knew the client. */
    readonly notFound: number;
    /** Failed jobs given up after `retry.attempts`. */
    readonly gaveUp: number;
    readonly retries: number;
    /** Denials, by reason (rate-limited, circuit-open, …). */
    readonly denied: Readonly<Record<string, number>>;
    readonly rateLimited: number;
    readonly breakerRejected: number;
    /** New clients that did not fit in the queue (they wait in the backlog: counted, not lost). */
    readonly dropped: number;
    /** Clients not probed: a public address that is not on a local link. */
    readonly skipped: number;
    /** Refreshes started (a name older than `refresh`). */
    readonly refreshed: number;
    /** Clients picked up from the database still `discovering` (after a restart, or the backlog overflowing). */
    readonly restored: number;
  };
  /** Jobs finished per second over the last 10 s. */
  readonly ratePerSecond: number;
  /** Whole jobs (all their methods), from the start of the first method to the end of the last. */
  readonly latency: LatencyStats;
  readonly perMethod: Readonly<Partial<Record<MethodName, MethodStats>>>;
  /** What the guards add through the `report` hook (the breaker's states, the rate limiter's bucket). */
  readonly guards: Readonly<Record<string, unknown>>;
}

/** Handed to `report` taps: a guard adds its own state under its name. */
export interface DiscoveryReport {
  readonly guards: Record<string, unknown>;
}

/** The hooks `discovery` publishes (`api.hooksOf('discovery')`). */
export interface DiscoveryHooks {
  /**
   * Called once per discovery job before it runs. A tap that returns a denial stops this attempt: the client
   * is deferred (paused for `retryAfterMs`) and retried, never lost. Tap with `stage` to be asked earlier
   * (the breaker uses -100, so an attempt it denies spends no rate-limit token).
   */
  readonly beforeDiscover: SyncBailHook<[DiscoveryRequest], DiscoveryDenial | undefined>;
  /** A guard denied the attempt: earlier guards undo what they granted (the breaker frees a half-open trial). */
  readonly attemptDenied: SyncHook<[DiscoveryRequest, DiscoveryDenial]>;
  /** One per method attempt that was let through, success or failure, with its latency. */
  readonly discovered: SyncHook<[DiscoveryOutcome]>;
  /** Guards add their state to a metrics snapshot (`getDiscoveryMetrics().guards`). */
  readonly report: SyncHook<[DiscoveryReport]>;
  /** Call it (`.call()`) for a snapshot of the discovery metrics; discovery taps it. */
  readonly snapshot: SyncBailHook<[], DiscoveryMetrics>;
}

declare module '../../core/plugin' {
  interface PluginHookRegistry {
    discovery: DiscoveryHooks;
  }
}
