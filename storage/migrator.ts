// Schema migrations: the core set (this package's `migrations/` folder) and one set per plugin that ships
// its own, each recorded in its own knex table.
//
// Why one table per set: knex refuses to run (or even list) migrations when a migration recorded in its
// table has no file any more. If a custom plugin's migrations were recorded in the core `knex_migrations`,
// removing that plugin from Corefile.yaml would stop codexdns from starting. With `knex_migrations_<plugin>`
// the removed plugin's table is simply never looked at again.
//
// Concurrency (PostgreSQL, several instances starting at once):
//   1. Each operation first takes a PostgreSQL advisory lock for its set (`pg_try_advisory_xact_lock`, held
//      by a transaction on its own pooled connection, released automatically if the process dies). Only
//      one codexdns process migrates a set at a time; the others wait (bounded backoff) and then find
//      nothing left to do.
//   2. knex's own lock row (knex_migrations_lock) still applies; if it is held (another tool, an older
//      build, or a pool too small for step 1) knex throws MigrationLocked and we retry with backoff.
//   3. knex creates its two bookkeeping tables with a check-then-create that races between processes
//      ("relation already exists", a unique violation on pg_type); those errors are retried too, and a
//      lock table that ended up with two rows (the same race) is repaired.
// SQLite has a single file lock; the same retry handles a second process migrating the same file.

import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Knex } from 'knex';

import {
  MigrationLockedError,
  StorageUnavailableError,
  backoffDelay,
  classifyError,
  errorMessage,
  noopLogger,
  sleep,
  type RetryPolicy,
  type StorageLogger,
} from './errors';

export const CORE_SET = 'core';
const CORE_TABLE = 'knex_migrations';
const LOAD_EXTENSIONS = ['.js', '.cjs', '.mjs'];
/** Advisory lock namespace ("codx"); the second key is a hash of the set's table name. */
const ADVISORY_CLASS_ID = 0x636f6478;

/** Default bound on waiting for another process's migration: ≈ 40 s in all. */
export const DEFAULT_LOCK_RETRY: RetryPolicy = Object.freeze({ attempts: 50, minDelayMs: 50, maxDelayMs: 1000 });

export interface MigratorOptions {
  client: 'sqlite3' | 'pg';
  log?: StorageLogger;
  /** Bound on waiting for a migration lock held by another process. */
  lockRetry?: RetryPolicy;
  /** Override the core migrations folder (tests). */
  migrationsDir?: string;
}

export interface MigrationSet {
  /** `core`, or the plugin name. */
  readonly name: string;
  readonly directories: readonly string[];
  /** knex bookkeeping table (`knex_migrations` or `knex_migrations_<plugin>`); the lock table adds `_lock`. */
  readonly tableName: string;
}

export interface MigrationSetStatus {
  set: string;
  tableName: string;
  /** Recorded as applied, in order. */
  applied: string[];
  /** Present on disk, not applied yet, in order. */
  pending: string[];
  /** Recorded as applied but without a file (knex will refuse to migrate this set until resolved). */
  missing: string[];
}

export interface MigrationStatus {
  /** The core set's applied migrations. */
  applied: string[];
  /** The core set's pending migrations. */
  pending: string[];
  /** Every set, core first. */
  sets: MigrationSetStatus[];
}

/** Find the folder holding this package's package.json, starting from `from` and walking up. */
export function findPackageRoot(from: string = __dirname): string {
  let dir = path.resolve(from);
  for (;;) {
    if (fs.existsSync(path.join(dir, 'package.json'))) return dir;
    const parent = path.dirname(dir);
    if (parent === dir) throw new Error(`storage: no package.json above ${from}`);
    dir = parent;
  }
}

/** The core migrations folder: `<package root>/migrations` (this file runs from `<root>/dist/storage/`). */
export function defaultMigrationsDir(): string {
  return path.join(findPackageRoot(__dirname), 'migrations');
}

function hash32(s: string): number {
  // FNV-1a, folded into a signed 32-bit integer (the advisory lock key type).
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h | 0;
}

