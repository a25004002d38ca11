/**
 * A custom plugin's own migrations: applied through api.storage.migrate(dir, name), recorded in a table of their
 * own (knex_migrations_<name>), so removing the plugin from Corefile.yaml — or deleting it — never blocks
 * start-up. SQLite in a temporary folder.
 */
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import knexFactory from 'knex';
import { startServer } from '../testing';

const distIndex = path.resolve(__dirname, '..', 'index.js');

const MIGRATION_1 = `exports.up = (knex) => knex.schema.createTable('notes_entries', (t) => { t.increments('id'); t.string('name').notNullable(); });
exports.down = (knex) => knex.schema.dropTable('notes_entries');
`;
const MIGRATION_2 = `exports.up = (knex) => knex.schema.alterTable('notes_entries', (t) => { t.integer('hits').notNullable().defaultTo(0); });
exports.down = (knex) => knex.schema.alterTable('notes_entries', (t) => { t.dropColumn('hits'); });
`;

/** Writes each queried name to its table (off the answer path) and answers TXT with the rows it has. */
const NOTES = `const path = require('node:path');
const { definePlugin, Type, DnsResponse } = require(${JSON.stringify(distIndex)});
module.exports = definePlugin({
  name: 'notes',
  options: Type.Object({}),
  async setup(api) {
    await api.storage.migrate(path.join(__dirname, 'migrations'), 'notes');
    const db = await api.storage.writer();
    api.hooks.query.tapPromise('notes', async (ctx) => {
      if (!ctx.qname.endsWith('.notes.test')) return undefined;
      const q = ctx.message.questions[0];
      if (ctx.qname === 'list.notes.test') {
        const rows = await db('notes_entries').select('name', 'hits').orderBy('id');
        return DnsResponse.fromPacket({ type: 'response', flags: 0, questions: [q], answers: [{ name: q.name, type: 'TXT', ttl: 0, data: [rows.map((r) => r.name + ':' + r.hits).join(',')] }] });
      }
      await db('notes_entries').insert({ name: ctx.qname, hits: 1 });
      return DnsResponse.fromPacket({ type: 'response', flags: 0, questions: [q], answers: [{ name: q.name, type: 'A', ttl: 0, data: '192.0.2.50' }] });
    });
  },
});
`;

/** Another plugin that uses storage: its setup opens the database (and so runs the core migrations). */
const TOUCH = `const { definePlugin, Type } = require(${JSON.stringify(distIndex)});
module.exports = definePlugin({
  name: 'touch',
  options: Type.Object({}),
  async setup(api) {
    const db = await api.storage.writer();
    await db.raw('select 1');
    const h = await api.storage.health();
    if (!h.ok) throw new Error('storage unhealthy: ' + h.error);
  },
});
`;

