import type { Counter } from 'prom-client';
import type { MetricsFactory } from '../../core/metricsRegistry';
import type { QueryLog, QueryLogStats } from './querylog';

const SUBSYSTEM = 'querylog';

/**
 * `codexdns_querylog_*`. Nothing here runs per query: gauges read the log when scraped, counters are brought up
 * to the log's plain-number totals when scraped (the marks live on the log, so a reload never counts twice),
 * and the batch histogram is observed once per batch. Returns the per-batch observer.
 */
export function registerMetrics(factory: MetricsFactory, current: () => QueryLog): (rows: number, seconds: number, ok: boolean) => void {
  factory.gauge({
    subsystem: SUBSYSTEM,
    name: 'ring_entries',
    help: 'Served queries waiting in the in-memory ring for the next batch.',
    collect() {
      this.set(current().pending);
    },
  });
  factory.gauge({
    subsystem: SUBSYSTEM,
    name: 'ring_capacity',
    help: 'Size of the ring (the `ring` option); beyond it entries are dropped.',
    collect() {
      this.set(current().opts.ring);
    },
  });
  factory.gauge({
    subsystem: SUBSYSTEM,
    name: 'tracked_keys',
    help: 'Distinct clients and names held in memory for the hourly and daily counts (bounded by max_hourly_keys).',
    collect() {
      this.set(current().trackedKeys);
    },
  });
  factory.gauge({
    subsystem: SUBSYSTEM,
    name: 'storage_ok',
    help: '1 when the last batch was written, 0 when it failed.',
    collect() {
      this.set(current().stats.storageOk ? 1 : 0);
    },
  });
  const mirrored = <L extends string>(name: string, help: string, labelNames: readonly L[], values: (s: QueryLogStats) => Array<[Record<L, string> | null, number]>): void => {
    const c: Counter<L> = factory.counter<L>({ subsystem: SUBSYSTEM, name, help, labelNames });
    (c as unknown as { collect: () => void }).collect = () => {
      const log = current();
      for (const [labels, value] of values(log.stats)) {
        const mark = `${name}|${labels === null ? '' : JSON.stringify(labels)}`;
        const last = log.metricMarks.get(mark) ?? 0;
        if (labels === null) c.inc(Math.max(0, value - last));
        else c.inc(labels as never, Math.max(0, value - last));
        log.metricMarks.set(mark, value);
      }
    };
  };
  mirrored('entries_total', 'Served queries put into the ring.', [], (s) => [[null, s.logged]]);
  mirrored('written_total', 'Entries written to the database.', [], (s) => [[null, s.written]]);
  mirrored('dropped_total', 'Entries lost: ring full (ring_full) or a batch the database refused (storage).', ['reason'] as const, (s) => [
    [{ reason: 'ring_full' }, s.droppedRingFull],
    [{ reason: 'storage' }, s.droppedStorage],
  ]);
  mirrored('skipped_total', 'Served queries not logged on purpose: `exclude` (excluded) or `sample` (sampled).', ['reason'] as const, (s) => [
    [{ reason: 'excluded' }, s.skippedExcluded],
    [{ reason: 'sampled' }, s.skippedSampled],
  ]);
  mirrored('batches_total', 'Batches written (one transaction each).', [], (s) => [[null, s.batches]]);
  mirrored('batch_failures_total', 'Batches the database refused (their entries are dropped).', [], (s) => [[null, s.failedBatches]]);
  mirrored('hourly_keys_overflow_total', 'Counts merged into "(other)" (or, for today\'s per-client count, not kept) because the bound of `max_hourly_keys` was reached.', [], (s) => [[null, s.keysOverflow]]);
  mirrored('pruned_total', 'Rows deleted by `retention` and `max_rows`.', [], (s) => [[null, s.pruned]]);
  const h = factory.histogram({
    subsystem: SUBSYSTEM,
    name: 'batch_duration_seconds',
    help: 'Time to write one batch (rows and hourly counts, one transaction).',
    buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
  });
  return (_rows, seconds, ok) => {
    if (ok) h.observe(seconds);
  };
}
