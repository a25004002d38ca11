/**
 * The core request metrics, named and labelled as CoreDNS's `metrics` plugin names them (`coredns_dns_*` →
 * `codexdns_dns_*`), recorded from the `served` hook: O(1) per query, label children bound on first use and kept
 * in arrays indexed by a number computed from the query (zone index, transport, family, type slot, RCODE,
 * plugin index) — never a label lookup or a string built per query.
 */
import { performance } from 'node:perf_hooks';
import type { Registry } from 'prom-client';
import type { QueryContext } from '../../core/context';
import type { DnsResponse } from '../../core/response';
import type { TapTiming } from '../../core/timing';
import { RCODE_NAMES } from '../../core/wire/constants';
import {
  FastCounter,
  FastHistogram,
  SIZE_BUCKETS,
  TAP_BUCKETS,
  TIME_BUCKETS,
  fastCounter,
  fastHistogram,
  type CounterChild,
  type HistogramChild,
} from '../../core/fastMetrics';
import { METRIC_PREFIX } from '../../core/metricsRegistry';

/**
 * Query types that get their own `type` label value; every other type is `other` (CoreDNS's `monitorType` list,
 * plus SVCB). The type comes from the network: an unbounded label would let anyone create 65,536 series.
 */
export const MONITORED_TYPES: Readonly<Record<number, string>> = Object.freeze({
  1: 'A', 2: 'NS', 5: 'CNAME', 6: 'SOA', 12: 'PTR', 15: 'MX', 16: 'TXT', 28: 'AAAA', 33: 'SRV', 43: 'DS', 46: 'RRSIG',
  47: 'NSEC', 48: 'DNSKEY', 50: 'NSEC3', 64: 'SVCB', 65: 'HTTPS', 251: 'IXFR', 252: 'AXFR', 255: 'ANY',
});

const TYPE_NAMES: readonly string[] = ['other', ...Object.values(MONITORED_TYPES)];
const N_TYPES = TYPE_NAMES.length;
/** qtype → index into TYPE_NAMES (0 = other). */
const TYPE_SLOT = new Uint8Array(65536);
Object.keys(MONITORED_TYPES).forEach((t, i) => (TYPE_SLOT[Number(t)] = i + 1));

const N_RCODES = 16;
const RCODE_LABELS: readonly string[] = Array.from({ length: N_RCODES }, (_, i) => RCODE_NAMES[i] ?? String(i));
/** Distinct `plugin` label values kept per block; more (a misbehaving custom plugin) share `other`. */
const MAX_PLUGINS = 64;

/** The zone as CoreDNS writes it: `.` for the root, otherwise with the trailing dot. */
export function zoneLabel(zone: string): string {
  return zone === '' ? '.' : `${zone}.`;
}

/** The metrics themselves, one set per registry (per server process), shared by every block and reload. */
export interface CoreMetrics {
  readonly requests: FastCounter;
  readonly responses: FastCounter;
  readonly duration: FastHistogram;
  readonly requestSize: FastHistogram;
  readonly responseSize: FastHistogram;
  readonly pluginDuration: FastHistogram;
}

export function coreMetrics(registry: Registry): CoreMetrics {
  return {
    requests: fastCounter(registry, `${METRIC_PREFIX}dns_requests_total`, 'Queries handled by the chain, by server block, zone, transport, address family (1 = IPv4, 2 = IPv6) and query type.', [
      'server',
      'zone',
      'proto',
      'family',
      'type',
    ]),
    responses: fastCounter(registry, `${METRIC_PREFIX}dns_responses_total`, 'Responses written, by server block, zone, RCODE and the plugin that answered.', ['server', 'zone', 'rcode', 'plugin']),
    duration: fastHistogram(registry, `${METRIC_PREFIX}dns_request_duration_seconds`, 'Time from receiving a query to writing its response, by server block, zone and query type.', ['server', 'zone', 'type'], TIME_BUCKETS),
    requestSize: fastHistogram(registry, `${METRIC_PREFIX}dns_request_size_bytes`, 'Size of the queries received, by server block, zone and transport.', ['server', 'zone', 'proto'], SIZE_BUCKETS),
    responseSize: fastHistogram(registry, `${METRIC_PREFIX}dns_response_size_bytes`, "Size of the chain's responses, by server block, zone and transport.", ['server', 'zone', 'proto'], SIZE_BUCKETS),
    pluginDuration: fastHistogram(
      registry,
      `${METRIC_PREFIX}plugin_duration_seconds`,
      "Time spent in each plugin's tap, by server block, plugin and hook (query: includes what the plugin awaited through ctx.next()).",
      ['server', 'plugin', 'hook'],
      TAP_BUCKETS,
    ),
  };
}

