/**
 * `codexdns_ratelimit_*`: queries and discovery jobs over their budget (counters bound once, incremented when
 * a limit hits — an allowed query costs nothing here), and the number of client buckets (read when scraped).
 */
import type { Counter } from 'prom-client';
import type { MetricsFactory } from '../../core/metricsRegistry';
import type { LimitAction, QueryLimiter } from './limiter';

const SUBSYSTEM = 'ratelimit';

export interface RatelimitMetrics {
  readonly queriesLimited: Counter.Internal;
  readonly discoveryLimited: Counter.Internal;
}

export function registerRatelimitMetrics(factory: MetricsFactory, server: string, action: LimitAction | undefined, queries: () => QueryLimiter | undefined): RatelimitMetrics {
  const limited = factory.counter({
    subsystem: SUBSYSTEM,
    name: 'limited_total',
    help: 'Queries (part=queries, by action) and discovery jobs (part=discovery) over their rate limit',
    labelNames: ['server', 'part', 'action'] as const,
  });
  factory.gauge({
    subsystem: SUBSYSTEM,
    name: 'buckets',
    help: 'Clients (or client networks) with a query bucket in memory',
    labelNames: ['server'] as const,
    collect(this: import('prom-client').Gauge<'server'>) {
      const q = queries();
      if (q !== undefined) this.labels(server).set(q.size);
    },
  });
  const evicted = factory.counter({ subsystem: SUBSYSTEM, name: 'buckets_evicted_total', help: 'Query buckets forgotten because `max_clients` was reached', labelNames: ['server'] as const });
  let mark = 0;
  (evicted as unknown as { collect: () => void }).collect = () => {
    const q = queries();
    if (q === undefined) return;
    const n = q.evictions;
    if (n < mark) mark = 0; // a new limiter after a reload that changed the options
    evicted.labels(server).inc(n - mark);
    mark = n;
  };
  return {
    queriesLimited: limited.labels(server, 'queries', action ?? 'refuse'),
    discoveryLimited: limited.labels(server, 'discovery', 'defer'),
  };
}
