// The filter plugin, end to end: lists served by a loopback HTTP and HTTPS server (a CA made here with openssl),
// every syntax, exceptions and allow lists, groups by address / MAC / discovered name, CNAME cloaking (forwarded
// and cached), pause and resume through the API, sources that fail (404, timeout, 200 MB, garbage), a restart with
// the list server gone, `why` (API and CLI), with dig as the client.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as https from 'node:https';
import * as os from 'node:os';
import * as path from 'node:path';
import { startFakeUpstream, startServer, type FakeUpstream, type TestServer } from '../testing';
import { httpListeners } from '../plugins/metrics';
import { LineKind, newParsedLine, parseLine, nameOfKey } from '../plugins/filter/listParser';
import { Pattern } from '../plugins/filter/patternMatcher';
import { TableBuilder, CHUNK } from '../plugins/filter/nameTable';
import { CidrSet } from '../plugins/pkg/cidr';
import { parseConfig } from '../config/load';
import { definePlugin } from '../core/plugin';
import { Type } from '../config/types';
import type { FilterBlockedEvent } from '../plugins/filter/hooks';
import { builtinCatalog } from '../server/catalog';
import { metric } from './helpers/metrics';
import { catalogWith } from './helpers/catalog';

const root = path.resolve(__dirname, '..', '..');
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
async function until(what: string, fn: () => boolean | Promise<boolean>, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (await fn()) return;
    await sleep(50);
  }
  assert.fail(`timed out waiting for ${what}`);
}

// ---------------------------------------------------------------------------------------------------------------
// A list server on loopback: each path has a mode the test can switch.
type Mode = { kind: 'text'; body: string; etag?: string } | { kind: 'status'; code: number } | { kind: 'hang' } | { kind: 'huge' } | { kind: 'garbage' };
interface ListServer {
  url(p: string): string;
  set(p: string, m: Mode): void;
  hits(p: string): number;
  conditional(p: string): number;
  hugeBytesSent: number;
  close(): Promise<void>;
}

function handler(modes: Map<string, Mode>, hits: Map<string, number>, cond: Map<string, number>, stats: { hugeBytesSent: number }) {
  return (req: http.IncomingMessage, res: http.ServerResponse): void => {
    const p = req.url ?? '/';
    hits.set(p, (hits.get(p) ?? 0) + 1);
    const m = modes.get(p) ?? { kind: 'status', code: 404 };
    if (m.kind === 'status') {
      res.writeHead(m.code).end('no');
    } else if (m.kind === 'hang') {
      // Never answers; the client's timeout must end it (the socket is destroyed with the server).
    } else if (m.kind === 'garbage') {
      const b = Buffer.alloc(64 * 1024);
      for (let i = 0; i < b.length; i++) b[i] = (i * 7919) & 0xff;
      res.writeHead(200).end(b);
    } else if (m.kind === 'huge') {
      // Up to 200 MB of valid-looking lines, stopped as soon as the client goes away; bounded by count.
      res.writeHead(200, { 'content-type': 'text/plain' });
      const line = Buffer.from('0.0.0.0 huge-list-entry-padding-padding-padding.example\n'.repeat(1024));
      let sent = 0;
      const pump = (): void => {
        while (sent < 200 * 1024 * 1024) {
          if (res.destroyed || res.writableEnded) return;
          sent += line.length;
          stats.hugeBytesSent = sent;
          if (!res.write(line)) {
            res.once('drain', pump);
            return;
          }
        }
        res.end();
      };
      res.on('close', () => undefined);
      pump();
    } else {
      const etag = m.etag ?? `"${Buffer.from(m.body).length}-${m.body.length % 97}"`;
      if (req.headers['if-none-match'] === etag) {
        cond.set(p, (cond.get(p) ?? 0) + 1);
        res.writeHead(304).end();
        return;
      }
      res.writeHead(200, { 'content-type': 'text/plain', etag }).end(m.body);
    }
  };
}

