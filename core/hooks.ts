import { AsyncSeriesBailHook, AsyncSeriesHook, AsyncSeriesWaterfallHook, SyncHook } from 'tapable';
import type { QueryContext } from './context';
import type { DnsResponse } from './response';

/** Why a chain is being replaced or stopped. */
export interface LifecycleInfo {
  readonly reason: 'startup' | 'reload' | 'shutdown';
}

/**
 * The hooks every chain has, declared once and frozen (as webpack's Compiler does).
 * - query: tapped in chain order; the first tap that returns a response ends the walk. The chain compiles its
 *   taps into one handler per position at each (re)load (queryWalk.ts) rather than calling this hook.
 * - response: every plugin sees the final response before it is written, and may replace it (not called while
 *   untapped).
 * - served: after the write; observers only, synchronous and O(1) — never do I/O here.
 */
export interface ServerHooks {
  readonly query: AsyncSeriesBailHook<[QueryContext], DnsResponse | undefined>;
  readonly response: AsyncSeriesWaterfallHook<[DnsResponse, QueryContext]>;
  readonly served: SyncHook<[QueryContext, DnsResponse]>;
  readonly startup: AsyncSeriesHook<[LifecycleInfo]>;
  readonly shutdown: AsyncSeriesHook<[LifecycleInfo]>;
  /** Fired on the new chain after a reload swapped it in. */
  readonly reload: AsyncSeriesHook<[LifecycleInfo]>;
}

export function createServerHooks(): ServerHooks {
  return Object.freeze({
    query: new AsyncSeriesBailHook<[QueryContext], DnsResponse | undefined>(['ctx']),
    response: new AsyncSeriesWaterfallHook<[DnsResponse, QueryContext]>(['response', 'ctx']),
    served: new SyncHook<[QueryContext, DnsResponse]>(['ctx', 'response']),
    startup: new AsyncSeriesHook<[LifecycleInfo]>(['info']),
    shutdown: new AsyncSeriesHook<[LifecycleInfo]>(['info']),
    reload: new AsyncSeriesHook<[LifecycleInfo]>(['info']),
  });
}
