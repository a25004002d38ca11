/**
 * The query log's JSON endpoints, added to the metrics listener through its `routes` hook (same token and
 * Host rules as the rest of the API). Every read is bounded: by a limit, by the hourly tables, or by the
 * store's scan budget.
 */
import { typeName } from '../../core/context';
import { HttpStatusError } from '../pkg/httpError';
import type { HttpRouteRequest, HttpRouteTable } from '../metrics/hooks';
import type { QueryLog } from './querylog';
import { FLAG_BLOCKED } from './ring';
import { flagsOf, type LogRow, type QueryFilter, type QuerylogStore, type StoredQuery, type TopEntry } from './store';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const types = require('dns-packet/types') as { toType(name: string): number };

const RCODES = ['NOERROR', 'FORMERR', 'SERVFAIL', 'NXDOMAIN', 'NOTIMP', 'REFUSED', 'YXDOMAIN', 'YXRRSET', 'NXRRSET', 'NOTAUTH', 'NOTZONE'];
const RANGES: Record<string, number> = { '1h': 3_600_000, '24h': 86_400_000, '7d': 7 * 86_400_000, '30d': 30 * 86_400_000 };
const MAX_PAGE = 500;

export function rcodeName(rcode: number): string {
  return rcode === -1 ? 'DROPPED' : RCODES[rcode] ?? String(rcode);
}

export interface QueryJson {
  id: number | null;
  time: string;
  client: string;
  name: string;
  type: string;
  rcode: string;
  answeredBy: string;
  upstream: string | null;
  durationMs: number;
  truncated: boolean;
  blocked: boolean;
  cached: boolean;
  /** Still in memory, not yet written (shown on the first page only). */
  pending?: boolean;
}

/** A stored row as the API shows it; `id` is null for a row still in the ring. */
function queryJson(q: Omit<StoredQuery, 'id'> & { id: number | null }): QueryJson {
  return {
    id: q.id,
    time: new Date(q.t).toISOString(),
    client: q.client,
    name: q.name,
    type: typeName(q.qtype),
    rcode: rcodeName(q.rcode),
    answeredBy: q.answeredBy,
    upstream: q.upstream,
    durationMs: q.durationUs / 1000,
    truncated: q.truncated,
    blocked: q.blocked,
    cached: q.cached,
  };
}

function pendingJson(r: LogRow): QueryJson {
  return { ...queryJson({ ...r, id: null, ...flagsOf(r.flags) }), pending: true };
}

function matches(r: LogRow, f: QueryFilter): boolean {
  if (f.client !== undefined && r.client !== f.client) return false;
  if (f.name !== undefined && f.name !== '' && !r.name.includes(f.name)) return false;
  if (f.qtype !== undefined && r.qtype !== f.qtype) return false;
  if (f.rcode !== undefined && r.rcode !== f.rcode) return false;
  if (f.answeredBy !== undefined && r.answeredBy !== f.answeredBy) return false;
  if (f.blocked === true && (r.flags & FLAG_BLOCKED) === 0) return false;
  if (f.from !== undefined && r.t < f.from) return false;
  if (f.to !== undefined && r.t > f.to) return false;
  return true;
}

function intParam(q: URLSearchParams, name: string, def: number, min: number, max: number): number {
  const raw = q.get(name);
  if (raw === null || raw === '') return def;
  if (!/^\d+$/.test(raw)) throw new HttpStatusError(400, `${name} must be a whole number`);
  const v = Number(raw);
  if (v < min || v > max) throw new HttpStatusError(400, `${name} must be from ${min} to ${max}`);
  return v;
}

function timeParam(q: URLSearchParams, name: string): number | undefined {
  const raw = q.get(name);
  if (raw === null || raw === '') return undefined;
  const v = /^\d+$/.test(raw) ? Number(raw) : Date.parse(raw);
  if (!Number.isFinite(v)) throw new HttpStatusError(400, `${name} must be an ISO time or epoch milliseconds`);
  return v;
}

