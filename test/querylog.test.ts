// The querylog plugin on a real server: every answered query lands in a real SQLite file (and in PostgreSQL when
// CODEXDNS_TEST_PG is set: each test in a fresh schema), with who answered, the rcode, blocked and truncated;
// the API on the metrics listener filters, pages back by cursor and reads the hourly counts; excluded, sampled
// and anonymized clients; a full ring and a failing database drop entries and count them, never a query.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as os from 'node:os';
import * as path from 'node:path';
import { startServer, startFakeUpstream, type TestServer, type FakeUpstream } from '../testing';
import { definePlugin } from '../core/plugin';
import { Type } from '../config/types';
import { httpListeners } from '../plugins/metrics';
import { openStorage } from '../storage/open';
import { QueryLog, QuerylogStore, maskAddress, migrationsDir } from '../plugins/querylog';
import type { LogRow } from '../plugins/querylog';
import { waitFor } from './helpers/net';
import { catalogWith } from './helpers/catalog';

const PG_URL = process.env.CODEXDNS_TEST_PG;

/** Answers names under `blocked.test` with NXDOMAIN + EDE 15 (Blocked), as the filter plugin does. */
const blocker = definePlugin({
  name: 'blocker',
  options: Type.Object({}),
  setup(api) {
    api.hooks.query.tap('blocker', (ctx) => (ctx.qname.endsWith('blocked.test') ? ctx.reply(3, { code: 15, text: 'blocked' }) : undefined));
  },
});

const catalog = catalogWith(blocker);

interface Db {
  name: string;
  yaml: string;
  config: Parameters<typeof openStorage>[0];
  cleanup(): Promise<void>;
}

function tmpDir(): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), 'codexdns-ql-'));
}

async function sqliteDb(): Promise<Db> {
  const dir = tmpDir();
  const file = path.join(dir, 'ql.sqlite');
  return {
    name: 'sqlite3',
    yaml: `{ client: sqlite3, connection: { filename: ${JSON.stringify(file)} } }`,
    config: { client: 'sqlite3', connection: { filename: file } },
    cleanup: async () => fs.rmSync(dir, { recursive: true, force: true }),
  };
}

let schemaSeq = 0;
async function pgDb(): Promise<Db> {
  const schema = `codexdns_ql_${process.pid}_${Date.now().toString(36)}_${schemaSeq++}`;
  const admin = await openStorage({ client: 'pg', connection: PG_URL! }, { baseDir: '.' });
  await admin.writer.raw(`create schema "${schema}"`);
  await admin.close();
  const connection = { connectionString: PG_URL!, options: `-c search_path=${schema}` };
  return {
    name: 'pg',
    yaml: `{ client: pg, connection: ${JSON.stringify(connection)} }`,
    config: { client: 'pg', connection },
    cleanup: async () => {
      const a = await openStorage({ client: 'pg', connection: PG_URL! }, { baseDir: '.' });
      await a.writer.raw(`drop schema if exists "${schema}" cascade`);
      await a.close();
    },
  };
}

type Json = Record<string, unknown> & { [k: string]: any }; // eslint-disable-line @typescript-eslint/no-explicit-any

function get(port: number, p: string): Promise<{ status: number; body: Json; text: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, path: p, headers: { Host: `127.0.0.1:${port}` }, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        let body: Json = {};
        try {
          body = JSON.parse(text) as Json;
        } catch {
          // /metrics is text
        }
        resolve({ status: res.statusCode ?? 0, body, text });
      });
    });
    req.on('error', reject);
    req.end();
  });
}

function metricsPort(s: TestServer): number {
  return httpListeners(s.server.metrics.registry)[0].port;
}

function metricValue(text: string, name: string, labels = ''): number {
  const line = text.split('\n').find((l) => l.startsWith(`${name}${labels} `) || (labels === '' && l.startsWith(`${name} `)));
  return line === undefined ? NaN : Number(line.split(' ').pop());
}

function corefile(db: Db, up: FakeUpstream, querylog: string): string {
  return `
servers:
  - listen: [udp://127.0.0.1:0, tcp://127.0.0.1:0]
    plugins:
      - metrics: { listen: "127.0.0.1:0" }
      - blocker: {}
      - cache: {}
      - clienttrack: { flush: 100ms }
      - querylog: ${querylog}
      - forward: { to: ["127.0.0.1:${up.port}"] }
storage: ${db.yaml}
`;
}

