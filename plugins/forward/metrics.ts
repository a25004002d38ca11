/**
 * forward's Prometheus metrics, named like CoreDNS's `coredns_forward_*` so a CoreDNS board ports by prefix.
 * Label children are bound once per upstream (and per RCODE on first use), never looked up per query; the two
 * counted on every try (requests, durations) also skip prom-client's per-call label hashing (`SeriesCounter`,
 * `SeriesHistogram`).
 */
import type { Counter, Gauge, Histogram } from 'prom-client';
import type { MetricsFactory, MirroredLevel } from '../../core/metricsRegistry';
import { RCODE_NAMES } from '../../core/wire/constants';
import type { UdpPoolSink } from '../pkg/udpPool';

/** prom-client's bound children, as far as we use them. */
export interface CounterChild { inc(value?: number): void }
export interface HistogramChild { observe(value: number): void }

/** Anything whose in-flight count the gauge reports, by server block. */
export interface InFlightSource {
  readonly block: string;
  /** Distinct questions in flight. */
  readonly inFlight: number;
  /** Client queries merged into one of them. */
  readonly merging: number;
}

/** Why a query was refused by forward's bounds (a metric label). */
export type RejectReasonLabel = 'max_concurrent' | 'merged' | 'client_share';


/** A UDP socket pool as its gauges see it. */
export interface PoolSource {
  readonly sockets: number;
  readonly inFlight: number;
  readonly capacity: number;
}

/**
 * What the server's forward gauges read: one gauge serves every block and every chain generation, so the live
 * forwarders and upstream pools register here (one instance per server, through `api.shared`).
 */
export class GaugeSources {
  readonly inFlight = new Set<InFlightSource>();
  /** The live pools by upstream label (several forward instances may share a label: their figures add up). */
  readonly pools = new Map<PoolSource, string>();

  registerInFlight(src: InFlightSource): () => void {
    this.inFlight.add(src);
    return () => this.inFlight.delete(src);
  }

  registerPool(to: string, pool: PoolSource): () => void {
    this.pools.set(pool, to);
    return () => this.pools.delete(pool);
  }

  sumPools(read: (p: PoolSource) => number): MirroredLevel<'to'>[] {
    const by = new Map<string, number>();
    for (const [p, to] of this.pools) by.set(to, (by.get(to) ?? 0) + read(p));
    return [...by].map(([to, value]) => ({ labels: { to }, value }));
  }
}

/**
 * One series in prom-client's table as Counter and Histogram keep it (`hashMap`, keyed by a hash of the labels).
 * Not prom-client's public API: the fast paths below check the shape at every use and fall back to the plain
 * child (`labels(...)`) when it differs, so a prom-client that changes it is slower, not wrong.
 */
interface Series {
  labels: Record<string, string | number>;
  value?: number;
  sum?: number;
  count?: number;
  bucketValues?: Record<string, number>;
}
type SeriesTable = { hashMap?: Record<string, Series> };

/**
 * A bound child of prom-client ≤ 15 still validates and hashes its label object on every call (≈ 0.4 µs per
 * histogram observe: 2–3% of a miss). These find their series in the metric's table once, remember its key, and
 * then add to it directly while the table still holds that very series under that key (a reset, a remove or a
 * re-registration makes them go through the child once more and look again).
 */
abstract class SeriesChild {
  protected key = '';
  protected series: Series | null = null;

  constructor(private readonly metric: SeriesTable, private readonly labelValues: Record<string, string>) {}

  /** The series if the table still holds it under its key, else null. */
  protected current(): Series | null {
    const s = this.series;
    if (s === null) return null;
    const map = this.metric.hashMap;
    return map !== undefined && map[this.key] === s ? s : null;
  }

  /** After a call through the child (which created the series if it was missing): finds it in the table. */
  protected bind(valid: (s: Series) => boolean): void {
    this.series = null;
    const map = this.metric.hashMap;
    if (typeof map !== 'object' || map === null) return;
    const names = Object.keys(this.labelValues);
    for (const key of Object.keys(map)) {
      const s = map[key];
      if (s === null || typeof s !== 'object' || typeof s.labels !== 'object') continue;
      if (names.every((n) => String(s.labels[n]) === this.labelValues[n]) && Object.keys(s.labels).length === names.length) {
        if (valid(s)) {
          this.key = key;
          this.series = s;
        }
        return;
      }
    }
  }
}

