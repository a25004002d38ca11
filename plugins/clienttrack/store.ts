// The `clients` table, clienttrack's own (its migrations are in ./migrations): batched upserts from the tracker,
// the start-up index load, retention, the paged list and the discovery scans that clienttrack serves to other
// plugins through its hooks (hooks.ts).
//
// Writes: one transaction per batch (the statement's own when it is one); each batch is one (or a few) multi-row
//   INSERT … SELECT … FROM <the rows as json> ON CONFLICT (ip) DO UPDATE SET …
// statements, so a client seen again adds to its counter instead of failing or being replaced:
//   query_count   = clients.query_count + excluded.query_count
//   last_seen     = MAX / GREATEST(clients.last_seen, excluded.last_seen)
//   first_seen    = MIN / LEAST(…)
//   hostname, mac, vendor, discovery_method, discovered_at = COALESCE(excluded.x, clients.x)
//                   (an update that does not carry the field — sent as NULL — keeps the stored value)
//   discovering, last_error = excluded.x, but only in statements whose updates carry the field
//                   (discovering is NOT NULL, and last_error: null must clear it, so "absent" cannot be
//                   encoded as NULL for them).
// Updates are grouped by which optional fields they carry (statement "shape"): a plain activity update
// (the vast majority) writes only ip, first_seen, last_seen and query_count. At most 8 shapes, usually 1.
//
// The rows of a statement travel as ONE json text parameter (JSON.stringify: every value escaped, nothing from
// the network reaches the SQL text), unpacked by the database — json_each on SQLite, json_array_elements on
// PostgreSQL — so each shape has one short constant statement. Measured against the forms it replaced:
// SQLite's 500-tuple `VALUES` with integers as literals and strings bound (node-sqlite3 converts each bound
// parameter through N-API on the main thread, ≈ 0.6 µs each, and SQLite parsed a new 30 KB statement per
// batch) cost 1.8 ms of event loop per 500-row batch; PostgreSQL's `VALUES ($1,…),(…)` was parsed and planned
// per batch and ran 2.5–3x slower. The SQL is written by hand (not knex's insert().onConflict().merge()) also
// because knex builds SQLite multi-row inserts as `SELECT … UNION ALL SELECT …`, which SQLite caps at 500 terms.

import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Knex } from 'knex';

import {
  DEFAULT_BUSY_RETRY,
  errorMessage,
  withBusyRetry,
  type RetryPolicy,
  type StorageLogger,
} from '../../storage/errors';
import type { StorageHandle } from '../../core/plugin';
import type { Storage } from '../../storage/open';
import type { ClientRecord, ClientListQuery, ClientListResult, ClientSort } from './hooks';

export type { ClientSort } from './hooks';

/** The migration set (and `knex_migrations_clienttrack` table) that owns `clients`. */
export const CLIENTS_MIGRATION_SET = 'clienttrack';

/** The table's migrations: next to this file in the sources, beside `dist/` once compiled (shipped in "files"). */
export function clientsMigrationsDir(): string {
  const candidates = [path.join(__dirname, 'migrations'), path.resolve(__dirname, '..', '..', '..', 'plugins', 'clienttrack', 'migrations')];
  for (const c of candidates) if (fs.existsSync(c)) return c;
  throw new Error(`the clienttrack migrations are missing (looked in ${candidates.join(', ')})`);
}

/**
 * Registers the `clients` migrations with a storage handle opened outside the server (the CLI, tests,
 * benchmarks): `storage.migrate.latest()` then creates (or adopts) the table. The server does the same through
 * `api.storage.migrate`.
 */
export function registerClientsMigrations(storage: Pick<Storage, 'migrate'>): void {
  storage.migrate.addPlugin(CLIENTS_MIGRATION_SET, clientsMigrationsDir());
}

/** One client's activity since the last batch (the caller has already merged repeats in memory). */
export interface ClientUpdate {
  ip: string;
  /** Epoch ms of the latest query in this batch. */
  lastSeen: number;
  /** Epoch ms of the earliest query in this batch (the stored value keeps the minimum). */
  firstSeen: number;
  /** Queries to ADD to the stored counter. */
  queries: number;
  /** Absent or null: keep the stored value. */
  hostname?: string | null;
  mac?: string | null;
  vendor?: string | null;
  /** Discovery method that found the hostname (dhcp, arp, rdns, netbios, mdns). */
  method?: string | null;
  /** Absent: keep (a new row gets false). */
  discovering?: boolean;
  discoveredAt?: number | null;
  /** Absent: keep; null: clear; a string: set. */
  lastError?: string | null;
}

