/**
 * The JSON API on the metrics listener (the dashboard's contract): `GET /api/filter`, `POST /api/filter/pause`
 * `{ minutes, group? }`, `POST /api/filter/resume` `{ group? }`, `GET /api/filter/why?name=&client=`. POST routes
 * get the metrics plugin's token, JSON-only and same-origin checks.
 */
import { HttpStatusError } from '../pkg/httpError';
import type { MetricsHooks } from '../metrics/hooks';
import { Verdict } from './filterEngine';
import type { FilterState } from './filterState';
import type { FilterStatus, FilterWhyRequest, FilterWhyResult } from './hooks';

/** Longest pause accepted: a week (a forgotten pause must end by itself). */
export const MAX_PAUSE_MINUTES = 7 * 24 * 60;
const TOP = 20;

function iso(msFromNow: number): string | null {
  return msFromNow > 0 ? new Date(Date.now() + msFromNow).toISOString() : null;
}

export function filterStatus(state: FilterState): FilterStatus {
  const groups: Record<string, string> = {};
  let queries = 0;
  let blocked = 0;
  const list = state.groupNames.map((name, i) => {
    const paused = iso(state.pausedGroupMs(name));
    if (paused !== null) groups[name] = paused;
    queries += state.counters[i].queries;
    blocked += state.counters[i].blocked;
    return { name, queries: state.counters[i].queries, blocked: state.counters[i].blocked, paused };
  });
  const now = Date.now();
  return {
    enabled: true,
    paused: { all: iso(state.pausedAllMs()), groups },
    queries,
    blocked,
    groups: list,
    sources: state.sources.map((s) => {
      const st = s.status();
      return {
        source: st.source,
        kind: st.kind,
        names: st.names,
        badLines: st.badLines,
        unsupported: st.unsupported,
        lastRefresh: st.lastRefresh === null ? null : new Date(st.lastRefresh).toISOString(),
        ok: st.ok,
        error: st.error,
        ageSeconds: st.lastRefresh === null ? null : Math.max(0, Math.round((now - st.lastRefresh) / 1000)),
      };
    }),
    topBlocked: state.top.top(TOP),
  };
}

export function normalizeName(name: string): string {
  return name.trim().toLowerCase().replace(/\.$/, '');
}

export async function filterWhy(state: FilterState, req: FilterWhyRequest): Promise<FilterWhyResult> {
  const name = normalizeName(req.name);
  const client = req.client !== undefined && req.client !== '' ? req.client : null;
  const g = client === null ? state.groups.defaultIndex : state.groups.groupOf(client);
  const r = await state.engine.why(g, name);
  return {
    name,
    client,
    group: state.groupNames[g],
    verdict: r.verdict === Verdict.Blocked ? 'blocked' : r.verdict === Verdict.Allowed ? 'allowed' : 'none',
    matches: r.matches,
  };
}

function groupOf(state: FilterState, body: Record<string, unknown>): number | undefined {
  if (body.group === undefined || body.group === null) return undefined;
  if (typeof body.group !== 'string') throw new HttpStatusError(400, 'group must be a string');
  const g = state.indexOfGroup(body.group);
  if (g === -1) throw new HttpStatusError(404, `no group ${body.group} (groups: ${state.groupNames.join(', ')})`);
  return g;
}

export function addFilterRoutes(m: MetricsHooks, state: FilterState): void {
  m.routes.tap('filter', (t) => {
    t.add({ method: 'GET', path: '/api/filter', handler: () => filterStatus(state) });
    t.add({
      method: 'POST',
      path: '/api/filter/pause',
      handler: (req) => {
        const body = (req.body ?? {}) as Record<string, unknown>;
        const minutes = body.minutes;
        if (typeof minutes !== 'number' || !(minutes > 0) || minutes > MAX_PAUSE_MINUTES) throw new HttpStatusError(400, `minutes must be a number above 0 and at most ${MAX_PAUSE_MINUTES}`);
        state.pause(minutes, groupOf(state, body));
        return filterStatus(state);
      },
    });
    t.add({
      method: 'POST',
      path: '/api/filter/resume',
      handler: (req) => {
        state.resume(groupOf(state, (req.body ?? {}) as Record<string, unknown>));
        return filterStatus(state);
      },
    });
    t.add({
      method: 'GET',
      path: '/api/filter/why',
      handler: (req) => {
        const name = req.query.get('name');
        if (name === null || name.trim() === '') throw new HttpStatusError(400, 'name is required (?name=ads.example.com)');
        return filterWhy(state, { name, client: req.query.get('client') ?? undefined });
      },
    });
  });
}