function rangeParam(q: URLSearchParams, def = '24h'): { range: string; since: number } {
  const range = q.get('range') ?? def;
  const ms = RANGES[range];
  if (ms === undefined) throw new HttpStatusError(400, `range must be one of ${Object.keys(RANGES).join(', ')}`);
  return { range, since: Date.now() - ms };
}

export function parseFilter(q: URLSearchParams): QueryFilter {
  const f: QueryFilter = { limit: intParam(q, 'limit', 50, 1, MAX_PAGE) };
  const client = q.get('client');
  if (client) f.client = client.slice(0, 64);
  const name = q.get('name');
  if (name) f.name = name.trim().toLowerCase().replace(/\.$/, '').slice(0, 255);
  const qtype = q.get('qtype') ?? q.get('type');
  if (qtype) {
    const n = /^\d+$/.test(qtype) ? Number(qtype) : types.toType(qtype.toUpperCase());
    if (!(n > 0)) throw new HttpStatusError(400, `qtype ${qtype} is not a record type`);
    f.qtype = n;
  }
  const rcode = q.get('rcode');
  if (rcode) {
    const upper = rcode.toUpperCase();
    const n = /^-?\d+$/.test(rcode) ? Number(rcode) : upper === 'DROPPED' ? -1 : RCODES.indexOf(upper);
    if (n === -1 && upper !== 'DROPPED' && rcode !== '-1') throw new HttpStatusError(400, `rcode ${rcode} is not an RCODE (NOERROR, NXDOMAIN, SERVFAIL, REFUSED…)`);
    f.rcode = n;
  }
  const by = q.get('answered_by') ?? q.get('answeredBy');
  if (by) f.answeredBy = by.slice(0, 64);
  const blocked = q.get('blocked');
  if (blocked === '1' || blocked === 'true') f.blocked = true;
  f.from = timeParam(q, 'from');
  f.to = timeParam(q, 'to');
  const before = q.get('before') ?? q.get('cursor');
  if (before) {
    if (!/^\d+$/.test(before)) throw new HttpStatusError(400, 'cursor must be a whole number (the `cursor` of the previous page)');
    f.before = Number(before);
  }
  return f;
}

function topJson(t: TopEntry, keyName: string): Record<string, unknown> {
  return { [keyName]: t.key, queries: t.queries, blocked: t.blocked, cached: t.cached, failed: t.failed, avgMs: t.avgMs };
}

function startOfToday(): number {
  const d = new Date();
  d.setHours(0, 0, 0, 0);
  return d.getTime();
}

