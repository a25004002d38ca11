/**
 * forward's Prometheus metrics, named like CoreDNS's `coredns_forward_*` so a CoreDNS board ports by prefix.
 * Label children are bound once per upstream (and per RCODE on first use), never looked up per query.
 */
import type { Counter, Gauge, Histogram } from 'prom-client';
import type { MetricsFactory } from '../../core/metricsRegistry';
import { RCODE_NAMES } from '../../core/wire/constants';

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

// One gauge serves every block and every chain generation: the live forwarders register here.
const inFlightSources = new Set<InFlightSource>();

export function registerInFlight(src: InFlightSource): () => void {
  inFlightSources.add(src);
  return () => inFlightSources.delete(src);
}

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
  private readonly ignoredChildren = new Map<string, CounterChild>();

  constructor(factory: MetricsFactory) {
    this.requests = factory.counter({ name: 'requests_total', help: 'Queries sent to each upstream (every try: UDP, TCP retry, failover).', labelNames: ['to'] });
    this.duration = factory.histogram({
      name: 'request_duration_seconds',
      help: 'Time from sending a try to an upstream to its accepted answer, by upstream and answer RCODE.',
      labelNames: ['to', 'rcode'],
      buckets: exponentialBuckets(0.00025, 2, 16),
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
    this.inFlight = factory.gauge({
      name: 'inflight_queries',
      help: 'Distinct questions waiting on an upstream answer (bounded by max_concurrent; merged copies are in merged_waiting_queries).',
      labelNames: ['server'],
      collect(this: Gauge<'server'>) {
        this.reset();
        for (const s of inFlightSources) this.set({ server: s.block }, s.inFlight);
      },
    });
    this.mergedWaiting = factory.gauge({
      name: 'merged_waiting_queries',
      help: 'Client queries waiting on an identical question already in flight (bounded by max_concurrent, apart from inflight_queries).',
      labelNames: ['server'],
      collect(this: Gauge<'server'>) {
        this.reset();
        for (const s of inFlightSources) this.set({ server: s.block }, s.merging);
      },
    });
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

  constructor(private readonly metrics: ForwardMetrics, private readonly to: string) {
    this.requests = metrics.requests.labels(to);
    this.healthcheckFailures = metrics.healthcheckFailures.labels(to);
    this.truncated = metrics.truncatedRetries.labels(to);
    this.timeouts = metrics.timeouts.labels(to);
    this.tcpFailures = metrics.tcpFailures.labels(to);
  }

  observe(rcode: number, seconds: number): void {
    let child = this.byRcode[rcode];
    if (child === undefined) {
      child = this.metrics.duration.labels(this.to, RCODE_NAMES[rcode] ?? String(rcode));
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
