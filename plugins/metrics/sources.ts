/**
 * What the metrics plugin reads from the rest of the server, each source optional: a plugin that is not in the
 * block's chain reads as `null`, and its panel says "not enabled".
 *
 * - clienttrack: its published `queueMetrics` hook (`plugins/clienttrack/hooks.ts`).
 * - discovery: its published `snapshot` hook (`getDiscoveryMetrics()`'s numbers, with the guards' reports) and the
 *   `discovered` event (one per method attempt let through, with its latency) for the latency graph.
 * - breaker: its published `states` hook (each method breaker's state).
 * - cache and forward: their Prometheus metrics in the shared registry (they publish no hooks).
 */
import type { Registry } from 'prom-client';
import type { PluginApi } from '../../core/plugin';
import type { BreakerHooks } from '../breaker/hooks';
import type { ClienttrackHooks, QueueMetrics } from '../clienttrack/hooks';
import type { DiscoveryHooks, DiscoveryMetrics, LatencyStats } from '../discovery/hooks';

export type BreakerStateName = 'closed' | 'open' | 'half-open';

export interface Latency {
  min: number | null;
  avg: number | null;
  max: number | null;
}

export interface MethodJson {
  attempts: number;
  succeeded: number;
  negative: number;
  failed: number;
  skipped: number;
  latencyMs: Latency & { count: number };
  breaker: BreakerStateName | null;
}

/** `/api/metrics/discovery` (enabled), and what the dashboard and `/health` read. */
export interface DiscoverySnapshot {
  total: number;
  succeeded: number;
  failed: number;
  notFound: number;
  rateLimited: number;
  breakerRejected: number;
  dropped: number;
  announced: number;
  gaveUp: number;
  retries: number;
  skipped: number;
  refreshed: number;
  restored: number;
  denied: Record<string, number>;
  /** Whole jobs, in milliseconds (null before the first). */
  latencyMs: Latency & { count: number };
  ratePerSecond: number;
  discovering: number;
  workers: { total: number; busy: number };
  queue: { depth: number; capacity: number };
  backlog: DiscoveryMetrics['backlog'];
  methods: Record<string, MethodJson>;
  /** Each method's breaker state; empty without the breaker plugin. */
  breaker: Record<string, BreakerStateName>;
  /** What the guards reported (the breaker's full snapshots, the rate limiter's bucket). */
  guards: Record<string, unknown>;
}

type Obj = Record<string, unknown>;

