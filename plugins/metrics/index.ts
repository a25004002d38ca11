/**
 * `metrics`: Prometheus `/metrics` (CoreDNS's request metrics under `codexdns_`, per-plugin tap times, the Node
 * process metrics), a JSON API for the tracking queue, discovery, running tasks, clients, health and readiness,
 * and a live dashboard — on one HTTP listener (`listen`, loopback by default). See README.md.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Registry } from 'prom-client';
import { collectDefaultMetrics } from '../../core/promClient';
import { SyncHook, SyncWaterfallHook } from 'tapable';
import { OptionError } from '../../config/errors';
import { Duration, Type } from '../../config/types';
import { definePlugin, type PluginApi, type WireStats } from '../../core/plugin';
import type { BlockView } from './api';
import type { ApiClient, HttpRouteTable, MetricsHooks } from './hooks';
import { acquireHost, dashboardStreams, parseHttpListen, type HostLease, type HostSettings } from './http';
import { RequestRecorder, coreMetrics } from './requestMetrics';
import { PluginRoutes } from './routes';
import { BlockSources } from './sources';

export { httpListeners, parseHttpListen, isLoopbackAddress, dashboardDir } from './http';
export { MONITORED_TYPES, RequestRecorder, coreMetrics, zoneLabel } from './requestMetrics';
export { FastCounter, FastHistogram, TIME_BUCKETS, SIZE_BUCKETS, TAP_BUCKETS } from '../../core/fastMetrics';
export type { Sample } from './series';
export { normaliseBreakers, discoverySnapshot, type DiscoverySnapshot, type BreakerStateName } from './sources';

export type { MetricsHooks, HttpRoute, HttpRouteRequest, HttpRouteMethod, HttpRouteTable, ApiClient } from './hooks';

export const DEFAULT_LISTEN = '127.0.0.1:9153';

export const MetricsOptions = Type.Object({
  listen: Type.String({ default: DEFAULT_LISTEN, description: 'HTTP address (HOST:PORT; IPv6 in brackets) for /metrics, the API and the dashboard. Not a loopback address: `token` is required.' }),
  token: Type.Optional(
    Type.String({ minLength: 16, description: 'Secret required on every request: `Authorization: Bearer TOKEN`, or the session cookie the dashboard login sets. At least 16 characters.' }),
  ),
  hosts: Type.Array(Type.String({ minLength: 1 }), {
    default: [],
    description: 'Names a browser may use to reach the dashboard (its Host header), besides the listen address (and localhost on loopback, the local addresses on a wildcard)',
  }),
  interval: Duration(1000, 'Dashboard update interval (100ms to 2s)'),
  plugin_timing: Type.Boolean({ default: true, description: 'Measure the time spent in each plugin (codexdns_plugin_duration_seconds)' }),
  process_metrics: Type.Boolean({ default: true, description: "Export prom-client's Node process metrics (process_*, nodejs_*)" }),
});

interface RetainedLease {
  readonly ready: Promise<HostLease>;
}

export const metricsPlugin = definePlugin({
  name: 'metrics',
  description: 'Prometheus /metrics, a JSON API (queue, discovery, tasks, clients, health, ready) and a live dashboard',
  options: MetricsOptions,
  // Each is shown when present: the queue, discovery's figures and latency, the breakers' states.
  uses: ['clienttrack', 'discovery', 'breaker'],
  declare(): MetricsHooks {
    return { routes: new SyncHook<[HttpRouteTable]>(['table']), apiClient: new SyncWaterfallHook<[ApiClient]>(['client']) };
  },
  async setup(api, o) {
    const listen = parseHttpListen(o.listen);
    if (typeof listen === 'string') throw new OptionError('listen', listen);
    if (!listen.loopback && o.token === undefined) {
      throw new OptionError('token', `listen ${o.listen} is not a loopback address: set a token (at least 16 characters), or listen on 127.0.0.1`);
    }
    if (o.interval < 100 || o.interval > 2000) throw new OptionError('interval', 'must be from 100ms to 2s');
    const registry = api.metrics.registry;
    const core = coreMetrics(registry);
    registerServerMetrics(api);
    if (o.process_metrics) enableProcessMetrics(registry);

    const recorder = new RequestRecorder(core, api.block.name, api.block.zones, []);
    api.hooks.served.tap('metrics', recorder.onServed);
    const sources = new BlockSources(api);
    sources.tapDiscovered();

    const settings: HostSettings = { token: o.token, hosts: o.hosts, intervalMs: o.interval };
    // The listener outlives a reload: the same lease is handed to the new chain while the options are unchanged,
    // and a changed option takes a new lease on the same listener (acquireHost shares it by address).
    const retained = api.retain<RetainedLease>(
      `http:${listen.key}|${o.token === undefined ? '-' : 'token'}`,
      () => {
        const ready = acquireHost(registry, core, listen, settings, api.log);
        ready.catch(() => undefined);
        return { ready };
      },
      (l) => l.ready.then((lease) => lease.release(), () => undefined),
    );
    let lease: HostLease;
    try {
      lease = await retained.ready;
    } catch (err) {
      const e = err as NodeJS.ErrnoException;
      throw new OptionError('listen', `cannot listen on ${o.listen}: ${e.code ?? ''}${e.code ? ' ' : ''}${e.message}`);
    }
    const view: BlockView = { block: api.block.name, api, sources, recorder, hooks: api.own, routes: null };
    api.hooks.startup.tapPromise('metrics', async () => {
      if (o.plugin_timing) recorder.bindTapTimings(api.server.tapTimings());
      view.routes = PluginRoutes.collect(api.own, (m) => api.log.error(m));
      lease.host.attach(view, settings, api.log);
    });
    api.hooks.shutdown.tapPromise('metrics', async () => {
      lease.host.detach(view);
    });
  },
});

export default metricsPlugin;

// ------------------------------------------------------------------------------------ server metrics

interface WireSource {
  wire: () => WireStats;
  readonly marks: Map<string, number>;
}

const wireSources = new WeakMap<Registry, WireSource>();

/**
 * Metrics of the wire layer (what never reaches a chain: malformed packets, the core's own answers) and build
 * information: registered once per process, read from the dispatcher's counters when scraped.
 */
