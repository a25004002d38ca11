/**
 * `breaker`: a circuit breaker per discovery method, so a method whose infrastructure is down (the router's
 * resolver timing out, a lease file gone) stops costing a timeout per client. See README.md.
 */
import { SyncBailHook } from 'tapable';
import { OptionError } from '../../config/errors';
import { Duration, Type, type Static } from '../../config/types';
import { definePlugin } from '../../core/plugin';
import type { MethodName } from '../discovery/hooks';
import { createDiscoveryBreakers, type BreakerSnapshot, type DiscoveryBreakers } from './breakers';
import type { BreakerHooks } from './hooks';
import { registerBreakerMetrics } from './metrics';

export { createDiscoveryBreakers, DiscoveryBreakers, CIRCUIT_OPEN, type BreakerSnapshot, type DiscoveryBreakerOptions } from './breakers';
export { STATE_VALUE } from './metrics';
export type { BreakerHooks } from './hooks';

export const options = Type.Object({
  discovery: Type.Object(
    {
      failures: Type.Integer({ minimum: 1, maximum: 1000, default: 5, description: 'Consecutive failures of a method that open its breaker' }),
      reset: Duration(30_000, 'How long an open breaker waits before letting one trial through'),
    },
    { default: {}, description: 'One breaker per discovery method' },
  ),
});

export type BreakerOptions = Static<typeof options>;

/** The stage of the `beforeDiscover` tap: asked before every other guard, so a denied job spends no token. */
export const BREAKER_STAGE = -100;

export const breaker = definePlugin({
  name: 'breaker',
  description: 'Circuit breakers for the discovery methods: closed, open after N failures, half-open after `reset`',
  options,
  requires: ['discovery'],
  declare(): BreakerHooks {
    return { states: new SyncBailHook<[], Partial<Record<MethodName, BreakerSnapshot>>>([]) };
  },
  setup(api, o) {
    if (o.discovery.reset <= 0) throw new OptionError('discovery.reset', 'must be longer than 0');
    const set: DiscoveryBreakers = api.retain('discovery', () => createDiscoveryBreakers({ failures: o.discovery.failures, resetMs: o.discovery.reset }));
    api.own.states.tap('breaker', () => set.snapshot());
    // `requires` makes a block without discovery a configuration error, so it is here.
    const d = api.hooksOf('discovery')!;
    const metrics = registerBreakerMetrics(api.metrics, () => set);
    const log = api.log;
    // Retained across reloads: point the listeners at this chain's logger and metrics.
    set.onChange = (method, from, to, failures) => {
      metrics.transition(method, to);
      const fields = { method, from, to, consecutive_failures: failures, ...(to === 'open' ? { retry_in_ms: o.discovery.reset } : {}) };
      if (to === 'open') log.warn(`breaker ${method}: ${from} → open`, fields);
      else log.info(`breaker ${method}: ${from} → ${to}`, fields);
    };
    set.onReject = (method) => metrics.reject(method);
    d.beforeDiscover.tap({ name: 'breaker', stage: BREAKER_STAGE }, (req) => set.beforeDiscover(req));
    d.attemptDenied.tap('breaker', (req) => set.attemptDenied(req));
    d.discovered.tap('breaker', (outcome) => set.discovered(outcome));
    d.report.tap('breaker', (r) => {
      r.guards.breaker = set.snapshot();
    });
  },
});

export default breaker;