async function startListServer(tls?: { key: Buffer; cert: Buffer }): Promise<ListServer> {
  const modes = new Map<string, Mode>();
  const hits = new Map<string, number>();
  const cond = new Map<string, number>();
  const stats = { hugeBytesSent: 0 };
  const h = handler(modes, hits, cond, stats);
  const server = tls ? https.createServer({ key: tls.key, cert: tls.cert }, h) : http.createServer(h);
  const sockets = new Set<import('node:net').Socket>();
  server.on('connection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as { port: number }).port;
  return {
    url: (p) => `${tls ? 'https' : 'http'}://127.0.0.1:${port}${p}`,
    set: (p, m) => modes.set(p, m),
    hits: (p) => hits.get(p) ?? 0,
    conditional: (p) => cond.get(p) ?? 0,
    get hugeBytesSent() {
      return stats.hugeBytesSent;
    },
    close: () =>
      new Promise<void>((r) => {
        for (const s of sockets) s.destroy();
        server.close(() => r());
      }),
  };
}

/** A CA and a certificate for 127.0.0.1 signed by it, made with the openssl CLI. */
function makeCa(dir: string): { ca: string; key: Buffer; cert: Buffer } {
  const o = (args: string[]): void => {
    execFileSync('openssl', args, { cwd: dir, stdio: 'ignore' });
  };
  o(['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'ca.key', '-out', 'ca.pem', '-days', '2', '-subj', '/CN=codexdns test CA']);
  o(['req', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'srv.key', '-out', 'srv.csr', '-subj', '/CN=127.0.0.1']);
  fs.writeFileSync(path.join(dir, 'ext.cnf'), 'subjectAltName=IP:127.0.0.1\n');
  o(['x509', '-req', '-in', 'srv.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-out', 'srv.pem', '-days', '2', '-extfile', 'ext.cnf']);
  return { ca: path.join(dir, 'ca.pem'), key: fs.readFileSync(path.join(dir, 'srv.key')), cert: fs.readFileSync(path.join(dir, 'srv.pem')) };
}

interface Dig {
  status: string;
  ede: string | null;
  answers: string[];
}
function dig(port: number, name: string, type = 'A', from?: string): Promise<Dig> {
  const args = ['@127.0.0.1', '-p', String(port), name, type, '+tries=1', '+time=3', '+nocookie'];
  if (from) args.push('-b', from);
  return new Promise((resolve, reject) => {
    execFile('dig', args, { timeout: 10_000 }, (err, stdout) => {
      if (err) return reject(err);
      const status = /status: ([A-Z]+)/.exec(stdout)?.[1] ?? '?';
      const ede = /EDE: (\d+[^\n]*)/.exec(stdout)?.[1] ?? null;
      const sect = stdout.split(';; ANSWER SECTION:\n')[1]?.split('\n\n')[0] ?? '';
      const answers = sect.split('\n').filter(Boolean).map((l) => l.split(/\s+/).slice(3).join(' '));
      resolve({ status, ede, answers });
    });
  });
}

interface Reply {
  status: number;
  body: Record<string, unknown>;
}
function api(port: number, p: string, body?: unknown): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const text = body === undefined ? undefined : JSON.stringify(body);
    const headers: Record<string, string> = { Host: `127.0.0.1:${port}` };
    if (text !== undefined) Object.assign(headers, { 'Content-Type': 'application/json', Origin: `http://127.0.0.1:${port}`, 'Content-Length': String(Buffer.byteLength(text)) });
    const req = http.request({ host: '127.0.0.1', port, path: p, method: text === undefined ? 'GET' : 'POST', headers, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const t = Buffer.concat(chunks).toString('utf8');
        let parsed: Record<string, unknown> = {};
        try {
          parsed = t === '' ? {} : (JSON.parse(t) as Record<string, unknown>);
        } catch {
          parsed = { text: t };
        }
        resolve({ status: res.statusCode ?? 0, body: parsed });
      });
    });
    req.on('error', reject);
    if (text !== undefined) req.write(text);
    req.end();
  });
}
const metricsPort = (s: TestServer): number => httpListeners(s.server.metrics.registry)[0].port;

interface SourceJson {
  source: string;
  kind: string;
  names: number;
  badLines: number;
  unsupported: number;
  lastRefresh: string | null;
  ok: boolean;
  error: string | null;
  ageSeconds: number | null;
}
async function sourcesOf(s: TestServer): Promise<SourceJson[]> {
  return (await api(metricsPort(s), '/api/filter')).body.sources as SourceJson[];
}

