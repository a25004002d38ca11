/**
 * The query log's tables: batched writes (rows and hourly counts in one transaction), retention, and the reads
 * behind the API. Reads go to the storage's read connection (SQLite) so a page never queues behind a batch.
 */
import type { Knex } from 'knex';
import { FLAG_BLOCKED, FLAG_CACHED, FLAG_TRUNCATED, type RawEntry } from './ring';

/** A row ready to insert: the ring's entry with the name decoded (and the client masked). */
export type LogRow = Omit<RawEntry, 'wireKey'> & { name: string };

export type AggKind = 't' | 'c' | 'd' | 'r' | 'a';

export interface AggCounts {
  queries: number;
  blocked: number;
  cached: number;
  failed: number;
  durationUs: number;
}

export interface AggRow extends AggCounts {
  hour: number;
  kind: AggKind;
  key: string;
}

export interface QueryFilter {
  client?: string;
  /** Substring of the name (lower case). */
  name?: string;
  qtype?: number;
  rcode?: number;
  answeredBy?: string;
  blocked?: boolean;
  from?: number;
  to?: number;
  /** Cursor: only rows with a smaller id. */
  before?: number;
  limit: number;
}

/** A row as read back: the inserted row with its id, and its flags spelled out. */
export type StoredQuery = Omit<LogRow, 'flags'> & {
  id: number;
  truncated: boolean;
  blocked: boolean;
  cached: boolean;
};

export interface QueryPage {
  rows: StoredQuery[];
  /** Pass as `before` for the next (older) page; null when nothing older matches. */
  cursor: number | null;
  /** True when the time budget ended the scan before `limit` rows were found (more may match below `cursor`). */
  partial: boolean;
}

export interface TopEntry {
  key: string;
  queries: number;
  blocked: number;
  cached: number;
  failed: number;
  avgMs: number | null;
}

export interface SeriesPoint {
  t: number;
  queries: number;
  blocked: number;
  cached: number;
}

export const HOUR = 3_600_000;
const COLUMNS = ['t', 'client', 'name', 'qtype', 'rcode', 'answered_by', 'upstream', 'duration_us', 'flags'] as const;
const AGG_COLUMNS = ['hour', 'kind', 'key', 'queries', 'blocked', 'cached', 'failed', 'duration_us'] as const;
/** How far one scan step of a filtered page reaches (ids), and how long a page may keep stepping. */
const SCAN_WINDOW = 20_000;
const SCAN_BUDGET_MS = 40;
const SCAN_WINDOW_MAX = 80_000;
const PRUNE_CHUNK = 5000;

const num = (v: unknown): number => (typeof v === 'number' ? v : Number(v));

const ROW_TYPES = ['bigint', 'varchar', 'varchar', 'integer', 'integer', 'varchar', 'varchar', 'integer', 'integer'];
const AGG_TYPES = ['bigint', 'varchar', 'varchar', 'bigint', 'bigint', 'bigint', 'bigint', 'bigint'];
const AGG_MERGE = `ON CONFLICT (kind, hour, key) DO UPDATE SET queries = querylog_hourly.queries + excluded.queries,
  blocked = querylog_hourly.blocked + excluded.blocked, cached = querylog_hourly.cached + excluded.cached,
  failed = querylog_hourly.failed + excluded.failed, duration_us = querylog_hourly.duration_us + excluded.duration_us`;
/** Rows per statement: one JSON text parameter each, so the bound is memory, not the parameter limit. */
const STATEMENT_ROWS = 1000;

/**
 * The rows of a statement travel as ONE JSON text parameter, unpacked by the database (json_each on SQLite,
 * json_array_elements on PostgreSQL), as in plugins/clienttrack/store.ts: node-sqlite3 converts each bound parameter
 * on the main thread, and nine per row was most of the writer's event-loop time.
 */
