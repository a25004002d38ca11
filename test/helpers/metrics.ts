import type { TestServer } from '../../testing';

/**
 * The value of a server's metric, summed over the series whose labels include `labels` (a histogram's own
 * series only, not its `_bucket`/`_sum`/`_count` companions); 0 when the metric is not registered.
 */
export async function metric(s: TestServer, name: string, labels: Record<string, string> = {}): Promise<number> {
  const m = s.server.metrics.registry.getSingleMetric(name);
  if (!m) return 0;
  const v = await m.get();
  let sum = 0;
  for (const x of v.values) {
    if (Object.entries(labels).every(([k, val]) => String((x.labels as Record<string, unknown>)[k]) === val)) {
      if (!('metricName' in x) || x.metricName === undefined || x.metricName === name) sum += x.value;
    }
  }
  return sum;
}
