// Opening the database: the knex instances, the SQLite pragmas, health and close.
//
// SQLite (default) gets TWO knex instances on the same file:
//   - `writer`: pool of exactly one connection. SQLite has one writer at a time anyway; one connection
//     means batches, prunes and migrations queue in order inside the process instead of fighting over the
//     file lock (which would surface as SQLITE_BUSY).
//   - `reader`: its own connections (pool 0..2, `PRAGMA query_only`). In WAL mode readers never block the
//     writer and the writer never blocks readers, so an API page load never waits behind a batch write.
// PostgreSQL gets one knex with an ordinary pool; `writer` and `reader` are the same instance.

import * as fs from 'node:fs';
import * as path from 'node:path';
import { performance } from 'node:perf_hooks';
import knexFactory, { type Knex } from 'knex';

import {
  errorMessage,
  noopLogger,
  toStorageError,
  withBusyRetry,
  type RetryPolicy,
  type StorageLogger,
} from './errors';
import { Migrator, type MigratorOptions } from './migrator';
import type { StorageHandle } from '../core/plugin';

export type SqliteSynchronous = 'off' | 'normal' | 'full';

/** The top-level `storage:` block of Corefile.yaml. */
export interface StorageConfig {
  client: 'sqlite3' | 'pg';
  /**
   * SQLite: `{ filename }` or the filename as a string (relative → against the configuration's folder).
   * PostgreSQL: a connection string or a node-postgres connection object, passed through to knex.
   */
  connection: { filename?: string } | string | Record<string, unknown>;
  /** SQLite `PRAGMA synchronous`; default `normal` (see below). */
  synchronous?: SqliteSynchronous;
  /** SQLite `PRAGMA busy_timeout` in ms: how long one statement waits for another process's lock. Default 2000. */
  busy_timeout_ms?: number;
  /** PostgreSQL pool size (default 0..10). Ignored for SQLite, whose pools are fixed (writer 1, reader 0..2). */
  pool?: { min?: number; max?: number };
  /** PostgreSQL schema search path (knex `searchPath`). */
  searchPath?: string | string[];
  /** How long to wait for a pooled connection before failing with StorageUnavailableError. Default 10000. */
  acquire_timeout_ms?: number;
  /**
   * PostgreSQL `lock_timeout` (ms, 0 = none): a write queued behind another session's lock (a `LOCK TABLE`, a
   * long migration) fails after this long instead of waiting for ever; it is kept and retried. Default 5000.
   */
  lock_timeout_ms?: number;
  /** PostgreSQL `statement_timeout` (ms, 0 = none): the bound of any one statement. Default 30000. */
  statement_timeout_ms?: number;
}

export interface OpenStorageOptions {
  /** Folder relative SQLite filenames resolve against (the folder of Corefile.yaml). */
  baseDir: string;
  log?: StorageLogger;
  /** Extra options for the migrator (lock retry bound). */
  migrator?: Omit<MigratorOptions, 'client' | 'log'>;
}

export interface StorageHealth {
  ok: boolean;
  error?: string;
  latencyMs: number;
}

/** The open database: what plugins use (StorageHandle) and what only the server uses (the migrator, close). */
export interface Storage extends StorageHandle {
  readonly migrate: Migrator;
  readonly log: StorageLogger;
  /** A trivial read on the read side, bounded by a timeout; never throws. */
  health(timeoutMs?: number): Promise<StorageHealth>;
  /**
   * Close every connection. Idempotent. `timeoutMs` bounds the wait for statements still running (a write
   * blocked by another session's lock): past it, close resolves and the connections are left to the process's
   * exit. Default 5000.
   */
  close(timeoutMs?: number): Promise<void>;
}

const SYNC_LEVELS: Record<SqliteSynchronous, string> = { off: 'OFF', normal: 'NORMAL', full: 'FULL' };
const DEFAULT_BUSY_TIMEOUT_MS = 2000;
const DEFAULT_ACQUIRE_TIMEOUT_MS = 10_000;
const DEFAULT_PG_LOCK_TIMEOUT_MS = 5_000;
const DEFAULT_PG_STATEMENT_TIMEOUT_MS = 30_000;
/** Keep the WAL file from staying huge after a burst: truncate it to this after a checkpoint. */
const WAL_SIZE_LIMIT_BYTES = 64 * 1024 * 1024;
const PG_MAX_PARAMS = 65535;
const OPEN_RETRY: RetryPolicy = { attempts: 10, minDelayMs: 20, maxDelayMs: 500 };