function pluginTableName(plugin: string): string {
  const safe = plugin
    .toLowerCase()
    .replace(/[^a-z0-9_]+/g, '_')
    .replace(/^_+|_+$/g, '')
    .slice(0, 40); // PostgreSQL identifiers stop at 63 bytes; `knex_migrations_` + name + `_lock` must fit
  if (safe === '') throw new TypeError(`storage: invalid plugin name for migrations: ${JSON.stringify(plugin)}`);
  return `knex_migrations_${safe}`;
}

function isMigrationLocked(err: unknown): boolean {
  return err instanceof Error && (err.name === 'MigrationLocked' || /already locked/i.test(err.message));
}

/** knex's check-then-create of its bookkeeping tables racing with another process. */
function isCreateRace(err: unknown): boolean {
  if (!(err instanceof Error)) return false;
  const code = (err as { code?: unknown }).code;
  if (code === '42P07' || code === '42710') return true; // duplicate_table, duplicate_object
  if (code === '23505' && /pg_type|pg_class|pg_namespace|knex_migrations/i.test(err.message)) return true;
  return /knex_migrations\S*\W+already exists/i.test(err.message);
}

export class Migrator {
  /** The core migrations folder (for the CLI). */
  readonly migrationsDir: string;
  private readonly knex: Knex;
  private readonly client: 'sqlite3' | 'pg';
  private readonly log: StorageLogger;
  private readonly lockRetry: RetryPolicy;
  private readonly setList: MigrationSet[] = [];
  /** Serializes operations of this instance (two `latest()` calls from one process never race each other). */
  private queue: Promise<unknown> = Promise.resolve();

  constructor(knex: Knex, opts: MigratorOptions) {
    this.knex = knex;
    this.client = opts.client;
    this.log = opts.log ?? noopLogger;
    this.lockRetry = opts.lockRetry ?? DEFAULT_LOCK_RETRY;
    this.migrationsDir = opts.migrationsDir ?? defaultMigrationsDir();
    this.setList.push({ name: CORE_SET, directories: [this.migrationsDir], tableName: CORE_TABLE });
  }

  /** Migration sets, core first. */
  get sets(): readonly MigrationSet[] {
    return this.setList;
  }

  /**
   * Register a plugin's migration folders. They are applied after the core set by `latest()`, and recorded
   * in `knex_migrations_<plugin>`. Registering the same plugin again replaces its folders.
   */
  addPlugin(plugin: string, directories: string | string[]): MigrationSet {
    if (plugin === CORE_SET) throw new TypeError('storage: "core" is the built-in migration set');
    const dirs = (Array.isArray(directories) ? directories : [directories]).map((d) => path.resolve(d));
    if (dirs.length === 0) throw new TypeError(`storage: plugin ${plugin}: no migration folder given`);
    const set: MigrationSet = { name: plugin, directories: dirs, tableName: pluginTableName(plugin) };
    const other = this.setList.find((s) => s.tableName === set.tableName && s.name !== plugin);
    if (other) throw new TypeError(`storage: plugins ${other.name} and ${plugin} map to the same migration table`);
    const i = this.setList.findIndex((s) => s.name === plugin);
    if (i >= 0) this.setList[i] = set;
    else this.setList.push(set);
    return set;
  }

  /**
   * Apply every pending migration of every set (core first), or of one set when `setName` is given.
   * Returns the names applied (a plugin's prefixed `plugin:` when all sets run).
   */
  latest(setName?: string): Promise<string[]> {
    return this.serialize(async () => {
      const applied: string[] = [];
      const sets = setName === undefined ? this.setList : [this.getSet(setName)];
      for (const set of sets) {
        const [, log] = (await this.run(set, 'latest', (m, cfg) => m.latest(cfg))) as [number, string[]];
        for (const name of log) applied.push(set.name === CORE_SET || setName !== undefined ? name : `${set.name}:${name}`);
      }
      // Named with their set: the core set's two clients migrations are empty stubs kept for old databases, and
      // a fresh database logs them once for `core` and once for `clienttrack`, which does the work.
      if (applied.length > 0) this.log.info('storage: migrations applied', { set: setName ?? (sets.length === 1 ? sets[0].name : 'all'), migrations: applied });
      return applied;
    });
  }

