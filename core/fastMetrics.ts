/**
 * Counters and histograms for the answer path, registered in the shared prom-client registry.
 *
 * prom-client's own `labels(...).inc()` / `.observe()` hash and validate the label set on every call, even on a
 * bound child: several hundred nanoseconds and a string per query. These metrics keep each label set's numbers
 * in a plain object bound once (`child(...)`), so recording is `value += 1` or a short bucket scan and
 * `counts[i]++` — no lookup, no allocation — and turn them into prom-client's exposition objects only when
 * `/metrics` is scraped. They implement what prom-client's Registry calls (`get`, `reset`, `name`, `help`,
 * `type`, `aggregator`), so they sit in the same registry as every plugin's metrics. Plugins make them through
 * their metrics factory (`fastCounter`, `fastHistogram` in core/metricsRegistry.ts).
 */
import type { Registry } from 'prom-client';

/** CoreDNS's `plugin.TimeBuckets`: `prometheus.ExponentialBuckets(0.00025, 2, 16)`, 0.25 ms to 8.192 s. */
export const TIME_BUCKETS: readonly number[] = Object.freeze(Array.from({ length: 16 }, (_, i) => 0.00025 * 2 ** i));
/** CoreDNS's `plugin.SizeBuckets` for request and response sizes (bytes). */
export const SIZE_BUCKETS: readonly number[] = Object.freeze([0, 100, 200, 300, 400, 511, 1023, 2047, 4095, 8291, 16e3, 32e3, 48e3, 64e3]);
/** For per-plugin tap times, which are often a few microseconds (a cache hit): 1 µs to ~8 s. */
export const TAP_BUCKETS: readonly number[] = Object.freeze([
  0.000001, 0.0000025, 0.000005, 0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5,
]);

interface ExportValue {
  value: number;
  labels: Record<string, string | number>;
  metricName?: string;
}

interface ExportObject {
  name: string;
  help: string;
  type: 'counter' | 'histogram' | 'gauge';
  values: ExportValue[];
  aggregator: 'sum';
}

/** One label set of a FastCounter; `inc` is an own arrow function, safe to pass around unbound. */
export class CounterChild {
  value = 0;
  constructor(readonly labels: Readonly<Record<string, string>>) {}
  readonly inc = (n = 1): void => {
    this.value += n;
  };
}

/** One label set of a FastHistogram; `observe` is an own arrow function: `slot.observe = child.observe`. */
export class HistogramChild {
  /** Non-cumulative counts per bucket; the last slot is +Inf. */
  readonly counts: Float64Array;
  sum = 0;
  count = 0;
  constructor(readonly labels: Readonly<Record<string, string>>, private readonly bounds: readonly number[]) {
    this.counts = new Float64Array(bounds.length + 1);
  }
  readonly observe = (v: number): void => {
    const b = this.bounds;
    const n = b.length;
    let i = 0;
    while (i < n && v > b[i]) i++;
    this.counts[i]++;
    this.sum += v;
    this.count++;
  };
}

abstract class FastMetric<C extends { labels: Readonly<Record<string, string>> }> {
  readonly aggregator = 'sum' as const;
  protected readonly children = new Map<string, C>();
  /** Called before export (prom-client's `collect` convention), e.g. to bring values up to date. */
  collect: (() => void) | undefined;

  constructor(readonly name: string, readonly help: string, readonly labelNames: readonly string[]) {}

  protected abstract make(labels: Record<string, string>): C;

  /** The child for these label values, created once; keep it — never call this per query. */
  child(values: readonly string[]): C {
    if (values.length !== this.labelNames.length) throw new Error(`${this.name}: expected ${this.labelNames.length} label values, got ${values.length}`);
    const key = values.join('\u0000');
    let c = this.children.get(key);
    if (c === undefined) {
      const labels: Record<string, string> = {};
      this.labelNames.forEach((n, i) => (labels[n] = values[i]));
      c = this.make(labels);
      this.children.set(key, c);
    }
    return c;
  }

  /** Every child, for readers that sum a metric (the dashboard's QPS). */
  all(): IterableIterator<C> {
    return this.children.values();
  }

  reset(): void {
    this.children.clear();
  }
}

export class FastCounter extends FastMetric<CounterChild> {
  readonly type = 'counter' as const;
  protected make(labels: Record<string, string>): CounterChild {
    return new CounterChild(labels);
  }
  async get(): Promise<ExportObject> {
    this.collect?.();
    const values: ExportValue[] = [];
    for (const c of this.children.values()) values.push({ value: c.value, labels: { ...c.labels } });
    return { name: this.name, help: this.help, type: this.type, values, aggregator: this.aggregator };
  }
  total(): number {
    let t = 0;
    for (const c of this.children.values()) t += c.value;
    return t;
  }
}

export class FastHistogram extends FastMetric<HistogramChild> {
  readonly type = 'histogram' as const;
  constructor(name: string, help: string, labelNames: readonly string[], readonly buckets: readonly number[]) {
    super(name, help, labelNames);
    if (labelNames.includes('le')) throw new Error('le is a reserved label name');
  }
  protected make(labels: Record<string, string>): HistogramChild {
    return new HistogramChild(labels, this.buckets);
  }
  async get(): Promise<ExportObject> {
    this.collect?.();
    const values: ExportValue[] = [];
    const bucketName = `${this.name}_bucket`;
    for (const c of this.children.values()) {
      let acc = 0;
      for (let i = 0; i < this.buckets.length; i++) {
        acc += c.counts[i];
        values.push({ metricName: bucketName, value: acc, labels: { le: this.buckets[i], ...c.labels } });
      }
      values.push({ metricName: bucketName, value: c.count, labels: { le: '+Inf', ...c.labels } });
      values.push({ metricName: `${this.name}_sum`, value: c.sum, labels: { ...c.labels } });
      values.push({ metricName: `${this.name}_count`, value: c.count, labels: { ...c.labels } });
    }
    return { name: this.name, help: this.help, type: this.type, values, aggregator: this.aggregator };
  }
}

/**
 * The registered metric of this full name, or a new one registered now. Asking again (a reload, a second server
 * block) returns the same object, so counts continue and nothing is registered twice.
 */
export function fastCounter(registry: Registry, name: string, help: string, labelNames: readonly string[]): FastCounter {
  const existing = registry.getSingleMetric(name) as unknown;
  if (existing instanceof FastCounter) return existing;
  if (existing !== undefined) throw new Error(`${name} is already registered as another kind of metric`);
  const m = new FastCounter(name, help, labelNames);
  registry.registerMetric(m as never);
  return m;
}

export function fastHistogram(registry: Registry, name: string, help: string, labelNames: readonly string[], buckets: readonly number[]): FastHistogram {
  const existing = registry.getSingleMetric(name) as unknown;
  if (existing instanceof FastHistogram) return existing;
  if (existing !== undefined) throw new Error(`${name} is already registered as another kind of metric`);
  const m = new FastHistogram(name, help, labelNames, buckets);
  registry.registerMetric(m as never);
  return m;
}
