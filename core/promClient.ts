/**
 * prom-client's classes, each loaded from its own file. The package's index also loads what codexdns never uses —
 * the Pushgateway (http, https, url, zlib), the cluster aggregator, Summary with its t-digest — which an idle NAS
 * server kept as ≈ 0.7 MB of live heap. The types are the package's own; test/metrics.test.ts checks that each of
 * these is the very object the index exports, so an upgrade that moves a file fails there, not in production.
 */
import type * as PromClient from 'prom-client';

/* eslint-disable @typescript-eslint/no-require-imports */
export const Registry = require('prom-client/lib/registry') as typeof PromClient.Registry;
export const Counter = require('prom-client/lib/counter') as typeof PromClient.Counter;
export const Gauge = require('prom-client/lib/gauge') as typeof PromClient.Gauge;
export const Histogram = require('prom-client/lib/histogram') as typeof PromClient.Histogram;
/**
 * prom-client's default collectors (the process_* and nodejs_* series), loaded when the metrics plugin first asks.
 * Its own `collectDefaultMetrics` loads every collector up front, and the process_cpu_* one loads
 * `@opentelemetry/api` (51 modules, ≈ 0.4 MB of live heap in an idle server) only to label exemplars, which
 * codexdns never enables. So without exemplars the CPU counters come from `processCpu` below, the others from
 * prom-client's files, in prom-client's order; test/metrics.test.ts checks that the exposition is the same
 * series, help and types as prom-client's own function gives, and that `@opentelemetry/api` stays unloaded.
 */
export function collectDefaultMetrics(config: PromClient.DefaultMetricsCollectorConfiguration<PromClient.RegistryContentType>): void {
  // Not in prom-client's typings, but its function reads it: with exemplars, prom-client's own function.
  if ((config as { enableExemplars?: boolean }).enableExemplars) {
    (require('prom-client/lib/defaultMetrics') as typeof PromClient.collectDefaultMetrics)(config);
    return;
  }
  const withDefaults = { eventLoopMonitoringPrecision: 10, ...config };
  processCpu(withDefaults);
  for (const collect of defaultCollectors()) collect(withDefaults.register, withDefaults);
}

type Collector = (registry: PromClient.Registry<PromClient.RegistryContentType> | undefined, config: object) => void;
/** prom-client's lib/defaultMetrics.js after processCpuTotal, in its order (processResources where Node has it). */
function defaultCollectors(): Collector[] {
  const hasResources = typeof (process as { getActiveResourcesInfo?: unknown }).getActiveResourcesInfo === 'function';
  return [
    require('prom-client/lib/metrics/processStartTime') as Collector,
    require('prom-client/lib/metrics/osMemoryHeap') as Collector,
    require('prom-client/lib/metrics/processOpenFileDescriptors') as Collector,
    require('prom-client/lib/metrics/processMaxFileDescriptors') as Collector,
    require('prom-client/lib/metrics/eventLoopLag') as Collector,
    ...(hasResources ? [require('prom-client/lib/metrics/processResources') as Collector] : []),
    require('prom-client/lib/metrics/processHandles') as Collector,
    require('prom-client/lib/metrics/processRequests') as Collector,
    require('prom-client/lib/metrics/heapSizeAndUsed') as Collector,
    require('prom-client/lib/metrics/heapSpacesSizeAndUsed') as Collector,
    require('prom-client/lib/metrics/version') as Collector,
    require('prom-client/lib/metrics/gc') as Collector,
  ];
}

/** prom-client's lib/metrics/processCpuTotal.js without exemplars: three counters, all set by the first's collect. */
function processCpu(config: PromClient.DefaultMetricsCollectorConfiguration<PromClient.RegistryContentType>): void {
  const registers = config.register ? [config.register] : undefined;
  const prefix = config.prefix ?? '';
  const labels = config.labels ?? {};
  const labelNames = Object.keys(labels);
  let last = process.cpuUsage();
  const user = new Counter({
    name: `${prefix}process_cpu_user_seconds_total`,
    help: 'Total user CPU time spent in seconds.',
    registers,
    labelNames,
    collect() {
      const now = process.cpuUsage();
      const userMicros = now.user - last.user;
      const systemMicros = now.system - last.system;
      last = now;
      user.inc(labels, userMicros / 1e6);
      system.inc(labels, systemMicros / 1e6);
      total.inc(labels, (userMicros + systemMicros) / 1e6);
    },
  });
  const system = new Counter({ name: `${prefix}process_cpu_system_seconds_total`, help: 'Total system CPU time spent in seconds.', registers, labelNames });
  const total = new Counter({ name: `${prefix}process_cpu_seconds_total`, help: 'Total user and system CPU time spent in seconds.', registers, labelNames });
}
/* eslint-enable @typescript-eslint/no-require-imports */

export type Registry = PromClient.Registry;
export type Counter<T extends string = string> = PromClient.Counter<T>;
export type Gauge<T extends string = string> = PromClient.Gauge<T>;
export type Histogram<T extends string = string> = PromClient.Histogram<T>;