const isCounterSeries = (s: Series): boolean => typeof s.value === 'number';

export class SeriesCounter extends SeriesChild implements CounterChild {
  private readonly child: CounterChild;

  constructor(metric: Counter<string>, labelValues: Record<string, string>) {
    super(metric as unknown as SeriesTable, labelValues);
    this.child = metric.labels(labelValues);
  }

  inc(value = 1): void {
    const s = this.current();
    // prom-client's checks (a finite, non-negative amount) are kept by letting the child see anything else.
    if (s !== null && value >= 0 && value !== Infinity) {
      (s.value as number) += value;
      return;
    }
    this.child.inc(value);
    this.bind(isCounterSeries);
  }
}

export class SeriesHistogram extends SeriesChild implements HistogramChild {
  private readonly child: HistogramChild;
  /** The upper bounds as numbers and as the table's keys (prom-client keys its buckets by the bound's text). */
  private readonly bounds: readonly number[];
  private readonly boundKeys: readonly string[];

  constructor(metric: Histogram<string>, labelValues: Record<string, string>, buckets: readonly number[]) {
    super(metric as unknown as SeriesTable, labelValues);
    this.child = metric.labels(labelValues);
    this.bounds = buckets;
    this.boundKeys = buckets.map(String);
  }

  observe(value: number): void {
    const s = this.current();
    if (s !== null && Number.isFinite(value)) {
      const bounds = this.bounds;
      for (let i = 0; i < bounds.length; i++) {
        if (value <= bounds[i]) {
          (s.bucketValues as Record<string, number>)[this.boundKeys[i]] += 1;
          break;
        }
      }
      (s.sum as number) += value;
      (s.count as number) += 1;
      return;
    }
    this.child.observe(value);
    this.bind((x) => typeof x.sum === 'number' && typeof x.count === 'number' && typeof x.bucketValues === 'object' && this.boundKeys.every((k) => typeof x.bucketValues?.[k] === 'number'));
  }
}

/** The duration histogram's buckets: 0.25 ms to ≈ 8 s. */
export const DURATION_BUCKETS: readonly number[] = exponentialBuckets(0.00025, 2, 16);

export class ForwardMetrics {
  readonly requests: Counter<'to'>;
  readonly duration: Histogram<'to' | 'rcode'>;
  readonly healthcheckFailures: Counter<'to'>;
  readonly healthcheckBroken: Counter<string>;
  readonly maxConcurrentRejects: Counter<'reason'>;
  readonly notRecursed: Counter<string>;
  readonly noEdnsRetries: Counter<string>;
  readonly tcpSkipped: Counter<string>;
  readonly timeouts: Counter<'to'>;
  readonly tcpFailures: Counter<'to'>;
  readonly mergedWaiting: Gauge<'server'>;
  private readonly rejectChildren: Record<RejectReasonLabel, CounterChild>;
  readonly ignoredReplies: Counter<'reason'>;
  readonly merged: Counter<string>;
  readonly truncatedRetries: Counter<'to'>;
  readonly localAnswers: Counter<string>;
  readonly upstreamUp: Gauge<'to'>;
  readonly inFlight: Gauge<'server'>;
  readonly udpSockets: Gauge<'to'>;
  readonly udpTries: Gauge<'to'>;
  readonly udpTriesLimit: Gauge<'to'>;
  readonly udpSocketsOpened: Counter<'to'>;
  readonly udpSocketsRetired: Counter<'to'>;
  readonly udpIdCollisions: Counter<'to'>;
  readonly udpPoolExhausted: Counter<'to'>;
  private readonly ignoredChildren = new Map<string, CounterChild>();

