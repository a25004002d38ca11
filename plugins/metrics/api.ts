/**
 * The JSON API: what each endpoint answers, built from the attached blocks' sources. Nothing here runs on the
 * answer path; storage reads go to the read connection and are bounded by a timeout.
 */
import type { Registry } from 'prom-client';
import type { PluginApi } from '../../core/plugin';
import type { ClientRecord, ClientSort, ClienttrackHooks, QueueMetrics } from '../clienttrack/hooks';
import { HttpStatusError as HttpError } from '../pkg/httpError';
import type { ApiClient, MetricsHooks } from './hooks';
import type { RequestRecorder } from './requestMetrics';
import type { PluginRoutes } from './routes';
import { registrySum, registryValues, type BlockSources, type BreakerStateName, type DiscoverySnapshot } from './sources';

/** One block's metrics plugin instance, as the HTTP side sees it (the newest chain's, after a reload). */
export interface BlockView {
  readonly block: string;
  readonly api: PluginApi;
  readonly sources: BlockSources;
  readonly recorder: RequestRecorder;
  /** The hooks this block's metrics instance published (other plugins' routes and client fields). */
  readonly hooks: MetricsHooks;
  /** This chain's plugin routes, collected at its startup. */
  routes: PluginRoutes | null;
}

export { HttpStatusError as HttpError } from '../pkg/httpError';

const STORAGE_TIMEOUT_MS = 3000;

