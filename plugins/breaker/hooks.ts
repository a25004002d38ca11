/** What `breaker` publishes (`api.hooksOf('breaker')`): each discovery method's breaker state, for the dashboard. */
import type { SyncBailHook } from 'tapable';
import type { MethodName } from '../discovery/hooks';
import type { BreakerSnapshot } from './breakers';

export type { BreakerSnapshot } from './breakers';

export interface BreakerHooks {
  /** Call it (`.call()`) for each method breaker's state. */
  readonly states: SyncBailHook<[], Partial<Record<MethodName, BreakerSnapshot>>>;
}

declare module '../../core/plugin' {
  interface PluginHookRegistry {
    breaker: BreakerHooks;
  }
}
