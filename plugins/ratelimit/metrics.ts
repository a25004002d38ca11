/**
 * `codexdns_ratelimit_*`: queries and discovery jobs over their budget (counters bound once, incremented when
 * a limit hits — an allowed query costs nothing here), and the number of client buckets (read when scraped).
 */
import type { Counter } from 'prom-client';
import { forSource, type MetricsFactory, type ReportedTotals } from '../../core/metricsRegistry';
import type { LimitAction, QueryLimiter } from './limiter';

const SUBSYSTEM = 'ratelimit';

// The limiter outlives a reload that keeps its options (api.retain): what was reported stays with it.
const reported = new WeakMap<QueryLimiter, ReportedTotals>();

function reportedOf(q: QueryLimiter): ReportedTotals {
  let r = reported.get(q);
  if (r === undefined) reported.set(q, (r = new Map()));
  return r;
}

export interface RatelimitMetrics {
  readonly queriesLimited: Counter.Internal;
  readonly discoveryLimited: Counter.Internal;
  /** At shutdown: stop reading this block's limiter (kept when a reload's successor took its place). */
  release(): void;
}

export function registerRatelimitMetrics(shared: MetricsFactory, server: string, action: LimitAction | undefined, queries: () => QueryLimiter | undefined): RatelimitMetrics {
  // Each server block's limiter is a source of its own: with two blocks, both blocks' series are read.
  const factory = forSource(shared, server);
  const limited = factory.counter({
    subsystem: SUBSYSTEM,
    name: 'limited_total',
    help: 'Queries (part=queries, by action) and discovery jobs (part=discovery) over their rate limit',
    labelNames: ['server', 'part', 'action'] as const,
  });
  factory.mirrorGauge({
    subsystem: SUBSYSTEM,
    name: 'buckets',
    help: 'Clients (or client networks) with a query bucket in memory',
    labelNames: ['server'] as const,
    reset: true,
    levels: () => {
      const q = queries();
      return q === undefined ? [] : [{ labels: { server }, value: q.size }];
    },
  });
  factory.mirrorCounter({
    subsystem: SUBSYSTEM,
    name: 'buckets_evicted_total',
    help: 'Query buckets forgotten because `max_clients` was reached',
    labelNames: ['server'] as const,
    totals: () => {
      const q = queries();
      return q === undefined ? [] : [{ labels: { server }, value: q.evictions, reported: reportedOf(q) }];
    },
  });
  return {
    queriesLimited: limited.labels(server, 'queries', action ?? 'refuse'),
    discoveryLimited: limited.labels(server, 'discovery', 'defer'),
    release: () => factory.release(),
  };
}