function fromJson(isPg: boolean, table: string, cols: readonly string[], types: readonly string[], suffix = ''): string {
  if (isPg) return `INSERT INTO ${table} (${cols.join(',')}) SELECT ${types.map((t, i) => `(e->>${i})::${t}`).join(', ')} FROM json_array_elements(?::json) AS e ${suffix}`;
  // `WHERE true` tells SQLite's parser that an upsert clause follows, not a join's ON.
  return `INSERT INTO ${table} (${cols.join(',')}) SELECT ${cols.map((_, i) => `json_extract(value, '$[${i}]')`).join(', ')} FROM json_each(?) WHERE true ${suffix}`;
}

export class QuerylogStore {
  private readonly insertRows: string;
  private readonly upsertAggs: string;

  constructor(private readonly writer: Knex, private readonly reader: Knex, isPg: boolean) {
    this.insertRows = fromJson(isPg, 'querylog', COLUMNS, ROW_TYPES);
    this.upsertAggs = fromJson(isPg, 'querylog_hourly', AGG_COLUMNS, AGG_TYPES, AGG_MERGE);
  }

  /** One transaction: the rows, then the hourly counts merged into what is stored. */
  async write(rows: readonly LogRow[], aggs: readonly AggRow[]): Promise<void> {
    await this.writer.transaction(async (trx) => {
      for (let i = 0; i < rows.length; i += STATEMENT_ROWS) {
        const part: unknown[] = [];
        for (let k = i; k < Math.min(rows.length, i + STATEMENT_ROWS); k++) {
          const r = rows[k];
          part.push([r.t, r.client, r.name, r.qtype, r.rcode, r.answeredBy, r.upstream, r.durationUs, r.flags]);
        }
        await trx.raw(this.insertRows, [JSON.stringify(part)]);
      }
      for (let i = 0; i < aggs.length; i += STATEMENT_ROWS) {
        const part: unknown[] = [];
        for (let k = i; k < Math.min(aggs.length, i + STATEMENT_ROWS); k++) {
          const a = aggs[k];
          part.push([a.hour, a.kind, a.key, a.queries, a.blocked, a.cached, a.failed, a.durationUs]);
        }
        await trx.raw(this.upsertAggs, [JSON.stringify(part)]);
      }
    });
  }

  /**
   * Deletes rows older than `cutoff`, rows beyond the newest `maxRows`, and hourly counts older than
   * `aggCutoff`, in chunks: each chunk a short statement, so a batch waiting for the writer gets a turn.
   * Returns the rows deleted.
   */
  async prune(cutoff: number, maxRows: number, aggCutoff: number): Promise<number> {
    let deleted = 0;
    for (;;) {
      const n = await this.writer('querylog')
        .whereIn('id', (sub) => void sub.select('id').from('querylog').where('t', '<', cutoff).orderBy('t').limit(PRUNE_CHUNK))
        .del();
      deleted += n;
      if (n < PRUNE_CHUNK) break;
    }
    const top = await this.writer('querylog').max({ m: 'id' }).first();
    const maxId = top?.m === null || top?.m === undefined ? 0 : num(top.m);
    const keepFrom = maxId - maxRows + 1;
    if (keepFrom > 1) {
      for (;;) {
        const n = await this.writer('querylog')
          .whereIn('id', (sub) => void sub.select('id').from('querylog').where('id', '<', keepFrom).orderBy('id').limit(PRUNE_CHUNK))
          .del();
        deleted += n;
        if (n < PRUNE_CHUNK) break;
      }
    }
    await this.writer('querylog_hourly').where('hour', '<', aggCutoff).del();
    return deleted;
  }

  async count(): Promise<number> {
    const r = await this.reader('querylog').count({ n: '*' }).first();
    return r === undefined ? 0 : num(r.n);
  }

  /** The first id at or after wall time `t` (by the time index), or null when no row is that recent. */
  private async idAtOrAfter(t: number): Promise<number | null> {
    const r = await this.reader('querylog').select('id').where('t', '>=', t).orderBy('t', 'asc').first();
    return r === undefined ? null : num(r.id);
  }

