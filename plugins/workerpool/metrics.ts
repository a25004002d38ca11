/**
 * `codexdns_workerpool_*{pool="NAME"}`: each attached pool's bounds, depth and totals. Nothing runs per job:
 * gauges read the pools when scraped, counters are brought up to the pools' totals when scraped. The marks
 * are kept per pool object, so a pool kept across a reload is never counted twice and a new pool starts at 0.
 */
import type { Counter, Gauge } from 'prom-client';
import type { MetricsFactory } from '../../core/metricsRegistry';
import type { WorkerPool, WorkerPoolStats } from '../../core/primitives/workerPool';

const SUBSYSTEM = 'workerpool';

/** Totals already added to each counter, per pool object (module-wide: the counters are shared across reloads). */
const marks = new WeakMap<WorkerPool<unknown>, Map<string, number>>();

export function registerPoolMetrics(factory: MetricsFactory, current: () => ReadonlyMap<string, WorkerPool<unknown>>): void {
  const gauge = <L extends string>(name: string, help: string, labelNames: readonly L[], fill: (g: Gauge<L>, pool: string, p: WorkerPool<unknown>, s: WorkerPoolStats) => void): void => {
    factory.gauge<L>({
      subsystem: SUBSYSTEM,
      name,
      help,
      labelNames,
      collect(this: Gauge<L>) {
        // A pool gone from the chain (its consumer removed) must not keep showing its last numbers.
        this.reset();
        for (const [pool, p] of current()) fill(this, pool, p, p.stats());
      },
    });
  };
  gauge('workers', 'Jobs a pool runs at once', ['pool'] as const, (g, pool, p) => g.labels(pool).set(p.workers));
  gauge('busy', 'Jobs running now', ['pool'] as const, (g, pool, _p, s) => g.labels(pool).set(s.busy));
  gauge('queue_depth', 'Jobs waiting for a worker, by priority (one FIFO counts as high)', ['pool', 'priority'] as const, (g, pool, _p, s) => {
    g.labels(pool, 'high').set(s.queuedHigh);
    g.labels(pool, 'low').set(s.queuedLow);
  });
  gauge('queue_capacity', 'Jobs a pool can hold waiting; beyond it a job is dropped and counted', ['pool'] as const, (g, pool, p) => g.labels(pool).set(p.capacity));

  const counter = (name: string, help: string, value: (s: WorkerPoolStats) => number): void => {
    const c: Counter<'pool'> = factory.counter({ subsystem: SUBSYSTEM, name, help, labelNames: ['pool'] as const });
    (c as unknown as { collect: () => void }).collect = () => {
      for (const [pool, p] of current()) {
        let m = marks.get(p);
        if (m === undefined) marks.set(p, (m = new Map()));
        const v = value(p.stats());
        // inc(0) too: a drop counter that stays 0 is news, so every pool's series shows from the first scrape.
        c.labels(pool).inc(Math.max(0, v - (m.get(name) ?? 0)));
        m.set(name, v);
      }
    };
  };
  counter('submitted_total', 'Jobs submitted to a pool, accepted or not', (s) => s.submitted);
  counter('processed_total', 'Jobs a pool finished', (s) => s.processed);
  counter('failed_total', 'Jobs that threw or rejected', (s) => s.failed);
  counter('dropped_total', 'Jobs refused because the queue was full (or the pool closed)', (s) => s.dropped);
}