/** What one kind of query (zone, transport, family, type) updates: bound once, then reached by one index. */
interface RequestSlot {
  readonly requests: CounterChild;
  readonly duration: HistogramChild;
  readonly size: HistogramChild;
}

/** What one kind of response (zone, transport, RCODE, plugin) updates. */
interface ResponseSlot {
  readonly responses: CounterChild;
  readonly size: HistogramChild;
}

/** One block's recorder: `onServed` is the `served` tap. */
export class RequestRecorder {
  private readonly zoneIndex = new Map<string, number>();
  private readonly zoneLabels: string[];
  private readonly pluginIndex = new Map<string, number>();
  private readonly pluginLabels: string[] = [];
  private lastPlugin = '';
  private lastPluginIndex = 0;
  // Dense arrays, allocated once at their full (small) size: an index is computed per query, never a key.
  private readonly req: (RequestSlot | undefined)[];
  private readonly res: (ResponseSlot | undefined)[];

  constructor(private readonly m: CoreMetrics, readonly server: string, zones: readonly string[], plugins: readonly string[]) {
    this.zoneLabels = zones.length > 0 ? zones.map(zoneLabel) : ['.'];
    const nz = this.zoneLabels.length;
    this.req = new Array<RequestSlot | undefined>(nz * 4 * N_TYPES).fill(undefined);
    this.res = new Array<ResponseSlot | undefined>(nz * 2 * N_RCODES * MAX_PLUGINS).fill(undefined);
    zones.forEach((z, i) => this.zoneIndex.set(z, i));
    this.plugin('');
    for (const p of plugins) this.plugin(p);
  }

  private plugin(name: string): number {
    let i = this.pluginIndex.get(name);
    if (i !== undefined) return i;
    if (this.pluginLabels.length >= MAX_PLUGINS) return this.plugin('other');
    i = this.pluginLabels.length;
    this.pluginLabels.push(name);
    this.pluginIndex.set(name, i);
    return i;
  }

  private requestSlot(key: number, zi: number, tcp: number, fam: number, ts: number): RequestSlot {
    const zone = this.zoneLabels[zi];
    const proto = tcp ? 'tcp' : 'udp';
    const slot: RequestSlot = {
      requests: this.m.requests.child([this.server, zone, proto, fam ? '2' : '1', TYPE_NAMES[ts]]),
      duration: this.m.duration.child([this.server, zone, TYPE_NAMES[ts]]),
      size: this.m.requestSize.child([this.server, zone, proto]),
    };
    this.req[key] = slot;
    return slot;
  }

  private responseSlot(key: number, zi: number, tcp: number, rcode: number, pi: number): ResponseSlot {
    const zone = this.zoneLabels[zi];
    const slot: ResponseSlot = {
      responses: this.m.responses.child([this.server, zone, RCODE_LABELS[rcode], this.pluginLabels[pi]]),
      size: this.m.responseSize.child([this.server, zone, tcp ? 'tcp' : 'udp']),
    };
    this.res[key] = slot;
    return slot;
  }

  readonly onServed = (ctx: QueryContext, res: DnsResponse): void => {
    const zi = this.zoneLabels.length === 1 ? 0 : (this.zoneIndex.get(ctx.zone) ?? 0);
    const client = ctx.client;
    const tcp = client.transport === 'tcp' ? 1 : 0;
    const ts = TYPE_SLOT[ctx.query.qtype];
    const rk = ((zi * 2 + tcp) * 2 + (client.family === 6 ? 1 : 0)) * N_TYPES + ts;
    const q = this.req[rk] ?? this.requestSlot(rk, zi, tcp, client.family === 6 ? 1 : 0, ts);
    q.requests.value++;
    q.duration.observe((performance.now() - ctx.startedAt) / 1000);
    q.size.observe(ctx.raw.length);

    if (res.dropped) return;
    const wire = res.wire;
    const rcode = wire.length > 3 ? wire[3] & 0x0f : 2;
    // Most responses in a row come from the same plugin (the cache, on a busy box): skip the map then.
    const name = res.plugin;
    let pi = this.lastPluginIndex;
    if (name !== this.lastPlugin) {
      pi = this.pluginIndex.get(name) ?? this.plugin(name);
      this.lastPlugin = name;
      this.lastPluginIndex = pi;
    }
    const ok = ((zi * 2 + tcp) * N_RCODES + rcode) * MAX_PLUGINS + pi;
    const a = this.res[ok] ?? this.responseSlot(ok, zi, tcp, rcode, pi);
    a.responses.value++;
    a.size.observe(wire.length);
  };

  /** Points each tap's timing slot at its histogram child: once per chain, at startup. */
  bindTapTimings(timings: readonly TapTiming[]): void {
    for (const slot of timings) {
      slot.observe = this.m.pluginDuration.child([this.server, slot.plugin, slot.hook]).observe;
    }
  }
}