  private async idAtOrBefore(t: number): Promise<number | null> {
    const r = await this.reader('querylog').select('id').where('t', '<=', t).orderBy('t', 'desc').first();
    return r === undefined ? null : num(r.id);
  }

  /**
   * Newest first, filtered. Filters that no index serves (a name substring, an rcode) are applied while
   * stepping down the id range in windows, for at most a time budget: a rare match costs a bounded wait and a
   * `partial` page with a cursor to go on from, never a scan of the whole table in one request.
   */
  async queries(f: QueryFilter): Promise<QueryPage> {
    const started = performance.now();
    let hi: number;
    if (f.before !== undefined) hi = f.before;
    else {
      const r = await this.reader('querylog').max({ m: 'id' }).first();
      if (r?.m === null || r?.m === undefined) return { rows: [], cursor: null, partial: false };
      hi = num(r.m) + 1;
    }
    if (f.to !== undefined) {
      const id = await this.idAtOrBefore(f.to);
      if (id === null) return { rows: [], cursor: null, partial: false };
      hi = Math.min(hi, id + 1);
    }
    let lo = 1;
    if (f.from !== undefined) {
      const id = await this.idAtOrAfter(f.from);
      if (id === null) return { rows: [], cursor: null, partial: false };
      lo = id;
    } else {
      const r = await this.reader('querylog').min({ m: 'id' }).first();
      lo = r?.m === null || r?.m === undefined ? hi : num(r.m);
    }
    const rows: StoredQuery[] = [];
    // An indexed equality filter narrows the scan by itself: one step over the whole range.
    let window = f.client !== undefined ? Number.MAX_SAFE_INTEGER : SCAN_WINDOW;
    while (rows.length < f.limit && hi > lo) {
      const bottom = Math.max(lo, hi - window);
      const q = this.reader('querylog').select('*').where('id', '<', hi).andWhere('id', '>=', bottom);
      if (f.client !== undefined) q.andWhere('client', f.client);
      if (f.name !== undefined && f.name !== '') q.andWhereRaw(`name LIKE ? ESCAPE '\\'`, [`%${f.name.replace(/[\\%_]/g, (c) => `\\${c}`)}%`]);
      if (f.qtype !== undefined) q.andWhere('qtype', f.qtype);
      if (f.rcode !== undefined) q.andWhere('rcode', f.rcode);
      if (f.answeredBy !== undefined) q.andWhere('answered_by', f.answeredBy);
      if (f.blocked === true) q.andWhereRaw('(flags & 2) <> 0');
      if (f.from !== undefined) q.andWhere('t', '>=', f.from);
      if (f.to !== undefined) q.andWhere('t', '<=', f.to);
      const got = (await q.orderBy('id', 'desc').limit(f.limit - rows.length)) as Record<string, unknown>[];
      for (const r of got) rows.push(toQuery(r));
      if (rows.length >= f.limit) return { rows, cursor: rows[rows.length - 1].id, partial: false };
      hi = bottom;
      if (performance.now() - started > SCAN_BUDGET_MS) return { rows, cursor: hi > lo ? hi : null, partial: hi > lo };
      window = Math.min(window * 2, SCAN_WINDOW_MAX);
    }
    return { rows, cursor: null, partial: false };
  }

  /** Keys of one kind ordered by a count over hours since `since`. */
  async top(kind: AggKind, since: number, limit: number, by: 'queries' | 'blocked' = 'queries', key?: string): Promise<TopEntry[]> {
    const q = this.reader('querylog_hourly')
      .select('key')
      .sum({ queries: 'queries', blocked: 'blocked', cached: 'cached', failed: 'failed', duration_us: 'duration_us' })
      .where('kind', kind)
      .andWhere('hour', '>=', Math.floor(since / HOUR) * HOUR);
    if (key !== undefined) q.andWhere('key', key);
    q.groupBy('key');
    if (by === 'blocked') q.havingRaw('SUM(blocked) > 0');
    const rows = (await q.orderByRaw(`SUM(${by}) DESC`).limit(limit)) as Record<string, unknown>[];
    return rows.map((r) => {
      const queries = num(r.queries);
      return { key: String(r.key), queries, blocked: num(r.blocked), cached: num(r.cached), failed: num(r.failed), avgMs: queries > 0 ? Math.round(num(r.duration_us) / queries) / 1000 : null };
    });
  }

