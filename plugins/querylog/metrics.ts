import type { MetricsFactory, MirroredTotal } from '../../core/metricsRegistry';
import type { QueryLog, QueryLogStats } from './querylog';

const SUBSYSTEM = 'querylog';

/**
 * `codexdns_querylog_*`. Nothing here runs per query: gauges read the log when scraped, counters follow the
 * log's plain-number totals when scraped (what was reported is kept on the log, so a reload never counts twice),
 * and the batch histogram is observed once per batch. Returns the per-batch observer.
 */
export function registerMetrics(factory: MetricsFactory, current: () => QueryLog): (rows: number, seconds: number, ok: boolean) => void {
  factory.mirrorGauge({
    subsystem: SUBSYSTEM,
    name: 'ring_entries',
    help: 'Served queries waiting in the in-memory ring for the next batch.',
    levels: () => [{ value: current().pending }],
  });
  factory.mirrorGauge({
    subsystem: SUBSYSTEM,
    name: 'ring_capacity',
    help: 'Size of the ring (the `ring` option); beyond it entries are dropped.',
    levels: () => [{ value: current().opts.ring }],
  });
  factory.mirrorGauge({
    subsystem: SUBSYSTEM,
    name: 'tracked_keys',
    help: 'Distinct clients and names held in memory for the hourly and daily counts (bounded by max_hourly_keys).',
    levels: () => [{ value: current().trackedKeys }],
  });
  factory.mirrorGauge({
    subsystem: SUBSYSTEM,
    name: 'storage_ok',
    help: '1 when the last batch was written, 0 when it failed.',
    levels: () => [{ value: current().stats.storageOk ? 1 : 0 }],
  });
  const mirrored = <L extends string>(name: string, help: string, labelNames: readonly L[], totals: (s: QueryLogStats) => MirroredTotal<L>[]): void => {
    factory.mirrorCounter<L>({ subsystem: SUBSYSTEM, name, help, labelNames, totals: () => totals(current().stats), reported: () => current().metricMarks });
  };
  mirrored('entries_total', 'Served queries put into the ring.', [], (s) => [{ value: s.logged }]);
  mirrored('written_total', 'Entries written to the database.', [], (s) => [{ value: s.written }]);
  mirrored('dropped_total', 'Entries lost: ring full (ring_full) or a batch the database refused (storage).', ['reason'] as const, (s) => [
    { labels: { reason: 'ring_full' }, value: s.droppedRingFull },
    { labels: { reason: 'storage' }, value: s.droppedStorage },
  ]);
  mirrored('skipped_total', 'Served queries not logged on purpose: `exclude` (excluded) or `sample` (sampled).', ['reason'] as const, (s) => [
    { labels: { reason: 'excluded' }, value: s.skippedExcluded },
    { labels: { reason: 'sampled' }, value: s.skippedSampled },
  ]);
  mirrored('batches_total', 'Batches written (one transaction each).', [], (s) => [{ value: s.batches }]);
  mirrored('batch_failures_total', 'Batches the database refused (their entries are dropped).', [], (s) => [{ value: s.failedBatches }]);
  mirrored('hourly_keys_overflow_total', 'Counts merged into "(other)" (or, for today\'s per-client count, not kept) because the bound of `max_hourly_keys` was reached.', [], (s) => [{ value: s.keysOverflow }]);
  mirrored('pruned_total', 'Rows deleted by `retention` and `max_rows`.', [], (s) => [{ value: s.pruned }]);
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