describe('custom plugin migrations', () => {
  let work: string;
  let dbFile: string;
  before(() => {
    work = fs.mkdtempSync(path.join(os.tmpdir(), 'codexdns-plugin-storage-'));
    dbFile = path.join(work, 'data', 'codexdns.sqlite');
    fs.mkdirSync(path.join(work, 'notes', 'migrations'), { recursive: true });
    fs.writeFileSync(path.join(work, 'notes', 'index.js'), NOTES);
    fs.writeFileSync(path.join(work, 'notes', 'migrations', '20240101000000_entries.js'), MIGRATION_1);
    fs.writeFileSync(path.join(work, 'notes', 'migrations', '20240102000000_hits.js'), MIGRATION_2);
    fs.writeFileSync(path.join(work, 'touch.js'), TOUCH);
  });
  after(() => fs.rmSync(work, { recursive: true, force: true }));

  const conf = (plugins: string): string => `servers:
  - listen: [udp://127.0.0.1:0]
    plugins:
${plugins}storage: { client: sqlite3, connection: { filename: ${dbFile} } }
`;

  async function tables(): Promise<{ core: string[]; notes: string[]; all: string[] }> {
    const db = knexFactory({ client: 'sqlite3', connection: { filename: dbFile }, useNullAsDefault: true });
    try {
      const all = ((await db.raw(`select name from sqlite_master where type = 'table' order by name`)) as { name: string }[]).map((r) => r.name);
      const core = ((await db('knex_migrations').select('name').orderBy('id')) as { name: string }[]).map((r) => r.name);
      const notes = all.includes('knex_migrations_notes') ? ((await db('knex_migrations_notes').select('name').orderBy('id')) as { name: string }[]).map((r) => r.name) : [];
      return { core, notes, all };
    } finally {
      await db.destroy();
    }
  }

  test('applied in a table of their own, every pending one, in order; the plugin uses what they made', async () => {
    const s = await startServer(conf(`      - use: ${path.join(work, 'notes', 'index.js')}\n`));
    try {
      assert.equal(((await s.query('a.notes.test', 'A')).answers![0] as { data: string }).data, '192.0.2.50');
      await s.query('b.notes.test', 'A');
      const list = await s.query('list.notes.test', 'TXT');
      assert.equal(Buffer.concat((list.answers![0] as { data: Buffer[] }).data).toString(), 'a.notes.test:1,b.notes.test:1');
    } finally {
      await s.stop();
    }
    const t = await tables();
    assert.deepEqual(t.notes, ['20240101000000_entries.js', '20240102000000_hits.js']);
    assert.ok(t.all.includes('knex_migrations_notes_lock'));
    // The core table knows nothing of the plugin's migrations.
    assert.ok(t.core.length > 0);
    assert.ok(t.core.every((n) => !/entries|hits/.test(n)), t.core.join(','));
  });

  test('a second start finds nothing pending and keeps the data', async () => {
    const s = await startServer(conf(`      - use: ${path.join(work, 'notes', 'index.js')}\n`));
    try {
      const list = await s.query('list.notes.test', 'TXT');
      assert.equal(Buffer.concat((list.answers![0] as { data: Buffer[] }).data).toString(), 'a.notes.test:1,b.notes.test:1');
      assert.ok(!s.logs.some((l) => /migrations? applied.*notes|entries\.js/.test(l)), s.logs.join('\n'));
    } finally {
      await s.stop();
    }
  });

  test('removed from Corefile.yaml, and even deleted from disk, the plugin does not block start-up', async () => {
    // Still installed, not listed: the storage opens and migrates the core set only.
    let s = await startServer(conf(`      - use: ${path.join(work, 'touch.js')}\n`));
    await s.stop();
    // Deleted: its table stays, recorded migrations whose files are gone do not matter to anyone.
    fs.rmSync(path.join(work, 'notes'), { recursive: true, force: true });
    s = await startServer(conf(`      - use: ${path.join(work, 'touch.js')}\n`));
    try {
      assert.ok(s.logs.some((l) => /codexdns started/.test(l)));
    } finally {
      await s.stop();
    }
    const t = await tables();
    assert.deepEqual(t.notes, ['20240101000000_entries.js', '20240102000000_hits.js']);
    assert.ok(t.all.includes('notes_entries'));
  });

  test('a reload that removes the plugin keeps serving; adding it back migrates nothing twice', async () => {
    fs.mkdirSync(path.join(work, 'notes', 'migrations'), { recursive: true });
    fs.writeFileSync(path.join(work, 'notes', 'index.js'), NOTES);
    fs.writeFileSync(path.join(work, 'notes', 'migrations', '20240101000000_entries.js'), MIGRATION_1);
    fs.writeFileSync(path.join(work, 'notes', 'migrations', '20240102000000_hits.js'), MIGRATION_2);
    const withNotes = conf(`      - use: ${path.join(work, 'notes', 'index.js')}\n`);
    const s = await startServer(withNotes);
    try {
      assert.equal((await s.reload(conf(`      - use: ${path.join(work, 'touch.js')}\n`))).ok, true);
      assert.equal((await s.query('c.notes.test', 'A')).rcode, 'SERVFAIL');
      assert.equal((await s.reload(withNotes)).ok, true);
      await s.query('c.notes.test', 'A');
      const list = await s.query('list.notes.test', 'TXT');
      assert.equal(Buffer.concat((list.answers![0] as { data: Buffer[] }).data).toString(), 'a.notes.test:1,b.notes.test:1,c.notes.test:1');
    } finally {
      await s.stop();
    }
    assert.deepEqual((await tables()).notes, ['20240101000000_entries.js', '20240102000000_hits.js']);
  });
});