  constructor(factory: MetricsFactory, readonly sources: GaugeSources = new GaugeSources()) {
    this.requests = factory.counter({ name: 'requests_total', help: 'Queries sent to each upstream (every try: UDP, TCP retry, failover).', labelNames: ['to'] });
    this.duration = factory.histogram({
      name: 'request_duration_seconds',
      help: 'Time from sending a try to an upstream to its accepted answer, by upstream and answer RCODE.',
      labelNames: ['to', 'rcode'],
      buckets: [...DURATION_BUCKETS],
    });
    this.healthcheckFailures = factory.counter({ name: 'healthcheck_failures_total', help: 'Health probes that got no answer (each counts toward max_fails).', labelNames: ['to'] });
    this.healthcheckBroken = factory.counter({ name: 'healthcheck_broken_total', help: 'Queries that found every upstream down (answered SERVFAIL at once, or sent as a recovery trial).' });
    this.maxConcurrentRejects = factory.counter({
      name: 'max_concurrent_rejects_total',
      help: 'Queries refused REFUSED by forward\'s bounds: max_concurrent distinct questions in flight, max_concurrent merged copies waiting, or the client\'s client_share.',
      labelNames: ['reason'],
    });
    this.rejectChildren = {
      max_concurrent: this.maxConcurrentRejects.labels('max_concurrent'),
      merged: this.maxConcurrentRejects.labels('merged'),
      client_share: this.maxConcurrentRejects.labels('client_share'),
    };
    for (const c of Object.values(this.rejectChildren)) c.inc(0);
    this.notRecursed = factory.counter({ name: 'not_recursed_total', help: 'RD=0 queries that reached forward (nothing above answered them): answered REFUSED, never forwarded.' });
    this.noEdnsRetries = factory.counter({ name: 'noedns_retries_total', help: 'Queries asked again without EDNS after an upstream answered FORMERR without OPT (RFC 6891 §7).' });
    this.tcpSkipped = factory.counter({ name: 'tcp_skipped_total', help: 'Truncated UDP answers not retried over TCP because TCP to that upstream failed within the last 30 s.' });
    this.timeouts = factory.counter({ name: 'timeouts_total', help: 'Tries that got no answer in `timeout` (not counted toward max_fails: each triggers a health probe).', labelNames: ['to'] });
    this.tcpFailures = factory.counter({ name: 'tcp_failures_total', help: 'TCP retries of a truncated answer that failed (TCP ability, tracked apart from UDP health).', labelNames: ['to'] });
    this.ignoredReplies = factory.counter({ name: 'ignored_replies_total', help: 'Upstream messages ignored because their source, ID or question did not match a query we sent (forgery or stray).', labelNames: ['reason'] });
    this.merged = factory.counter({ name: 'merged_total', help: 'Queries that joined an identical question already in flight instead of asking the upstream again.' });
    this.truncatedRetries = factory.counter({ name: 'truncated_retries_total', help: 'Truncated UDP answers retried over TCP.', labelNames: ['to'] });
    this.localAnswers = factory.counter({ name: 'local_answers_total', help: 'Private reverse-zone and home.arpa queries answered locally (no `private` upstream set).' });
    this.upstreamUp = factory.gauge({ name: 'upstream_up', help: '1 when the upstream is considered healthy, 0 when it is marked down.', labelNames: ['to'] });
    this.inFlight = factory.mirrorGauge({
      name: 'inflight_queries',
      help: 'Distinct questions waiting on an upstream answer (bounded by max_concurrent; merged copies are in merged_waiting_queries).',
      labelNames: ['server'],
      reset: true,
      levels: () => [...sources.inFlight].map((s) => ({ labels: { server: s.block }, value: s.inFlight })),
    }).metric;
    this.mergedWaiting = factory.mirrorGauge({
      name: 'merged_waiting_queries',
      help: 'Client queries waiting on an identical question already in flight (bounded by max_concurrent, apart from inflight_queries).',
      labelNames: ['server'],
      reset: true,
      levels: () => [...sources.inFlight].map((s) => ({ labels: { server: s.block }, value: s.merging })),
    }).metric;
    this.udpSockets = factory.mirrorGauge({
      name: 'udp_sockets',
      help: 'UDP sockets open to each upstream (its pool: in use, and retired ones still waiting for their last answer).',
      labelNames: ['to'],
      reset: true,
      levels: () => sources.sumPools((p) => p.sockets),
    }).metric;
    this.udpTries = factory.mirrorGauge({
      name: 'udp_inflight_tries',
      help: 'UDP tries waiting for an answer in each upstream\'s pool (its in-flight table; bounded by udp_inflight_tries_limit).',
      labelNames: ['to'],
      reset: true,
      levels: () => sources.sumPools((p) => p.inFlight),
    }).metric;
    this.udpTriesLimit = factory.mirrorGauge({
      name: 'udp_inflight_tries_limit',
      help: 'Size of each upstream pool\'s in-flight table: tries beyond it fail at once (udp_pool_exhausted_total).',
      labelNames: ['to'],
      reset: true,
      levels: () => sources.sumPools((p) => p.capacity),
    }).metric;
    this.udpSocketsOpened = factory.counter({ name: 'udp_sockets_opened_total', help: 'UDP sockets opened to each upstream (each bound by the kernel to a random port).', labelNames: ['to'] });
    this.udpSocketsRetired = factory.counter({ name: 'udp_sockets_retired_total', help: 'UDP sockets retired after their query or age limit, so source ports keep changing.', labelNames: ['to'] });
    this.udpIdCollisions = factory.counter({ name: 'udp_id_collisions_total', help: 'Random IDs drawn again because another try on the same socket had them.', labelNames: ['to'] });
    this.udpPoolExhausted = factory.counter({ name: 'udp_pool_exhausted_total', help: 'UDP tries not sent because the upstream pool\'s in-flight table (or its socket numbers) was full.', labelNames: ['to'] });
  }