function isObj(v: unknown): v is Obj {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

export function normaliseBreakerState(v: unknown): BreakerStateName | null {
  const s = isObj(v) ? v.state : v;
  return s === 'closed' || s === 'open' || s === 'half-open' ? s : null;
}

/** `{rdns: {state, …}}` (the breaker plugin's snapshot) or `{rdns: 'open'}` → `{rdns: 'open'}`. */
export function normaliseBreakers(v: unknown): Record<string, BreakerStateName> {
  const out: Record<string, BreakerStateName> = {};
  if (!isObj(v)) return out;
  for (const [k, s] of Object.entries(v)) {
    const st = normaliseBreakerState(s);
    if (st) out[k] = st;
  }
  return out;
}

function latency(l: LatencyStats | undefined): Latency & { count: number } {
  if (l === undefined || l.count === 0) return { count: 0, min: null, avg: null, max: null };
  return { count: l.count, min: l.min, avg: l.avg, max: l.max };
}

export function discoverySnapshot(m: DiscoveryMetrics, breakers: Record<string, BreakerStateName> | null): DiscoverySnapshot {
  const breaker: Record<string, BreakerStateName> = {};
  if (breakers !== null) {
    // A method's breaker exists once the method has run; until then it is closed.
    for (const method of m.methods) breaker[method] = 'closed';
    Object.assign(breaker, breakers);
  }
  const methods: Record<string, MethodJson> = {};
  for (const name of m.methods) {
    const s = m.perMethod[name];
    methods[name] = {
      attempts: s?.attempts ?? 0,
      succeeded: s?.found ?? 0,
      negative: s?.negative ?? 0,
      failed: s?.failures ?? 0,
      skipped: s?.skipped ?? 0,
      latencyMs: latency(s?.latency),
      breaker: breaker[name] ?? null,
    };
  }
  const t = m.totals;
  return {
    total: t.total,
    succeeded: t.succeeded,
    failed: t.failed,
    notFound: t.notFound,
    rateLimited: t.rateLimited,
    breakerRejected: t.breakerRejected,
    dropped: t.dropped,
    announced: t.announced,
    gaveUp: t.gaveUp,
    retries: t.retries,
    skipped: t.skipped,
    refreshed: t.refreshed,
    restored: t.restored,
    denied: { ...t.denied },
    latencyMs: latency(m.latency),
    ratePerSecond: m.ratePerSecond,
    discovering: m.discovering,
    workers: { total: m.workers, busy: m.busy },
    queue: { depth: m.queue.depth, capacity: m.queue.capacity },
    backlog: m.backlog,
    methods,
    breaker,
    guards: { ...m.guards },
  };
}

/** Sum of a metric's values in the registry (optionally only series whose labels match), or null when absent. */
export async function registrySum(registry: Registry, name: string, filter?: (labels: Record<string, unknown>) => boolean): Promise<number | null> {
  const values = await registryValues(registry, name);
  if (values === null) return null;
  let sum = 0;
  for (const v of values) if (!filter || filter(v.labels)) sum += v.value;
  return sum;
}

/** The series of a metric (not a histogram's buckets): labels and value; null when the metric is absent. */
export async function registryValues(registry: Registry, name: string): Promise<Array<{ labels: Record<string, unknown>; value: number }> | null> {
  const metric = registry.getSingleMetric(name) as unknown as { get(): Promise<{ values: Array<{ value: number; labels: Record<string, unknown>; metricName?: string }> }> } | undefined;
  if (metric === undefined) return null;
  try {
    return (await metric.get()).values.filter((v) => v.metricName === undefined || v.metricName === name).map((v) => ({ labels: v.labels, value: v.value }));
  } catch {
    return null;
  }
}

/** Discovery attempt latencies during one dashboard interval, fed by `discovered` events. */
export class LatencyWindow {
  count = 0;
  sum = 0;
  max = 0;
  add(ms: number): void {
    this.count++;
    this.sum += ms;
    if (ms > this.max) this.max = ms;
  }
  /** What the interval saw, and start a new one. */
  take(): { count: number; avg: number | null; max: number | null } {
    const out = { count: this.count, avg: this.count ? this.sum / this.count : null, max: this.count ? this.max : null };
    this.count = 0;
    this.sum = 0;
    this.max = 0;
    return out;
  }
}

/** One block's plugins, as that block's metrics plugin instance sees them. */
export class BlockSources {
  readonly latency = new LatencyWindow();
  readonly clienttrack: ClienttrackHooks | undefined;
  private readonly discoveryHooks: DiscoveryHooks | undefined;
  private readonly breakerHooks: BreakerHooks | undefined;

  constructor(private readonly api: PluginApi) {
    this.clienttrack = api.hooksOf('clienttrack');
    this.discoveryHooks = api.hooksOf('discovery');
    this.breakerHooks = api.hooksOf('breaker');
  }

  /** Taps discovery's `discovered` event (when discovery is in the chain) to feed the latency graph: O(1). */
  tapDiscovered(): void {
    this.discoveryHooks?.discovered.tap('metrics', (outcome) => this.latency.add(outcome.latencyMs));
  }

  get hasClienttrack(): boolean {
    return this.clienttrack !== undefined;
  }

  get hasDiscovery(): boolean {
    return this.discoveryHooks !== undefined;
  }

  queue(): QueueMetrics | null {
    try {
      return this.clienttrack?.queueMetrics.call() ?? null;
    } catch {
      return null;
    }
  }

  discovery(): DiscoverySnapshot | null {
    const h = this.discoveryHooks;
    if (h === undefined) return null;
    let m: DiscoveryMetrics | undefined;
    try {
      m = h.snapshot.call();
    } catch {
      return null;
    }
    if (m === undefined) return null;
    const fromBreaker = this.breakers();
    return discoverySnapshot(m, fromBreaker ?? (isObj(m.guards.breaker) ? normaliseBreakers(m.guards.breaker) : null));
  }

  /**
   * Each guarded method's breaker state, from the breaker plugin; null without it. Methods that have not run yet
   * (so have no breaker yet) read as closed when discovery says which methods it runs.
   */
  breakers(): Record<string, BreakerStateName> | null {
    const h = this.breakerHooks;
    if (h === undefined) return null;
    let states: Record<string, BreakerStateName>;
    try {
      states = normaliseBreakers(h.states.call());
    } catch {
      return {};
    }
    const methods = this.configuredMethods();
    if (methods.length === 0) return states;
    const out: Record<string, BreakerStateName> = {};
    for (const m of methods) out[m] = 'closed';
    return Object.assign(out, states);
  }

  private configuredMethods(): string[] {
    if (this.discoveryHooks === undefined) return [];
    const methods = this.api.server.pluginOptions('discovery')?.methods;
    return Array.isArray(methods) ? methods.filter((m): m is string => typeof m === 'string') : [];
  }

}
