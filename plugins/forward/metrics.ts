/**
 * forward's Prometheus metrics, named like CoreDNS's `coredns_forward_*` so a CoreDNS board ports by prefix.
 * Label children are bound once per upstream (and per RCODE on first use), never looked up per query; the two
 * recorded on every try (requests, durations) are fast metrics (core/fastMetrics.ts), which skip prom-client's
 * per-call label hashing.
 */
import type { Counter, Gauge } from 'prom-client';
import { TIME_BUCKETS, type FastCounter, type FastHistogram } from '../../core/fastMetrics';
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

export class ForwardMetrics {
  readonly requests: FastCounter;
  readonly duration: FastHistogram;
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
    this.requests = factory.fastCounter({ name: 'requests_total', help: 'Queries sent to each upstream (every try: UDP, TCP retry, failover).', labelNames: ['to'] });
    this.duration = factory.fastHistogram({
      name: 'request_duration_seconds',
      help: 'Time from sending a try to an upstream to its accepted answer, by upstream and answer RCODE.',
      labelNames: ['to', 'rcode'],
      buckets: TIME_BUCKETS,
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
    this.requests = metrics.requests.child([to]);
    this.healthcheckFailures = metrics.healthcheckFailures.labels(to);
    this.truncated = metrics.truncatedRetries.labels(to);
    this.timeouts = metrics.timeouts.labels(to);
    this.tcpFailures = metrics.tcpFailures.labels(to);
  }

  observe(rcode: number, seconds: number): void {
    let child = this.byRcode[rcode];
    if (child === undefined) {
      child = this.metrics.duration.child([this.to, RCODE_NAMES[rcode] ?? String(rcode)]);
      this.byRcode[rcode] = child;
    }
    child.observe(seconds);
  }

  setUp(up: boolean): void {
    this.metrics.upstreamUp.set({ to: this.to }, up ? 1 : 0);
  }
}