  /** Hourly counts since `since` for the total (kind t) or one key of a kind. */
  async hourly(since: number, kind: AggKind = 't', key = ''): Promise<SeriesPoint[]> {
    const rows = (await this.reader('querylog_hourly')
      .select('hour')
      .sum({ queries: 'queries', blocked: 'blocked', cached: 'cached' })
      .where('kind', kind)
      .andWhere('key', key)
      .andWhere('hour', '>=', Math.floor(since / HOUR) * HOUR)
      .groupBy('hour')
      .orderBy('hour')) as Record<string, unknown>[];
    return rows.map((r) => ({ t: num(r.hour), queries: num(r.queries), blocked: num(r.blocked), cached: num(r.cached) }));
  }

  async activeClients(since: number): Promise<number> {
    const r = await this.reader('querylog_hourly').countDistinct({ n: 'key' }).where('kind', 'c').andWhere('hour', '>=', Math.floor(since / HOUR) * HOUR).first();
    return r === undefined ? 0 : num(r.n);
  }

  /** One client's most asked names since `since`, from the log itself (the (client, id) index bounds the scan). */
  async clientDomains(client: string, since: number, limit: number): Promise<TopEntry[]> {
    const lo = await this.idAtOrAfter(since);
    if (lo === null) return [];
    const rows = (await this.reader('querylog')
      .select('name')
      .count({ queries: '*' })
      .select(this.reader.raw('SUM(CASE WHEN (flags & 2) <> 0 THEN 1 ELSE 0 END) AS blocked'))
      .select(this.reader.raw('SUM(CASE WHEN (flags & 4) <> 0 THEN 1 ELSE 0 END) AS cached'))
      .select(this.reader.raw('SUM(CASE WHEN rcode = 2 THEN 1 ELSE 0 END) AS failed'))
      .sum({ duration_us: 'duration_us' })
      .where('client', client)
      .andWhere('id', '>=', lo)
      .groupBy('name')
      .orderByRaw('COUNT(*) DESC')
      .limit(limit)) as Record<string, unknown>[];
    return rows.map((r) => {
      const queries = num(r.queries);
      return { key: String(r.name), queries, blocked: num(r.blocked), cached: num(r.cached), failed: num(r.failed), avgMs: queries > 0 ? Math.round(num(r.duration_us) / queries) / 1000 : null };
    });
  }

  async clientRcodes(client: string, since: number): Promise<Record<number, number>> {
    const lo = await this.idAtOrAfter(since);
    if (lo === null) return {};
    const rows = (await this.reader('querylog').select('rcode').count({ n: '*' }).where('client', client).andWhere('id', '>=', lo).groupBy('rcode')) as Record<string, unknown>[];
    const out: Record<number, number> = {};
    for (const r of rows) out[num(r.rcode)] = num(r.n);
    return out;
  }
}

function toQuery(r: Record<string, unknown>): StoredQuery {
  return {
    id: num(r.id),
    t: num(r.t),
    client: String(r.client),
    name: String(r.name),
    qtype: num(r.qtype),
    rcode: num(r.rcode),
    answeredBy: String(r.answered_by),
    upstream: r.upstream === null || r.upstream === undefined ? null : String(r.upstream),
    durationUs: num(r.duration_us),
    ...flagsOf(num(r.flags)),
  };
}

/** The `flags` word spelled out, as StoredQuery (and the API) carry it. */
export function flagsOf(flags: number): Pick<StoredQuery, 'truncated' | 'blocked' | 'cached'> {
  return {
    truncated: (flags & FLAG_TRUNCATED) !== 0,
    blocked: (flags & FLAG_BLOCKED) !== 0,
    cached: (flags & FLAG_CACHED) !== 0,
  };
}