function registerServerMetrics(api: PluginApi): void {
  const registry = api.metrics.registry;
  const existing = wireSources.get(registry);
  if (existing !== undefined) {
    existing.wire = api.server.wireStats;
    return;
  }
  const src: WireSource = { wire: api.server.wireStats, marks: new Map() };
  wireSources.set(registry, src);
  const f = api.metrics;
  const w = (): WireStats => src.wire();
  for (const t of wireTotals(w, () => dashboardStreams(registry))) {
    const label = t.label;
    // The wire layer keeps monotonic totals; the counters follow them when scraped, never per packet.
    f.mirrorCounter({
      subsystem: t.subsystem,
      name: t.name,
      help: t.help,
      labelNames: label === undefined ? [] : [label],
      reported: () => src.marks,
      totals: () => {
        const v = t.read();
        if (typeof v === 'number') return [{ value: v }];
        return Object.entries(v).map(([value, n]) => ({ labels: { [label as string]: value }, value: n }));
      },
    });
  }
  for (const g of wireLevels(w, () => dashboardStreams(registry))) {
    f.mirrorGauge({ subsystem: g.subsystem, name: g.name, help: g.help, levels: () => [{ value: g.read() }] });
  }
  const info = f.gauge({ subsystem: 'build', name: 'info', help: 'Always 1; the labels tell the codexdns and Node.js versions.', labelNames: ['version', 'nodejs'] as const });
  info.set({ version: packageVersion(), nodejs: process.version }, 1);
}

/** A total kept by the wire layer (or the HTTP side), exported as a counter; `label` names the record's keys. */
interface MirroredTotal {
  readonly subsystem: string;
  readonly name: string;
  readonly help: string;
  readonly label?: string;
  read(): number | Readonly<Record<string, number>>;
}

interface Level {
  readonly subsystem: string;
  readonly name: string;
  readonly help: string;
  read(): number;
}