function serverTests(makeDb: () => Promise<Db>): void {
  test('every answered query is logged: who answered, rcode, blocked, cached; filters, cursor paging, hourly counts', async () => {
    const db = await makeDb();
    const up = await startFakeUpstream({ records: { 'a.example': { A: '192.0.2.1' }, '*.a.example': { A: '192.0.2.3' }, 'b.example': { A: '192.0.2.2' }, 'nx.example': { rcode: 'NXDOMAIN' } } });
    const s = await startServer(corefile(db, up, '{ flush: 100ms }'), { catalog });
    try {
      const port = metricsPort(s);
      const sent: Array<[string, string, string]> = [
        ['a.example', 'A', '127.0.0.2'],
        ['a.example', 'A', '127.0.0.2'],
        ['b.example', 'AAAA', '127.0.0.2'],
        ['ads.blocked.test', 'A', '127.0.0.3'],
        ['nx.example', 'A', '127.0.0.3'],
      ];
      for (let i = 0; i < 5; i++) sent.push([`page${i}.a.example`, 'A', '127.0.0.4']);
      for (const [name, type, from] of sent) {
        const a = await s.query(name, type as 'A', { from });
        assert.ok(a.rcode === 'NOERROR' || a.rcode === 'NXDOMAIN', `${name}: ${a.rcode}`);
      }
      await waitFor('all rows written', async () => (await get(port, '/api/querylog/summary?range=24h')).body.log?.written === sent.length);

      const all = await get(port, '/api/queries');
      assert.equal(all.status, 200);
      assert.equal(all.body.queries.length, sent.length);
      const newest = all.body.queries[0];
      assert.equal(newest.name, 'page4.a.example');
      assert.equal(newest.client, '127.0.0.4');
      assert.equal(newest.type, 'A');
      assert.equal(newest.rcode, 'NOERROR');
      assert.equal(newest.answeredBy, 'forward');
      assert.equal(newest.upstream, `127.0.0.1:${up.port}`, 'the upstream that answered');
      assert.ok(typeof newest.durationMs === 'number' && newest.durationMs >= 0);
      assert.ok(!Number.isNaN(Date.parse(newest.time)));
      const ids = all.body.queries.map((q: Json) => q.id);
      assert.deepEqual([...ids].sort((x: number, y: number) => y - x), ids, 'newest first');

      // Who answered and what it was.
      const byName = (n: string): Json[] => all.body.queries.filter((q: Json) => q.name === n);
      assert.deepEqual(byName('a.example').map((q) => q.answeredBy).sort(), ['cache', 'forward']);
      assert.equal(byName('a.example').find((q) => q.answeredBy === 'cache')?.cached, true);
      assert.equal(byName('a.example').find((q) => q.answeredBy === 'cache')?.upstream, null, 'a cache hit asked nobody');
      const blocked = byName('ads.blocked.test')[0];
      assert.equal(blocked.blocked, true);
      assert.equal(blocked.answeredBy, 'blocker');
      assert.equal(blocked.rcode, 'NXDOMAIN');
      assert.equal(byName('nx.example')[0].rcode, 'NXDOMAIN');
      assert.equal(byName('nx.example')[0].blocked, false);
      assert.equal(byName('b.example')[0].type, 'AAAA');

      // Filters.
      const f = async (q: string): Promise<Json[]> => (await get(port, `/api/queries?${q}`)).body.queries as Json[];
      assert.equal((await f('client=127.0.0.3')).length, 2);
      assert.deepEqual((await f('name=BLOCKED')).map((q) => q.name), ['ads.blocked.test']);
      assert.equal((await f('blocked=1')).length, 1);
      assert.equal((await f('rcode=NXDOMAIN')).length, 2);
      assert.equal((await f('qtype=AAAA')).length, 1);
      assert.equal((await f('answered_by=cache')).length, 1);
      assert.equal((await f('name=page&client=127.0.0.4')).length, 5);
      assert.equal((await f(`from=${Date.now() + 60_000}`)).length, 0);
      assert.equal((await f(`to=${new Date(Date.now() + 60_000).toISOString()}`)).length, sent.length);
      assert.equal((await get(port, '/api/queries?rcode=BOGUS')).status, 400);
      assert.equal((await get(port, '/api/queries?limit=0')).status, 400);

      // Paging back in time with the cursor: every row once, in order.
      const seen: number[] = [];
      let cursor: number | null = null;
      for (let i = 0; i < 20; i++) {
        const page: { status: number; body: Json } = await get(port, `/api/queries?limit=3${cursor === null ? '' : `&cursor=${cursor}`}`);
        for (const q of page.body.queries as Json[]) seen.push(q.id as number);
        cursor = page.body.cursor as number | null;
        if (cursor === null) break;
      }
      assert.deepEqual(seen, ids);

      // Aggregates.
      const top = await get(port, '/api/top/domains?range=24h');
      assert.equal(top.body.domains[0].name, 'a.example');
      assert.equal(top.body.domains[0].queries, 2);
      assert.equal(top.body.domains[0].cached, 1);
      const topBlocked = await get(port, '/api/top/domains?range=24h&blocked=1');
      assert.deepEqual(topBlocked.body.domains.map((d: Json) => d.name), ['ads.blocked.test']);
      const clients = await get(port, '/api/top/clients?range=7d');
      assert.deepEqual(clients.body.clients.map((c: Json) => [c.ip, c.queries]), [['127.0.0.4', 5], ['127.0.0.2', 3], ['127.0.0.3', 2]]);
      const sum = await get(port, '/api/querylog/summary?range=24h');
      assert.equal(sum.body.today.queries, sent.length);
      assert.equal(sum.body.today.blocked, 1);
      assert.equal(sum.body.today.cached, 1);
      assert.equal(sum.body.activeClients, 3);
      assert.equal(sum.body.rcodes.NXDOMAIN, 2);
      assert.equal(sum.body.answeredBy.forward.queries, 8);
      assert.ok(sum.body.series.length >= 1);
      const minutes = await get(port, '/api/querylog/summary?range=1h');
      assert.equal(minutes.body.series.length, 60);
      assert.equal(minutes.body.series.reduce((n: number, p: Json) => n + p.queries, 0), sent.length);
      assert.equal((await get(port, '/api/top/domains?range=2y')).status, 400);

      // One device.
      const act = await get(port, '/api/clients/127.0.0.3/activity');
      assert.equal(act.status, 200);
      assert.equal(act.body.queriesToday, 2);
      assert.equal(act.body.blockedToday, 1);
      assert.deepEqual(act.body.topDomains.map((d: Json) => d.name).sort(), ['ads.blocked.test', 'nx.example']);
      assert.equal(act.body.recent.length, 2);
      assert.deepEqual(act.body.blocked.map((q: Json) => q.name), ['ads.blocked.test']);
      assert.equal(act.body.rcodes.NXDOMAIN, 2);

      // The device list carries today's count (an apiClient field), and forward's upstreams their figures.
      await waitFor('clients written', async () => (await get(port, '/api/clients')).body.total === 3);
      const list = (await get(port, '/api/clients?sort=ip&order=asc')).body.clients as Json[];
      assert.deepEqual(list.map((c) => [c.ip, c.queriesToday]), [['127.0.0.2', 3], ['127.0.0.3', 2], ['127.0.0.4', 5]]);
      const ups = await get(port, '/api/upstreams');
      assert.equal(ups.body.enabled, true);
      assert.equal(ups.body.upstreams.length, 1);
      assert.equal(ups.body.upstreams[0].to, `127.0.0.1:${up.port}`);
      assert.equal(ups.body.upstreams[0].up, true);
      assert.equal(ups.body.upstreams[0].answers, 8);
      assert.ok(ups.body.upstreams[0].avgMs > 0);

      const metrics = (await get(port, '/metrics')).text;
      assert.equal(metricValue(metrics, 'codexdns_querylog_written_total'), sent.length);
      assert.equal(metricValue(metrics, 'codexdns_querylog_dropped_total', '{reason="ring_full"}'), 0);
      assert.equal(metricValue(metrics, 'codexdns_querylog_ring_capacity'), 20000);
    } finally {
      await s.stop();
      await up.stop();
      await db.cleanup();
    }
  });

  test('exclude (clients and names), anonymize (client kept as a network), and a restart keeps the log', async () => {
    const db = await makeDb();
    const up = await startFakeUpstream({ records: { '*.example': { A: '192.0.2.1' } } });
    const ql = '{ flush: 100ms, exclude: [127.0.0.9, 127.0.1.0/24, quiet.example], anonymize: { ipv4: 24 } }';
    let s = await startServer(corefile(db, up, ql), { catalog });
    try {
      await s.query('x.example', 'A', { from: '127.0.0.2' });
      await s.query('y.example', 'A', { from: '127.0.0.9' });
      await s.query('z.example', 'A', { from: '127.0.1.7' });
      await s.query('quiet.example', 'A', { from: '127.0.0.2' });
      await s.query('deep.quiet.example', 'A', { from: '127.0.0.2' });
      await s.query('w.example', 'A', { from: '127.0.0.5' });
      let port = metricsPort(s);
      await waitFor('written', async () => (await get(port, '/api/querylog/summary')).body.log?.written === 2);
      const q = (await get(port, '/api/queries')).body.queries as Json[];
      assert.deepEqual(q.map((x) => [x.name, x.client]), [['w.example', '127.0.0.0/24'], ['x.example', '127.0.0.0/24']]);
      const metrics = (await get(port, '/metrics')).text;
      assert.equal(metricValue(metrics, 'codexdns_querylog_skipped_total', '{reason="excluded"}'), 4);
      await s.stop();
      s = await startServer(corefile(db, up, '{ flush: 100ms, sample: 0 }'), { catalog });
      port = metricsPort(s);
      await s.query('v.example', 'A', { from: '127.0.0.2' });
      const again = (await get(port, '/api/queries')).body.queries as Json[];
      assert.deepEqual(again.map((x) => x.name), ['w.example', 'x.example'], 'stored rows survive a restart; sample 0 logs nothing');
      assert.equal(metricValue((await get(port, '/metrics')).text, 'codexdns_querylog_skipped_total', '{reason="sampled"}'), 1);
    } finally {
      await s.stop();
      await up.stop();
      await db.cleanup();
    }
  });
}