  rejected(reason: RejectReasonLabel): void {
    this.rejectChildren[reason].inc();
  }

  ignored(reason: string): void {
    let child = this.ignoredChildren.get(reason);
    if (child === undefined) {
      child = this.ignoredReplies.labels(reason);
      this.ignoredChildren.set(reason, child);
    }
    child.inc();
  }
}

/** Per-upstream bound children. */
export class UpstreamMetrics {
  readonly requests: CounterChild;
  readonly healthcheckFailures: CounterChild;
  readonly truncated: CounterChild;
  readonly timeouts: CounterChild;
  readonly tcpFailures: CounterChild;
  private readonly byRcode: (HistogramChild | undefined)[] = [];
  /** What the upstream's UDP pool reports to. */
  readonly poolSink: UdpPoolSink;

  constructor(private readonly metrics: ForwardMetrics, private readonly to: string) {
    this.poolSink = {
      stray: (reason) => metrics.ignored(reason),
      opened: metrics.udpSocketsOpened.labels(to),
      retired: metrics.udpSocketsRetired.labels(to),
      idCollisions: metrics.udpIdCollisions.labels(to),
      exhausted: metrics.udpPoolExhausted.labels(to),
    };
    this.poolSink.exhausted.inc(0);
    this.requests = new SeriesCounter(metrics.requests, { to });
    this.healthcheckFailures = metrics.healthcheckFailures.labels(to);
    this.truncated = metrics.truncatedRetries.labels(to);
    this.timeouts = metrics.timeouts.labels(to);
    this.tcpFailures = metrics.tcpFailures.labels(to);
  }

  observe(rcode: number, seconds: number): void {
    let child = this.byRcode[rcode];
    if (child === undefined) {
      child = new SeriesHistogram(this.metrics.duration, { to: this.to, rcode: RCODE_NAMES[rcode] ?? String(rcode) }, DURATION_BUCKETS);
      this.byRcode[rcode] = child;
    }
    child.observe(seconds);
  }

  setUp(up: boolean): void {
    this.metrics.upstreamUp.set({ to: this.to }, up ? 1 : 0);
  }
}

function exponentialBuckets(start: number, factor: number, count: number): number[] {
  const out: number[] = [];
  let v = start;
  for (let i = 0; i < count; i++) {
    out.push(v);
    v *= factor;
  }
  return out;
}
