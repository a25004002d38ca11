/**
 * Discovery's numbers: totals kept in plain fields (what `getDiscoveryMetrics()` returns) and the Prometheus
 * metrics `codexdns_discovery_*`, observed once per job or method attempt — never per query.
 */
import type { Counter, Histogram } from 'prom-client';
import type { MetricsFactory } from '../../core/metricsRegistry';
import type { LatencyStats, MethodName, MethodStats } from './hooks';

const SUBSYSTEM = 'discovery';
/** Seconds: a PTR answer from the router takes ms, a silent NetBIOS probe the whole timeout. */
const BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 3, 5, 10];

export class Latency {
  count = 0;
  private sum = 0;
  private min = Infinity;
  private max = 0;

  add(ms: number): void {
    this.count++;
    this.sum += ms;
    if (ms < this.min) this.min = ms;
    if (ms > this.max) this.max = ms;
  }

  stats(): LatencyStats {
    if (this.count === 0) return { count: 0, min: 0, avg: 0, max: 0 };
    return { count: this.count, min: round(this.min), avg: round(this.sum / this.count), max: round(this.max) };
  }
}

function round(ms: number): number {
  return Math.round(ms * 1000) / 1000;
}

class MethodTotals {
  found = 0;
  negative = 0;
  failures = 0;
  skipped = 0;
  readonly latency = new Latency();

  stats(): MethodStats {
    return { attempts: this.found + this.negative + this.failures, found: this.found, negative: this.negative, failures: this.failures, skipped: this.skipped, latency: this.latency.stats() };
  }
}

export type JobResult = 'succeeded' | 'failed' | 'not_found';

/** Prometheus side: metric objects from the shared registry, children bound once. */
export interface PromDiscovery {
  jobs: Record<JobResult, Counter.Internal>;
  denied: (reason: string) => Counter.Internal;
  dropped: Counter.Internal;
  overflowed: Counter.Internal;
  skipped: Counter.Internal;
  retries: Counter.Internal;
  gaveUp: Counter.Internal;
  duration: Histogram<string>;
  methodAttempt: (method: MethodName, kind: 'found' | 'negative' | 'failure') => Counter.Internal;
  methodDuration: (method: MethodName) => Histogram.Internal<string>;
}

/** Registers (or finds again, after a reload) the discovery metrics. Gauges read `read()` when scraped. */
export function registerPrometheus(
  factory: MetricsFactory,
  read: () => { queue: number; backlog: number; busy: number; discovering: number; rate: number; workers: number } | undefined,
): PromDiscovery {
  const jobs = factory.counter({ subsystem: SUBSYSTEM, name: 'jobs_total', help: 'Discovery jobs run, by result (succeeded, failed, not_found)', labelNames: ['result'] as const });
  const denied = factory.counter({ subsystem: SUBSYSTEM, name: 'denied_total', help: 'Discovery attempts denied by a guard, by reason (rate-limited, circuit-open): deferred, not lost', labelNames: ['reason'] as const });
  const dropped = factory.counter({ subsystem: SUBSYSTEM, name: 'dropped_total', help: 'New clients that did not fit in the discovery queue (they wait in the backlog)' });
  const overflowed = factory.counter({ subsystem: SUBSYSTEM, name: 'backlog_overflow_total', help: 'Clients neither queue nor backlog could hold (`backlog`): left discovering in the database and restored from there later' });
  const skipped = factory.counter({ subsystem: SUBSYSTEM, name: 'skipped_total', help: 'Clients never probed: public addresses not on a local link' });
  const retries = factory.counter({ subsystem: SUBSYSTEM, name: 'retries_total', help: 'Failed discoveries scheduled for another attempt (exponential backoff)' });
  const gaveUp = factory.counter({ subsystem: SUBSYSTEM, name: 'gave_up_total', help: 'Failed discoveries given up after the last retry (tried again at the next refresh)' });
  const duration = factory.histogram({ subsystem: SUBSYSTEM, name: 'duration_seconds', help: 'Time of a whole discovery job (all its methods)', buckets: BUCKETS });
  const attempts = factory.counter({ subsystem: SUBSYSTEM, name: 'method_attempts_total', help: 'Method attempts, by method and outcome (found, negative, failure)', labelNames: ['method', 'outcome'] as const });
  const methodDuration = factory.histogram({ subsystem: SUBSYSTEM, name: 'method_duration_seconds', help: 'Time of one method attempt', labelNames: ['method'] as const, buckets: BUCKETS });
  const gauge = (name: string, help: string, pick: (v: NonNullable<ReturnType<typeof read>>) => number): void => {
    factory.mirrorGauge({
      subsystem: SUBSYSTEM,
      name,
      help,
      levels: () => {
        const v = read();
        return v === undefined ? undefined : [{ value: pick(v) }];
      },
    });
  };
  gauge('queue_depth', 'Discovery jobs waiting for a worker', (v) => v.queue);
  gauge('backlog', 'Clients waiting for a later discovery attempt (deferred, retrying, queue full, refresh due)', (v) => v.backlog);
  gauge('workers_busy', 'Discovery jobs running now', (v) => v.busy);
  gauge('workers', 'Discovery workers', (v) => v.workers);
  gauge('clients_discovering', 'Clients announced whose discovery has not finished', (v) => v.discovering);
  gauge('rate_per_second', 'Discovery jobs finished per second over the last 10 s', (v) => v.rate);

  const deniedChildren = new Map<string, Counter.Internal>();
  const attemptChildren = new Map<string, Counter.Internal>();
  const durationChildren = new Map<string, Histogram.Internal<string>>();
  return {
    jobs: { succeeded: jobs.labels('succeeded'), failed: jobs.labels('failed'), not_found: jobs.labels('not_found') },
    denied: (reason) => {
      let c = deniedChildren.get(reason);
      if (c === undefined) deniedChildren.set(reason, (c = denied.labels(reason)));
      return c;
    },
    dropped,
    overflowed,
    skipped,
    retries,
    gaveUp,
    duration,
    methodAttempt: (method, kind) => {
      const key = `${method}|${kind}`;
      let c = attemptChildren.get(key);
      if (c === undefined) attemptChildren.set(key, (c = attempts.labels(method, kind)));
      return c;
    },
    methodDuration: (method) => {
      let h = durationChildren.get(method);
      if (h === undefined) durationChildren.set(method, (h = methodDuration.labels(method)));
      return h;
    },
  };
}