// ---------------------------------------------------------------------------------------------------------------
describe('filter: units', () => {
  test('every line syntax, and what is refused', () => {
    const p = newParsedLine();
    const names = (l: string): string[] => (parseLine(l, p) === LineKind.Names ? p.names.map(nameOfKey) : []);
    assert.deepEqual(names('ads.example.com'), ['ads.example.com']);
    assert.deepEqual(names('Ads.Example.COM.'), ['ads.example.com']);
    assert.deepEqual(names('0.0.0.0 a.test b.test # comment'), ['a.test', 'b.test']);
    assert.deepEqual(names('127.0.0.1 localhost'), []);
    assert.deepEqual(names('::1 tracker.test'), ['tracker.test']);
    assert.deepEqual(names('||ads.test^'), ['ads.test']);
    assert.deepEqual(names('||ads.test^$important'), ['ads.test']);
    assert.deepEqual(names('*.wild.test'), ['*.wild.test']);
    assert.equal(parseLine('@@||good.test^', p), LineKind.Names);
    assert.equal(p.exception, true);
    assert.equal(parseLine('ad*.glob.test', p), LineKind.Pattern);
    assert.equal(parseLine('/^track[0-9]+\\./', p), LineKind.Pattern);
    for (const l of ['# c', '! c', '[Adblock Plus 2.0]', '', '   ']) assert.equal(parseLine(l, p), LineKind.Skip, l);
    for (const l of ['example.com##.banner', '||ads.test/path^', '||ads.test^$script', '/banner/*.gif', '@@||x.test^$document,domain=y.test'])
      assert.equal(parseLine(l, p), LineKind.Unsupported, l);
    for (const l of ['not a name', 'exa mple', '<html>', 'bad..name']) assert.equal(parseLine(l, p), LineKind.Bad, l);
  });

  test('the pattern matcher is linear: (a+)+$ against 20,000 characters does not backtrack', () => {
    const evil = new Pattern('^(a+)+$');
    const input = 'a'.repeat(20_000) + 'b';
    const t0 = performance.now();
    assert.equal(evil.test(input), false);
    const ms = performance.now() - t0;
    assert.ok(ms < 2000, `took ${ms} ms`);
    assert.equal(new Pattern('^ad[0-9]{1,3}\\.(x|y)\\.test$').test('ad42.y.test'), true);
    assert.equal(new Pattern('^ad[0-9]{1,3}\\.(x|y)\\.test$').test('ad4242.y.test'), false);
    assert.equal(new Pattern('track').test('a.tracker.test'), true);
    assert.equal(new Pattern('[^a-z]').test('abc'), false);
    assert.throws(() => new Pattern('(a)\\1'));
    assert.throws(() => new Pattern('(?=a)'));
    assert.throws(() => new Pattern('a{1,200}{1,200}'));
  });

  test('the name table: parents cover subdomains, *.x covers only subdomains, chunks merge', async () => {
    const b = new TableBuilder();
    const add = (n: string): void => b.add(n.startsWith('*.') ? n.slice(2).split('.').reverse().join('\0') + '\0' : n.split('.').reverse().join('\0'));
    for (let i = 0; i < CHUNK * 3 + 17; i++) add(`n${i}.bulk.test`);
    add('example.com');
    add('ads.example.com');
    add('*.wild.test');
    add('x.wild.test');
    add('example.com');
    const t = await b.finish();
    assert.equal(t.count, CHUNK * 3 + 17 + 2);
    assert.ok(t.hasName('example.com') && t.hasName('a.b.example.com'));
    assert.ok(!t.hasName('notexample.com') && !t.hasName('com'));
    assert.ok(t.hasName('x.wild.test') && t.hasName('deep.y.wild.test'));
    assert.ok(!t.hasName('wild.test'));
    assert.ok(t.hasName('n5.bulk.test') && t.hasName(`n${CHUNK * 3 + 16}.bulk.test`) && !t.hasName('bulk.test'));
  });

  test('validate warns when filter is listed after cache (a cached name would skip it)', async () => {
    const text = 'servers:\n  - listen: [udp://127.0.0.1:5300]\n    plugins:\n      - cache: {}\n      - filter: { block: [ads.test] }\n      - forward: { to: [127.0.0.1:9] }\n';
    const cfg = await parseConfig(text, path.join(os.tmpdir(), 'Corefile.yaml'), builtinCatalog);
    assert.ok(cfg.warnings.some((w) => w.plugin === 'filter' || /filter/.test(w.message)), JSON.stringify(cfg.warnings));
  });

  test('CIDR sets', () => {
    const c = new CidrSet(['127.0.1.0/24', '::1', '10.0.0.1']);
    assert.ok(c.has('127.0.1.9') && c.has('::ffff:127.0.1.9') && c.has('::1') && c.has('10.0.0.1'));
    assert.ok(!c.has('127.0.2.1') && !c.has('nonsense'));
  });
});

