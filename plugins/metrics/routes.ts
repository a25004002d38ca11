/**
 * Routes that other plugins add through the `routes` hook, matched segment by segment. Collected from a block's
 * chain when it attaches to the listener, so a reload brings the new chain's handlers.
 */
import type { HttpRoute, HttpRouteMethod, HttpRouteTable, MetricsHooks } from './hooks';

interface CompiledRoute {
  readonly route: HttpRoute;
  readonly segments: readonly string[];
}

export interface RouteMatch {
  readonly route: HttpRoute;
  readonly params: Record<string, string>;
}

const METHODS: readonly HttpRouteMethod[] = ['GET', 'POST', 'DELETE'];

export class PluginRoutes {
  private readonly list: CompiledRoute[] = [];

  /**
   * Calls the `routes` taps. A malformed or repeated route is left out and reported through `warn` (naming the
   * method and path): one plugin's mistake must not take the dashboard, or the DNS server, down.
   */
  static collect(hooks: MetricsHooks, warn: (message: string) => void): PluginRoutes {
    const routes = new PluginRoutes();
    const table: HttpRouteTable = {
      add: (r) => {
        try {
          routes.add(r);
        } catch (err) {
          warn((err as Error).message);
        }
      },
    };
    hooks.routes.call(table);
    return routes;
  }

  add(route: HttpRoute): void {
    if (!METHODS.includes(route.method)) throw new Error(`metrics route ${route.path}: method must be one of ${METHODS.join(', ')}`);
    if (!route.path.startsWith('/api/') || route.path.includes('?')) throw new Error(`metrics route ${route.path}: a path starts with /api/ and has no query`);
    const segments = route.path.split('/').slice(1);
    if (this.list.some((c) => c.route.method === route.method && c.segments.join('/') === segments.join('/'))) {
      throw new Error(`metrics route ${route.method} ${route.path} is added twice; the first one is kept`);
    }
    this.list.push({ route, segments });
  }

  get size(): number {
    return this.list.length;
  }

  /** The route for a method and path, or the methods the path has (for a 405), or null. */
  match(method: string, pathname: string): RouteMatch | { allow: HttpRouteMethod[] } | null {
    const parts = pathname.split('/').slice(1);
    const allow: HttpRouteMethod[] = [];
    for (const c of this.list) {
      const params = matchSegments(c.segments, parts);
      if (params === null) continue;
      if (c.route.method === method || (method === 'HEAD' && c.route.method === 'GET')) return { route: c.route, params };
      allow.push(c.route.method);
    }
    return allow.length > 0 ? { allow } : null;
  }
}

function matchSegments(pattern: readonly string[], parts: readonly string[]): Record<string, string> | null {
  if (pattern.length !== parts.length) return null;
  const params: Record<string, string> = {};
  for (let i = 0; i < pattern.length; i++) {
    const p = pattern[i];
    if (p.startsWith(':')) {
      if (parts[i] === '') return null;
      try {
        params[p.slice(1)] = decodeURIComponent(parts[i]);
      } catch {
        return null;
      }
    } else if (p !== parts[i]) return null;
  }
  return params;
}
