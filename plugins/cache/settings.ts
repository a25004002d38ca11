// The options of prefetch and serve-stale as the hit/miss path reads them: in a module of their own so that
// common.ts (which carries them) and prefetch.ts / serveStale.ts (which use common.ts) import no cycle.

/** `prefetch` options, in milliseconds. */
export interface PrefetchConfig {
  /** Hits within `withinMs` that make an entry popular. */
  readonly amount: number;
  readonly withinMs: number;
  /** Refresh once the remaining TTL falls to this percentage of the original. */
  readonly percentage: number;
}

/** `serve_stale` options, in milliseconds (answerTtl in seconds). */
export interface StaleConfig {
  /** How long after expiry an entry may still be served. */
  readonly maxStaleMs: number;
  /** RFC 8767 client response timer: how long a client waits for the answer from below before getting stale data. */
  readonly clientTimeoutMs: number;
  /** RFC 8767 failure recheck timer: after a failed refresh, serve stale without asking below for this long. */
  readonly recheckMs: number;
  /** TTL of every record in a stale answer (RFC 8767 recommends 30 s). */
  readonly answerTtl: number;
}
