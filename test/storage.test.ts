// Storage layer tests: a real SQLite file in a temp dir, and PostgreSQL when CODEXDNS_TEST_PG is set
// (e.g. postgres://postgres@127.0.0.1:5432/test; every test works in a schema of its own, dropped after).
//
// This file is also the child process of the kill -9 test: run with CODEXDNS_STORAGE_CHILD=<dir> it
// writes batches forever, printing "committed N" after each commit, and registers no test.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { describe, test } from 'node:test';
import sqlite3 from 'sqlite3';

import {
  MigrationLockedError,
  Migrator,
  StorageBusyError,
  StorageUnavailableError,
  classifyError,
  openStorage,
  type Storage,
  type StorageConfig,
  type StorageLogger,
} from '../storage';
import { ClientStore, clientsMigrationsDir, registerClientsMigrations, type ClientUpdate } from '../plugins/clienttrack/store';

const PG_URL = process.env.CODEXDNS_TEST_PG;
const CHILD_DIR = process.env.CODEXDNS_STORAGE_CHILD;
const CHILD_ROWS = 200;

const quiet: StorageLogger = { info() {}, warn() {}, error() {} };

function recordingLogger(): StorageLogger & { warns: string[] } {
  const warns: string[] = [];
  return { warns, info() {}, warn: (m) => void warns.push(m), error: (m) => void warns.push(m) };
}

function tmpDir(): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), 'codexdns-storage-'));
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function upd(ip: string, p: Partial<ClientUpdate> = {}): ClientUpdate {
  return { ip, lastSeen: 1_000, firstSeen: 1_000, queries: 1, ...p };
}

// ---------------------------------------------------------------------------------------------------------
// Backends: each test gets a fresh database (a temp dir, or a fresh PostgreSQL schema).

interface Env {
  open(extra?: Partial<StorageConfig>, log?: StorageLogger): Promise<Storage>;
  cleanup(): Promise<void>;
}

interface Backend {
  name: 'sqlite3' | 'pg';
  fresh(): Promise<Env>;
}

const sqliteBackend: Backend = {
  name: 'sqlite3',
  async fresh() {
    const dir = tmpDir();
    const opened: Storage[] = [];
    return {
      async open(extra = {}, log = quiet) {
        const s = await openStorage(
          { client: 'sqlite3', connection: { filename: 'data/codexdns.sqlite' }, ...extra },
          { baseDir: dir, log },
        );
        // The `clients` table is clienttrack's migration set, registered as the server does.
        registerClientsMigrations(s);
        opened.push(s);
        return s;
      },
      async cleanup() {
        await Promise.all(opened.map((s) => s.close()));
        fs.rmSync(dir, { recursive: true, force: true });
      },
    };
  },
};

let schemaSeq = 0;
const pgBackend: Backend = {
  name: 'pg',
  async fresh() {
    const schema = `codexdns_t_${process.pid}_${Date.now().toString(36)}_${schemaSeq++}`;
    const admin = await openStorage({ client: 'pg', connection: PG_URL! }, { baseDir: '.', log: quiet });
    await admin.writer.raw(`create schema "${schema}"`);
    const opened: Storage[] = [];
    return {
      async open(extra = {}, log = quiet) {
        const s = await openStorage(
          { client: 'pg', connection: PG_URL!, searchPath: [schema], ...extra },
          { baseDir: '.', log },
        );
        // The `clients` table is clienttrack's migration set, registered as the server does.
        registerClientsMigrations(s);
        opened.push(s);
        return s;
      },
      async cleanup() {
        await Promise.all(opened.map((s) => s.close()));
        await admin.writer.raw(`drop schema if exists "${schema}" cascade`);
        await admin.close();
      },
    };
  },
};

async function withEnv(backend: Backend, fn: (env: Env) => Promise<void>): Promise<void> {
  const env = await backend.fresh();
  try {
    await fn(env);
  } finally {
    await env.cleanup();
  }
}

async function columns(s: Storage): Promise<string[]> {
  return Object.keys(await s.writer('clients').columnInfo()).sort();
}

/** Watch for unhandled rejections / uncaught exceptions while `fn` runs (and a little after). */
async function noCrash(fn: () => Promise<void>): Promise<void> {
  const seen: unknown[] = [];
  const onErr = (e: unknown) => void seen.push(e);
  process.on('unhandledRejection', onErr);
  process.on('uncaughtException', onErr);
  try {
    await fn();
    await sleep(300);
  } finally {
    process.off('unhandledRejection', onErr);
    process.off('uncaughtException', onErr);
  }
  assert.deepEqual(seen, [], 'no unhandled rejection or uncaught exception');
}

// ---------------------------------------------------------------------------------------------------------
// Tests shared by both databases.