/** Adds the routes; `current()` is the query log of the running chain, `store()` its store (opened lazily). */
export function addRoutes(t: HttpRouteTable, current: () => QueryLog, store: () => Promise<QuerylogStore>): void {
  const withStore = async <T>(fn: (s: QuerylogStore) => Promise<T>): Promise<T> => {
    let s: QuerylogStore;
    try {
      s = await store();
    } catch (err) {
      throw new HttpStatusError(503, `storage unavailable: ${err instanceof Error ? err.message : String(err)}`);
    }
    try {
      return await fn(s);
    } catch (err) {
      throw new HttpStatusError(503, `storage unavailable: ${err instanceof Error ? err.message : String(err)}`);
    }
  };

  t.add({
    method: 'GET',
    path: '/api/queries',
    handler: (req: HttpRouteRequest) => {
      const f = parseFilter(req.query);
      return withStore(async (s) => {
        const out: QueryJson[] = [];
        // The first page starts with what is still in memory, so the live log does not lag by a flush interval.
        if (f.before === undefined) {
          for (const r of current().pendingEntries()) {
            if (out.length >= f.limit) break;
            if (matches(r, f)) out.push(pendingJson(r));
          }
        }
        if (out.length >= f.limit) return { queries: out, cursor: null, partial: false, more: true };
        const page = await s.queries({ ...f, limit: f.limit - out.length });
        for (const r of page.rows) out.push(queryJson(r));
        return { queries: out, cursor: page.cursor, partial: page.partial, more: page.cursor !== null };
      });
    },
  });

  t.add({
    method: 'GET',
    path: '/api/top/domains',
    handler: (req) => {
      const { range, since } = rangeParam(req.query);
      const limit = intParam(req.query, 'limit', 10, 1, 100);
      const blocked = req.query.get('blocked') === '1' || req.query.get('blocked') === 'true';
      return withStore(async (s) => ({ range, blocked, domains: (await s.top('d', since, limit, blocked ? 'blocked' : 'queries')).map((x) => topJson(x, 'name')) }));
    },
  });

  t.add({
    method: 'GET',
    path: '/api/top/clients',
    handler: (req) => {
      const { range, since } = rangeParam(req.query);
      const limit = intParam(req.query, 'limit', 10, 1, 100);
      return withStore(async (s) => ({ range, clients: (await s.top('c', since, limit)).map((x) => topJson(x, 'ip')) }));
    },
  });

  t.add({
    method: 'GET',
    path: '/api/querylog/summary',
    handler: (req) => {
      const { range, since } = rangeParam(req.query);
      const log = current();
      return withStore(async (s) => {
        const today = (await s.top('t', startOfToday(), 1))[0];
        const queries = today?.queries ?? 0;
        const series =
          range === '1h'
            ? log.minuteSeries()
            : await s.hourly(since);
        const rc: Record<string, number> = {};
        for (const r of await s.top('r', since, 20)) rc[rcodeName(Number(r.key))] = r.queries;
        const by: Record<string, { queries: number; avgMs: number | null }> = {};
        for (const a of await s.top('a', since, 50)) by[a.key] = { queries: a.queries, avgMs: a.avgMs };
        const inRange = (await s.top('t', since, 1))[0];
        return {
          range,
          today: {
            queries,
            blocked: today?.blocked ?? 0,
            cached: today?.cached ?? 0,
            failed: today?.failed ?? 0,
            blockedShare: queries > 0 ? (today?.blocked ?? 0) / queries : null,
            cacheShare: queries > 0 ? (today?.cached ?? 0) / queries : null,
            avgMs: today?.avgMs ?? null,
          },
          activeClients: await s.activeClients(Date.now() - 86_400_000),
          bucketSeconds: range === '1h' ? 60 : 3600,
          series,
          total: inRange ? { queries: inRange.queries, blocked: inRange.blocked, cached: inRange.cached, failed: inRange.failed } : { queries: 0, blocked: 0, cached: 0, failed: 0 },
          rcodes: rc,
          answeredBy: by,
          log: { ...log.stats, pending: log.pending, ring: log.opts.ring },
        };
      });
    },
  });

  t.add({
    method: 'GET',
    path: '/api/clients/:ip/activity',
    handler: (req) => {
      const ip = req.params.ip;
      if (ip === '' || ip.length > 64) throw new HttpStatusError(400, 'not a client address');
      const { range, since } = rangeParam(req.query);
      return withStore(async (s) => {
        const today = (await s.top('c', startOfToday(), 1, 'queries', ip))[0];
        const [series, topDomains, rcodes, recent, blocked] = await Promise.all([
          s.hourly(since, 'c', ip),
          s.clientDomains(ip, since, 15),
          s.clientRcodes(ip, since),
          s.queries({ client: ip, limit: 25 }),
          s.queries({ client: ip, blocked: true, limit: 25 }),
        ]);
        const rc: Record<string, number> = {};
        for (const [k, v] of Object.entries(rcodes)) rc[rcodeName(Number(k))] = v;
        return {
          ip,
          range,
          queriesToday: today?.queries ?? 0,
          blockedToday: today?.blocked ?? 0,
          series,
          topDomains: topDomains.map((x) => topJson(x, 'name')),
          rcodes: rc,
          recent: recent.rows.map(queryJson),
          blocked: blocked.rows.map(queryJson),
        };
      });
    },
  });
}
