/**
 * What the metrics plugin reads from the rest of the server, each source optional: a plugin that is not in the
 * chain reads as `null` and its panel says "not enabled".
 *
 * - clienttrack: its published `queueMetrics` hook (typed, `plugins/clienttrack/types.ts`).
 * - discovery: its published hooks — a snapshot provider (`discoveryMetrics` / `metrics` hook, or a
 *   `getDiscoveryMetrics()` function) and the `discovered` event (one per attempt let through, with latency).
 * - breaker: its published state provider (a hook or function named `states` / `state` / `snapshot`), or the
 *   `breaker` part of discovery's snapshot.
 * - cache and forward: their Prometheus metrics in the shared registry (they publish no hooks).
 *
 * The discovery and breaker readers accept the few shapes those plugins may publish and normalise them; what
 * they publish is passed through as `raw` in the API as well, so nothing they report is lost.
 */
import type { Registry } from 'prom-client';
import type { PluginApi } from '../../core/plugin';
import type { ClienttrackHooks, QueueMetrics } from '../clienttrack/types';

export type BreakerStateName = 'closed' | 'open' | 'half-open';

export interface MethodStats {
  attempts: number | null;
  succeeded: number | null;
  failed: number | null;
  latencyMs: { min: number | null; avg: number | null; max: number | null } | null;
  breaker: BreakerStateName | null;
}

export interface DiscoverySnapshot {
  total: number | null;
  succeeded: number | null;
  failed: number | null;
  rateLimited: number | null;
  breakerRejected: number | null;
  dropped: number | null;
  latencyMs: { min: number | null; avg: number | null; max: number | null };
  methods: Record<string, MethodStats>;
  breaker: Record<string, BreakerStateName>;
  workers: { total: number | null; busy: number | null };
  queue: { depth: number | null; capacity: number | null };
  raw: unknown;
}

type Obj = Record<string, unknown>;