function commonTests(backend: Backend): void {
  test('migrate up / down / up: the discovering column goes and comes back, data kept', () =>
    withEnv(backend, async (env) => {
      const s = await env.open();
      const set = (st: { sets: Array<{ set: string; applied: string[]; pending: string[] }> }) => st.sets.find((x) => x.set === 'clienttrack')!;
      const st0 = await s.migrate.status();
      assert.deepEqual(set(st0).applied, []);
      assert.deepEqual(set(st0).pending, ['000000_create_clients.js', '000001_add_discovering_field.js']);

      // The core migrations of the same names are empty now: a fresh database gets `clients` from clienttrack's.
      assert.deepEqual(await s.migrate.latest('core'), ['000000_create_clients.js', '000001_add_discovering_field.js']);
      assert.equal(await s.writer.schema.hasTable('clients'), false, 'the core set no longer creates clients');
      assert.deepEqual(await s.migrate.latest(), ['clienttrack:000000_create_clients.js', 'clienttrack:000001_add_discovering_field.js']);
      assert.deepEqual(await s.migrate.latest(), [], 'idempotent');
      assert.ok((await columns(s)).includes('discovering'));
      const store = new ClientStore(s);
      await store.writeBatch([upd('10.0.0.1', { hostname: 'nas', queries: 3, discovering: true })]);

      assert.deepEqual(await s.migrate.down('clienttrack'), ['000001_add_discovering_field.js']);
      assert.ok(!(await columns(s)).includes('discovering'), 'column dropped');
      const st1 = await s.migrate.status();
      assert.deepEqual(set(st1).applied, ['000000_create_clients.js']);
      assert.deepEqual(set(st1).pending, ['000001_add_discovering_field.js']);
      const [raw] = (await s.writer('clients').select('*')) as Array<Record<string, unknown>>;
      assert.equal(raw!.hostname, 'nas', 'rows survive the down migration');
      // Index on last_seen survives the SQLite table rebuild.
      if (s.client === 'sqlite3') {
        const idx = (await s.writer.raw(`PRAGMA index_list('clients')`)) as Array<{ name: string }>;
        assert.ok(idx.some((i) => i.name === 'clients_last_seen_idx'), 'last_seen index kept');
      }

      assert.deepEqual(await s.migrate.up('clienttrack'), ['000001_add_discovering_field.js']);
      assert.ok((await columns(s)).includes('discovering'), 'column back');
      const row = await store.get('10.0.0.1');
      assert.equal(row?.discovering, false, 'comes back with its default');
      assert.equal(row?.queryCount, 3);

      // All the way down and up again.
      await s.migrate.down('clienttrack');
      assert.deepEqual(await s.migrate.down('clienttrack'), ['000000_create_clients.js']);
      assert.equal(await s.writer.schema.hasTable('clients'), false);
      assert.deepEqual(await s.migrate.down('clienttrack'), [], 'nothing left to undo');
      // Undoing the core set leaves the table alone: it is not the core's any more.
      await s.migrate.latest();
      assert.deepEqual(await s.migrate.down(), ['000001_add_discovering_field.js']);
      assert.equal(await s.writer.schema.hasTable('clients'), true);
      assert.ok((await columns(s)).includes('discovering'));
      await s.migrate.latest();
      assert.deepEqual((await s.migrate.status()).pending, []);
      assert.deepEqual(set(await s.migrate.status()).pending, []);
    }));

  test('a database created by the former core migrations upgrades: clienttrack adopts its table, rows untouched', () =>
    withEnv(backend, async (env) => {
      // The two core migrations as they were when they created the table (copied verbatim from git).
      const legacy = path.resolve(__dirname, '../../test/fixtures/legacy-core-migrations');
      const old = await env.open();
      await old.writer.migrate.latest({ directory: legacy, tableName: 'knex_migrations', loadExtensions: ['.js'] });
      const legacyRows = [
        { ip: '192.168.1.20', hostname: 'nas', mac: 'aa:bb:cc:00:00:20', vendor: 'Synology', discovery_method: 'dhcp', first_seen: 1_000, last_seen: 9_000, query_count: 77, discovered_at: 2_000, last_error: null, discovering: false },
        { ip: 'fe80::1%eth0', hostname: null, mac: null, vendor: null, discovery_method: null, first_seen: 3_000, last_seen: 4_000, query_count: 5, discovered_at: null, last_error: 'rdns: timeout', discovering: true },
      ];
      await old.writer('clients').insert(legacyRows);
      const before = (await old.writer('clients').select('*').orderBy('ip')) as Array<Record<string, unknown>>;
      await old.close();

      // Today's start-up: the core set (empty migrations, same names) and clienttrack's set.
      const s = await env.open();
      const st0 = await s.migrate.status();
      assert.deepEqual(st0.pending, [], 'the core set has nothing pending');
      assert.deepEqual(st0.sets.find((x) => x.set === 'core')!.missing, [], 'every recorded core name still has its file');
      assert.deepEqual(await s.migrate.latest(), ['clienttrack:000000_create_clients.js', 'clienttrack:000001_add_discovering_field.js']);
      const after = (await s.writer('clients').select('*').orderBy('ip')) as Array<Record<string, unknown>>;
      assert.deepEqual(after, before, 'rows and columns untouched');
      const store = new ClientStore(s);
      const nas = await store.get('192.168.1.20');
      assert.deepEqual(
        { host: nas?.hostname, mac: nas?.mac, q: nas?.queryCount, last: nas?.lastSeen, disc: nas?.discovering, at: nas?.discoveredAt },
        { host: 'nas', mac: 'aa:bb:cc:00:00:20', q: 77, last: 9_000, disc: false, at: 2_000 },
      );
      assert.equal((await store.get('fe80::1%eth0'))?.lastError, 'rdns: timeout');
      assert.deepEqual(await store.discovering(10), ['fe80::1%eth0']);
      // And it keeps working: an upsert merges into the old row.
      await store.writeBatch([upd('192.168.1.20', { queries: 3, lastSeen: 10_000, firstSeen: 10_000 })]);
      assert.equal((await store.get('192.168.1.20'))?.queryCount, 80);

      // A database migrated only as far as the first old migration gets the column from clienttrack's second one.
      await s.writer.schema.alterTable('clients', (t) => t.dropColumn('discovering'));
      await s.writer('knex_migrations').where('name', '000001_add_discovering_field.js').del();
      await s.writer('knex_migrations_clienttrack').del();
      assert.deepEqual(await s.migrate.latest(), ['000001_add_discovering_field.js', 'clienttrack:000000_create_clients.js', 'clienttrack:000001_add_discovering_field.js']);
      assert.ok((await columns(s)).includes('discovering'));
      assert.equal((await store.get('192.168.1.20'))?.queryCount, 80, 'rows kept');
    }));

  test('writeBatch merges: counters add, last_seen = max, fields kept unless carried', () =>
    withEnv(backend, async (env) => {
      const s = await env.open();
      await s.migrate.latest();
      const store = new ClientStore(s);
      await store.writeBatch([
        upd('192.168.1.10', { firstSeen: 100, lastSeen: 200, queries: 5, hostname: 'tv', mac: 'aa:bb:cc:00:00:01' }),
        upd('192.168.1.11', { firstSeen: 100, lastSeen: 150, queries: 1, discovering: true }),
      ]);
      // Older lastSeen, no hostname: count adds, last_seen stays 200, hostname kept, first_seen lowered.
      await store.writeBatch([upd('192.168.1.10', { firstSeen: 50, lastSeen: 180, queries: 2 })]);
      let r = await store.get('192.168.1.10');
      assert.deepEqual(
        { q: r?.queryCount, last: r?.lastSeen, first: r?.firstSeen, host: r?.hostname, mac: r?.mac },
        { q: 7, last: 200, first: 50, host: 'tv', mac: 'aa:bb:cc:00:00:01' },
      );
      // Newer lastSeen and a new hostname: both move; vendor/method/discovered_at set.
      await store.writeBatch([
        upd('192.168.1.10', {
          lastSeen: 300,
          firstSeen: 250,
          queries: 1,
          hostname: 'tv.lan',
          vendor: 'ACME',
          method: 'dhcp',
          discoveredAt: 299,
        }),
      ]);
      r = await store.get('192.168.1.10');
      assert.deepEqual(
        [r?.queryCount, r?.lastSeen, r?.firstSeen, r?.hostname, r?.vendor, r?.method, r?.discoveredAt],
        [8, 300, 50, 'tv.lan', 'ACME', 'dhcp', 299],
      );
      // null for hostname means "not carried" (kept); null for lastError clears it.
      await store.writeBatch([upd('192.168.1.11', { queries: 0, lastError: 'rdns timeout', hostname: null })]);
      assert.equal((await store.get('192.168.1.11'))?.lastError, 'rdns timeout');
      assert.equal((await store.get('192.168.1.11'))?.discovering, true, 'discovering kept when not carried');
      await store.writeBatch([upd('192.168.1.11', { queries: 0 })]);
      assert.equal((await store.get('192.168.1.11'))?.lastError, 'rdns timeout', 'absent lastError keeps it');
      await store.writeBatch([upd('192.168.1.11', { queries: 0, lastError: null, discovering: false })]);
      r = await store.get('192.168.1.11');
      assert.equal(r?.lastError, null, 'null lastError clears it');
      assert.equal(r?.discovering, false);

      // Repeats of one ip inside a batch, in different shapes, merge in order.
      await store.writeBatch([
        upd('10.9.9.9', { lastSeen: 10, firstSeen: 10, queries: 1, discovering: true }),
        upd('10.9.9.9', { lastSeen: 30, firstSeen: 30, queries: 2, hostname: 'x' }),
        upd('10.9.9.9', { lastSeen: 20, firstSeen: 5, queries: 4, discovering: false, lastError: 'e' }),
      ]);
      r = await store.get('10.9.9.9');
      assert.deepEqual(
        [r?.queryCount, r?.lastSeen, r?.firstSeen, r?.hostname, r?.discovering, r?.lastError],
        [7, 30, 5, 'x', false, 'e'],
      );

      // Many rows in several statements (small statement cap) and mixed shapes, one transaction.
      const small = new ClientStore(s, { maxRowsPerStatement: 7 });
      const many: ClientUpdate[] = [];
      for (let i = 0; i < 250; i++) {
        many.push(upd(`10.1.${i >> 8}.${i & 255}`, { queries: i, ...(i % 3 === 0 ? { hostname: `h${i}` } : {}) }));
      }
      await small.writeBatch(many);
      await small.writeBatch(many);
      const h9 = await store.get('10.1.0.9');
      assert.equal(h9?.queryCount, 18);
      assert.equal(h9?.hostname, 'h9');
      assert.equal(await store.count(), 253);

      // Text that PostgreSQL would refuse (NUL, lone surrogate) and over-long fields are made storable.
      await store.writeBatch([upd('10.2.0.1', { hostname: `bad\u0000name\ud800`, vendor: 'v'.repeat(400) })]);
      r = await store.get('10.2.0.1');
      assert.equal(r?.hostname, 'badname\ufffd');
      assert.equal(r?.vendor?.length, 255);

      // Invalid input is refused before touching the database.
      await assert.rejects(store.writeBatch([upd('')]), TypeError);
      await assert.rejects(store.writeBatch([upd('10.0.0.1', { queries: -1 })]), TypeError);
      await assert.rejects(store.writeBatch([upd('10.0.0.1', { lastSeen: Number.NaN })]), TypeError);
      await store.writeBatch([]);
    }));

  test('data persists across close and reopen', () =>
    withEnv(backend, async (env) => {
      const s1 = await env.open();
      await s1.migrate.latest();
      await new ClientStore(s1).writeBatch([upd('10.0.0.5', { queries: 42, hostname: 'printer', lastSeen: 5000 })]);
      await s1.close();
      await s1.close(); // idempotent
      assert.equal((await s1.health()).ok, false, 'closed storage reports unhealthy');

      const s2 = await env.open();
      assert.deepEqual((await s2.migrate.status()).pending, []);
      const r = await new ClientStore(s2).get('10.0.0.5');
      assert.equal(r?.queryCount, 42);
      assert.equal(r?.hostname, 'printer');
      assert.equal(r?.lastSeen, 5000);
      const h = await s2.health();
      assert.equal(h.ok, true);
      assert.equal(typeof h.latencyMs, 'number');
    }));

  test('prune deletes old clients in small chunks', () =>
    withEnv(backend, async (env) => {
      const s = await env.open();
      await s.migrate.latest();
      const store = new ClientStore(s);
      const now = 100_000_000;
      const batch: ClientUpdate[] = [];
      for (let i = 0; i < 1234; i++) {
        // 1000 old (last seen 2..3 h ago), 234 recent.
        const lastSeen = i < 1000 ? now - 3 * 3600_000 + i : now - 60_000;
        batch.push(upd(`10.3.${i >> 8}.${i & 255}`, { lastSeen, firstSeen: lastSeen }));
      }
      await store.writeBatch(batch);
      let deletes = 0;
      const onQuery = (q: { sql: string }) => {
        if (/^delete/i.test(q.sql)) deletes++;
      };
      s.writer.on('query', onQuery);
      try {
        assert.equal(await store.prune(2 * 3600_000, 100, now), 1000);
      } finally {
        s.writer.off('query', onQuery);
      }
      assert.equal(deletes, 11, '10 full chunks of 100 and a last, empty one');
      assert.equal(await store.count(), 234);
      assert.equal(await store.prune(2 * 3600_000, 100, now), 0);
      assert.equal(await store.pruneBefore(now, 50), 234);
      assert.throws(() => store.prune(0), RangeError);
    }));

  test('list: search, sort, order and paging on the read side', () =>
    withEnv(backend, async (env) => {
      const s = await env.open();
      await s.migrate.latest();
      const store = new ClientStore(s);
      await store.writeBatch([
        upd('192.168.1.1', { hostname: 'router', mac: 'AA:BB:CC:00:00:01', queries: 50, lastSeen: 500, firstSeen: 1 }),
        upd('192.168.1.10', { hostname: 'Printer-Office', queries: 5, lastSeen: 400, firstSeen: 2 }),
        upd('192.168.1.100', { queries: 500, lastSeen: 300, firstSeen: 3 }),
        upd('10.0.0.7', { hostname: 'laptop_1', mac: 'de:ad:be:ef:00:07', queries: 7, lastSeen: 600, firstSeen: 4 }),
        upd('fd00::1', { hostname: 'nas', queries: 1, lastSeen: 100, firstSeen: 5 }),
      ]);
      const ips = (r: { rows: Array<{ ip: string }> }) => r.rows.map((x) => x.ip);

      let r = await store.list();
      assert.equal(r.total, 5);
      assert.deepEqual(ips(r), ['10.0.0.7', '192.168.1.1', '192.168.1.10', '192.168.1.100', 'fd00::1'], 'last_seen desc');

      r = await store.list({ sort: 'query_count', order: 'desc', limit: 2 });
      assert.deepEqual(ips(r), ['192.168.1.100', '192.168.1.1']);
      assert.equal(r.total, 5);
      r = await store.list({ sort: 'query_count', order: 'desc', limit: 2, offset: 2 });
      assert.deepEqual(ips(r), ['10.0.0.7', '192.168.1.10']);
      r = await store.list({ sort: 'first_seen', order: 'asc', offset: 4 });
      assert.deepEqual(ips(r), ['fd00::1']);

      r = await store.list({ sort: 'hostname', order: 'asc' });
      assert.equal(r.rows.at(-1)?.ip, '192.168.1.100', 'no hostname sorts last');
      r = await store.list({ sort: 'hostname', order: 'desc' });
      assert.equal(r.rows.at(-1)?.ip, '192.168.1.100', 'no hostname sorts last in both orders');
      r = await store.list({ sort: 'ip', order: 'asc' });
      assert.deepEqual(ips(r), ['10.0.0.7', '192.168.1.1', '192.168.1.10', '192.168.1.100', 'fd00::1']);

      r = await store.list({ search: '192.168.1.1' });
      assert.equal(r.total, 3, 'ip substring');
      r = await store.list({ search: 'printer' });
      assert.deepEqual(ips(r), ['192.168.1.10'], 'hostname, case-insensitive');
      r = await store.list({ search: 'aa:bb' });
      assert.deepEqual(ips(r), ['192.168.1.1'], 'mac, case-insensitive');
      r = await store.list({ search: 'DE:AD' });
      assert.deepEqual(ips(r), ['10.0.0.7']);
      r = await store.list({ search: '%' });
      assert.equal(r.total, 0, '% is literal, not a wildcard');
      r = await store.list({ search: '_' });
      assert.deepEqual(ips(r), ['10.0.0.7'], '_ is literal (laptop_1)');
      r = await store.list({ search: 'nothing-like-this' });
      assert.deepEqual(r, { total: 0, rows: [] });

      r = await store.list({ limit: 100_000 });
      assert.equal(r.rows.length, 5, 'limit capped, not refused');
      await assert.rejects(store.list({ sort: 'mac' as never }), TypeError);
      await assert.rejects(store.list({ order: 'sideways' as never }), TypeError);

      const idx = await store.loadIndex(3);
      assert.deepEqual(
        idx.map((x) => x.ip),
        ['10.0.0.7', '192.168.1.1', '192.168.1.10'],
        'loadIndex: most recent first, capped',
      );
      assert.equal(idx[0]?.mac, 'de:ad:be:ef:00:07');
      assert.equal(typeof idx[0]?.lastSeen, 'number');
      assert.equal(typeof idx[0]?.queryCount, 'number');
    }));

  test('the "migrations applied" line names its set: a fresh database logs the core stubs and clienttrack apart', () =>
    withEnv(backend, async (env) => {
      const s = await env.open();
      const infos: Array<{ msg: string; fields?: Record<string, unknown> }> = [];
      const m = new Migrator(s.writer, { client: s.client, log: { info: (msg, fields) => void infos.push({ msg, fields }), warn() {}, error() {} } });
      m.addPlugin('clienttrack', clientsMigrationsDir());
      await m.latest('core');
      await m.latest('clienttrack');
      const applied = infos.filter((i) => i.msg === 'storage: migrations applied').map((i) => i.fields?.set);
      assert.deepEqual(applied, ['core', 'clienttrack']);
    }));

  test('migration lock held by another process: retried until released, bounded otherwise', () =>
    withEnv(backend, async (env) => {
      const s = await env.open();
      await s.migrate.latest();
      const log = recordingLogger();
      const m = new Migrator(s.writer, {
        client: s.client,
        log,
        lockRetry: { attempts: 60, minDelayMs: 10, maxDelayMs: 50 },
      });
      await s.writer('knex_migrations_lock').update({ is_locked: 1 });
      setTimeout(() => void s.writer('knex_migrations_lock').update({ is_locked: 0 }).then(() => {}), 200);
      const t0 = Date.now();
      assert.deepEqual(await m.latest(), []);
      assert.ok(Date.now() - t0 >= 150, 'waited for the lock');
      assert.ok(log.warns.some((w) => /waiting for another process/.test(w)));

      // Never released: a typed error after the bound, telling how to unlock.
      await s.writer('knex_migrations_lock').update({ is_locked: 1 });
      const short = new Migrator(s.writer, {
        client: s.client,
        log: quiet,
        lockRetry: { attempts: 3, minDelayMs: 5, maxDelayMs: 10 },
      });
      await assert.rejects(short.latest(), (err: unknown) => {
        assert.ok(err instanceof MigrationLockedError);
        assert.match(err.message, /codexdns migrate unlock/);
        return true;
      });
      await short.unlock();
      assert.deepEqual(await short.latest(), []);
    }));

  const concurrencyVariants: Array<[string, Partial<StorageConfig>]> =
    backend.name === 'pg'
      ? [
          ['advisory lock', {}],
          ['pool of 1: no advisory lock, knex lock and retries only', { pool: { min: 0, max: 1 } }],
        ]
      : [['one file', {}]];
  for (const [variant, extra] of concurrencyVariants) {
    test(`three instances migrating a fresh database concurrently all succeed (${variant})`, async () => {
      for (let round = 0; round < 3; round++) {
        await withEnv(backend, async (env) => {
          const all = await Promise.all([env.open(extra), env.open(extra), env.open(extra)]);
          const results = await Promise.all(all.map((s) => s.migrate.latest()));
          assert.deepEqual(
            results.flat().sort(),
            ['000000_create_clients.js', '000001_add_discovering_field.js', 'clienttrack:000000_create_clients.js', 'clienttrack:000001_add_discovering_field.js'],
            'each migration applied exactly once',
          );
          const names = (await all[0]!.reader('knex_migrations').orderBy('id').pluck('name')) as string[];
          assert.deepEqual(names, ['000000_create_clients.js', '000001_add_discovering_field.js']);
          const own = (await all[0]!.reader('knex_migrations_clienttrack').orderBy('id').pluck('name')) as string[];
          assert.deepEqual(own, ['000000_create_clients.js', '000001_add_discovering_field.js']);
          const locks = (await all[0]!.reader('knex_migrations_lock').select('*')) as unknown[];
          assert.equal(locks.length, 1, 'one lock row');
          for (const s of all) assert.deepEqual((await s.migrate.status()).pending, []);
        });
      }
    });
  }

  test('plugin migrations: own table, and removing the plugin never blocks start-up', () =>
    withEnv(backend, async (env) => {
      const dir = tmpDir();
      try {
        fs.writeFileSync(
          path.join(dir, '000000_geo_cache.js'),
          `exports.up = (knex) => knex.schema.createTable('geo_cache', (t) => { t.string('ip').primary(); t.string('country'); });
exports.down = (knex) => knex.schema.dropTable('geo_cache');
`,
        );
        fs.writeFileSync(path.join(dir, 'README.md'), 'not a migration');
        const s = await env.open();
        s.migrate.addPlugin('geoblock', [dir]);
        assert.deepEqual(
          s.migrate.sets.map((x) => [x.name, x.tableName]),
          [
            ['core', 'knex_migrations'],
            ['clienttrack', 'knex_migrations_clienttrack'],
            ['geoblock', 'knex_migrations_geoblock'],
          ],
        );
        assert.deepEqual(await s.migrate.latest(), [
          '000000_create_clients.js',
          '000001_add_discovering_field.js',
          'clienttrack:000000_create_clients.js',
          'clienttrack:000001_add_discovering_field.js',
          'geoblock:000000_geo_cache.js',
        ]);
        assert.equal(await s.writer.schema.hasTable('geo_cache'), true);
        const st = await s.migrate.status();
        assert.deepEqual(st.sets[2], {
          set: 'geoblock',
          tableName: 'knex_migrations_geoblock',
          applied: ['000000_geo_cache.js'],
          pending: [],
          missing: [],
        });
        const core = (await s.writer('knex_migrations').pluck('name')) as string[];
        assert.ok(!core.includes('000000_geo_cache.js'), 'core table does not record plugin migrations');
        assert.deepEqual(await s.migrate.down('geoblock'), ['000000_geo_cache.js']);
        assert.equal(await s.writer.schema.hasTable('geo_cache'), false);
        assert.deepEqual(await s.migrate.up('geoblock'), ['000000_geo_cache.js']);
        await s.migrate.down('geoblock');
        assert.deepEqual(await s.migrate.latest('geoblock'), ['000000_geo_cache.js'], 'latest of one set');
        await assert.rejects(s.migrate.latest('nope'), /unknown migration set/);
        await s.close();

        // The plugin is removed from Corefile.yaml (and its files are gone): start-up still migrates.
        fs.rmSync(dir, { recursive: true, force: true });
        const s2 = await env.open();
        assert.deepEqual(await s2.migrate.latest(), []);
        assert.deepEqual((await s2.migrate.status()).sets.length, 2, 'core and clienttrack');
        assert.throws(() => s2.migrate.addPlugin('core', dir), TypeError);
      } finally {
        fs.rmSync(dir, { recursive: true, force: true });
      }
    }));
}