function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const t = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} timed out after ${ms} ms`)), ms);
    timer.unref();
  });
  return Promise.race([p, t]).finally(() => clearTimeout(timer));
}

function firstWith<T>(views: readonly BlockView[], get: (v: BlockView) => T | null): { view: BlockView; value: T } | null {
  for (const view of views) {
    const value = get(view);
    if (value !== null) return { view, value };
  }
  return null;
}

// ------------------------------------------------------------------------------------------------- queue

export interface QueueJson {
  enabled: boolean;
  server?: string;
  priority?: boolean;
  high?: { depth: number; capacity: number; enqueued: number; dropped: number };
  low?: { depth: number; capacity: number; enqueued: number; dropped: number };
  submitted?: number;
  processed?: number;
  failed?: number;
  dropped?: number;
  queued?: number;
  inFlight?: number;
  enqueues?: number;
  processingRate?: number;
  rateWindowSeconds?: number;
  workers?: { total: number; busy: number };
  batch?: { size: number; last: number; avg: number; batches: number; failed: number; rowsWritten: number };
  writeLatencyMs?: { last: number; avg: number; max: number };
  writer?: QueueMetrics['writer'];
  clients?: QueueMetrics['clients'];
}

export function queueJson(views: readonly BlockView[]): QueueJson {
  const found = firstWith(views, (v) => v.sources.queue());
  if (found === null) return { enabled: false };
  const m = found.value;
  return {
    enabled: true,
    server: found.view.block,
    priority: m.priority,
    high: { depth: m.depth.high, capacity: m.capacity.high, enqueued: m.enqueuedHigh, dropped: m.droppedHigh },
    low: { depth: m.depth.low, capacity: m.capacity.low, enqueued: m.enqueuedLow, dropped: m.droppedLow },
    submitted: m.submitted,
    processed: m.processed,
    failed: m.failed,
    dropped: m.dropped,
    queued: m.queued,
    inFlight: m.inFlight,
    enqueues: m.enqueuedHigh + m.enqueuedLow,
    processingRate: m.ratePerSecond,
    rateWindowSeconds: m.rateWindowSeconds,
    workers: { total: m.workers, busy: m.busy },
    batch: {
      size: m.writer.batch,
      last: m.writer.lastBatchSize,
      avg: m.writer.avgBatchSize,
      batches: m.writer.batches,
      failed: m.writer.failedBatches,
      rowsWritten: m.writer.rowsWritten,
    },
    writeLatencyMs: { last: m.writer.lastWriteMs, avg: m.writer.avgWriteMs, max: m.writer.maxWriteMs },
    writer: m.writer,
    clients: m.clients,
  };
}

// --------------------------------------------------------------------------------------------- discovery

export type DiscoveryJson = { enabled: false; breaker?: Record<string, BreakerStateName> } | ({ enabled: true; server: string } & DiscoverySnapshot);

export function discoveryJson(views: readonly BlockView[]): DiscoveryJson {
  const found = firstWith(views, (v) => v.sources.discovery());
  if (found === null) {
    const b = firstWith(views, (v) => v.sources.breakers());
    return b === null ? { enabled: false } : { enabled: false, breaker: b.value };
  }
  return { enabled: true, server: found.view.block, ...found.value };
}

// ------------------------------------------------------------------------------------------- goroutines

export interface TaskCategory {
  /** Running now. */
  running: number | null;
  /** The bound (workers, max_concurrent, …), when there is one. */
  capacity: number | null;
  enabled: boolean;
}

export interface GoroutinesJson {
  total: number;
  categories: {
    tracking_workers: TaskCategory;
    discovery_workers: TaskCategory;
    forwards_in_flight: TaskCategory;
    tcp_connections: TaskCategory;
    queries_in_flight: TaskCategory;
  };
}

export async function goroutinesJson(views: readonly BlockView[], registry: Registry): Promise<GoroutinesJson> {
  const q = firstWith(views, (v) => v.sources.queue());
  const d = firstWith(views, (v) => v.sources.discovery());
  const forwardCap = views.reduce<number | null>((acc, v) => {
    const c = v.api.hooksOf('forward')?.maxConcurrent.call();
    return typeof c === 'number' ? (acc ?? 0) + c : acc;
  }, null);
  const forwards = await registrySum(registry, 'codexdns_forward_inflight_queries');
  const wire = views[0]?.api.server.wireStats();
  const categories: GoroutinesJson['categories'] = {
    tracking_workers: { running: q ? q.value.busy : null, capacity: q ? q.value.workers : null, enabled: q !== null },
    discovery_workers: { running: d ? d.value.workers.busy : null, capacity: d ? d.value.workers.total : null, enabled: d !== null },
    forwards_in_flight: { running: forwardCap === null ? null : (forwards ?? 0), capacity: forwardCap, enabled: forwardCap !== null },
    tcp_connections: { running: wire ? wire.tcpConnections : null, capacity: null, enabled: wire !== undefined },
    queries_in_flight: { running: wire ? wire.inFlight : null, capacity: null, enabled: wire !== undefined },
  };
  let total = 0;
  for (const c of Object.values(categories)) total += c.running ?? 0;
  return { total, categories };
}

// ---------------------------------------------------------------------------------------------- clients

const SORTS: readonly ClientSort[] = ['ip', 'hostname', 'last_seen', 'query_count', 'first_seen'];
/** The largest page `/api/clients` serves (clienttrack's `listClients` caps at the same). */
const MAX_PAGE = 1000;

/** A client as the API gives it: clienttrack's record with its times as ISO strings. */
export type ClientJson = ApiClient &
  Omit<ClientRecord, 'firstSeen' | 'lastSeen' | 'discoveredAt'> & {
    firstSeen: string;
    lastSeen: string;
    discoveredAt: string | null;
  };

export function clientJson(r: ClientRecord): ClientJson {
  return {
    ...r,
    firstSeen: new Date(r.firstSeen).toISOString(),
    lastSeen: new Date(r.lastSeen).toISOString(),
    discoveredAt: r.discoveredAt === null ? null : new Date(r.discoveredAt).toISOString(),
  };
}

/** Hands a client object to every block's `apiClient` taps (their own fields: a DNS name, a filter group). */
export function decorateClient(views: readonly BlockView[], c: ClientJson): ClientJson {
  let out: ApiClient = c;
  for (const v of views) if (v.hooks.apiClient.isUsed()) out = v.hooks.apiClient.call(out);
  return out as ClientJson;
}

/** The clients of the first block with client tracking, read through clienttrack's hooks (the table is its own). */
export class ClientReader {
  private hooks_(views: readonly BlockView[]): ClienttrackHooks | null {
    const v = views.find((x) => x.sources.hasClienttrack);
    return v?.api.hooksOf('clienttrack') ?? null;
  }

  async list(views: readonly BlockView[], query: URLSearchParams): Promise<unknown> {
    const offset = intParam(query, 'offset', 0, 0, Number.MAX_SAFE_INTEGER);
    const limit = intParam(query, 'limit', 50, 1, MAX_PAGE);
    const sort = (query.get('sort') ?? 'last_seen') as ClientSort;
    if (!SORTS.includes(sort)) throw new HttpError(400, `sort must be one of ${SORTS.join(', ')}`);
    const order = query.get('order') ?? 'desc';
    if (order !== 'asc' && order !== 'desc') throw new HttpError(400, 'order must be asc or desc');
    const search = (query.get('search') ?? query.get('q') ?? '').trim().slice(0, 100);
    const track = this.hooks_(views);
    if (track === null) return { enabled: false, total: 0, offset, limit, sort, order, search, clients: [] };
    try {
      const r = await withTimeout(track.listClients.promise({ offset, limit, sort, order, search }), STORAGE_TIMEOUT_MS, 'listing clients');
      return { enabled: true, total: r.total, offset, limit, sort, order, search, clients: r.rows.map((row) => decorateClient(views, clientJson(row))) };
    } catch (err) {
      throw new HttpError(503, `storage unavailable: ${errorText(err)}`);
    }
  }

  async one(views: readonly BlockView[], ip: string): Promise<unknown> {
    if (ip === '' || ip.length > 64) throw new HttpError(400, 'not a client address');
    const track = this.hooks_(views);
    if (track === null) throw new HttpError(404, 'client tracking is not enabled');
    let row: ClientRecord | null;
    try {
      row = await withTimeout(track.getClient.promise(ip), STORAGE_TIMEOUT_MS, 'reading the client');
    } catch (err) {
      throw new HttpError(503, `storage unavailable: ${errorText(err)}`);
    }
    if (row === null || row === undefined) throw new HttpError(404, `no client ${ip}`);
    return decorateClient(views, clientJson(row));
  }

  /** The most active clients, for the dashboard. */
  async top(views: readonly BlockView[], n: number): Promise<{ enabled: boolean; total: number | null; clients: ClientJson[]; error?: string }> {
    try {
      const track = this.hooks_(views);
      if (track === null) return { enabled: false, total: null, clients: [] };
      const r = await withTimeout(track.listClients.promise({ limit: n, sort: 'query_count', order: 'desc' }), STORAGE_TIMEOUT_MS, 'listing clients');
      return { enabled: true, total: r.total, clients: r.rows.map((row) => decorateClient(views, clientJson(row))) };
    } catch (err) {
      return { enabled: true, total: null, clients: [], error: errorText(err) };
    }
  }
}

function intParam(q: URLSearchParams, name: string, def: number, min: number, max: number): number {
  const raw = q.get(name);
  if (raw === null || raw === '') return def;
  if (!/^\d+$/.test(raw)) throw new HttpError(400, `${name} must be a whole number`);
  const v = Number(raw);
  if (v < min || v > max) throw new HttpError(400, `${name} must be from ${min} to ${max}`);
  return v;
}

export function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

// ----------------------------------------------------------------------------------------- health, ready

export type PartState = 'up' | 'down' | 'degraded' | 'disabled' | 'unused';

export interface HealthJson {
  status: 'ok' | 'degraded' | 'down';
  ready: boolean;
  uptimeSeconds: number;
  parts: Record<string, { state: PartState } & Record<string, unknown>>;
}

const startedAt = Date.now();

export async function healthJson(views: readonly BlockView[], registry: Registry): Promise<HealthJson> {
  const first = views[0];
  const ready = first ? first.api.server.ready() : false;
  const parts: HealthJson['parts'] = {};
  const wire = first?.api.server.wireStats();
  parts.dns = { state: ready ? 'up' : 'down', blocks: views.map((v) => v.block), inFlight: wire?.inFlight ?? 0, tcpConnections: wire?.tcpConnections ?? 0 };

  const tracked = views.find((v) => v.sources.hasClienttrack);
  if (tracked === undefined) {
    parts.storage = { state: 'unused' };
  } else {
    let h: { ok: boolean; error?: string; latencyMs: number };
    try {
      h = await withTimeout(tracked.api.storage.health(), STORAGE_TIMEOUT_MS, 'storage health check');
    } catch (err) {
      h = { ok: false, error: errorText(err), latencyMs: STORAGE_TIMEOUT_MS };
    }
    parts.storage = { state: h.ok ? 'up' : 'down', latencyMs: Math.round(h.latencyMs * 100) / 100, ...(h.error ? { error: h.error } : {}) };
  }

  const q = firstWith(views, (v) => v.sources.queue());
  if (q === null) parts.tracking = { state: 'disabled' };
  else {
    const m = q.value;
    const w = m.writer;
    // A write older than the flush interval (a lock held elsewhere) is degraded before it has failed.
    const state: PartState = !w.storageOk || w.stalled === true ? 'degraded' : m.queued >= m.capacity.total ? 'degraded' : 'up';
    parts.tracking = {
      state,
      queued: m.queued,
      dropped: m.dropped,
      storageOk: w.storageOk,
      lastError: w.lastError,
      ...(w.lastErrorKind ? { lastErrorKind: w.lastErrorKind } : {}),
      pendingRows: w.pending,
      writeAgeMs: Math.round(w.writeAgeMs ?? 0),
      ...(w.stalled === true ? { stalled: true } : {}),
      writeDropped: { updates: w.droppedUpdates, queries: w.droppedQueries, rejected: w.rejectedRows ?? 0, abandoned: w.abandonedRows ?? 0 },
      indexLoaded: m.clients.indexLoaded,
    };
  }

  const d = firstWith(views, (v) => v.sources.discovery());
  const breakers = d?.value.breaker ?? firstWith(views, (v) => v.sources.breakers())?.value ?? null;
  if (d === null) parts.discovery = { state: 'disabled' };
  else {
    const open = Object.values(d.value.breaker).some((s) => s !== 'closed');
    parts.discovery = { state: open ? 'degraded' : 'up', total: d.value.total, failed: d.value.failed };
  }
  if (breakers === null) parts.breaker = { state: 'disabled' };
  else {
    const open = Object.entries(breakers).filter(([, s]) => s !== 'closed').map(([k]) => k);
    parts.breaker = { state: open.length > 0 ? 'degraded' : 'up', methods: breakers, open };
  }

  const ups = await registryValues(registry, 'codexdns_forward_upstream_up');
  if (ups === null || !views.some((v) => v.api.hooksOf('forward') !== undefined)) parts.forward = { state: 'disabled' };
  else {
    const up = ups.filter((u) => u.value === 1).length;
    parts.forward = { state: ups.length === 0 || up === ups.length ? 'up' : up === 0 ? 'down' : 'degraded', upstreams: ups.length, up };
  }

  const states = Object.values(parts).map((p) => p.state);
  const status: HealthJson['status'] = !ready ? 'down' : states.some((s) => s === 'down' || s === 'degraded') ? 'degraded' : 'ok';
  return { status, ready, uptimeSeconds: Math.round((Date.now() - startedAt) / 1000), parts };
}

// ------------------------------------------------------------------------------------------- upstreams

export interface UpstreamJson {
  to: string;
  up: boolean | null;
  /** Tries sent (UDP, TCP retries, failovers). */
  tries: number;
  /** Answers accepted, by RCODE. */
  answers: number;
  rcodes: Record<string, number>;
  /** Tries that got no accepted answer (timeouts, errors). */
  failedTries: number;
  /** Health probes of this upstream while it was down that got no answer. */
  healthcheckFailures: number;
  avgMs: number | null;
}

interface RawSeries {
  labels: Record<string, unknown>;
  value: number;
  metricName?: string;
}

async function seriesOf(registry: Registry, name: string): Promise<RawSeries[]> {
  const metric = registry.getSingleMetric(name) as unknown as { get(): Promise<{ values: RawSeries[] }> } | undefined;
  if (metric === undefined) return [];
  try {
    return (await metric.get()).values;
  } catch {
    return [];
  }
}

/** Each forward upstream's health, tries, answers by RCODE, failures and mean latency, read from forward's metrics. */
export async function upstreamsJson(views: readonly BlockView[], registry: Registry): Promise<{ enabled: boolean; upstreams: UpstreamJson[] }> {
  if (!views.some((v) => v.api.hooksOf('forward') !== undefined)) return { enabled: false, upstreams: [] };
  const byTo = new Map<string, UpstreamJson & { sumS: number }>();
  const get = (to: string): UpstreamJson & { sumS: number } => {
    let u = byTo.get(to);
    if (u === undefined) {
      u = { to, up: null, tries: 0, answers: 0, rcodes: {}, failedTries: 0, healthcheckFailures: 0, avgMs: null, sumS: 0 };
      byTo.set(to, u);
    }
    return u;
  };
  for (const s of await seriesOf(registry, 'codexdns_forward_upstream_up')) get(String(s.labels.to)).up = s.value === 1;
  for (const s of await seriesOf(registry, 'codexdns_forward_requests_total')) get(String(s.labels.to)).tries += s.value;
  for (const s of await seriesOf(registry, 'codexdns_forward_healthcheck_failures_total')) get(String(s.labels.to)).healthcheckFailures += s.value;
  for (const s of await seriesOf(registry, 'codexdns_forward_request_duration_seconds')) {
    if (s.labels.to === undefined) continue;
    const u = get(String(s.labels.to));
    if (s.metricName?.endsWith('_count')) {
      u.answers += s.value;
      const rc = String(s.labels.rcode ?? '?');
      u.rcodes[rc] = (u.rcodes[rc] ?? 0) + s.value;
    } else if (s.metricName?.endsWith('_sum')) u.sumS += s.value;
  }
  const upstreams = [...byTo.values()].map(({ sumS, ...u }) => ({ ...u, failedTries: Math.max(0, u.tries - u.answers), avgMs: u.answers > 0 ? Math.round((sumS / u.answers) * 1e6) / 1000 : null }));
  upstreams.sort((a, b) => a.to.localeCompare(b.to));
  return { enabled: true, upstreams };
}
