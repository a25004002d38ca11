/**
 * `codexdns_breaker_*`: each method breaker's state (a gauge read when scraped), its transitions and the jobs
 * in which it skipped its method (counters, incremented when that happens — never per query).
 */
import type { Counter } from 'prom-client';
import type { BreakerState } from '../../core/primitives/circuitBreaker';
import type { MetricsFactory } from '../../core/metricsRegistry';
import type { MethodName } from '../discovery/hooks';
import type { BreakerSnapshot, DiscoveryBreakers } from './breakers';

const SUBSYSTEM = 'breaker';

/** 0 closed, 1 open, 2 half-open (the metrics plugin's dashboard reads the same numbers). */
export const STATE_VALUE: Readonly<Record<BreakerState, number>> = { closed: 0, open: 1, 'half-open': 2 };

export interface BreakerMetrics {
  transition(method: MethodName, to: BreakerState): void;
  reject(method: MethodName): void;
}

export function registerBreakerMetrics(factory: MetricsFactory, current: () => DiscoveryBreakers): BreakerMetrics {
  const perMethod = (read: (s: BreakerSnapshot) => number) => () =>
    Object.entries(current().snapshot()).flatMap(([method, s]) => (s ? [{ labels: { guard: 'discovery', method }, value: read(s) }] : []));
  factory.mirrorGauge({
    subsystem: SUBSYSTEM,
    name: 'state',
    help: 'Discovery method breaker state: 0 closed, 1 open, 2 half-open',
    labelNames: ['guard', 'method'] as const,
    levels: perMethod((s) => STATE_VALUE[s.state]),
  });
  factory.mirrorGauge({
    subsystem: SUBSYSTEM,
    name: 'consecutive_failures',
    help: 'Consecutive failures counted by a discovery method breaker',
    labelNames: ['guard', 'method'] as const,
    levels: perMethod((s) => s.consecutiveFailures),
  });
  const transitions = factory.counter({ subsystem: SUBSYSTEM, name: 'transitions_total', help: 'Breaker state changes, by method and new state', labelNames: ['guard', 'method', 'to'] as const });
  const rejected = factory.counter({ subsystem: SUBSYSTEM, name: 'rejected_total', help: 'Discovery jobs in which a method was skipped because its breaker was open', labelNames: ['guard', 'method'] as const });
  const children = new Map<string, Counter.Internal>();
  const child = (key: string, make: () => Counter.Internal): Counter.Internal => {
    let c = children.get(key);
    if (c === undefined) children.set(key, (c = make()));
    return c;
  };
  return {
    transition: (method, to) => child(`t|${method}|${to}`, () => transitions.labels('discovery', method, to)).inc(),
    reject: (method) => child(`r|${method}`, () => rejected.labels('discovery', method)).inc(),
  };
}