// ---------------------------------------------------------------------------------------------------------
// The kill -9 child.

async function childMain(dir: string): Promise<void> {
  const s = await openStorage({ client: 'sqlite3', connection: { filename: 'crash.sqlite' } }, { baseDir: dir });
  registerClientsMigrations(s);
  await s.migrate.latest();
  const store = new ClientStore(s);
  for (let b = 0; ; b++) {
    const batch: ClientUpdate[] = [upd('counter', { queries: 1, lastSeen: b })];
    for (let i = 0; i < CHILD_ROWS; i++) {
      batch.push(upd(`fd00::${b.toString(16)}:${i.toString(16)}`, { queries: b + 1, lastSeen: b, hostname: `h${b}` }));
    }
    await store.writeBatch(batch);
    process.stdout.write(`committed ${b}\n`); // pipes are synchronous on Linux: written before the next batch
  }
}

// ---------------------------------------------------------------------------------------------------------

if (CHILD_DIR) {
  childMain(CHILD_DIR).catch((err) => {
    console.error(err);
    process.exit(2);
  });
} else {
  describe('storage: SQLite', () => {
    commonTests(sqliteBackend);

    test('relative filename resolves against baseDir, WAL and the synchronous level read back', async () => {
      const dir = tmpDir();
      try {
        const s = await openStorage(
          { client: 'sqlite3', connection: 'deep/er/db.sqlite' },
          { baseDir: dir, log: quiet },
        );
        try {
          assert.equal(s.filename, path.join(dir, 'deep/er/db.sqlite'));
          assert.ok(fs.existsSync(path.join(dir, 'deep/er/db.sqlite')), 'directory created');
          assert.equal(s.maxParams, 32766, 'SQLite 3.44 allows 32766 parameters');
          const [jm] = (await s.writer.raw('PRAGMA journal_mode')) as Array<{ journal_mode: string }>;
          assert.equal(jm?.journal_mode, 'wal');
          const [sy] = (await s.writer.raw('PRAGMA synchronous')) as Array<{ synchronous: number }>;
          assert.equal(sy?.synchronous, 1, 'NORMAL by default');
          const [bt] = (await s.writer.raw('PRAGMA busy_timeout')) as Array<{ timeout: number }>;
          assert.equal(bt?.timeout, 2000);
          assert.notEqual(s.reader, s.writer, 'a separate read connection');
          const [rjm] = (await s.reader.raw('PRAGMA journal_mode')) as Array<{ journal_mode: string }>;
          assert.equal(rjm?.journal_mode, 'wal');
          registerClientsMigrations(s);
          await s.migrate.latest();
          await assert.rejects(
            s.reader('clients').insert({ ip: 'x', first_seen: 1, last_seen: 1 }),
            /readonly|query_only|attempt to write/i,
            'the read side cannot write',
          );
        } finally {
          await s.close();
        }
        const full = await openStorage(
          { client: 'sqlite3', connection: { filename: 'deep/er/db.sqlite' }, synchronous: 'full', busy_timeout_ms: 50 },
          { baseDir: dir, log: quiet },
        );
        try {
          const [sy] = (await full.writer.raw('PRAGMA synchronous')) as Array<{ synchronous: number }>;
          assert.equal(sy?.synchronous, 2, 'FULL when asked');
          const [bt] = (await full.writer.raw('PRAGMA busy_timeout')) as Array<{ timeout: number }>;
          assert.equal(bt?.timeout, 50);
        } finally {
          await full.close();
        }
        await assert.rejects(
          openStorage({ client: 'sqlite3', connection: {}, synchronous: 'normal' }, { baseDir: dir }),
          TypeError,
        );
        await assert.rejects(
          openStorage(
            { client: 'sqlite3', connection: 'x.sqlite', synchronous: 'sometimes' as never },
            { baseDir: dir },
          ),
          TypeError,
        );
        // Unusable paths fail at open, quickly: a file where a folder should be, a folder as the database,
        // a folder that cannot be created.
        fs.writeFileSync(path.join(dir, 'plain-file'), '');
        for (const bad of ['plain-file/db.sqlite', 'deep', '/proc/nope/x.sqlite']) {
          await assert.rejects(
            openStorage({ client: 'sqlite3', connection: bad, acquire_timeout_ms: 2000 }, { baseDir: dir, log: quiet }),
            (err: unknown) => err instanceof Error,
            bad,
          );
        }
      } finally {
        fs.rmSync(dir, { recursive: true, force: true });
      }
    });

    test('locked database: retries, then StorageBusyError; succeeds if released during the retries', () =>
      withEnv(sqliteBackend, async (env) => {
        const log = recordingLogger();
        const s = await env.open({ busy_timeout_ms: 20 }, log);
        await s.migrate.latest();
        const store = new ClientStore(s, { retry: { attempts: 5, minDelayMs: 10, maxDelayMs: 200 } });
        await store.writeBatch([upd('10.0.0.1', { queries: 1 })]);

        const blocker = new sqlite3.Database(s.filename!);
        const exec = (sql: string) =>
          new Promise<void>((resolve, reject) => blocker.exec(sql, (err) => (err ? reject(err) : resolve())));
        try {
          await exec('BEGIN EXCLUSIVE');
          const t0 = Date.now();
          await assert.rejects(store.writeBatch([upd('10.0.0.2')]), (err: unknown) => {
            assert.ok(err instanceof StorageBusyError, `got ${String(err)}`);
            assert.equal(err.attempts, 5);
            assert.match(err.code ?? '', /SQLITE_BUSY/);
            return true;
          });
          const waited = Date.now() - t0;
          assert.ok(waited >= 5 * 20, `waited ${waited} ms: busy_timeout on each of 5 attempts`);
          assert.ok(waited < 3000, `bounded (${waited} ms)`);
          assert.equal(log.warns.filter((w) => /retry/.test(w)).length, 4, 'a warning per retry');

          // WAL: the read side is not blocked by the writer's lock.
          assert.equal((await store.get('10.0.0.1'))?.queryCount, 1);
          assert.equal((await store.list()).total, 1);
          assert.equal((await s.health()).ok, true);

          // Released while retrying: the write goes through.
          const p = store.writeBatch([upd('10.0.0.3', { queries: 9 })]);
          setTimeout(() => void exec('ROLLBACK'), 60);
          await p;
          assert.equal((await store.get('10.0.0.3'))?.queryCount, 9);
          assert.equal(await store.get('10.0.0.2'), undefined, 'the failed batch wrote nothing');
        } finally {
          await new Promise<void>((resolve) => blocker.close(() => resolve()));
        }
      }));

    test('locked database, a batch of several statements: all or nothing, and the connection is clean after it', () =>
      withEnv(sqliteBackend, async (env) => {
        const s = await env.open({ busy_timeout_ms: 20 });
        await s.migrate.latest();
        const store = new ClientStore(s, { retry: { attempts: 3, minDelayMs: 10, maxDelayMs: 50 } });
        await store.writeBatch([upd('10.0.1.1', { queries: 1 })]);
        // Three shapes, so three statements in one transaction: a new client being discovered, a known one's
        // activity, and a discovery result.
        const mixed = (n: number): ClientUpdate[] => [
          upd(`10.0.1.${10 + n}`, { discovering: true }),
          upd('10.0.1.1', { queries: 2, lastSeen: 2_000 }),
          upd(`10.0.1.${20 + n}`, { hostname: `h${n}.lan`, method: 'rdns', discoveredAt: 1_500, discovering: false }),
        ];
        const blocker = new sqlite3.Database(s.filename!);
        const exec = (sql: string) =>
          new Promise<void>((resolve, reject) => blocker.exec(sql, (err) => (err ? reject(err) : resolve())));
        try {
          await exec('BEGIN EXCLUSIVE');
          await assert.rejects(store.writeBatch(mixed(1)), StorageBusyError);
          await exec('ROLLBACK');
          assert.equal(await store.get('10.0.1.11'), undefined, 'nothing of the failed batch');
          assert.equal((await store.get('10.0.1.1'))?.queryCount, 1);
          // The writer's connection was left outside any transaction: the next batches go through.
          await store.writeBatch(mixed(2));
          await store.writeBatch([upd('10.0.1.1', { queries: 4 })]);
          assert.equal((await store.get('10.0.1.12'))?.discovering, true);
          assert.equal((await store.get('10.0.1.22'))?.hostname, 'h2.lan');
          assert.equal((await store.get('10.0.1.1'))?.queryCount, 7);
        } finally {
          await new Promise<void>((resolve) => blocker.close(() => resolve()));
        }
      }));

    test('kill -9 mid-write: integrity ok and every reported commit is there', async () => {
      const dir = tmpDir();
      try {
        const child = spawn(process.execPath, [__filename], {
          env: { ...process.env, CODEXDNS_STORAGE_CHILD: dir },
          stdio: ['ignore', 'pipe', 'pipe'],
        });
        let out = '';
        let err = '';
        child.stderr.on('data', (d: Buffer) => (err += d.toString()));
        const exited = new Promise<NodeJS.Signals | null>((resolve) => child.on('exit', (_c, sig) => resolve(sig)));
        await new Promise<void>((resolve, reject) => {
          const timer = setTimeout(() => reject(new Error(`child made no progress: ${err}`)), 30_000);
          child.stdout.on('data', (d: Buffer) => {
            out += d.toString();
            if ((out.match(/committed/g) ?? []).length >= 40) {
              clearTimeout(timer);
              child.kill('SIGKILL'); // mid-way: the child is inside its next transaction
              resolve();
            }
          });
          child.on('exit', () => reject(new Error(`child exited early: ${err}`)));
        });
        assert.equal(await exited, 'SIGKILL');
        const committed = [...out.matchAll(/committed (\d+)\n/g)].map((m) => Number(m[1]));
        assert.ok(committed.length >= 40);

        const s = await openStorage(
          { client: 'sqlite3', connection: { filename: 'crash.sqlite' } },
          { baseDir: dir, log: quiet },
        );
        try {
          const [ic] = (await s.writer.raw('PRAGMA integrity_check')) as Array<{ integrity_check: string }>;
          assert.equal(ic?.integrity_check, 'ok');
          const store = new ClientStore(s);
          for (const b of committed) {
            const [{ n }] = (await s.reader('clients')
              .where('ip', 'like', `fd00::${b.toString(16)}:%`)
              .count({ n: '*' })) as Array<{ n: number }>;
            assert.equal(n, CHILD_ROWS, `batch ${b} complete`);
          }
          const counter = await store.get('counter');
          const last = Math.max(...committed);
          // Every reported batch counted; at most one more (committed, killed before it was reported).
          assert.ok(
            counter!.queryCount === committed.length || counter!.queryCount === committed.length + 1,
            `counter ${counter!.queryCount} vs ${committed.length} reported`,
          );
          const total = await store.count();
          assert.ok(total === 1 + (last + 1) * CHILD_ROWS || total === 1 + (last + 2) * CHILD_ROWS, 'no torn batch');
        } finally {
          await s.close();
        }
      } finally {
        fs.rmSync(dir, { recursive: true, force: true });
      }
    });

    test(':memory: works with one shared connection', async () => {
      const s = await openStorage({ client: 'sqlite3', connection: ':memory:' }, { baseDir: '.', log: quiet });
      try {
        registerClientsMigrations(s);
        await s.migrate.latest();
        const store = new ClientStore(s);
        await store.writeBatch([upd('10.0.0.1')]);
        assert.equal((await store.list()).total, 1);
      } finally {
        await s.close();
      }
    });

    test('classifyError maps driver errors', () => {
      const e = (code: string, message = code) => Object.assign(new Error(message), { code });
      assert.equal(classifyError(e('SQLITE_BUSY')), 'busy');
      assert.equal(classifyError(e('SQLITE_LOCKED')), 'busy');
      assert.equal(classifyError(e('40P01')), 'busy');
      assert.equal(classifyError(e('ECONNREFUSED')), 'unavailable');
      assert.equal(classifyError(e('57P01')), 'unavailable');
      assert.equal(classifyError(e('08006')), 'unavailable');
      assert.equal(classifyError(new AggregateError([e('ECONNREFUSED')])), 'unavailable');
      assert.equal(classifyError(Object.assign(new Error('x'), { name: 'KnexTimeoutError' })), 'unavailable');
      assert.equal(classifyError(new Error('Connection terminated unexpectedly')), 'unavailable');
      // A row the schema refuses: retrying cannot help (issue 15: only these may be dropped at once).
      assert.equal(classifyError(e('SQLITE_CONSTRAINT')), 'permanent');
      assert.equal(classifyError(e('23505')), 'permanent');
      assert.equal(classifyError(e('22003')), 'permanent');
      // Cancelled (pg_cancel_backend, statement_timeout) or timed out on a lock: retried later, not at once.
      assert.equal(classifyError(e('57014')), 'timeout');
      assert.equal(classifyError(e('55P03')), 'timeout');
      // A standby after a failover.
      assert.equal(classifyError(e('25006')), 'unavailable');
      // Unrecognised (a renamed table): kept and retried by the writer, within its give_up bound.
      assert.equal(classifyError(e('42P01')), 'other');
      assert.equal(classifyError(e('SQLITE_ERROR', 'SQLITE_ERROR: no such table: clients')), 'other');
    });
  });

  describe(
    'storage: PostgreSQL',
    { skip: PG_URL ? false : 'set CODEXDNS_TEST_PG=postgres://user@127.0.0.1:5432/db to run the PostgreSQL tests' },
    () => {
      commonTests(pgBackend);

      test('PostgreSQL down (closed port): StorageUnavailableError, health false, no crash', () =>
        noCrash(async () => {
          const s = await openStorage(
            { client: 'pg', connection: 'postgres://postgres@127.0.0.1:1/none', acquire_timeout_ms: 3000 },
            { baseDir: '.', log: quiet },
          );
          try {
            const store = new ClientStore(s);
            await assert.rejects(s.migrate.latest(), StorageUnavailableError);
            await assert.rejects(s.migrate.status(), StorageUnavailableError);
            await assert.rejects(store.writeBatch([upd('10.0.0.1')]), (err: unknown) => {
              assert.ok(err instanceof StorageUnavailableError, String(err));
              assert.equal(err.code, 'ECONNREFUSED');
              return true;
            });
            await assert.rejects(store.list(), StorageUnavailableError);
            await assert.rejects(store.prune(1000), StorageUnavailableError);
            const h = await s.health();
            assert.equal(h.ok, false);
            assert.match(h.error ?? '', /ECONNREFUSED|connect/);
          } finally {
            await s.close();
          }
        }));

      test('server closes the connections (pg_terminate_backend): caught, next query reconnects', () =>
        withEnv(pgBackend, (env) =>
          noCrash(async () => {
            const appName = `codexdns_test_${process.pid}_${Date.now()}`;
            const s = await env.open({ connection: { connectionString: PG_URL, application_name: appName } });
            await s.migrate.latest();
            const store = new ClientStore(s);
            await store.writeBatch([upd('10.0.0.1')]);
            // Several pooled connections, idle.
            await Promise.all([store.list(), store.list(), store.count(), store.get('10.0.0.1')]);
            const admin = await openStorage({ client: 'pg', connection: PG_URL! }, { baseDir: '.', log: quiet });
            try {
              const kill = () =>
                admin.writer.raw('select pg_terminate_backend(pid) from pg_stat_activity where application_name = ?', [
                  appName,
                ]);
              const killed = (await kill()) as { rowCount: number };
              assert.ok(killed.rowCount >= 1, 'idle connections terminated');
              await sleep(200); // the 'error' events arrive on idle pooled clients
              await store.writeBatch([upd('10.0.0.1')]);
              assert.equal((await store.get('10.0.0.1'))?.queryCount, 2, 'pool replaced the dead connections');

              // A connection killed in the middle of a query: that query fails as unavailable, no crash.
              // (the outcome is captured at once: the rejection arrives while we are busy killing)
              const slow = Promise.resolve(s.reader.raw('select pg_sleep(5)')).then(
                () => new Error('pg_sleep survived pg_terminate_backend'),
                (err: unknown) => err,
              );
              await sleep(300);
              await kill();
              const err = await slow;
              assert.equal(classifyError(err), 'unavailable', String(err));
              // …and through the store, a batch waiting on a row lock when its connection is killed fails
              // as StorageUnavailableError (nothing written), and the next one goes through.
              const holder = await env.open(); // application_name 'codexdns': not killed
              const trx = await holder.writer.transaction();
              await trx('clients').where('ip', '10.0.0.1').update({ vendor: 'held' });
              const blocked = store.writeBatch([upd('10.0.0.1', { queries: 100 })]).then(
                () => null,
                (e: unknown) => e,
              );
              await sleep(300);
              await kill();
              const blockedErr = await blocked;
              assert.ok(blockedErr instanceof StorageUnavailableError, String(blockedErr));
              await trx.rollback();
              await store.writeBatch([upd('10.0.0.1')]);
              assert.equal((await store.get('10.0.0.1'))?.queryCount, 3, 'the killed batch wrote nothing');
              assert.equal((await s.health()).ok, true);
            } finally {
              await admin.close();
            }
          }),
        ));
    },
  );
}
