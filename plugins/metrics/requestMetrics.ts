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
} from './collectors';

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
    requests: fastCounter(registry, 'dns', 'requests_total', 'Queries handled by the chain, by server block, zone, transport, address family (1 = IPv4, 2 = IPv6) and query type.', [
      'server',
      'zone',
      'proto',
      'family',
      'type',
    ]),
    responses: fastCounter(registry, 'dns', 'responses_total', 'Responses written, by server block, zone, RCODE and the plugin that answered.', ['server', 'zone', 'rcode', 'plugin']),
    duration: fastHistogram(registry, 'dns', 'request_duration_seconds', 'Time from receiving a query to writing its response, by server block, zone and query type.', ['server', 'zone', 'type'], TIME_BUCKETS),
    requestSize: fastHistogram(registry, 'dns', 'request_size_bytes', 'Size of the queries received, by server block, zone and transport.', ['server', 'zone', 'proto'], SIZE_BUCKETS),
    responseSize: fastHistogram(registry, 'dns', 'response_size_bytes', "Size of the chain's responses, by server block, zone and transport.", ['server', 'zone', 'proto'], SIZE_BUCKETS),
    pluginDuration: fastHistogram(
      registry,
      'plugin',
      'duration_seconds',
      "Time spent in each plugin's tap, by server block, plugin and hook (query: includes what the plugin awaited through ctx.next()).",
      ['server', 'plugin', 'hook'],
      TAP_BUCKETS,
    ),
  };
}

/** One block's recorder: `onServed` is the `served` tap. */
export class RequestRecorder {
  private readonly zoneIndex = new Map<string, number>();
  private readonly zoneLabels: string[];
  private readonly pluginIndex = new Map<string, number>();
  private readonly pluginLabels: string[] = [];
  // Dense arrays, allocated once at their full (small) size: an index is computed per query, never a key.
  private readonly req: (CounterChild | undefined)[];
  private readonly res: (CounterChild | undefined)[];
  private readonly dur: (HistogramChild | undefined)[];
  private readonly reqSize: (HistogramChild | undefined)[];
  private readonly resSize: (HistogramChild | undefined)[];

  constructor(private readonly m: CoreMetrics, readonly server: string, zones: readonly string[], plugins: readonly string[]) {
    this.zoneLabels = zones.length > 0 ? zones.map(zoneLabel) : ['.'];
    const nz = this.zoneLabels.length;
    const slots = <T>(n: number): (T | undefined)[] => new Array<T | undefined>(n).fill(undefined);
    this.req = slots(nz * 4 * N_TYPES);
    this.res = slots(nz * N_RCODES * MAX_PLUGINS);
    this.dur = slots(nz * N_TYPES);
    this.reqSize = slots(nz * 2);
    this.resSize = slots(nz * 2);
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

  readonly onServed = (ctx: QueryContext, res: DnsResponse): void => {
    const zi = this.zoneLabels.length === 1 ? 0 : (this.zoneIndex.get(ctx.zone) ?? 0);
    const client = ctx.client;
    const tcp = client.transport === 'tcp' ? 1 : 0;
    const fam = client.family === 6 ? 1 : 0;
    const ts = TYPE_SLOT[ctx.query.qtype];

    const rk = ((zi * 2 + tcp) * 2 + fam) * N_TYPES + ts;
    let rc = this.req[rk];
    if (rc === undefined) {
      rc = this.m.requests.child([this.server, this.zoneLabels[zi], tcp ? 'tcp' : 'udp', fam ? '2' : '1', TYPE_NAMES[ts]]);
      this.req[rk] = rc;
    }
    rc.value++;

    const dk = zi * N_TYPES + ts;
    let dc = this.dur[dk];
    if (dc === undefined) {
      dc = this.m.duration.child([this.server, this.zoneLabels[zi], TYPE_NAMES[ts]]);
      this.dur[dk] = dc;
    }
    dc.observe((performance.now() - ctx.startedAt) / 1000);

    const sk = zi * 2 + tcp;
    let qs = this.reqSize[sk];
    if (qs === undefined) {
      qs = this.m.requestSize.child([this.server, this.zoneLabels[zi], tcp ? 'tcp' : 'udp']);
      this.reqSize[sk] = qs;
    }
    qs.observe(ctx.raw.length);

    if (res.dropped) return;
    const wire = res.wire;
    const rcode = wire.length > 3 ? wire[3] & 0x0f : 2;
    const pi = this.pluginIndex.get(res.plugin) ?? this.plugin(res.plugin);
    const ok = (zi * N_RCODES + rcode) * MAX_PLUGINS + pi;
    let oc = this.res[ok];
    if (oc === undefined) {
      oc = this.m.responses.child([this.server, this.zoneLabels[zi], RCODE_LABELS[rcode], this.pluginLabels[pi]]);
      this.res[ok] = oc;
    }
    oc.value++;
    let as = this.resSize[sk];
    if (as === undefined) {
      as = this.m.responseSize.child([this.server, this.zoneLabels[zi], tcp ? 'tcp' : 'udp']);
      this.resSize[sk] = as;
    }
    as.observe(wire.length);
  };

  /** Points each tap's timing slot at its histogram child: once per chain, at startup. */
  bindTapTimings(timings: readonly TapTiming[]): void {
    for (const slot of timings) {
      slot.observe = this.m.pluginDuration.child([this.server, slot.plugin, slot.hook]).observe;
    }
  }
}