// ---------------------------------------------------------------------------------------------------------------
describe('filter: a server with lists from a loopback list server', () => {
  let up: FakeUpstream;
  let lists: ListServer;
  let tlsLists: ListServer;
  let ca: string;
  let tmp: string;

  before(async () => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'filter-test-'));
    const made = makeCa(tmp);
    ca = made.ca;
    lists = await startListServer();
    tlsLists = await startListServer({ key: made.key, cert: made.cert });
    up = await startFakeUpstream({
      records: {
        'ok.test': { A: '192.0.2.1' },
        'ads.hosts.test': { A: '192.0.2.2' },
        'www.good.test': { A: '192.0.2.3' },
        'shop.test': { CNAME: 'metrics.tracker.test' },
        'metrics.tracker.test': { A: '192.0.2.4' },
        'later.test': { CNAME: 'cdn.late.test' },
        'cdn.late.test': { A: '192.0.2.5' },
        'cachedfirst.test': { A: '192.0.2.6' },
      },
      unknown: 'NOERROR',
      ttl: 300,
    });
  });
  after(async () => {
    await lists.close();
    await tlsLists.close();
    await up.stop();
    fs.rmSync(tmp, { recursive: true, force: true });
  });

  const corefile = (filter: string, extra = ''): string => `
servers:
  - listen: [udp://127.0.0.1:0, tcp://127.0.0.1:0]
    plugins:
      - metrics: { listen: 127.0.0.1:0 }
${extra}      - filter: ${filter}
      - cache: { capacity: 1000 }
      - forward: { to: ["${up.address}"] }
`;

  test('every syntax over dig: hosts, plain, adblock, wildcard, regex, exceptions, allow wins, EDE 15; HTTPS with a test CA', async () => {
    lists.set('/hosts.txt', { kind: 'text', body: '# a hosts file\n0.0.0.0 ads.hosts.test\n127.0.0.1 localhost\n0.0.0.0 a.hosts.test b.hosts.test\n' });
    lists.set('/adblock.txt', {
      kind: 'text',
      body: '! adblock\n[Adblock Plus 2.0]\n||adblock.test^\n@@||good.adblock.test^\nexample.com##.banner\n||x.test/path^\n*.wild.test\nad*.glob.test\n/^track[0-9]+\\./\nnot a rule at all\n',
    });
    tlsLists.set('/plain.txt', { kind: 'text', body: 'plain.test\nwww.good.test\n' });
    const s = await startServer(
      corefile(`{ block: ["${lists.url('/hosts.txt')}", "${lists.url('/adblock.txt')}", "${tlsLists.url('/plain.txt')}", ./local.txt], allow: [www.good.test], ca_file: "${ca}", cache_dir: ./filter-cache }`),
      { files: { 'local.txt': 'file.test\n' } },
    );
    try {
      const blocked = ['ads.hosts.test', 'a.hosts.test', 'b.hosts.test', 'adblock.test', 'sub.adblock.test', 'x.wild.test', 'adserver.glob.test', 'track42.anything.test', 'plain.test', 'deep.plain.test', 'file.test'];
      for (const n of blocked) {
        const r = await dig(s.port, n);
        assert.equal(r.status, 'NOERROR', n);
        assert.deepEqual(r.answers, ['A 0.0.0.0'], n);
        assert.match(r.ede ?? '', /^15/, `${n}: EDE 15 (Blocked)`);
      }
      const aaaa = await dig(s.port, 'plain.test', 'AAAA');
      assert.deepEqual(aaaa.answers, ['AAAA ::']);
      const mx = await dig(s.port, 'plain.test', 'MX');
      assert.deepEqual(mx.answers, []);
      assert.match(mx.ede ?? '', /^15/);
      for (const n of ['good.adblock.test', 'wild.test', 'www.good.test', 'ok.test', 'localhost', 'x.test', 'example.com']) {
        const r = await dig(s.port, n);
        assert.equal(r.ede, null, `${n} is not blocked`);
      }
      assert.deepEqual((await dig(s.port, 'www.good.test')).answers, ['A 192.0.2.3'], 'allow wins over a block list');
      const src = await sourcesOf(s);
      const adblock = src.find((x) => x.source.endsWith('/adblock.txt'))!;
      assert.equal(adblock.unsupported, 2);
      assert.equal(adblock.badLines, 1);
      assert.equal(adblock.ok, true);
      assert.ok(src.every((x) => x.ok && x.lastRefresh !== null && x.ageSeconds !== null), JSON.stringify(src));
      assert.ok(s.logs.some((l) => l.includes('adblock.txt:10')), 'the first bad line is quoted as SOURCE:LINE');
      const plain = src.find((x) => x.source.startsWith('https://'))!;
      assert.equal(plain.names, 2, 'the HTTPS list was fetched with the test CA');
      const status = (await api(metricsPort(s), '/api/filter')).body;
      assert.equal(status.enabled, true);
      assert.ok((status.blocked as number) >= blocked.length + 2);
      assert.ok((status.topBlocked as { name: string }[]).some((t) => t.name === 'plain.test'));
      const metrics = await s.server.metrics.registry.metrics();
      assert.match(metrics, /codexdns_filter_blocked_total\{server="block0",group="default",stage="query"\} \d+/);
      assert.match(metrics, /codexdns_filter_source_names\{/);
      // Prometheus conventions for every filter metric (as test/metrics.test.ts lints the others).
      for (const m of await s.server.metrics.registry.getMetricsAsJSON()) {
        if (!m.name.startsWith('codexdns_filter_')) continue;
        assert.equal(String(m.type) === 'counter', m.name.endsWith('_total'), `${m.name} (${m.type}): only counters end in _total`);
        assert.ok(m.help.length > 10, `${m.name} has help`);
      }
    } finally {
      await s.stop();
    }
  });

  test('HTTPS without the CA fails verification (nothing is trusted globally) and is reported', async () => {
    tlsLists.set('/plain2.txt', { kind: 'text', body: 'plain2.test\n' });
    const s = await startServer(corefile(`{ block: ["${tlsLists.url('/plain2.txt')}"], cache_dir: ./fc, timeout: 5s }`));
    try {
      const src = await sourcesOf(s);
      assert.equal(src[0].ok, false);
      assert.match(src[0].error ?? '', /certificate|self.signed|issuer/i);
      assert.equal((await dig(s.port, 'plain2.test')).ede, null);
    } finally {
      await s.stop();
    }
  });

  test('CNAME cloaking: a listed CNAME target blocks the answer, forwarded and from the cache; a name listed after it was cached is blocked', async () => {
    const s = await startServer(corefile(`{ block: [./list.txt], file_check: 100ms, answer: nxdomain }`), { files: { 'list.txt': 'tracker.test\n' } });
    try {
      const r = await dig(s.port, 'shop.test');
      assert.equal(r.status, 'NXDOMAIN');
      assert.match(r.ede ?? '', /^15/);
      // Cached before their names were listed:
      assert.deepEqual((await dig(s.port, 'later.test')).answers.slice(-1), ['A 192.0.2.5']);
      assert.deepEqual((await dig(s.port, 'cachedfirst.test')).answers, ['A 192.0.2.6']);
      const before = up.count();
      fs.writeFileSync(path.join(s.dir, 'list.txt'), 'tracker.test\nlate.test\ncachedfirst.test\n');
      await until('the file change is picked up', async () => (await dig(s.port, 'cachedfirst.test')).status === 'NXDOMAIN');
      const hit = await dig(s.port, 'later.test');
      assert.equal(hit.status, 'NXDOMAIN', 'the cached CNAME chain is checked on a cache hit');
      assert.match(hit.ede ?? '', /^15/);
      assert.equal(up.count(), before, 'both came from the cache or the filter, not the upstream');
      const m = await s.server.metrics.registry.metrics();
      assert.match(m, /codexdns_filter_blocked_total\{server="block0",group="default",stage="cname"\} [2-9]/);
    } finally {
      await s.stop();
    }
  });

  test('pause and resume through the API (all, one group), and why through the API and the CLI', async () => {
    const s = await startServer(
      corefile(`
          block: [./list.txt, "||regex.test^"]
          allow: [ok.list.test]
          answer: nodata
          groups:
            - { name: kids, clients: [127.0.55.0/24], block: [./kids.txt] }`),
      { files: { 'list.txt': '# mine\nlist.test\n', 'kids.txt': 'games.test\n' } },
    );
    try {
      const port = metricsPort(s);
      const q = async (n: string, from?: string): Promise<string | null> => (await dig(s.port, n, 'A', from)).ede;
      assert.match((await q('list.test')) ?? '', /^15/);
      assert.equal(await q('games.test'), null, 'not for the default group');
      assert.match((await q('games.test', '127.0.55.3')) ?? '', /^15/, 'for kids');
      assert.match((await q('list.test', '127.0.55.3')) ?? '', /^15/, 'kids also get the default lists');
      let st = (await api(port, '/api/filter/pause', { minutes: 5, group: 'kids' })).body;
      assert.equal(typeof (st.paused as { groups: Record<string, string> }).groups.kids, 'string');
      assert.equal((st.groups as { name: string; paused: string | null }[]).find((g) => g.name === 'kids')!.paused !== null, true);
      assert.equal(await q('games.test', '127.0.55.3'), null, 'paused for kids');
      assert.match((await q('list.test')) ?? '', /^15/, 'not paused for the others');
      st = (await api(port, '/api/filter/pause', { minutes: 1 })).body;
      assert.ok(Date.parse((st.paused as { all: string }).all) > Date.now() + 50_000);
      assert.equal(await q('list.test'), null, 'paused for all');
      assert.equal((await api(port, '/api/filter/pause', { minutes: -1 })).status, 400);
      assert.equal((await api(port, '/api/filter/pause', { minutes: 1, group: 'nobody' })).status, 404);
      st = (await api(port, '/api/filter/resume', {})).body;
      assert.equal((st.paused as { all: string | null }).all, null);
      assert.deepEqual((st.paused as { groups: object }).groups, {});
      assert.match((await q('list.test')) ?? '', /^15/);
      assert.match((await q('games.test', '127.0.55.3')) ?? '', /^15/);

      const why = (await api(port, '/api/filter/why?name=www.list.test&client=127.0.55.3')).body;
      assert.deepEqual(why, { name: 'www.list.test', client: '127.0.55.3', group: 'kids', verdict: 'blocked', matches: [{ source: './list.txt', line: 2, rule: 'list.test', kind: 'block' }] });
      const allowed = (await api(port, '/api/filter/why?name=ok.list.test')).body;
      assert.equal(allowed.verdict, 'allowed');
      assert.equal(allowed.group, 'default');
      assert.deepEqual((allowed.matches as { kind: string }[]).map((m) => m.kind).sort(), ['allow', 'block']);
      assert.equal((await api(port, '/api/filter/why?name=nothing.test')).body.verdict, 'none');

      const cli = execFileSync(process.execPath, [path.join(root, 'dist/cli/codexdns.js'), 'filter', 'why', 'x.games.test', '--client', '127.0.55.9', '--conf', s.configFile], { encoding: 'utf8' });
      assert.match(cli, /x\.games\.test: blocked \(group kids, client 127\.0\.55\.9\)/);
      assert.match(cli, /blocked by \.\/kids\.txt:1 {2}games\.test/);
      const cli2 = execFileSync(process.execPath, [path.join(root, 'dist/cli/codexdns.js'), 'filter', 'why', 'a.regex.test', '--conf', s.configFile], { encoding: 'utf8' });
      assert.match(cli2, /a\.regex\.test: blocked \(group default\)/);
      assert.match(cli2, /\|\|regex\.test\^/);
    } finally {
      await s.stop();
    }
  });

  test('failing sources keep the previous table: 404, timeout, 200 MB (reading stops at max_size), garbage; then a restart with the list server gone uses the disk copy', async () => {
    const cacheDir = path.join(tmp, 'copies');
    const good = '0.0.0.0 keep.test\n';
    for (const p of ['/a', '/b', '/c', '/d']) lists.set(p, { kind: 'text', body: good.replace('keep', `keep${p.slice(1)}`), etag: `"${p}-1"` });
    const text = corefile(`{ block: ["${lists.url('/a')}", "${lists.url('/b')}", "${lists.url('/c')}", "${lists.url('/d')}"], cache_dir: "${cacheDir}", refresh: 300ms, jitter: 0s, retry: 300ms, timeout: 1s, max_size: 1048576 }`);
    let s = await startServer(text);
    try {
      for (const n of ['keepa', 'keepb', 'keepc', 'keepd']) assert.match((await dig(s.port, `${n}.test`)).ede ?? '', /^15/);
      await until('a conditional request answered 304', () => lists.conditional('/a') >= 1);
      lists.set('/a', { kind: 'status', code: 404 });
      lists.set('/b', { kind: 'hang' });
      lists.set('/c', { kind: 'huge' });
      lists.set('/d', { kind: 'garbage' });
      await until('every source failed', async () => (await sourcesOf(s)).every((x) => !x.ok), 15_000);
      const src = await sourcesOf(s);
      const err = (p: string): string => src.find((x) => x.source.endsWith(p))!.error ?? '';
      assert.match(err('/a'), /HTTP 404/);
      assert.match(err('/b'), /timed out/);
      assert.match(err('/c'), /max_size/);
      assert.match(err('/d'), /not a list/);
      assert.ok(lists.hugeBytesSent < 50 * 1024 * 1024, `the 200 MB download was cut short (${lists.hugeBytesSent} bytes sent)`);
      assert.ok(src.every((x) => x.names === 1), 'the previous tables stayed');
      for (const n of ['keepa', 'keepb', 'keepc', 'keepd']) assert.match((await dig(s.port, `${n}.test`)).ede ?? '', /^15/, n);
      const warnings = s.logs.filter((l) => l.includes('cannot refresh a list') && l.includes('/a'));
      await sleep(700);
      assert.equal(s.logs.filter((l) => l.includes('cannot refresh a list') && l.includes('/a')).length, warnings.length, 'a repeating failure is logged once');
    } finally {
      await s.stop();
    }
    // The list server goes away entirely: the copies on disk still block after a restart.
    const down = await startListServer();
    const deadUrl = (p: string): string => lists.url(p);
    await down.close();
    s = await startServer(text.replace(/refresh: 300ms/, 'refresh: 1h'));
    try {
      void deadUrl;
      for (const n of ['keepa', 'keepb', 'keepc', 'keepd']) assert.match((await dig(s.port, `${n}.test`)).ede ?? '', /^15/, `${n} from the disk copy`);
    } finally {
      await s.stop();
    }
  });
});

