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
  readonly inFlight: number;
}

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
  readonly maxConcurrentRejects: Counter<string>;
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
    this.healthcheckFailures = factory.counter({ name: 'healthcheck_failures_total', help: 'Health probes of a down upstream that got no answer.', labelNames: ['to'] });
    this.healthcheckBroken = factory.counter({ name: 'healthcheck_broken_total', help: 'Queries that found every upstream down (answered SERVFAIL at once, or sent as a recovery trial).' });
    this.maxConcurrentRejects = factory.counter({ name: 'max_concurrent_rejects_total', help: 'Queries refused because max_concurrent queries were already in flight.' });
    this.ignoredReplies = factory.counter({ name: 'ignored_replies_total', help: 'Upstream messages ignored because their source, ID or question did not match a query we sent (forgery or stray).', labelNames: ['reason'] });
    this.merged = factory.counter({ name: 'merged_total', help: 'Queries that joined an identical question already in flight instead of asking the upstream again.' });
    this.truncatedRetries = factory.counter({ name: 'truncated_retries_total', help: 'Truncated UDP answers retried over TCP.', labelNames: ['to'] });
    this.localAnswers = factory.counter({ name: 'local_answers_total', help: 'Private reverse-zone and home.arpa queries answered locally (no `private` upstream set).' });
    this.upstreamUp = factory.gauge({ name: 'upstream_up', help: '1 when the upstream is considered healthy, 0 when it is marked down.', labelNames: ['to'] });
    this.inFlight = factory.gauge({
      name: 'inflight_queries',
      help: 'Client queries waiting on an upstream answer (bounded by max_concurrent).',
      labelNames: ['server'],
      collect(this: Gauge<'server'>) {
        this.reset();
        for (const s of inFlightSources) this.set({ server: s.block }, s.inFlight);
      },
    });
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
  private readonly byRcode: (HistogramChild | undefined)[] = [];

  constructor(private readonly metrics: ForwardMetrics, private readonly to: string) {
    this.requests = metrics.requests.labels(to);
    this.healthcheckFailures = metrics.healthcheckFailures.labels(to);
    this.truncated = metrics.truncatedRetries.labels(to);
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
