import type { Counter, Gauge } from 'prom-client';
import type { MetricsFactory } from '../../core/metricsRegistry';
import type { Tracker } from './tracker';
import type { QueueMetrics } from './hooks';

const SUBSYSTEM = 'tracking';

/**
 * Registers the tracking metrics (`codexdns_tracking_*`). Nothing here runs per query: gauges read the tracker
 * when scraped (`collect`), counters are brought up to the tracker's totals when scraped (children bound once),
 * and the two histograms are observed once per batch. Asking the factory again after a reload returns the same
 * metric objects; their `collect` is pointed at the current tracker.
 */
export function registerMetrics(factory: MetricsFactory, current: () => Tracker): (rows: number, seconds: number, ok: boolean) => void {
  const read = (): QueueMetrics => current().metrics();

  const gauge = <L extends string>(name: string, help: string, labelNames: readonly L[], fill: (g: Gauge<L>, m: QueueMetrics) => void): void => {
    const g: Gauge<L> = factory.gauge<L>({
      subsystem: SUBSYSTEM,
      name,
      help,
      labelNames,
      collect(this: Gauge<L>) {
        fill(this, read());
      },
    });
    void g;
  };

  /** A counter that mirrors monotonic totals of the tracker; the marks live on the tracker, so a reload never counts twice. */
  const counter = <L extends string>(name: string, help: string, labelNames: readonly L[], values: (m: QueueMetrics) => Array<[Record<L, string> | null, number]>): void => {
    const c: Counter<L> = factory.counter<L>({ subsystem: SUBSYSTEM, name, help, labelNames });
    const children = new Map<string, { inc(n: number): void }>();
    const child = (labels: Record<L, string> | null): { inc(n: number): void } => {
      const key = labels === null ? '' : JSON.stringify(labels);
      let ch = children.get(key);
      if (ch === undefined) {
        ch = labels === null ? c : c.labels(labels as never);
        children.set(key, ch);
      }
      return ch;
    };
    (c as unknown as { collect: () => void }).collect = () => {
      const t = current();
      for (const [labels, value] of values(read())) {
        const mark = `${name}|${labels === null ? '' : JSON.stringify(labels)}`;
        const last = t.metricMarks.get(mark) ?? 0;
        // inc(0) too: every labelled series shows from the first scrape (a dropped counter that stays 0 is news).
        child(labels).inc(Math.max(0, value - last));
        t.metricMarks.set(mark, value);
      }
    };
  };

  gauge('queue_depth', 'Tracking jobs waiting, by priority', ['priority'] as const, (g, m) => {
    g.labels('high').set(m.depth.high);
    g.labels('low').set(m.depth.low);
  });
  gauge('queue_capacity', 'Tracking queue capacity, by priority', ['priority'] as const, (g, m) => {
    g.labels('high').set(m.capacity.high);
    g.labels('low').set(m.capacity.low);
  });
  gauge('workers_busy', 'Tracking jobs running now', [] as const, (g, m) => g.set(m.busy));
  gauge('workers', 'Tracking workers (most jobs at once)', [] as const, (g, m) => g.set(m.workers));
  gauge('processing_rate_per_second', 'Tracking jobs finished per second over the last 10 s', [] as const, (g, m) => g.set(m.ratePerSecond));
  gauge('clients', 'Clients in the in-memory index', [] as const, (g, m) => g.set(m.clients.indexed));
  gauge('clients_discovering', 'Indexed clients whose discovery has not finished', [] as const, (g, m) => g.set(m.clients.discovering));
  gauge('pending_rows', 'Client rows waiting for the next batch write', [] as const, (g, m) => g.set(m.writer.pending));
  gauge('storage_up', '1 when the last tracking write succeeded', [] as const, (g, m) => g.set(m.writer.storageOk ? 1 : 0));
  gauge('write_age_seconds', 'How long the running batch write has been running (0: none); above the flush interval it is stalled', [] as const, (g, m) => g.set(m.writer.writeAgeMs / 1000));

  counter('submitted_total', 'Tracking jobs submitted (accepted or dropped)', [] as const, (m) => [[null, m.submitted]]);
  counter('processed_total', 'Tracking jobs processed', [] as const, (m) => [[null, m.processed]]);
  counter('failed_total', 'Tracking jobs that failed', [] as const, (m) => [[null, m.failed]]);
  counter('dropped_total', 'Tracking jobs dropped because the queue was full, by priority', ['priority'] as const, (m) => [
    [{ priority: 'high' }, m.droppedHigh],
    [{ priority: 'low' }, m.droppedLow],
  ]);
  counter('enqueued_total', 'Tracking jobs that waited in the queue, by priority', ['priority'] as const, (m) => [
    [{ priority: 'high' }, m.enqueuedHigh],
    [{ priority: 'low' }, m.enqueuedLow],
  ]);
  counter('evicted_total', 'Clients evicted from the in-memory index (max_clients)', [] as const, (m) => [[null, m.clients.evicted]]);
  counter('new_clients_total', 'Clients seen for the first time', [] as const, (m) => [[null, m.clients.new]]);
  counter('batches_total', 'Batch writes, by result', ['result'] as const, (m) => [
    [{ result: 'ok' }, m.writer.batches],
    [{ result: 'failed' }, m.writer.failedBatches],
  ]);
  counter('rows_written_total', 'Client rows written (upserts)', [] as const, (m) => [[null, m.writer.rowsWritten]]);
  counter('write_dropped_total', 'Client updates discarded by the writer (buffer full during an outage, rejected batch, shutdown timeout)', [] as const, (m) => [
    [null, m.writer.droppedUpdates],
  ]);
  counter('write_refused_total', 'Client rows dropped by the writer because retrying could not help, by reason (rejected: the schema refused the row; abandoned: an unrecognised error lasted give_up)', ['reason'] as const, (m) => [
    [{ reason: 'rejected' }, m.writer.rejectedRows],
    [{ reason: 'abandoned' }, m.writer.abandonedRows],
  ]);
  counter('pruned_total', 'Clients deleted by retention', [] as const, (m) => [[null, m.writer.pruned]]);

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