// ---------------------------------------------------------------------------------------------------------------
describe('filter: the hooks it publishes', () => {
  test('another plugin sees each blocked answer (blocked) and can ask for the status and a why', async () => {
    const seen: FilterBlockedEvent[] = [];
    let ask: (() => Promise<unknown>) | undefined;
    const probe = definePlugin({
      name: 'fprobe',
      options: Type.Object({}),
      setup(api) {
        const f = api.hooksOf('filter');
        if (f === undefined) return;
        f.blocked.tap('fprobe', (e) => {
          seen.push(e);
        });
        ask = async () => ({ status: f.status.call(), why: await f.why.promise({ name: 'x.ads.test' }) });
      },
    });
    const catalog = catalogWith(probe);
    const up = await startFakeUpstream({ unknown: 'NOERROR' });
    const s = await startServer(`
servers:
  - listen: [udp://127.0.0.1:0]
    plugins:
      - fprobe
      - filter: { block: ["||ads.test^"] }
      - forward: { to: ["${up.address}"] }
`, { catalog });
    try {
      await s.query('www.ads.test', 'A');
      await s.query('fine.test', 'A');
      assert.deepEqual(seen, [{ name: 'www.ads.test', client: '127.0.0.1', group: 'default', stage: 'query' }]);
      const r = (await ask!()) as { status: { blocked: number; queries: number }; why: { verdict: string; matches: { rule: string }[] } };
      assert.equal(r.status.blocked, 1);
      assert.equal(r.status.queries, 2);
      assert.equal(r.why.verdict, 'blocked');
      assert.equal(r.why.matches[0].rule, '||ads.test^');
    } finally {
      await s.stop();
      await up.stop();
    }
  });
});