/** A stored client, as clienttrack hands it out (see hooks.ts). */
export type ClientRow = ClientRecord;

export type ListOptions = ClientListQuery;

export type ListResult = ClientListResult;

export interface ClientStoreOptions {
  /** Retry policy for SQLITE_BUSY / SQLITE_LOCKED (and PostgreSQL deadlocks). Default 5 tries, 10 → 200 ms. */
  retry?: RetryPolicy;
  /** Upper bound on rows per INSERT statement. Default 1000. */
  maxRowsPerStatement?: number;
  log?: StorageLogger;
}

export const MAX_LIST_LIMIT = 1000;
const DEFAULT_LIST_LIMIT = 50;

// Column widths from migrations/000000 (PostgreSQL enforces varchar lengths; one long hostname must not
// fail a whole batch).
const MAX_IP = 64;
const MAX_HOSTNAME = 255;
const MAX_MAC = 32;
const MAX_VENDOR = 255;
const MAX_METHOD = 32;
const MAX_ERROR = 1000;

const SELECT_COLUMNS = [
  'ip',
  'hostname',
  'mac',
  'vendor',
  'discovery_method',
  'discovering',
  'first_seen',
  'last_seen',
  'query_count',
  'discovered_at',
  'last_error',
] as const;

const SHAPE_INFO = 1; // hostname, mac, vendor, discovery_method, discovered_at
const SHAPE_DISCOVERING = 2;
const SHAPE_LAST_ERROR = 4;

const SORT_COLUMNS: Record<ClientSort, string> = {
  ip: 'ip',
  hostname: 'hostname',
  last_seen: 'last_seen',
  query_count: 'query_count',
  first_seen: 'first_seen',
};

type Binding = string | number | boolean | null;

/** The part of knex's client that hands out pooled connections (knex types it loosely). */
interface PooledClient {
  acquireConnection(): Promise<unknown>;
  releaseConnection(connection: unknown): Promise<unknown>;
}

interface Normalized {
  ip: string;
  lastSeen: number;
  firstSeen: number;
  queries: number;
  hostname: string | null;
  mac: string | null;
  vendor: string | null;
  method: string | null;
  discoveredAt: number | null;
  discovering: boolean | undefined;
  /** undefined: absent. */
  lastError: string | null | undefined;
}

/**
 * Bound a text field to its column and make it storable everywhere: PostgreSQL text cannot hold NUL,
 * and lone UTF-16 surrogates are not valid UTF-8 (they can come from decoding binary names).
 */
