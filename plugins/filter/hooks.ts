/**
 * What the filter plugin publishes (`api.hooksOf('filter')`): every blocked answer, for a query log or a
 * per-device view, and the questions the dashboard and other plugins ask of it.
 */
import type { AsyncSeriesBailHook, SyncBailHook, SyncHook } from 'tapable';

/** A query answered as blocked: its name was listed (`query`) or a CNAME of its answer was (`cname`). */
export interface FilterBlockedEvent {
  readonly name: string;
  readonly client: string;
  readonly group: string;
  readonly stage: 'query' | 'cname';
  /** The listed CNAME target (stage `cname`). */
  readonly target?: string;
}

export interface FilterGroupStatus {
  readonly name: string;
  readonly queries: number;
  readonly blocked: number;
  readonly paused: string | null;
}

export interface FilterSourceStatus {
  readonly source: string;
  readonly kind: 'block' | 'allow';
  readonly names: number;
  readonly badLines: number;
  readonly unsupported: number;
  readonly lastRefresh: string | null;
  readonly ok: boolean;
  readonly error: string | null;
  readonly ageSeconds: number | null;
}

/** The body of `GET /api/filter`. */
export interface FilterStatus {
  readonly enabled: true;
  readonly paused: { readonly all: string | null; readonly groups: Readonly<Record<string, string>> };
  readonly queries: number;
  readonly blocked: number;
  readonly groups: readonly FilterGroupStatus[];
  readonly sources: readonly FilterSourceStatus[];
  readonly topBlocked: readonly { readonly name: string; readonly count: number }[];
}

export interface FilterWhyRequest {
  readonly name: string;
  /** The client address whose group decides; the default group when absent. */
  readonly client?: string;
}

/** The body of `GET /api/filter/why`. */
export interface FilterWhyResult {
  readonly name: string;
  readonly client: string | null;
  readonly group: string;
  readonly verdict: 'blocked' | 'allowed' | 'none';
  readonly matches: readonly { readonly source: string; readonly line: number; readonly rule: string; readonly kind: 'block' | 'allow' }[];
}

export interface FilterHooks {
  /** Called synchronously for each blocked answer; taps must be O(1) (count, enqueue), never I/O. */
  readonly blocked: SyncHook<[FilterBlockedEvent]>;
  /** `.call()` for the current status (filter taps it). */
  readonly status: SyncBailHook<[], FilterStatus>;
  /** `.promise(req)` to explain a name's verdict (filter taps it; reads the list copies, off the answer path). */
  readonly why: AsyncSeriesBailHook<[FilterWhyRequest], FilterWhyResult>;
}

declare module '../../core/plugin' {
  interface PluginHookRegistry {
    filter: FilterHooks;
  }
}
