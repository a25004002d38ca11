/**
 * The dashboard's time series: one sample a second (reading counters the engine keeps anyway), the last five
 * minutes kept in memory, so a page that opens gets history at once and then one new point per second over
 * server-sent events.
 */
import type { Registry } from 'prom-client';
import type { QueueMetrics } from '../clienttrack/hooks';
import type { BlockView } from './api';
import type { CoreMetrics } from './requestMetrics';
import { registrySum, type BreakerStateName } from './sources';

export interface Sample {
  /** Wall-clock epoch milliseconds. */
  t: number;
  /** Queries per second handled by the chains over the last interval. */
  qps: number;
  /** Share of cache lookups answered from the cache over the interval (0..1); null without cache or lookups. */
  cacheHitRatio: number | null;
  /** Tracking queue depth; null without clienttrack. */
  queue: { high: number; low: number } | null;
  /** Tracking jobs finished per second; null without clienttrack. */
  processingRate: number | null;
  /** Discovery attempts that finished during the interval; null without discovery. */
  discovery: { count: number; avgMs: number | null; maxMs: number | null } | null;
  /** Running tasks by category (null: that part is not enabled). */
  tasks: { tracking: number | null; discovery: number | null; forwards: number | null; tcp: number; queries: number };
  /** Breaker state per method; null without a breaker. */
  breaker: Record<string, BreakerStateName> | null;
}

export const HISTORY_SECONDS = 300;

export class Sampler {
  readonly history: Sample[] = [];
  private lastAt = 0;
  private lastRequests = 0;
  private lastHits: number | null = null;
  private lastMisses: number | null = null;
  private busy = false;

  constructor(
    private readonly registry: Registry,
    private readonly core: CoreMetrics,
    private readonly views: () => readonly BlockView[],
    private readonly onSample: (s: Sample) => void,
  ) {}

  async tick(now = Date.now()): Promise<Sample | null> {
    if (this.busy) return null;
    this.busy = true;
    try {
      const s = await this.sample(now);
      if (s === null) return null;
      this.history.push(s);
      if (this.history.length > HISTORY_SECONDS) this.history.splice(0, this.history.length - HISTORY_SECONDS);
      this.onSample(s);
      return s;
    } finally {
      this.busy = false;
    }
  }

  private async sample(now: number): Promise<Sample | null> {
    const views = this.views();
    const requests = this.core.requests.total();
    const hits = await registrySum(this.registry, 'codexdns_cache_hits_total');
    const misses = await registrySum(this.registry, 'codexdns_cache_misses_total');
    const first = this.lastAt === 0;
    const dt = first ? 0 : (now - this.lastAt) / 1000;
    const dReq = requests - this.lastRequests;
    let ratio: number | null = null;
    if (hits !== null && misses !== null && this.lastHits !== null && this.lastMisses !== null) {
      const dh = hits - this.lastHits;
      const dm = misses - this.lastMisses;
      ratio = dh + dm > 0 ? dh / (dh + dm) : null;
    }
    this.lastAt = now;
    this.lastRequests = requests;
    this.lastHits = hits;
    this.lastMisses = misses;
    if (first || dt <= 0) return null;

    let queue: Sample['queue'] = null;
    let processingRate: number | null = null;
    let tracking: number | null = null;
    let discovery: Sample['discovery'] = null;
    let discoveryTasks: number | null = null;
    let breaker: Sample['breaker'] = null;
    let forwardsEnabled = false;
    for (const v of views) {
      const q: QueueMetrics | null = queue === null ? v.sources.queue() : null;
      if (q !== null) {
        queue = { high: q.depth.high, low: q.depth.low };
        processingRate = q.ratePerSecond;
        tracking = q.busy;
      }
      if (v.sources.hasDiscovery) {
        const lat = v.sources.latency.take();
        const snap = discovery === null ? v.sources.discovery() : null;
        if (discovery === null) discovery = { count: 0, avgMs: null, maxMs: null };
        if (lat.count > 0) {
          const total = discovery.count + lat.count;
          discovery.avgMs = ((discovery.avgMs ?? 0) * discovery.count + (lat.avg ?? 0) * lat.count) / total;
          discovery.maxMs = Math.max(discovery.maxMs ?? 0, lat.max ?? 0);
          discovery.count = total;
        }
        if (snap !== null) {
          discoveryTasks = snap.workers.busy;
          if (Object.keys(snap.breaker).length > 0) breaker = { ...(breaker ?? {}), ...snap.breaker };
        }
      }
      const b = v.sources.breakers();
      if (b !== null) breaker = { ...(breaker ?? {}), ...b };
      if (v.api.hooksOf('forward') !== undefined) forwardsEnabled = true;
    }
    const forwards = forwardsEnabled ? ((await registrySum(this.registry, 'codexdns_forward_inflight_queries')) ?? 0) : null;
    const wire = views[0]?.api.server.wireStats();
    return {
      t: now,
      qps: Math.max(0, dReq) / dt,
      cacheHitRatio: ratio,
      queue,
      processingRate,
      discovery,
      tasks: { tracking, discovery: discoveryTasks, forwards, tcp: wire?.tcpConnections ?? 0, queries: wire?.inFlight ?? 0 },
      breaker,
    };
  }
}