  /** Apply the next pending migration of one set (default core). Returns the names applied (0 or 1). */
  up(setName: string = CORE_SET): Promise<string[]> {
    return this.serialize(async () => {
      const set = this.getSet(setName);
      const [, log] = (await this.run(set, 'up', (m, cfg) => m.up(cfg))) as [number, string[]];
      if (log.length > 0) this.log.info('storage: migration applied', { set: set.name, migrations: log });
      return log;
    });
  }

  /** Undo the last applied migration of one set (default core), one step. Returns the names undone. */
  down(setName: string = CORE_SET): Promise<string[]> {
    return this.serialize(async () => {
      const set = this.getSet(setName);
      const [, log] = (await this.run(set, 'down', (m, cfg) => m.down(cfg))) as [number, string[]];
      if (log.length > 0) this.log.info('storage: migration undone', { set: set.name, migrations: log });
      return log;
    });
  }

  /** Applied / pending names of every set. Creates nothing (safe on a database never migrated). */
  status(): Promise<MigrationStatus> {
    return this.serialize(async () => {
      const sets: MigrationSetStatus[] = [];
      for (const set of this.setList) {
        const files = this.listFiles(set);
        let applied: string[] = [];
        try {
          if (await this.knex.schema.hasTable(set.tableName)) {
            const rows = (await this.knex(set.tableName).select('name').orderBy('id')) as Array<{ name: string }>;
            applied = rows.map((r) => r.name);
          }
        } catch (err) {
          throw this.wrap(err, 'status');
        }
        const appliedSet = new Set(applied);
        const fileSet = new Set(files);
        sets.push({
          set: set.name,
          tableName: set.tableName,
          applied,
          pending: files.filter((f) => !appliedSet.has(f)),
          missing: applied.filter((a) => !fileSet.has(a)),
        });
      }
      const core = sets[0]!;
      return { applied: core.applied, pending: core.pending, sets };
    });
  }

  /** Release a set's knex migration lock left behind by an interrupted migration (`codexdns migrate unlock`). */
  unlock(setName: string = CORE_SET): Promise<void> {
    return this.serialize(async () => {
      const set = this.getSet(setName);
      try {
        await this.knex.migrate.forceFreeMigrationsLock(this.knexConfig(set));
        this.log.warn('storage: migration lock released by hand', { set: set.name });
      } catch (err) {
        throw this.wrap(err, 'unlock');
      }
    });
  }

  private getSet(name: string): MigrationSet {
    const set = this.setList.find((s) => s.name === name);
    if (!set) throw new Error(`storage: unknown migration set ${JSON.stringify(name)}`);
    return set;
  }

  private serialize<T>(fn: () => Promise<T>): Promise<T> {
    const next = this.queue.then(fn, fn);
    this.queue = next.catch(() => {});
    return next;
  }

  private knexConfig(set: MigrationSet): Knex.MigratorConfig {
    return {
      directory: set.directories.length === 1 ? set.directories[0] : [...set.directories],
      tableName: set.tableName,
      loadExtensions: LOAD_EXTENSIONS,
    };
  }

  /** Same listing rule as knex's FsMigrations: files with a loadable extension, sorted by name. */
  private listFiles(set: MigrationSet): string[] {
    const names: string[] = [];
    for (const dir of set.directories) {
      let entries: string[];
      try {
        entries = fs.readdirSync(dir);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') continue;
        throw err;
      }
      for (const f of entries) if (LOAD_EXTENSIONS.includes(path.extname(f))) names.push(f);
    }
    return names.sort();
  }

  private wrap(err: unknown, op: string): unknown {
    return classifyError(err) === 'unavailable' ? new StorageUnavailableError(`migrate ${op}`, err) : err;
  }

