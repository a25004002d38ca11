/**
 * What the metrics plugin publishes for other plugins (`api.hooksOf('metrics')`): JSON endpoints of their own on
 * the metrics listener (same address, same token and Host rules as the rest of the API), and fields of their own
 * on each client object the API returns. Taps are collected when the chain starts, so a plugin may tap them from
 * `setup` wherever it stands in the list.
 */
import type { SyncHook, SyncWaterfallHook } from 'tapable';

export type HttpRouteMethod = 'GET' | 'POST' | 'DELETE';

/** One request to a plugin's route, already authorised. */
export interface HttpRouteRequest {
  readonly method: HttpRouteMethod;
  /** The path as requested (decoded parameters are in `params`). */
  readonly path: string;
  /** Values of the route's `:name` segments, URL-decoded. */
  readonly params: Readonly<Record<string, string>>;
  readonly query: URLSearchParams;
  /** The parsed JSON body of a POST or DELETE (`undefined` when it had none). */
  readonly body: unknown;
  /** Address of the HTTP client. */
  readonly remoteAddress: string | undefined;
}

export interface HttpRoute {
  readonly method: HttpRouteMethod;
  /**
   * Starts with `/api/`; a segment written `:name` matches any one segment (`/api/filter/groups/:group/pause`).
   * A plugin route is tried before the built-in ones, so it can also extend a built-in path's family.
   */
  readonly path: string;
  /**
   * Returns the JSON body (status 200). Throw an error with a numeric `status` (see `plugins/pkg/httpError.ts`)
   * for another status; any other error is a 500 that is logged, not shown.
   */
  handler(req: HttpRouteRequest): unknown | Promise<unknown>;
}

/** Handed to `routes` taps. */
export interface HttpRouteTable {
  add(route: HttpRoute): void;
}

/** A client as the API returns it (`/api/clients`, `/api/clients/{ip}`); plugins may add fields. */
export type ApiClient = Record<string, unknown> & { readonly ip: string };

export interface MetricsHooks {
  /**
   * Tap it to add endpoints: `hooksOf('metrics')?.routes.tap('filter', (t) => t.add({ method: 'GET', path:
   * '/api/filter', handler }))`. Every route of every plugin is behind the token when one is set; POST and DELETE
   * also need `Content-Type: application/json` and a same-site `Origin` (a page elsewhere cannot send them).
   */
  readonly routes: SyncHook<[HttpRouteTable]>;
  /** Every client object the API returns passes through it, synchronously: add fields, never do I/O here. */
  readonly apiClient: SyncWaterfallHook<[ApiClient]>;
}

declare module '../../core/plugin' {
  interface PluginHookRegistry {
    metrics: MetricsHooks;
  }
}