function clip(v: string | null | undefined, max: number): string | null {
  if (v === undefined || v === null) return null;
  let s = String(v);
  if (s.length > max) s = s.slice(0, max);
  // eslint-disable-next-line no-control-regex
  return s.replace(/\u0000|[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g, (c) =>
    c === '\u0000' ? '' : '\ufffd',
  );
}

/** A non-negative safe integer: the only kind of value written into SQL text as a literal. */
function safeInt(v: unknown, field: string, ip: string): number {
  const n = typeof v === 'number' ? Math.floor(v) : NaN;
  if (!Number.isSafeInteger(n) || n < 0) {
    throw new TypeError(`storage: client ${ip}: ${field} must be a non-negative integer (got ${String(v)})`);
  }
  return n;
}

function normalize(u: ClientUpdate): Normalized {
  if (!u || typeof u.ip !== 'string' || u.ip === '' || u.ip.length > MAX_IP) {
    throw new TypeError(`storage: client update with an invalid ip: ${JSON.stringify(u?.ip)}`);
  }
  const queries = safeInt(u.queries, 'queries', u.ip);
  const lastSeen = safeInt(u.lastSeen, 'lastSeen', u.ip);
  const firstSeen = u.firstSeen === undefined ? lastSeen : safeInt(u.firstSeen, 'firstSeen', u.ip);
  return {
    ip: u.ip,
    lastSeen,
    firstSeen: Math.min(firstSeen, lastSeen),
    queries,
    hostname: clip(u.hostname, MAX_HOSTNAME),
    mac: clip(u.mac, MAX_MAC),
    vendor: clip(u.vendor, MAX_VENDOR),
    method: clip(u.method, MAX_METHOD),
    discoveredAt: u.discoveredAt == null ? null : safeInt(u.discoveredAt, 'discoveredAt', u.ip),
    discovering: u.discovering === undefined ? undefined : Boolean(u.discovering),
    lastError: u.lastError === undefined ? undefined : clip(u.lastError, MAX_ERROR),
  };
}

/** Merge `b` (later) into `a`: the same rules the SQL applies. */
function mergeInto(a: Normalized, b: Normalized): void {
  a.queries += b.queries;
  a.lastSeen = Math.max(a.lastSeen, b.lastSeen);
  a.firstSeen = Math.min(a.firstSeen, b.firstSeen);
  a.hostname = b.hostname ?? a.hostname;
  a.mac = b.mac ?? a.mac;
  a.vendor = b.vendor ?? a.vendor;
  a.method = b.method ?? a.method;
  a.discoveredAt = b.discoveredAt ?? a.discoveredAt;
  if (b.discovering !== undefined) a.discovering = b.discovering;
  if (b.lastError !== undefined) a.lastError = b.lastError;
}

function shapeOf(u: Normalized): number {
  const info = u.hostname !== null || u.mac !== null || u.vendor !== null || u.method !== null || u.discoveredAt !== null;
  return (
    (info ? SHAPE_INFO : 0) |
    (u.discovering !== undefined ? SHAPE_DISCOVERING : 0) |
    (u.lastError !== undefined ? SHAPE_LAST_ERROR : 0)
  );
}

function columnsFor(shape: number): string[] {
  const cols = ['ip', 'first_seen', 'last_seen', 'query_count'];
  if (shape & SHAPE_INFO) cols.push('hostname', 'mac', 'vendor', 'discovery_method', 'discovered_at');
  if (shape & SHAPE_DISCOVERING) cols.push('discovering');
  if (shape & SHAPE_LAST_ERROR) cols.push('last_error');
  return cols;
}

function escapeLike(s: string): string {
  return s.replace(/[\\%_]/g, (c) => `\\${c}`);
}

function toNumber(v: unknown): number {
  return typeof v === 'number' ? v : Number(v);
}

export function rowFromDb(r: Record<string, unknown>): ClientRow {
  const d = r.discovering;
  return {
    ip: String(r.ip),
    hostname: (r.hostname as string | null) ?? null,
    mac: (r.mac as string | null) ?? null,
    vendor: (r.vendor as string | null) ?? null,
    method: (r.discovery_method as string | null) ?? null,
    discovering: d === true || d === 1 || d === '1' || d === 't' || d === 'true',
    // PostgreSQL returns BIGINT as a string; epoch ms and counters stay far below 2^53.
    firstSeen: toNumber(r.first_seen),
    lastSeen: toNumber(r.last_seen),
    queryCount: toNumber(r.query_count),
    discoveredAt: r.discovered_at == null ? null : toNumber(r.discovered_at),
    lastError: (r.last_error as string | null) ?? null,
  };
}

export class ClientStore {
  readonly storage: StorageHandle;
  private readonly retry: RetryPolicy;
  private readonly log: StorageLogger;
  private readonly maxRows: number;
  private readonly conflictClause = new Map<number, string>();
  /** The upsert statement of each shape (they never change). */
  private readonly statement = new Map<number, string>();
  private readonly isPg: boolean;

  constructor(storage: StorageHandle, opts: ClientStoreOptions = {}) {
    this.storage = storage;
    // The default policy does not repeat a try that waited most (80 %) of busy_timeout: that one waited for a
    // lock, and five of them made a locked write take 5 x busy_timeout (25 s with the Corefile's 5 s) before the
    // writer could back off. A policy given explicitly is followed as given.
    this.retry = opts.retry ?? (storage.busyTimeoutMs ? { ...DEFAULT_BUSY_RETRY, noRetryAfterWaitMs: storage.busyTimeoutMs * 0.8 } : DEFAULT_BUSY_RETRY);
    this.log = opts.log ?? storage.log;
    this.maxRows = Math.max(1, Math.floor(opts.maxRowsPerStatement ?? 1000));
    this.isPg = storage.client === 'pg';
  }

  /**
   * Upsert a batch in one transaction. Repeats of one ip inside the batch are merged first (PostgreSQL
   * refuses to touch a row twice in one statement). Throws StorageBusyError after the bounded retries,
   * StorageUnavailableError when the database cannot be reached; in both cases nothing was written.
   */
  async writeBatch(updates: readonly ClientUpdate[]): Promise<void> {
    if (updates.length === 0) return;
    const merged = new Map<string, Normalized>();
    for (const u of updates) {
      const n = normalize(u);
      const prev = merged.get(n.ip);
      if (prev) mergeInto(prev, n);
      else merged.set(n.ip, n);
    }
    // Group by statement shape, each group in ip order: a stable lock order (no deadlocks between two
    // PostgreSQL instances) and sequential index inserts.
    const groups = new Map<number, Normalized[]>();
    for (const n of merged.values()) {
      const shape = shapeOf(n);
      let g = groups.get(shape);
      if (!g) groups.set(shape, (g = []));
      g.push(n);
    }
    const statements: Array<{ sql: string; bindings: Binding[] }> = [];
    for (const [shape, rows] of groups) {
      rows.sort((a, b) => (a.ip < b.ip ? -1 : a.ip > b.ip ? 1 : 0));
      for (let i = 0; i < rows.length; i += this.maxRows) {
        statements.push(this.upsert(shape, rows.slice(i, i + this.maxRows)));
      }
    }
    // On SQLite one statement is atomic on its own: no BEGIN and COMMIT round trips to the database thread.
    // Several run in one transaction on the writer's only connection, without a knex transactor: knex builds a
    // whole knex instance for each, and a batch every few hundred milliseconds made that a steady source of
    // old-generation garbage (the collector's work the answer path shares). PostgreSQL keeps knex's transaction:
    // acquiring it gives the pool the time to weed out connections the server closed (a bare statement sent at
    // once on one fails the batch; tested).
    const writer = this.storage.writer;
    await withBusyRetry(
      'writeBatch',
      this.retry,
      () =>
        this.isPg
          ? writer.transaction(async (trx) => {
              for (const s of statements) await trx.raw(s.sql, s.bindings);
            })
          : statements.length === 1
            ? Promise.resolve(writer.raw(statements[0].sql, statements[0].bindings)).then(() => undefined)
            : this.sqliteTransaction(statements),
      (attempt, delayMs, err) =>
        this.log.warn('storage: batch write retry, database busy', { attempt, delayMs, error: errorMessage(err) }),
    );
  }

  /** See Storage.checkFile: true when the SQLite file had been deleted or replaced and is now reopened. */
  checkFile(): Promise<boolean> {
    return this.storage.checkFile();
  }

  /** Whether `checkFile` can ever say true (SQLite on a file). */
  get hasFile(): boolean {
    return this.storage.client === 'sqlite3' && this.storage.filename !== undefined && this.storage.filename !== ':memory:';
  }

  /** SQLite: statements in one transaction on the writer's connection (its pool holds exactly one). */
  private async sqliteTransaction(statements: ReadonlyArray<{ sql: string; bindings: Binding[] }>): Promise<void> {
    const writer = this.storage.writer;
    const pool = writer.client as PooledClient;
    const conn = await pool.acquireConnection();
    try {
      await writer.raw('BEGIN').connection(conn);
      try {
        for (const s of statements) await writer.raw(s.sql, s.bindings).connection(conn);
        await writer.raw('COMMIT').connection(conn);
      } catch (err) {
        // A failed COMMIT (busy) leaves the transaction open: end it, so the connection is clean for the retry.
        await Promise.resolve(writer.raw('ROLLBACK').connection(conn)).catch(() => undefined);
        throw err;
      }
    } finally {
      await pool.releaseConnection(conn);
    }
  }

  /** The most recently seen clients, newest first (to build the in-memory index at start-up). */
  async loadIndex(limit: number): Promise<ClientRow[]> {
    const n = Math.max(0, Math.floor(limit));
    if (n === 0) return [];
    const rows = await withBusyRetry('loadIndex', this.retry, () =>
      Promise.resolve(
        this.storage.reader('clients').select(SELECT_COLUMNS).orderBy('last_seen', 'desc').orderBy('ip').limit(n),
      ),
    );
    return (rows as Record<string, unknown>[]).map(rowFromDb);
  }

  /** One client, or undefined. Read side. */
  async get(ip: string): Promise<ClientRow | undefined> {
    const row = await withBusyRetry('get', this.retry, () =>
      Promise.resolve(this.storage.reader('clients').select(SELECT_COLUMNS).where('ip', ip).first()),
    );
    return row ? rowFromDb(row as Record<string, unknown>) : undefined;
  }

  /** A page of clients for the API, with the total matching `search`. Read side. */
  async list(opts: ListOptions = {}): Promise<ListResult> {
    const offset = Math.max(0, Math.floor(Number(opts.offset ?? 0)) || 0);
    const limit = Math.min(MAX_LIST_LIMIT, Math.max(0, Math.floor(Number(opts.limit ?? DEFAULT_LIST_LIMIT)) || 0));
    const sort = opts.sort ?? 'last_seen';
    const column = SORT_COLUMNS[sort];
    if (!column) throw new TypeError(`storage: cannot sort clients by ${String(sort)}`);
    const order = opts.order === 'asc' ? 'asc' : opts.order === 'desc' || opts.order === undefined ? 'desc' : null;
    if (!order) throw new TypeError(`storage: order must be asc or desc (got ${String(opts.order)})`);
    const search = typeof opts.search === 'string' ? opts.search.trim() : '';
    const reader = this.storage.reader;

    const filtered = (): Knex.QueryBuilder => {
      const q = reader('clients');
      if (search !== '') {
        const pattern = `%${escapeLike(search)}%`;
        // SQLite's LIKE ignores ASCII case; PostgreSQL's does not, hence ILIKE there.
        const like = this.isPg ? 'ilike' : 'like';
        q.where((w) => {
          w.whereRaw(`ip ${like} ? escape '\\'`, [pattern])
            .orWhereRaw(`hostname ${like} ? escape '\\'`, [pattern])
            .orWhereRaw(`mac ${like} ? escape '\\'`, [pattern]);
        });
      }
      return q;
    };

    return withBusyRetry('list', this.retry, async () => {
      const countQ = filtered().count({ n: '*' }).first();
      const pageQ =
        limit === 0
          ? Promise.resolve([])
          : filtered()
              .select(SELECT_COLUMNS)
              // NULLs last in both orders and on both databases; ip breaks ties so pages are stable.
              .orderByRaw(`(${column} is null) asc, ${column} ${order}${column === 'ip' ? '' : ', ip asc'}`)
              .limit(limit)
              .offset(offset);
      const [count, rows] = await Promise.all([countQ, pageQ]);
      return {
        total: toNumber((count as { n?: unknown } | undefined)?.n ?? 0),
        rows: (rows as Record<string, unknown>[]).map(rowFromDb),
      };
    });
  }

  /** Number of rows (read side). */
  async count(): Promise<number> {
    const r = await withBusyRetry('count', this.retry, () =>
      Promise.resolve(this.storage.reader('clients').count({ n: '*' }).first()),
    );
    return toNumber((r as { n?: unknown } | undefined)?.n ?? 0);
  }

  /** Clients whose row says `discovering`, first seen first (read side): discovery takes them up again. */
  async discovering(limit: number): Promise<string[]> {
    const n = Math.max(0, Math.floor(limit));
    if (n === 0) return [];
    const rows = await withBusyRetry('discovering', this.retry, () =>
      Promise.resolve(this.storage.reader('clients').select('ip').where('discovering', true).orderBy('first_seen').limit(n)),
    );
    return (rows as Array<{ ip: string }>).map((r) => r.ip);
  }

  /**
   * Clients seen since `seenSince` whose discovery finished before `discoveredBefore` (wall ms), oldest name first
   * (read side): the names discovery refreshes.
   */
  async stale(discoveredBefore: number, seenSince: number, limit: number): Promise<string[]> {
    const n = Math.max(0, Math.floor(limit));
    if (n === 0) return [];
    const rows = await withBusyRetry('stale', this.retry, () =>
      Promise.resolve(
        this.storage
          .reader('clients')
          .select('ip')
          .where('discovering', false)
          .whereNotNull('discovered_at')
          .where('discovered_at', '<', discoveredBefore)
          .where('last_seen', '>=', seenSince)
          .orderBy('discovered_at')
          .limit(n),
      ),
    );
    return (rows as Array<{ ip: string }>).map((r) => r.ip);
  }

  /**
   * Delete clients not seen for `olderThanMs` (relative to `now`, wall-clock epoch ms like last_seen).
   * Returns the number of rows deleted.
   */
  prune(olderThanMs: number, chunk = 500, now: number = Date.now()): Promise<number> {
    if (!Number.isFinite(olderThanMs) || olderThanMs <= 0) {
      throw new RangeError(`storage: prune age must be a positive number of ms (got ${olderThanMs})`);
    }
    return this.pruneBefore(now - olderThanMs, chunk);
  }

  /**
   * Delete clients whose last_seen is before `cutoff` (epoch ms), `chunk` rows at a time: each chunk is
   * its own short transaction and the event loop (and any queued batch write) gets a turn between
   * chunks, so the database is never held for long.
   */
  async pruneBefore(cutoff: number, chunk = 500): Promise<number> {
    const size = Math.max(1, Math.floor(chunk));
    let total = 0;
    for (;;) {
      const deleted = await withBusyRetry('prune', this.retry, async () => {
        const w = this.storage.writer;
        return (await w('clients')
          .whereIn('ip', w('clients').select('ip').where('last_seen', '<', cutoff).orderBy('last_seen').limit(size))
          .del()) as number;
      });
      total += deleted;
      if (deleted < size) break;
      await new Promise<void>((resolve) => setImmediate(resolve));
    }
    if (total > 0) this.log.info('storage: pruned clients', { deleted: total, cutoff });
    return total;
  }

  /** One multi-row upsert statement for rows of one shape: the constant statement and the rows as json. */
  private upsert(shape: number, rows: readonly Normalized[]): { sql: string; bindings: Binding[] } {
    const info = (shape & SHAPE_INFO) !== 0;
    const disc = (shape & SHAPE_DISCOVERING) !== 0;
    const lastErr = (shape & SHAPE_LAST_ERROR) !== 0;
    const data = new Array<unknown[]>(rows.length);
    for (let i = 0; i < rows.length; i++) {
      const r = rows[i]!;
      const row: unknown[] = [r.ip, r.firstSeen, r.lastSeen, r.queries];
      if (info) row.push(r.hostname, r.mac, r.vendor, r.method, r.discoveredAt);
      // SQLite has no boolean type (the column holds 0/1); PostgreSQL's is cast from json's true/false.
      if (disc) row.push(this.isPg ? r.discovering === true : r.discovering === true ? 1 : 0);
      if (lastErr) row.push(r.lastError ?? null);
      data[i] = row;
    }
    let sql = this.statement.get(shape);
    if (sql === undefined) {
      sql = this.isPg ? this.pgStatement(shape) : this.sqliteStatement(shape);
      this.statement.set(shape, sql);
    }
    return { sql, bindings: [JSON.stringify(data)] };
  }

  /** SQLite: json_each walks the array in order; `where true` tells the parser the upsert clause is not a join's. */
  private sqliteStatement(shape: number): string {
    const exprs = columnsFor(shape).map((_, i) => `json_extract(value, '$[${i}]')`);
    return `insert into clients (${columnsFor(shape).join(', ')}) select ${exprs.join(', ')} from json_each(?) where true ${this.onConflict(shape)}`;
  }

  /** PostgreSQL: json_array_elements, each field cast to its column's type. */
  private pgStatement(shape: number): string {
    const types = ['varchar', 'bigint', 'bigint', 'bigint'];
    if (shape & SHAPE_INFO) types.push('varchar', 'varchar', 'varchar', 'varchar', 'bigint');
    if (shape & SHAPE_DISCOVERING) types.push('boolean');
    if (shape & SHAPE_LAST_ERROR) types.push('text');
    const exprs = types.map((t, i) => `(e->>${i})::${t}`);
    return `insert into clients (${columnsFor(shape).join(', ')}) select ${exprs.join(', ')} from json_array_elements(?::json) as e ${this.onConflict(shape)}`;
  }

  private onConflict(shape: number): string {
    let clause = this.conflictClause.get(shape);
    if (clause) return clause;
    const max = this.isPg ? 'greatest' : 'max';
    const min = this.isPg ? 'least' : 'min';
    const sets = [
      `first_seen = ${min}(clients.first_seen, excluded.first_seen)`,
      `last_seen = ${max}(clients.last_seen, excluded.last_seen)`,
      'query_count = clients.query_count + excluded.query_count',
    ];
    if (shape & SHAPE_INFO) {
      for (const c of ['hostname', 'mac', 'vendor', 'discovery_method', 'discovered_at']) {
        sets.push(`${c} = coalesce(excluded.${c}, clients.${c})`);
      }
    }
    if (shape & SHAPE_DISCOVERING) sets.push('discovering = excluded.discovering');
    if (shape & SHAPE_LAST_ERROR) sets.push('last_error = excluded.last_error');
    clause = `on conflict (ip) do update set ${sets.join(', ')}`;
    this.conflictClause.set(shape, clause);
    return clause;
  }
}