function isObj(v: unknown): v is Obj {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function num(v: unknown): number | null {
  return typeof v === 'number' && Number.isFinite(v) ? v : null;
}

/** The first numeric value among `paths` (dotted) in `o`. */
function pick(o: unknown, ...paths: string[]): number | null {
  for (const p of paths) {
    let cur: unknown = o;
    for (const seg of p.split('.')) cur = isObj(cur) ? cur[seg] : undefined;
    const n = num(cur);
    if (n !== null) return n;
  }
  return null;
}

function isHook(v: unknown): v is { call: (...a: unknown[]) => unknown; taps: unknown[]; tap: (name: string, fn: (...a: unknown[]) => unknown) => void } {
  return isObj(v) && typeof v.call === 'function' && typeof v.tap === 'function' && Array.isArray(v.taps);
}

/**
 * Calls the first provider found among `names` on a plugin's published object: a tapable hook (only when it has a
 * tap, so a bail hook nobody answers is not mistaken for data) or a plain function. Never throws.
 */
export function callProvider(published: unknown, names: readonly string[]): unknown {
  if (!isObj(published)) return undefined;
  for (const n of names) {
    const v = published[n];
    try {
      if (isHook(v)) {
        if (v.taps.length > 0) return v.call();
      } else if (typeof v === 'function') {
        return (v as () => unknown).call(published);
      }
    } catch {
      return undefined;
    }
  }
  return undefined;
}

export function normaliseBreakerState(v: unknown): BreakerStateName | null {
  const s = isObj(v) ? (v.state ?? v.status) : v;
  if (typeof s === 'number') return s === 0 ? 'closed' : s === 1 ? 'open' : s === 2 ? 'half-open' : null;
  if (typeof s !== 'string') return null;
  const t = s.toLowerCase().replace(/[_ ]/g, '-');
  if (t === 'closed' || t === 'open' || t === 'half-open') return t;
  if (t === 'halfopen') return 'half-open';
  return null;
}

/** `{rdns: 'open'}`, `{rdns: {state}}`, `[{method, state}]`, `Map`, or one state: → `{method: state}`. */
export function normaliseBreakers(v: unknown): Record<string, BreakerStateName> | null {
  if (v === undefined || v === null) return null;
  const out: Record<string, BreakerStateName> = {};
  if (v instanceof Map) {
    for (const [k, s] of v) {
      const st = normaliseBreakerState(s);
      if (st) out[String(k)] = st;
    }
    return out;
  }
  if (Array.isArray(v)) {
    for (const e of v) {
      if (!isObj(e)) continue;
      const name = e.method ?? e.name ?? e.key;
      const st = normaliseBreakerState(e);
      if (typeof name === 'string' && st) out[name] = st;
    }
    return out;
  }
  const single = normaliseBreakerState(v);
  if (single) return { discovery: single };
  if (isObj(v)) {
    const inner = isObj(v.methods) ? v.methods : isObj(v.breakers) ? v.breakers : isObj(v.discovery) && !('state' in v.discovery) ? v.discovery : v;
    for (const [k, s] of Object.entries(inner)) {
      const st = normaliseBreakerState(s);
      if (st) out[k] = st;
    }
    return out;
  }
  return null;
}

export function normaliseDiscovery(raw: unknown): DiscoverySnapshot {
  const methods: Record<string, MethodStats> = {};
  const rawMethods = isObj(raw) ? (raw.methods ?? raw.perMethod ?? raw.byMethod) : undefined;
  const entries: Array<[string, unknown]> = Array.isArray(rawMethods)
    ? rawMethods.filter(isObj).map((m) => [String(m.method ?? m.name), m])
    : isObj(rawMethods)
      ? Object.entries(rawMethods)
      : [];
  for (const [name, m] of entries) {
    methods[name] = {
      attempts: pick(m, 'attempts', 'total', 'count'),
      succeeded: pick(m, 'succeeded', 'successes', 'success', 'ok', 'found'),
      failed: pick(m, 'failed', 'failures', 'failure', 'errors'),
      latencyMs: {
        min: pick(m, 'latencyMs.min', 'latency.min', 'minMs', 'minLatencyMs'),
        avg: pick(m, 'latencyMs.avg', 'latency.avg', 'avgMs', 'avgLatencyMs'),
        max: pick(m, 'latencyMs.max', 'latency.max', 'maxMs', 'maxLatencyMs'),
      },
      breaker: isObj(m) ? normaliseBreakerState(m.breaker ?? m.breakerState) : null,
    };
  }
  const breaker = normaliseBreakers(isObj(raw) ? (raw.breaker ?? raw.breakers ?? raw.breakerState) : undefined) ?? {};
  for (const [name, m] of Object.entries(methods)) if (m.breaker && !(name in breaker)) breaker[name] = m.breaker;
  return {
    total: pick(raw, 'total', 'totals.total', 'attempts', 'totals.attempts'),
    succeeded: pick(raw, 'succeeded', 'totals.succeeded', 'successes', 'success'),
    failed: pick(raw, 'failed', 'totals.failed', 'failures'),
    rateLimited: pick(raw, 'rateLimited', 'totals.rateLimited', 'rate_limited'),
    breakerRejected: pick(raw, 'breakerRejected', 'totals.breakerRejected', 'circuitOpen', 'breaker_rejected'),
    dropped: pick(raw, 'dropped', 'totals.dropped', 'queue.dropped'),
    latencyMs: {
      min: pick(raw, 'latencyMs.min', 'latency.min', 'latency.minMs', 'minLatencyMs'),
      avg: pick(raw, 'latencyMs.avg', 'latency.avg', 'latency.avgMs', 'avgLatencyMs'),
      max: pick(raw, 'latencyMs.max', 'latency.max', 'latency.maxMs', 'maxLatencyMs'),
    },
    methods,
    breaker,
    workers: { total: pick(raw, 'workers.total', 'workers', 'pool.workers'), busy: pick(raw, 'workers.busy', 'busy', 'active', 'inFlight', 'pool.busy') },
    queue: { depth: pick(raw, 'queue.depth', 'queued', 'depth', 'pool.queued'), capacity: pick(raw, 'queue.capacity', 'capacity', 'pool.capacity') },
    raw,
  };
}

/** The latency of one discovery attempt in milliseconds, from a `discovered` event. */
export function eventLatencyMs(ev: unknown): number | null {
  if (!isObj(ev)) return null;
  const ms = num(ev.latencyMs) ?? num(ev.durationMs) ?? num(ev.ms) ?? num(ev.latency);
  if (ms !== null) return ms;
  const s = num(ev.seconds) ?? num(ev.latencySeconds);
  return s === null ? null : s * 1000;
}

/** Sum of a metric's values in the registry (optionally only series whose labels match), or null when absent. */
export async function registrySum(registry: Registry, name: string, filter?: (labels: Record<string, unknown>) => boolean): Promise<number | null> {
  const metric = registry.getSingleMetric(name) as unknown as { get(): Promise<{ values: Array<{ value: number; labels: Record<string, unknown>; metricName?: string }> }> } | undefined;
  if (metric === undefined) return null;
  try {
    const data = await metric.get();
    let sum = 0;
    for (const v of data.values) {
      if (v.metricName !== undefined && v.metricName !== name) continue;
      if (filter && !filter(v.labels)) continue;
      sum += v.value;
    }
    return sum;
  } catch {
    return null;
  }
}

/** Series of a metric: labels and value. */
export async function registryValues(registry: Registry, name: string): Promise<Array<{ labels: Record<string, unknown>; value: number }> | null> {
  const metric = registry.getSingleMetric(name) as unknown as { get(): Promise<{ values: Array<{ value: number; labels: Record<string, unknown> }> }> } | undefined;
  if (metric === undefined) return null;
  try {
    return (await metric.get()).values.map((v) => ({ labels: v.labels, value: v.value }));
  } catch {
    return null;
  }
}

/** Per-interval discovery latency, fed by `discovered` events. */
export class LatencyWindow {
  count = 0;
  sum = 0;
  max = 0;
  min = Infinity;
  add(ms: number): void {
    this.count++;
    this.sum += ms;
    if (ms > this.max) this.max = ms;
    if (ms < this.min) this.min = ms;
  }
  /** What the interval saw, and start a new one. */
  take(): { count: number; avg: number | null; max: number | null; min: number | null } {
    const out = { count: this.count, avg: this.count ? this.sum / this.count : null, max: this.count ? this.max : null, min: this.count ? this.min : null };
    this.count = 0;
    this.sum = 0;
    this.max = 0;
    this.min = Infinity;
    return out;
  }
}

/** One block's plugins, as the metrics plugin instance of that block sees them. */
export class BlockSources {
  readonly latency = new LatencyWindow();
  private readonly discoveryPublished: unknown;
  private readonly breakerPublished: unknown;
  readonly clienttrack: ClienttrackHooks | undefined;

  constructor(private readonly api: PluginApi) {
    const hooksOf = api.hooksOf as unknown as (name: string) => unknown;
    this.clienttrack = hooksOf('clienttrack') as ClienttrackHooks | undefined;
    this.discoveryPublished = hooksOf('discovery');
    this.breakerPublished = hooksOf('breaker');
  }

  /** Taps discovery's `discovered` event (when discovery is in the chain) to feed the latency graph. */
  tapDiscovered(): void {
    const d = this.discoveryPublished;
    if (!isObj(d) || !isHook(d.discovered)) return;
    d.discovered.tap('metrics', (ev: unknown) => {
      const ms = eventLatencyMs(ev);
      if (ms !== null) this.latency.add(ms);
    });
  }

  get hasClienttrack(): boolean {
    return this.clienttrack !== undefined;
  }

  get hasDiscovery(): boolean {
    return this.discoveryPublished !== undefined;
  }

  get hasBreaker(): boolean {
    return this.breakerPublished !== undefined;
  }

  queue(): QueueMetrics | null {
    const h = this.clienttrack;
    if (h === undefined) return null;
    try {
      return h.queueMetrics.call() ?? null;
    } catch {
      return null;
    }
  }

  discovery(): DiscoverySnapshot | null {
    if (this.discoveryPublished === undefined) return null;
    const raw = callProvider(this.discoveryPublished, ['discoveryMetrics', 'getDiscoveryMetrics', 'metrics', 'snapshot', 'stats']);
    const snap = normaliseDiscovery(raw ?? {});
    const b = this.breakers();
    if (b) for (const [k, v] of Object.entries(b)) snap.breaker[k] = v;
    return snap;
  }

  /** Breaker state per guarded method, from the breaker plugin (or discovery's snapshot); null without a breaker. */
  breakers(): Record<string, BreakerStateName> | null {
    if (this.breakerPublished !== undefined) {
      const raw = callProvider(this.breakerPublished, ['states', 'breakerStates', 'state', 'breakerState', 'snapshot', 'getStates', 'metrics']);
      const b = normaliseBreakers(raw);
      if (b) return b;
      return {};
    }
    return null;
  }

  pluginOption(plugin: string, option: string): unknown {
    return this.api.server.pluginOptions(plugin)?.[option];
  }
}