function wireTotals(w: () => WireStats, streams: () => { refused: number; slow: number }): MirroredTotal[] {
  return [
    { subsystem: 'dns', name: 'packets_received_total', help: 'DNS messages received by the listeners (before any check), by transport.', label: 'proto', read: () => ({ udp: w().udpReceived, tcp: w().tcpReceived }) },
    { subsystem: 'dns', name: 'packets_dropped_total', help: 'DNS messages dropped unanswered by the wire layer, by reason (short, response, shutdown, source_port_0).', label: 'reason', read: () => w().dropped },
    { subsystem: 'dns', name: 'formerr_total', help: 'Malformed queries answered FORMERR by the core (they never reach a chain).', read: () => w().formerr },
    { subsystem: 'dns', name: 'notimp_total', help: 'Queries answered NOTIMP by the core (an opcode other than QUERY, QTYPE MAILA/MAILB).', read: () => w().notimp },
    { subsystem: 'dns', name: 'meta_refused_total', help: 'Zone transfer queries (AXFR, IXFR) answered REFUSED by the core, never forwarded.', read: () => w().refusedMeta },
    { subsystem: 'dns', name: 'send_errors_total', help: 'Replies that could not be sent (the socket refused or failed the send), by transport.', label: 'proto', read: () => w().sendErrors },
    {
      subsystem: 'dns',
      name: 'tcp_connections_refused_total',
      help: 'TCP connections refused at accept: max_connections was reached and no connection was idle to make room (or the server was shutting down).',
      read: () => w().tcpConnectionsRefused,
    },
    {
      subsystem: 'dns',
      name: 'tcp_connections_closed_total',
      help: 'TCP connections closed by the server, by reason: evicted (idle longest, to admit a new one at max_connections), per_client (max_per_client reached), read_timeout (a message not whole within read_timeout of its first byte), idle_timeout, drain_timeout (unsent replies above max_unsent for drain_timeout), half_closed (the client shut its write side; ended after its answers).',
      label: 'reason',
      read: () => w().tcpClosed,
    },
    { subsystem: 'dns', name: 'tcp_backpressure_pauses_total', help: 'Times a TCP connection stopped being read because its unsent replies passed max_unsent.', read: () => w().tcpPauses },
    { subsystem: 'dns', name: 'tcp_inflight_full_total', help: 'Times a TCP connection stopped being read because max_inflight of its queries were in flight.', read: () => w().tcpInflightFull },
    {
      subsystem: 'http',
      name: 'dashboard_streams_closed_total',
      help: 'Dashboard streams refused at the limit (refused) or closed because the reader stopped reading (slow).',
      label: 'reason',
      read: () => ({ refused: streams().refused, slow: streams().slow }),
    },
  ];
}

function wireLevels(w: () => WireStats, streams: () => { open: number }): Level[] {
  return [
    { subsystem: 'dns', name: 'tcp_connections', help: 'Open DNS TCP connections.', read: () => w().tcpConnections },
    { subsystem: 'dns', name: 'tcp_connections_paused', help: 'TCP connections not being read now because their unsent replies passed max_unsent.', read: () => w().tcpPaused },
    { subsystem: 'dns', name: 'inflight_queries', help: 'Queries being handled by a chain now.', read: () => w().inFlight },
    { subsystem: 'http', name: 'dashboard_streams', help: 'Dashboard live streams open now (at most 16 per listener).', read: () => streams().open },
  ];
}

const processMetrics = new WeakSet<Registry>();

/** prom-client's default metrics (process_*, nodejs_*), unprefixed as CoreDNS exports go_* and process_*. */
function enableProcessMetrics(registry: Registry): void {
  if (processMetrics.has(registry)) return;
  processMetrics.add(registry);
  if (registry.getSingleMetric('process_cpu_seconds_total') !== undefined) return;
  collectDefaultMetrics({ register: registry });
}

function packageVersion(): string {
  for (const p of [path.resolve(__dirname, '..', '..', '..', 'package.json'), path.resolve(__dirname, '..', '..', 'package.json')]) {
    try {
      const pkg = JSON.parse(fs.readFileSync(p, 'utf8')) as { name?: string; version?: string };
      if (pkg.name === 'codexdns' && pkg.version) return pkg.version;
    } catch {
      // next
    }
  }
  return 'unknown';
}