/** The totals of one discovery engine (kept with it across reloads). */
export class DiscoveryStats {
  announced = 0;
  total = 0;
  succeeded = 0;
  failed = 0;
  notFound = 0;
  gaveUp = 0;
  retries = 0;
  dropped = 0;
  skipped = 0;
  refreshed = 0;
  restored = 0;
  readonly denied = new Map<string, number>();
  readonly latency = new Latency();
  readonly perMethod = new Map<MethodName, MethodTotals>();
  /** Set by the plugin's setup: the Prometheus side (absent in unit tests). */
  prom: PromDiscovery | undefined;

  private method(m: MethodName): MethodTotals {
    let t = this.perMethod.get(m);
    if (t === undefined) this.perMethod.set(m, (t = new MethodTotals()));
    return t;
  }

  deny(reason: string): void {
    this.denied.set(reason, (this.denied.get(reason) ?? 0) + 1);
    this.prom?.denied(reason).inc();
  }

  drop(): void {
    this.dropped++;
    this.prom?.dropped.inc();
  }

  overflow(): void {
    this.prom?.overflowed.inc();
  }

  skip(): void {
    this.skipped++;
    this.prom?.skipped.inc();
  }

  retry(): void {
    this.retries++;
    this.prom?.retries.inc();
  }

  giveUp(): void {
    this.gaveUp++;
    this.prom?.gaveUp.inc();
  }

  methodSkipped(m: MethodName): void {
    this.method(m).skipped++;
  }

  attempt(m: MethodName, kind: 'found' | 'negative' | 'failure', ms: number): void {
    const t = this.method(m);
    if (kind === 'found') t.found++;
    else if (kind === 'negative') t.negative++;
    else t.failures++;
    t.latency.add(ms);
    if (this.prom !== undefined) {
      this.prom.methodAttempt(m, kind).inc();
      this.prom.methodDuration(m).observe(ms / 1000);
    }
  }

  job(result: JobResult, ms: number): void {
    if (result === 'succeeded') this.succeeded++;
    else if (result === 'failed') this.failed++;
    else this.notFound++;
    this.latency.add(ms);
    if (this.prom !== undefined) {
      this.prom.jobs[result].inc();
      this.prom.duration.observe(ms / 1000);
    }
  }

  deniedTotals(): Record<string, number> {
    return Object.fromEntries(this.denied);
  }

  methodStats(): Partial<Record<MethodName, MethodStats>> {
    const out: Partial<Record<MethodName, MethodStats>> = {};
    for (const [m, t] of this.perMethod) out[m] = t.stats();
    return out;
  }
}

const RATE_SECONDS = 60;

/** Events per second over a sliding window of whole seconds (one counter per second, no timer). */
export class RateMeter {
  private readonly second = new Float64Array(RATE_SECONDS).fill(Number.NaN);
  private readonly count = new Float64Array(RATE_SECONDS);
  private readonly createdAt: number;

  constructor(private readonly clock: { now(): number }) {
    this.createdAt = clock.now();
  }

  add(n = 1): void {
    const s = Math.floor(this.clock.now() / 1000);
    const i = ((s % RATE_SECONDS) + RATE_SECONDS) % RATE_SECONDS;
    if (this.second[i] !== s) {
      this.second[i] = s;
      this.count[i] = 0;
    }
    this.count[i] += n;
  }

  /** Events per second over the last `windowMs` (1 s to 60 s); not counting time before creation. */
  rate(windowMs = 10_000): number {
    const seconds = Math.min(RATE_SECONDS, Math.max(1, Math.ceil(windowMs / 1000)));
    const now = this.clock.now();
    const current = Math.floor(now / 1000);
    let total = 0;
    for (let k = 0; k < seconds; k++) {
      const s = current - k;
      const i = ((s % RATE_SECONDS) + RATE_SECONDS) % RATE_SECONDS;
      if (this.second[i] === s) total += this.count[i];
    }
    const start = Math.max((current - seconds + 1) * 1000, this.createdAt);
    return (total * 1000) / Math.max(1000, now - start);
  }
}
