/**
 * `codexdns_workerpool_*{pool="NAME"}`: each attached pool's bounds, depth and totals. Nothing runs per job:
 * gauges read the pools when scraped, counters are brought up to the pools' totals when scraped. The marks
 * are kept per pool object, so a pool kept across a reload is never counted twice and a new pool starts at 0.
 */
import type { MetricsFactory, MirroredLevel, ReportedTotals } from '../../core/metricsRegistry';
import type { WorkerPool, WorkerPoolStats } from '../../core/primitives/workerPool';

const SUBSYSTEM = 'workerpool';

/** Totals already added to the counters, per pool object (module-wide: the counters are shared across reloads). */
const marks = new WeakMap<WorkerPool<unknown>, ReportedTotals>();

function marksOf(p: WorkerPool<unknown>): ReportedTotals {
  let m = marks.get(p);
  if (m === undefined) marks.set(p, (m = new Map()));
  return m;
}

export function registerPoolMetrics(factory: MetricsFactory, current: () => ReadonlyMap<string, WorkerPool<unknown>>): void {
  const gauge = <L extends string>(name: string, help: string, labelNames: readonly L[], read: (pool: string, p: WorkerPool<unknown>, s: WorkerPoolStats) => MirroredLevel<L>[]): void => {
    // reset: a pool gone from the chain (its consumer removed) must not keep showing its last numbers.
    factory.mirrorGauge<L>({ subsystem: SUBSYSTEM, name, help, labelNames, reset: true, levels: () => [...current()].flatMap(([pool, p]) => read(pool, p, p.stats())) });
  };
  gauge('workers', 'Jobs a pool runs at once', ['pool'] as const, (pool, p) => [{ labels: { pool }, value: p.workers }]);
  gauge('busy', 'Jobs running now', ['pool'] as const, (pool, _p, s) => [{ labels: { pool }, value: s.busy }]);
  gauge('queue_depth', 'Jobs waiting for a worker, by priority (one FIFO counts as high)', ['pool', 'priority'] as const, (pool, _p, s) => [
    { labels: { pool, priority: 'high' }, value: s.queuedHigh },
    { labels: { pool, priority: 'low' }, value: s.queuedLow },
  ]);
  gauge('queue_capacity', 'Jobs a pool can hold waiting; beyond it a job is dropped and counted', ['pool'] as const, (pool, p) => [{ labels: { pool }, value: p.capacity }]);

  const counter = (name: string, help: string, value: (s: WorkerPoolStats) => number): void => {
    factory.mirrorCounter<'pool'>({
      subsystem: SUBSYSTEM,
      name,
      help,
      labelNames: ['pool'] as const,
      totals: () => [...current()].map(([pool, p]) => ({ labels: { pool }, value: value(p.stats()), reported: marksOf(p) })),
    });
  };
  counter('submitted_total', 'Jobs submitted to a pool, accepted or not', (s) => s.submitted);
  counter('processed_total', 'Jobs a pool finished', (s) => s.processed);
  counter('failed_total', 'Jobs that threw or rejected', (s) => s.failed);
  counter('dropped_total', 'Jobs refused because the queue was full (or the pool closed)', (s) => s.dropped);
}
