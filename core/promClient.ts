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
/** Loaded when the metrics plugin first asks (it exports the process_* and nodejs_* series). */
export function collectDefaultMetrics(config: PromClient.DefaultMetricsCollectorConfiguration<PromClient.RegistryContentType>): void {
  (require('prom-client/lib/defaultMetrics') as typeof PromClient.collectDefaultMetrics)(config);
}
/* eslint-enable @typescript-eslint/no-require-imports */

export type Registry = PromClient.Registry;
export type Counter<T extends string = string> = PromClient.Counter<T>;
export type Gauge<T extends string = string> = PromClient.Gauge<T>;
export type Histogram<T extends string = string> = PromClient.Histogram<T>;