interface SqliteConnection {
  all(sql: string, cb: (err: Error | null, rows: Record<string, unknown>[]) => void): void;
}

function sqliteAll(conn: SqliteConnection, sql: string): Promise<Record<string, unknown>[]> {
  return new Promise((resolve, reject) => conn.all(sql, (err, rows) => (err ? reject(err) : resolve(rows))));
}

// knex's own advice when a migration lock is taken names its CLI; the Migrator retries and, past its
// bound, throws MigrationLockedError naming `codexdns migrate unlock`. Drop those two lines.
const KNEX_LOCK_NOISE = /^(Can't take lock to run migrations|If you are sure migrations are not running)/;

function knexLog(log: StorageLogger): Knex.Config['log'] {
  const text = (m: unknown) => (typeof m === 'string' ? m : errorMessage(m));
  return {
    warn: (m: unknown) => {
      const t = text(m);
      if (!KNEX_LOCK_NOISE.test(t)) log.warn(`knex: ${t}`);
    },
    error: (m: unknown) => log.error(`knex: ${text(m)}`),
    deprecate: (method: string, alt: string) => log.warn(`knex: ${method} is deprecated, use ${alt}`),
    debug: () => {},
  };
}

/** The SQLite file a configuration names, resolved against `baseDir` (or `:memory:`). */
export function sqliteFilename(cfg: StorageConfig, baseDir: string): string {
  const c = cfg.connection;
  let filename: unknown;
  if (typeof c === 'string') filename = c;
  else if (c && typeof c === 'object') filename = (c as { filename?: unknown }).filename;
  if (typeof filename !== 'string' || filename === '') {
    throw new TypeError('storage: sqlite3 needs connection.filename (e.g. ./data/codexdns.sqlite)');
  }
  if (filename === ':memory:') return filename;
  return path.resolve(baseDir, filename);
}

/**
 * `mkdir -p`, one level at a time. (Node 20's fs.mkdirSync(…, { recursive: true }) loops forever on some
 * pseudo-filesystems, e.g. a path under /proc: a typo in the storage path must fail, not hang start-up.)
 */
function mkdirp(dir: string): void {
  const missing: string[] = [];
  let d = dir;
  for (;;) {
    try {
      if (!fs.statSync(d).isDirectory()) throw new Error(`storage: ${d} is not a directory`);
      break;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      missing.push(d);
      const parent = path.dirname(d);
      if (parent === d) break;
      d = parent;
    }
  }
  for (const m of missing.reverse()) {
    try {
      fs.mkdirSync(m);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
  }
}

function parseSynchronous(value: unknown): SqliteSynchronous {
  if (value === undefined) return 'normal';
  const v = String(value).toLowerCase();
  if (v === 'off' || v === 'normal' || v === 'full') return v;
  throw new TypeError(`storage: synchronous must be off, normal or full (got ${String(value)})`);
}

function nonNegativeInt(value: unknown, name: string, dflt: number): number {
  if (value === undefined) return dflt;
  if (typeof value !== 'number' || !Number.isFinite(value) || value < 0) {
    throw new TypeError(`storage: ${name} must be a non-negative number of milliseconds`);
  }
  return Math.floor(value);
}

function compareVersions(a: string, b: string): number {
  const pa = a.split('.').map(Number);
  const pb = b.split('.').map(Number);
  for (let i = 0; i < Math.max(pa.length, pb.length); i++) {
    const d = (pa[i] ?? 0) - (pb[i] ?? 0);
    if (d !== 0) return d;
  }
  return 0;
}

export async function openStorage(cfg: StorageConfig, opts: OpenStorageOptions): Promise<Storage> {
  const log = opts.log ?? noopLogger;
  if (cfg.client === 'sqlite3') return openSqlite(cfg, opts, log);
  if (cfg.client === 'pg') return openPg(cfg, opts, log);
  throw new TypeError(`storage: client must be sqlite3 or pg (got ${String((cfg as { client?: unknown }).client)})`);
}

async function openSqlite(cfg: StorageConfig, opts: OpenStorageOptions, log: StorageLogger): Promise<Storage> {
  const filename = sqliteFilename(cfg, opts.baseDir);
  const memory = filename === ':memory:';
  const synchronous = parseSynchronous(cfg.synchronous);
  const busyTimeout = nonNegativeInt(cfg.busy_timeout_ms, 'busy_timeout_ms', DEFAULT_BUSY_TIMEOUT_MS);
  const acquireTimeout = nonNegativeInt(cfg.acquire_timeout_ms, 'acquire_timeout_ms', DEFAULT_ACQUIRE_TIMEOUT_MS);
  if (!memory) mkdirp(path.dirname(filename));

  // Every connection: busy_timeout first (so the pragmas below wait for another process's lock instead of
  // failing at once).
  //
  // Writer: journal_mode=WAL (persistent in the file) and an EXPLICIT synchronous level, chosen for power
  // loss on the small boxes this runs on:
  //   - NORMAL (default): in WAL mode a commit appends to the WAL without an fsync; the WAL is fsynced at
  //     each checkpoint. A power cut can lose the transactions committed since the last checkpoint, but it
  //     never corrupts the database (the WAL is checksummed; a torn tail is discarded on recovery). Losing a
  //     second of client counters is harmless; the in-memory index rebuilds them.
  //   - FULL: an fsync on every commit. Durable per commit, but with a batch every second that is 86,400
  //     fsyncs a day, each of which rewrites flash pages: it wears SD cards and eMMC out, for data we do
  //     not need to be durable to the second.
  //   - OFF: no fsync even at checkpoints; a power cut can corrupt the file. Only for throwaway databases.
  const writerPragmas = [
    `PRAGMA busy_timeout = ${busyTimeout}`,
    'PRAGMA journal_mode = WAL',
    `PRAGMA synchronous = ${SYNC_LEVELS[synchronous]}`,
    `PRAGMA journal_size_limit = ${WAL_SIZE_LIMIT_BYTES}`,
  ];
  // Reader: query_only makes a stray write through the read side fail loudly instead of taking the lock.
  const readerPragmas = [`PRAGMA busy_timeout = ${busyTimeout}`, 'PRAGMA query_only = 1'];
  let journalMode = '';

  const makeKnex = (pragmas: string[], pool: Knex.PoolConfig, isWriter: boolean): Knex =>
    knexFactory({
      client: 'sqlite3',
      connection: { filename },
      useNullAsDefault: true,
      acquireConnectionTimeout: acquireTimeout,
      log: knexLog(log),
      pool: {
        ...pool,
        afterCreate(conn: SqliteConnection, done: (err: Error | null, conn: unknown) => void) {
          (async () => {
            for (const sql of pragmas) {
              const rows = await sqliteAll(conn, sql);
              if (isWriter && sql.startsWith('PRAGMA journal_mode')) {
                journalMode = String(rows[0]?.journal_mode ?? '');
              }
            }
          })().then(
            () => done(null, conn),
            (err: Error) => done(err, conn),
          );
        },
      },
    });

  // The writer keeps its connection for the life of the process (min 1): reopening a WAL database costs a
  // WAL index rebuild, and the connection holds the prepared state.
  const writer = makeKnex(writerPragmas, { min: 1, max: 1, idleTimeoutMillis: 2 ** 31 - 1 }, true);
  const identity = (): string | null => {
    if (memory) return null;
    try {
      const st = fs.statSync(filename);
      return `${st.dev}:${st.ino}`;
    } catch {
      return null;
    }
  };
  let reader: Knex;
  try {
    // Open now, so a bad path or an unreadable file fails at start-up with a clear message. Switching a
    // new file to WAL needs an exclusive lock for which SQLite does not always call the busy handler
    // (several processes creating the database at once get SQLITE_BUSY at once): retry that.
    const [{ v }] = (await withBusyRetry('open', OPEN_RETRY, async () =>
      writer.raw('select sqlite_version() as v'),
    )) as Array<{ v: string }>;
    if (compareVersions(v, '3.24.0') < 0) {
      throw new Error(`storage: SQLite ${v} is too old (upserts need 3.24 or later)`);
    }
    if (!memory && journalMode.toLowerCase() !== 'wal') {
      log.warn('storage: SQLite did not switch to WAL mode; readers will wait behind writes', {
        filename,
        journal_mode: journalMode,
      });
    }
    // SQLITE_MAX_VARIABLE_NUMBER: 999 before 3.32.0, 32766 since, unless the build says otherwise.
    let maxParams = compareVersions(v, '3.32.0') >= 0 ? 32766 : 999;
    const opts2 = (await writer.raw('PRAGMA compile_options')) as Array<{ compile_options: string }>;
    for (const row of opts2) {
      const m = /^MAX_VARIABLE_NUMBER=(\d+)$/.exec(row.compile_options);
      if (m) maxParams = Number(m[1]);
    }
    // ':memory:' is one database per connection: the reader has to share the writer's.
    reader = memory ? writer : makeKnex(readerPragmas, { min: 0, max: 2 }, false);
    log.info('storage: SQLite opened', { filename, version: v, journal_mode: journalMode, synchronous });
    const file = memory ? undefined : { identity, opened: identity(), reopen: () => mkdirp(path.dirname(filename)) };
    return makeStorage({ client: 'sqlite3', writer, reader, maxParams, filename, log, opts, file, busyTimeoutMs: busyTimeout });
  } catch (err) {
    await writer.destroy().catch(() => {});
    throw toStorageError('open', err);
  }
}

async function openPg(cfg: StorageConfig, opts: OpenStorageOptions, log: StorageLogger): Promise<Storage> {
  let connection: Knex.Config['connection'] = cfg.connection as Knex.Config['connection'];
  if (connection && typeof connection === 'object' && !('application_name' in connection)) {
    connection = { ...(connection as object), application_name: 'codexdns' } as Knex.Config['connection'];
  }
  const acquireTimeout = nonNegativeInt(cfg.acquire_timeout_ms, 'acquire_timeout_ms', DEFAULT_ACQUIRE_TIMEOUT_MS);
  const lockTimeout = nonNegativeInt(cfg.lock_timeout_ms, 'lock_timeout_ms', DEFAULT_PG_LOCK_TIMEOUT_MS);
  const statementTimeout = nonNegativeInt(cfg.statement_timeout_ms, 'statement_timeout_ms', DEFAULT_PG_STATEMENT_TIMEOUT_MS);
  // Session settings, so they hold however the pool reconnects; they override a role's defaults (a role's
  // statement_timeout shorter than a batch would otherwise fail every write).
  const sessionSql = `SET lock_timeout = ${lockTimeout}; SET statement_timeout = ${statementTimeout}`;
  // No connection is made here: a PostgreSQL outage at start-up must not stop the DNS server (DESIGN §7:
  // /ready is the listeners; storage health is /health). The first query reports the outage as a
  // StorageUnavailableError; knex's pg client handles 'error' on idle pooled connections (it marks them
  // disposed and the pool replaces them), so a server restart never surfaces as an uncaught exception.
  const db = knexFactory({
    client: 'pg',
    connection,
    searchPath: cfg.searchPath,
    acquireConnectionTimeout: acquireTimeout,
    log: knexLog(log),
    pool: {
      min: cfg.pool?.min ?? 0,
      max: cfg.pool?.max ?? 10,
      afterCreate(conn: { query(sql: string, cb: (err: Error | null) => void): void }, done: (err: Error | null, conn: unknown) => void) {
        conn.query(sessionSql, (err) => done(err, conn));
      },
    },
  });
  return makeStorage({ client: 'pg', writer: db, reader: db, maxParams: PG_MAX_PARAMS, log, opts });
}

/** Runs `close`, but resolves after `timeoutMs` whatever it waits for (logged), so shutdown keeps its bound. */
function boundedClose(log: StorageLogger, timeoutMs: number, close: () => Promise<void>): Promise<void> {
  return new Promise<void>((resolve) => {
    const timer = setTimeout(() => {
      log.warn('storage: a statement was still running at close; not waiting for it', { waited_ms: timeoutMs });
      resolve();
    }, timeoutMs);
    timer.unref();
    close().then(
      () => {
        clearTimeout(timer);
        resolve();
      },
      (err: unknown) => {
        clearTimeout(timer);
        log.warn('storage: error while closing', { error: errorMessage(err) });
        resolve();
      },
    );
  });
}

function makeStorage(p: {
  client: 'sqlite3' | 'pg';
  writer: Knex;
  reader: Knex;
  maxParams: number;
  filename?: string;
  log: StorageLogger;
  opts: OpenStorageOptions;
  /** SQLite on a file: its identity (dev:ino) when opened, and how to read it now. */
  file?: { identity: () => string | null; opened: string | null; reopen: () => void };
  busyTimeoutMs?: number;
}): Storage {
  const { client, writer, reader, maxParams, filename, log, file, busyTimeoutMs } = p;
  const migrate = new Migrator(writer, { ...p.opts.migrator, client, log });
  let closing: Promise<void> | undefined;
  let checking: Promise<boolean> | null = null;

  const reopen = async (was: string | null): Promise<boolean> => {
    if (file === undefined) return false;
    log.warn('storage: the SQLite file was deleted or replaced while open; reopening it, migrating, and rewriting what was pending', {
      filename,
      was,
      now: file.identity(),
    });
    file.reopen();
    // The same knex objects, new pools: every holder of `writer` / `reader` (ClientStore, plugins) follows.
    // destroy() waits for a statement still running on the old file.
    await writer.destroy();
    writer.initialize();
    if (reader !== writer) {
      await reader.destroy();
      reader.initialize();
    }
    await writer.raw('select 1');
    file.opened = file.identity();
    await migrate.latest();
    log.info('storage: SQLite file reopened and migrated', { filename });
    return true;
  };

  const storage: Storage = {
    writer,
    reader,
    client,
    migrate,
    maxParams,
    busyTimeoutMs,
    filename,
    log,
    checkFile(): Promise<boolean> {
      if (file === undefined || closing) return Promise.resolve(false);
      checking ??= (async () => {
        const now = file.identity();
        if (now !== null && now === file.opened) return false;
        return reopen(file.opened);
      })().finally(() => {
        checking = null;
      });
      return checking;
    },
    async health(timeoutMs = 2000): Promise<StorageHealth> {
      const t0 = performance.now();
      if (closing) return { ok: false, error: 'storage closed', latencyMs: 0 };
      if (file !== undefined && file.identity() !== file.opened) {
        return { ok: false, error: `the database file ${filename} was deleted or replaced while open (reopened at the next check)`, latencyMs: 0 };
      }
      let timer: NodeJS.Timeout | undefined;
      // SQLite: reading the schema cookie touches the file header (`select 1` would not); never blocked in WAL.
      const query = Promise.resolve(reader.raw(client === 'sqlite3' ? 'PRAGMA schema_version' : 'select 1 as ok'));
      query.catch(() => {}); // a query still running after the timeout must not become an unhandled rejection
      try {
        await Promise.race([
          query,
          new Promise((_, reject) => {
            timer = setTimeout(() => reject(new Error(`health check timed out after ${timeoutMs} ms`)), timeoutMs);
            timer.unref();
          }),
        ]);
        return { ok: true, latencyMs: performance.now() - t0 };
      } catch (err) {
        return { ok: false, error: errorMessage(err), latencyMs: performance.now() - t0 };
      } finally {
        if (timer) clearTimeout(timer);
      }
    },
    close(timeoutMs = 5000): Promise<void> {
      closing ??= boundedClose(log, timeoutMs, async () => {
        if (client === 'sqlite3') {
          // Let SQLite refresh its query planner statistics on the way out (cheap, recommended on close).
          await writer.raw('PRAGMA optimize').catch(() => {});
        }
        const tasks = [writer.destroy()];
        if (reader !== writer) tasks.push(reader.destroy());
        const results = await Promise.allSettled(tasks);
        for (const r of results) {
          if (r.status === 'rejected') log.warn('storage: error while closing', { error: errorMessage(r.reason) });
        }
      });
      return closing;
    },
  };
  return storage;
}