describe('filter: counters across a reload', () => {
  test('a reload that keeps the state keeps counting from where it was (never counting the same queries twice)', async () => {
    const up = await startFakeUpstream({ unknown: 'NOERROR' });
    const s = await startServer(`
servers:
  - listen: [udp://127.0.0.1:0]
    plugins:
      - filter: { block: ["||ads.test^"] }
      - forward: { to: ["${up.address}"] }
`);
    try {
      for (const n of ['a.test', 'b.test', 'www.ads.test']) await s.query(n, 'A');
      assert.equal(await metric(s, 'codexdns_filter_queries_total', { group: 'default' }), 3);
      assert.equal(await metric(s, 'codexdns_filter_blocked_total', { group: 'default', stage: 'query' }), 1);
      assert.equal((await s.reload()).ok, true);
      for (const n of ['c.test', 'x.ads.test']) await s.query(n, 'A');
      assert.equal(await metric(s, 'codexdns_filter_queries_total', { group: 'default' }), 5);
      assert.equal(await metric(s, 'codexdns_filter_blocked_total', { group: 'default', stage: 'query' }), 2);
    } finally {
      await s.stop();
      await up.stop();
    }
  });
});

// ---------------------------------------------------------------------------------------------------------------
describe('filter: groups by MAC and discovered name (discovery reads a DHCP lease file)', () => {
  test('a client is put in its group by MAC or host name, and keeps it when its address changes', async () => {
    const up = await startFakeUpstream({ records: { 'ok.test': { A: '192.0.2.1' } }, unknown: 'NOERROR' });
    const leases = (lines: string[]): string => lines.join('\n') + '\n';
    const s = await startServer(
      `
servers:
  - listen: [udp://127.0.0.1:0, tcp://127.0.0.1:0]
    plugins:
      - metrics: { listen: 127.0.0.1:0 }
      - filter:
          block: []
          groups:
            - { name: bymac, clients: ["aa:bb:cc:00:00:01"], block: [mac.test] }
            - { name: byname, clients: [tablet], block: [name.test] }
      - clienttrack: { flush: 100ms }
      - discovery: { methods: [dhcp], timeout: 2s, dhcp: { leases: [./dnsmasq.leases] } }
      - forward: { to: ["${up.address}"] }
storage: { client: sqlite3, connection: { filename: ./clients.sqlite } }
`,
      { files: { 'dnsmasq.leases': leases(['1900000000 aa:bb:cc:00:00:01 127.0.60.1 laptop *', '1900000000 aa:bb:cc:00:00:02 127.0.60.2 tablet *']) } },
    );
    try {
      const port = metricsPort(s);
      // The first queries make the clients known; discovery names them in the background.
      await dig(s.port, 'ok.test', 'A', '127.0.60.1');
      await dig(s.port, 'ok.test', 'A', '127.0.60.2');
      await until('both clients are in their groups', async () => {
        const a = (await api(port, '/api/filter/why?name=x&client=127.0.60.1')).body.group;
        const b = (await api(port, '/api/filter/why?name=x&client=127.0.60.2')).body.group;
        return a === 'bymac' && b === 'byname';
      }, 20_000);
      assert.match((await dig(s.port, 'mac.test', 'A', '127.0.60.1')).ede ?? '', /^15/);
      assert.equal((await dig(s.port, 'mac.test', 'A', '127.0.60.2')).ede, null);
      assert.match((await dig(s.port, 'name.test', 'A', '127.0.60.2')).ede ?? '', /^15/);
      // The client's row is written by clienttrack's next batch: wait for it to be listed at all.
      const listed = async (): Promise<{ ip: string; filterGroup?: string }[]> => {
        const clients = (await api(port, '/api/clients')).body;
        return (Array.isArray(clients) ? clients : (clients.clients as unknown[])) as { ip: string; filterGroup?: string }[];
      };
      await until('the laptop is listed by the API', async () => (await listed()).some((c) => c.ip === '127.0.60.1'), 10_000);
      const list = await listed();
      assert.equal(list.find((c) => c.ip === '127.0.60.1')?.filterGroup, 'bymac', 'API clients carry filterGroup');
      assert.equal((list.find((c) => c.ip === '127.0.60.1') as { filterBlocked?: number } | undefined)?.filterBlocked, 1, 'and their blocked queries');
      // The laptop moves to another address: its lease says so; discovery names it there.
      fs.writeFileSync(path.join(s.dir, 'dnsmasq.leases'), leases(['1900000000 aa:bb:cc:00:00:01 127.0.60.9 laptop *', '1900000000 aa:bb:cc:00:00:02 127.0.60.2 tablet *']));
      await sleep(800); // discovery re-reads the lease file 200 ms after it changes
      await dig(s.port, 'ok.test', 'A', '127.0.60.9');
      await until('the moved laptop keeps its group', async () => (await api(port, '/api/filter/why?name=x&client=127.0.60.9')).body.group === 'bymac', 20_000);
      assert.match((await dig(s.port, 'mac.test', 'A', '127.0.60.9')).ede ?? '', /^15/);
      assert.equal((await api(port, '/api/filter/why?name=x&client=127.0.60.1')).body.group, 'default', 'its old address forgot it');
    } finally {
      await s.stop();
      await up.stop();
    }
  });
});