describe('querylog on SQLite', () => {
  serverTests(sqliteDb);

  test('nothing written while the flush interval runs; what waits in the ring is written at shutdown', async () => {
    const db = await sqliteDb();
    const up = await startFakeUpstream({ records: { '*.example': { A: '192.0.2.1' } } });
    let s = await startServer(corefile(db, up, '{ flush: 1h }'), { catalog });
    try {
      for (let i = 0; i < 3; i++) await s.query(`late${i}.example`, 'A', { from: '127.0.0.2' });
      let port = metricsPort(s);
      await new Promise((r) => setTimeout(r, 1500));
      const m = (await get(port, '/metrics')).text;
      assert.equal(metricValue(m, 'codexdns_querylog_batches_total'), 0, 'no write before the interval');
      assert.equal(metricValue(m, 'codexdns_querylog_ring_entries'), 3);
      // The live log shows them anyway (pending, no id yet).
      const live = (await get(port, '/api/queries')).body.queries as Json[];
      assert.deepEqual(live.map((q) => [q.name, q.pending, q.id]), [['late2.example', true, null], ['late1.example', true, null], ['late0.example', true, null]]);
      await s.stop();
      s = await startServer(corefile(db, up, '{ flush: 1h }'), { catalog });
      port = metricsPort(s);
      const stored = (await get(port, '/api/queries')).body.queries as Json[];
      assert.deepEqual(stored.map((q) => q.name), ['late2.example', 'late1.example', 'late0.example']);
      assert.ok(stored.every((q) => typeof q.id === 'number'));
    } finally {
      await s.stop();
      await up.stop();
      await db.cleanup();
    }
  });

  test('a full ring and an unusable database drop entries and count them; every query is answered', async () => {
    const up = await startFakeUpstream({ records: { '*.example': { A: '192.0.2.1' } } });
    const dir = tmpDir();
    fs.writeFileSync(path.join(dir, 'not-a-folder'), 'x');
    const db: Db = {
      name: 'broken',
      yaml: `{ client: sqlite3, connection: { filename: ${JSON.stringify(path.join(dir, 'not-a-folder', 'db.sqlite'))} } }`,
      config: { client: 'sqlite3', connection: { filename: '' } },
      cleanup: async () => fs.rmSync(dir, { recursive: true, force: true }),
    };
    const s = await startServer(corefile(db, up, '{ flush: 200ms, ring: 5, batch: 5 }'), { catalog });
    try {
      const port = metricsPort(s);
      // Sent together: more than the ring holds before the writer's next turn.
      const answers = await Promise.all(Array.from({ length: 20 }, (_, i) => s.query(`n${i}.example`, 'A', { from: '127.0.0.2' })));
      assert.ok(answers.every((a) => a.rcode === 'NOERROR'));
      await waitFor('a failed batch', async () => metricValue((await get(port, '/metrics')).text, 'codexdns_querylog_batch_failures_total') >= 1);
      const m = (await get(port, '/metrics')).text;
      const full = metricValue(m, 'codexdns_querylog_dropped_total', '{reason="ring_full"}');
      const storage = metricValue(m, 'codexdns_querylog_dropped_total', '{reason="storage"}');
      assert.ok(full >= 15, `ring_full ${full}`);
      assert.ok(storage >= 1, `storage ${storage}`);
      assert.equal(metricValue(m, 'codexdns_querylog_storage_ok'), 0);
      assert.equal((await get(port, '/api/queries')).status, 503);
      const later = await s.query('after.example', 'A', { from: '127.0.0.2' });
      assert.equal(later.rcode, 'NOERROR');
    } finally {
      await s.stop();
      await up.stop();
      await db.cleanup();
    }
  });

  test('retention and max_rows prune in chunks; the hourly counts go after stats_retention', async () => {
    const db = await sqliteDb();
    const storage = await openStorage(db.config, { baseDir: '.' });
    try {
      storage.migrate.addPlugin('querylog', migrationsDir());
      await storage.migrate.latest('querylog');
      const store = new QuerylogStore(storage.writer, storage.reader, storage.client === 'pg');
      const now = Date.now();
      const rows: LogRow[] = [];
      for (let i = 0; i < 12_000; i++) rows.push({ t: now - (12_000 - i) * 1000, client: '10.0.0.1', name: `n${i % 50}.example`, qtype: 1, rcode: 0, answeredBy: 'forward', upstream: null, durationUs: 100, flags: 0 });
      await store.write(rows, [{ hour: 0, kind: 't', key: '', queries: 1, blocked: 0, cached: 0, failed: 0, durationUs: 0 }]);
      assert.equal(await store.count(), 12_000);
      // Older than 6000 s: 6000 rows go (more than one chunk).
      assert.equal(await store.prune(now - 6000 * 1000, 1_000_000, 1), 6000);
      assert.equal(await store.count(), 6000);
      await store.prune(0, 1000, 1);
      assert.equal(await store.count(), 1000);
      const page = await store.queries({ limit: 5 });
      assert.equal(page.rows[0].name, `n${11_999 % 50}.example`);
      assert.equal(((await storage.reader('querylog_hourly').count({ n: '*' })) as Json[])[0].n, 0);
    } finally {
      await storage.close();
      await db.cleanup();
    }
  });

  test('a reload with the same options keeps the ring; changed options write the old ring before the new log takes over', async () => {
    const db = await sqliteDb();
    const up = await startFakeUpstream({ records: { '*.example': { A: '192.0.2.1' } } });
    const s = await startServer(corefile(db, up, '{ flush: 1h }'), { catalog });
    try {
      const port = metricsPort(s);
      await s.query('r1.example', 'A', { from: '127.0.0.2' });
      const r1 = await s.reload(corefile(db, up, '{ flush: 1h }'));
      assert.equal(r1.ok, true, r1.error);
      await s.query('r2.example', 'A', { from: '127.0.0.2' });
      let m = (await get(port, '/metrics')).text;
      assert.equal(metricValue(m, 'codexdns_querylog_ring_entries'), 2, 'same options: the same ring');
      assert.equal(metricValue(m, 'codexdns_querylog_batches_total'), 0);
      const r2 = await s.reload(corefile(db, up, '{ flush: 1h, ring: 100, batch: 50 }'));
      assert.equal(r2.ok, true, r2.error);
      await s.query('r3.example', 'A', { from: '127.0.0.2' });
      await waitFor('old ring written', async () => ((await get(port, '/api/queries')).body.queries as Json[]).filter((q) => q.id !== null).length === 2);
      const q = (await get(port, '/api/queries')).body.queries as Json[];
      assert.deepEqual(q.map((x) => [x.name, x.pending === true]), [['r3.example', true], ['r2.example', false], ['r1.example', false]]);
      m = (await get(port, '/metrics')).text;
      assert.equal(metricValue(m, 'codexdns_querylog_ring_capacity'), 100);
    } finally {
      await s.stop();
      await up.stop();
      await db.cleanup();
    }
  });

  test('max_hourly_keys bounds the hourly counts: more names go under (other), and are counted', async () => {
    const db = await sqliteDb();
    const up = await startFakeUpstream({ records: { '*.example': { A: '192.0.2.1' } } });
    const s = await startServer(corefile(db, up, '{ flush: 100ms, max_hourly_keys: 2 }'), { catalog });
    try {
      const port = metricsPort(s);
      for (const n of ['a', 'b', 'c', 'd', 'a']) await s.query(`${n}.example`, 'A', { from: '127.0.0.2' });
      await waitFor('written', async () => (await get(port, '/api/querylog/summary')).body.log?.written === 5);
      const top = (await get(port, '/api/top/domains?range=24h')).body.domains as Json[];
      assert.deepEqual(top.map((d) => [d.name, d.queries]).sort(), [['(other)', 2], ['a.example', 2], ['b.example', 1]]);
      const m = (await get(port, '/metrics')).text;
      assert.equal(metricValue(m, 'codexdns_querylog_hourly_keys_overflow_total'), 2);
      assert.equal(metricValue(m, 'codexdns_querylog_tracked_keys'), 1 + 1 + 2, "today's client, this hour's client and its 2 names");
      // The log itself keeps every name.
      assert.equal(((await get(port, '/api/queries')).body.queries as Json[]).length, 5);
    } finally {
      await s.stop();
      await up.stop();
      await db.cleanup();
    }
  });

  test('anonymize masks IPv4 and IPv6', () => {
    assert.equal(maskAddress('192.168.1.77', 24, 48), '192.168.1.0/24');
    assert.equal(maskAddress('10.1.2.3', 16, 48), '10.1.0.0/16');
    assert.equal(maskAddress('2001:db8:abcd:12::1', 24, 48), '2001:db8:abcd::/48');
    assert.equal(maskAddress('fe80::1%eth0', 24, 64), 'fe80::/64');
  });
});

describe('querylog on PostgreSQL', { skip: PG_URL ? false : 'set CODEXDNS_TEST_PG=postgres://postgres@127.0.0.1:5432/test to run' }, () => {
  serverTests(pgDb);
});

test('exclude matches a client the socket reports as an IPv4-mapped IPv6 address', () => {
  const ql = new QueryLog(
    { ring: 4, batch: 4, flushMs: 1000, retentionMs: 1000, maxRows: 10, statsRetentionMs: 1000, maxHourlyKeys: 10, sample: 1, excludeClients: ['192.168.1.0/24'], excludeNames: [], anonymize: null, pruneIntervalMs: 1000, logIntervalMs: 1000 },
    () => Promise.reject(new Error('no store in this test')),
    { debug() {}, info() {}, warn() {}, error() {} } as unknown as ConstructorParameters<typeof QueryLog>[2],
  );
  const ctx = (address: string, family: 4 | 6) => ({ client: { address, family } }) as unknown as Parameters<QueryLog['record']>[0];
  const res = {} as Parameters<QueryLog['record']>[1];
  ql.record(ctx('192.168.1.5', 4), res);
  ql.record(ctx('::ffff:192.168.1.6', 6), res);
  assert.equal(ql.stats.skippedExcluded, 2);
});
