import type { MetricsFactory, MirroredLevel, MirroredTotal } from '../../core/metricsRegistry';
import type { Tracker } from './tracker';
import type { QueueMetrics } from './hooks';

const SUBSYSTEM = 'tracking';

/**
 * Registers the tracking metrics (`codexdns_tracking_*`). Nothing here runs per query: gauges read the tracker
 * when scraped, counters follow the tracker's plain totals when scraped (what was reported is kept on the
 * tracker, so a reload never counts twice), and the two histograms are observed once per batch.
 */
export function registerMetrics(factory: MetricsFactory, current: () => Tracker): (rows: number, seconds: number, ok: boolean) => void {
  const read = (): QueueMetrics => current().metrics();

  const gauge = <L extends string>(name: string, help: string, labelNames: readonly L[], levels: (m: QueueMetrics) => MirroredLevel<L>[]): void => {
    factory.mirrorGauge<L>({ subsystem: SUBSYSTEM, name, help, labelNames, levels: () => levels(read()) });
  };
  const counter = <L extends string>(name: string, help: string, labelNames: readonly L[], totals: (m: QueueMetrics) => MirroredTotal<L>[]): void => {
    factory.mirrorCounter<L>({ subsystem: SUBSYSTEM, name, help, labelNames, totals: () => totals(read()), reported: () => current().metricMarks });
  };

  gauge('queue_depth', 'Tracking jobs waiting, by priority', ['priority'] as const, (m) => [
    { labels: { priority: 'high' }, value: m.depth.high },
    { labels: { priority: 'low' }, value: m.depth.low },
  ]);
  gauge('queue_capacity', 'Tracking queue capacity, by priority', ['priority'] as const, (m) => [
    { labels: { priority: 'high' }, value: m.capacity.high },
    { labels: { priority: 'low' }, value: m.capacity.low },
  ]);
  gauge('workers_busy', 'Tracking jobs running now', [] as const, (m) => [{ value: m.busy }]);
  gauge('workers', 'Tracking workers (most jobs at once)', [] as const, (m) => [{ value: m.workers }]);
  gauge('processing_rate_per_second', 'Tracking jobs finished per second over the last 10 s', [] as const, (m) => [{ value: m.ratePerSecond }]);
  gauge('clients', 'Clients in the in-memory index', [] as const, (m) => [{ value: m.clients.indexed }]);
  gauge('clients_discovering', 'Indexed clients whose discovery has not finished', [] as const, (m) => [{ value: m.clients.discovering }]);
  gauge('pending_rows', 'Client rows waiting for the next batch write', [] as const, (m) => [{ value: m.writer.pending }]);
  gauge('storage_up', '1 when the last tracking write succeeded', [] as const, (m) => [{ value: m.writer.storageOk ? 1 : 0 }]);
  gauge('write_age_seconds', 'How long the running batch write has been running (0: none); above the flush interval it is stalled', [] as const, (m) => [{ value: m.writer.writeAgeMs / 1000 }]);

  counter('submitted_total', 'Tracking jobs submitted (accepted or dropped)', [] as const, (m) => [{ value: m.submitted }]);
  counter('processed_total', 'Tracking jobs processed', [] as const, (m) => [{ value: m.processed }]);
  counter('failed_total', 'Tracking jobs that failed', [] as const, (m) => [{ value: m.failed }]);
  counter('dropped_total', 'Tracking jobs dropped because the queue was full, by priority', ['priority'] as const, (m) => [
    { labels: { priority: 'high' }, value: m.droppedHigh },
    { labels: { priority: 'low' }, value: m.droppedLow },
  ]);
  counter('enqueued_total', 'Tracking jobs that waited in the queue, by priority', ['priority'] as const, (m) => [
    { labels: { priority: 'high' }, value: m.enqueuedHigh },
    { labels: { priority: 'low' }, value: m.enqueuedLow },
  ]);
  counter('evicted_total', 'Clients evicted from the in-memory index (max_clients)', [] as const, (m) => [{ value: m.clients.evicted }]);
  counter('new_clients_total', 'Clients seen for the first time', [] as const, (m) => [{ value: m.clients.new }]);
  counter('batches_total', 'Batch writes, by result', ['result'] as const, (m) => [
    { labels: { result: 'ok' }, value: m.writer.batches },
    { labels: { result: 'failed' }, value: m.writer.failedBatches },
  ]);
  counter('rows_written_total', 'Client rows written (upserts)', [] as const, (m) => [{ value: m.writer.rowsWritten }]);
  counter('write_dropped_total', 'Client updates discarded by the writer (buffer full during an outage, rejected batch, shutdown timeout)', [] as const, (m) => [
    { value: m.writer.droppedUpdates },
  ]);
  counter('write_refused_total', 'Client rows dropped by the writer because retrying could not help, by reason (rejected: the schema refused the row; abandoned: an unrecognised error lasted give_up)', ['reason'] as const, (m) => [
    { labels: { reason: 'rejected' }, value: m.writer.rejectedRows },
    { labels: { reason: 'abandoned' }, value: m.writer.abandonedRows },
  ]);
  counter('pruned_total', 'Clients deleted by retention', [] as const, (m) => [{ value: m.writer.pruned }]);

  const batchSize = factory.histogram({
    subsystem: SUBSYSTEM,
    name: 'batch_size',
    help: 'Rows per batch write',
    buckets: [1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000],
  });
  const writeDuration = factory.histogram({
    subsystem: SUBSYSTEM,
    name: 'write_duration_seconds',
    help: 'Time to write one batch (one transaction), failed attempts included',
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
  });
  return (rows, seconds) => {
    batchSize.observe(rows);
    writeDuration.observe(seconds);
  };
}