  /** One knex migrator operation, under the set's advisory lock (pg), retried while locked or racing. */
  private async run(
    set: MigrationSet,
    op: string,
    fn: (m: Knex.Migrator, cfg: Knex.MigratorConfig) => Promise<unknown>,
  ): Promise<unknown> {
    const policy = this.lockRetry;
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.withAdvisoryLock(set, () => fn(this.knex.migrate, this.knexConfig(set)));
      } catch (err) {
        if (classifyError(err) === 'unavailable') throw this.wrap(err, op);
        if (err instanceof MigrationLockedError) throw err; // the advisory lock wait is already bounded
        const locked = isMigrationLocked(err);
        // 'timeout': our lock_timeout ended a wait behind another instance's migration: wait again.
        const kind = classifyError(err);
        const retryable = locked || isCreateRace(err) || kind === 'busy' || kind === 'timeout';
        if (!retryable) throw err;
        if (attempt >= policy.attempts) {
          if (locked) throw new MigrationLockedError(set.name, attempt, err);
          throw err;
        }
        if (locked) await this.repairLockTable(set);
        const delay = backoffDelay(policy, attempt);
        if (attempt === 1 || attempt % 10 === 0) {
          this.log.warn('storage: migrations waiting for another process', {
            set: set.name,
            attempt,
            reason: errorMessage(err),
          });
        }
        await sleep(delay);
      }
    }
  }

  /**
   * PostgreSQL: run `fn` while holding a transaction-scoped advisory lock for the set. The lock transaction
   * sits on its own pooled connection, so the pool needs two connections; with a pool of one, skip it
   * (knex's lock and our retries still make concurrent runs safe, only less politely).
   */
  private async withAdvisoryLock<T>(set: MigrationSet, fn: () => Promise<T>): Promise<T> {
    if (this.client !== 'pg') return fn();
    const poolMax = (this.knex.client as { pool?: { max?: number } }).pool?.max ?? 10;
    if (poolMax < 2) return fn();
    const trx = await this.knex.transaction();
    try {
      // Per schema: instances in other schemas of the same database migrate other tables and must not wait.
      const searchPath = (this.knex.client as { config?: { searchPath?: string | string[] } }).config?.searchPath;
      const schema = Array.isArray(searchPath) ? searchPath.join(',') : (searchPath ?? '');
      const key = hash32(`${schema}|${set.tableName}`);
      let got = false;
      for (let attempt = 1; attempt <= this.lockRetry.attempts; attempt++) {
        const res = (await trx.raw('select pg_try_advisory_xact_lock(?, ?) as got', [ADVISORY_CLASS_ID, key])) as {
          rows: Array<{ got: boolean }>;
        };
        got = res.rows[0]?.got === true;
        if (got) break;
        if (attempt < this.lockRetry.attempts) await sleep(backoffDelay(this.lockRetry, attempt));
      }
      if (!got) throw new MigrationLockedError(set.name, this.lockRetry.attempts);
      return await fn();
    } finally {
      await trx.rollback().catch(() => {}); // ends the transaction: releases the advisory lock
    }
  }

  /**
   * knex's lock table must hold exactly one row; the create race can leave two unlocked rows, after which
   * knex's `update … where is_locked = 0` touches two rows and reports "already locked" forever.
   */
  private async repairLockTable(set: MigrationSet): Promise<void> {
    const lockTable = `${set.tableName}_lock`;
    try {
      const rows = (await this.knex(lockTable).select('index', 'is_locked').orderBy('index')) as Array<{
        index: number;
        is_locked: number;
      }>;
      if (rows.length > 1 && rows.every((r) => Number(r.is_locked) === 0)) {
        await this.knex(lockTable).where('index', '>', rows[0]!.index).del();
        this.log.warn('storage: repaired duplicate migration lock rows', { set: set.name, rows: rows.length });
      }
    } catch {
      // table missing or unreachable: nothing to repair; the retry decides
    }
  }
}
