import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { parse as parseYaml, stringify as stringifyYaml } from 'yaml';
import { startFakeUpstream, startServer, type FakeUpstream, type TestServer } from '../testing';
import { parseConfig } from '../config/load';
import { ConfigError, formatIssue } from '../config/errors';
import { builtinCatalog } from '../server/catalog';
import { classify, compileFormat, type QueryRecord } from '../plugins/log';
import { QueryBuffer } from '../plugins/log/writer';

const root = path.resolve(__dirname, '..', '..');
const README = path.join(root, 'plugins', 'log', 'README.md');

/** CoreDNS's common format, as a pattern. */
const COMMON = /^127\.0\.0\.\d+:\d+ - \d+ "A IN ([a-z0-9.-]+\.) udp \d+ (true|false) \d+" ([A-Z]+) (qr[a-z,]*) \d+ \d+\.\d{6}s$/;

/** Every name under example and example.org has an address, except nx.example (NXDOMAIN) and fail.example (SERVFAIL). */
const RECORDS = {
  '*.example': { A: '192.0.2.1' },
  'example.org': { A: '192.0.2.2' },
  '*.example.org': { A: '192.0.2.3' },
  'nx.example': { rcode: 'NXDOMAIN' as const },
  'fail.example': { rcode: 'SERVFAIL' as const },
};

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function until<T>(what: string, fn: () => T | undefined | false, ms = 3000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = fn();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > end) assert.fail(`timed out waiting for ${what}`);
    await sleep(10);
  }
}

/** The query lines among a test server's log lines (text format: `TIME INFO [log] LINE`). */
function queryLines(s: TestServer): string[] {
  return s.logs.filter((l) => l.includes(' INFO [log] ')).map((l) => l.slice(l.indexOf(' INFO [log] ') + ' INFO [log] '.length));
}

async function metric(s: TestServer, name: string): Promise<number> {
  const m = s.server.metrics.registry.getSingleMetric(name);
  if (!m) return 0;
  const v = await m.get();
  return v.values.reduce((n, x) => n + x.value, 0);
}

const record = (over: Partial<QueryRecord> = {}): QueryRecord => ({
  time: Date.UTC(2024, 0, 2, 3, 4, 5, 6), remote: '192.168.1.5', port: 40211, id: 21385, qtype: 1, qclass: 1, wireKey: '\x07example\x03org',
  proto: 'udp', size: 40, dnssecOk: false, ednsSize: 1232, rcode: 0, flags: 0x8180, rsize: 56, duration: 0.000412, server: 'block0', plugin: 'forward', ...over,
});

describe('log plugin: format and classes', () => {
  test('the common format is CoreDNS\'s', () => {
    assert.equal(compileFormat('{common}')(record()), '192.168.1.5:40211 - 21385 "A IN example.org. udp 40 false 1232" NOERROR qr,rd,ra 56 0.000412s');
    assert.equal(compileFormat('{combined}')(record({ remote: 'fe80::1', ednsSize: 0, dnssecOk: true })), '[fe80::1]:40211 - 21385 "A IN example.org. udp 40 true 512" NOERROR qr,rd,ra 56 0.000412s "forward"');
    assert.equal(compileFormat('{time} {name} {rcode} {rflags}')(record({ wireKey: '', rcode: -1 })), '2024-01-02T03:04:05.006Z . - -');
    assert.throws(() => compileFormat('{remote} {nope}'), /unknown placeholder \{nope\}/);
  });

  test('classes follow CoreDNS: NXDOMAIN and NODATA are denials, other NOERROR success, the rest errors', () => {
    assert.equal(classify(0, 1, false), 'success');
    assert.equal(classify(0, 0, false), 'success');
    assert.equal(classify(0, 0, true), 'denial');
    assert.equal(classify(3, 0, true), 'denial');
    assert.equal(classify(3, 0, false), 'denial');
    assert.equal(classify(2, 0, false), 'error');
    assert.equal(classify(5, 0, false), 'error');
  });

  test('the buffer is bounded: a full buffer drops and counts, a backlog is written in batches', async () => {
    const batches: number[] = [];
    const buf = new QueryBuffer({ capacity: 5, batch: 2, sink: { write: (rs) => void batches.push(rs.length), close: () => undefined } });
    for (let i = 0; i < 8; i++) buf.push(record({ id: i }));
    assert.equal(buf.depth, 5);
    assert.equal(buf.stats.droppedFull, 3);
    await buf.close();
    assert.deepEqual(batches, [2, 2, 1]);
    assert.equal(buf.stats.written, 5);
    buf.push(record());
    assert.equal(buf.depth, 0, 'a closed buffer takes nothing');
  });
});

describe('log plugin in a running server', () => {
  let up: FakeUpstream;
  before(async () => {
    up = await startFakeUpstream({ records: RECORDS });
  });
  after(async () => up.stop());

  const corefile = (log: string, extra = ''): string =>
    `servers:\n  - listen: [udp://127.0.0.1:0, tcp://127.0.0.1:0]\n    plugins:\n      - acl: { allow: [127.0.0.0/8], deny: [127.0.0.66] }\n      - log: ${log}\n      - cache: {}\n      - forward: { to: ["${up.address}"], max_fails: 0 }\n${extra}`;

  test('one line per query in CoreDNS\'s format, written after the answer, cache hits and refusals included', async () => {
    const s = await startServer(corefile('{ flush: 50ms }'));
    try {
      assert.equal((await s.query('www.example.org', 'A', { edns: 1232 })).rcode, 'NOERROR');
      assert.equal((await s.query('www.example.org', 'A')).rcode, 'NOERROR');
      assert.equal((await s.query('www.example.org', 'A', { from: '127.0.0.66' })).rcode, 'REFUSED');
      const lines = await until('3 query lines', () => (queryLines(s).length >= 3 ? queryLines(s) : undefined));
      assert.equal(lines.length, 3, lines.join('\n'));
      for (const l of lines) assert.match(l, COMMON);
      assert.match(lines[0], /"A IN www\.example\.org\. udp \d+ false 1232" NOERROR qr,rd,ra \d+ /);
      assert.match(lines[1], /"A IN www\.example\.org\. udp \d+ false 512" NOERROR qr,rd,ra /);
      assert.match(lines[2], /^127\.0\.0\.66:\d+ .* REFUSED /);
      assert.equal(await metric(s, 'codexdns_log_lines_total'), 3);
    } finally {
      await s.stop();
    }
  });

  test('class: [denial, error] logs NXDOMAIN and SERVFAIL, not NOERROR', async () => {
    const s = await startServer(corefile('{ class: [denial, error], flush: 50ms }'));
    try {
      await s.query('ok.example', 'A');
      await s.query('nx.example', 'A');
      await s.query('fail.example', 'A');
      await s.stop();
      const lines = queryLines(s);
      assert.equal(lines.length, 2, lines.join('\n'));
      assert.match(lines[0], /nx\.example\. .* NXDOMAIN /);
      assert.match(lines[1], /fail\.example\. .* SERVFAIL /);
    } finally {
      await s.stop();
    }
  });

  test('sample: 0.1 logs one query in ten and counts the rest', async () => {
    const s = await startServer(corefile('{ sample: 0.1, flush: 50ms }'));
    try {
      for (let i = 0; i < 30; i++) await s.query(`q${i}.example`, 'A');
      await s.stop();
      const lines = queryLines(s);
      assert.deepEqual(lines.map((l) => /"A IN (q\d+)\.example\./.exec(l)?.[1]), ['q0', 'q10', 'q20']);
      assert.equal(await metric(s, 'codexdns_log_sampled_out_total'), 27);
    } finally {
      await s.stop();
    }
  });

  test('JSON lines when the server logs JSON; TCP is logged as tcp', async () => {
    const s = await startServer(corefile('{ flush: 50ms }', 'log: { format: json }\n'));
    try {
      await s.query('json.example', 'A', { tcp: true, edns: 4096, dnssecOk: true });
      await s.stop();
      const lines = s.logs.map((l) => JSON.parse(l) as Record<string, unknown>).filter((o) => o.plugin === 'log' && o.msg === 'query');
      assert.equal(lines.length, 1);
      const o = lines[0];
      assert.equal(o.level, 'info');
      assert.equal(o.name, 'json.example.');
      assert.equal(o.type, 'A');
      assert.equal(o.class, 'IN');
      assert.equal(o.proto, 'tcp');
      assert.equal(o.do, true);
      assert.equal(o.bufsize, 4096);
      assert.equal(o.rcode, 'NOERROR');
      assert.equal(o.answered_by, 'forward');
      assert.equal(typeof o.duration, 'number');
      assert.match(String(o.time), /^\d{4}-\d\d-\d\dT/);
      assert.equal(o.remote, '127.0.0.1');
    } finally {
      await s.stop();
    }
  });

  test('output to a file: appended in batches, text lines start with the time', async () => {
    const s = await startServer(corefile('{ output: ./logs/queries.log, flush: 50ms }'));
    const file = path.join(s.dir, 'logs', 'queries.log');
    try {
      await s.query('file1.example', 'A');
      await s.query('file2.example', 'A');
      const text = await until('2 lines in the file', () => {
        const t = fs.existsSync(file) ? fs.readFileSync(file, 'utf8') : '';
        return t.split('\n').filter(Boolean).length >= 2 ? t : undefined;
      });
      const lines = text.trim().split('\n');
      assert.equal(lines.length, 2);
      for (const l of lines) {
        const [time, ...rest] = l.split(' ');
        assert.ok(!Number.isNaN(Date.parse(time)), l);
        assert.match(rest.join(' '), COMMON);
      }
      assert.equal(queryLines(s).length, 0, 'nothing in the server log');
    } finally {
      await s.stop();
    }
  });

  test('json: true writes JSON objects to a file whatever the server log format', async () => {
    const s = await startServer(corefile('{ output: ./q.jsonl, json: true, flush: 1h }'));
    const file = path.join(s.dir, 'q.jsonl');
    try {
      await s.query('j.example', 'A');
      await s.server.stop();
      const lines = fs.readFileSync(file, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
      assert.equal(lines.length, 1);
      assert.deepEqual(Object.keys(lines[0]).slice(0, 4), ['time', 'level', 'plugin', 'msg']);
      assert.equal(lines[0].name, 'j.example.');
      assert.equal(lines[0].rcode, 'NOERROR');
      assert.ok(s.logs.every((l) => !l.startsWith('{')), 'the server log stays text');
    } finally {
      await s.stop();
    }
  });

  test('a reload flushes the old instance and the new one appends to the same file', async () => {
    const s = await startServer(corefile('{ output: ./queries.log, flush: 1h }'));
    const file = path.join(s.dir, 'queries.log');
    try {
      await s.query('before.example', 'A');
      const r = await s.reload(corefile('{ output: ./queries.log, flush: 1h, class: [all] }'));
      assert.ok(r.ok, r.error);
      await s.query('after.example', 'A');
      const text = await (async () => {
        await s.server.stop();
        return fs.readFileSync(file, 'utf8');
      })();
      assert.deepEqual(text.trim().split('\n').map((l) => /"A IN (\S+) /.exec(l)?.[1]), ['before.example.', 'after.example.']);
    } finally {
      await s.stop();
    }
  });

  test('a full buffer drops lines, counts them and warns once with the count; answers are unaffected', async () => {
    const s = await startServer(corefile('{ buffer: 3, batch: 100000, flush: 1h }'));
    try {
      for (let i = 0; i < 10; i++) assert.equal((await s.query(`d${i}.example`, 'A')).rcode, 'NOERROR');
      await s.stop();
      assert.equal(queryLines(s).length, 3);
      assert.equal(await metric(s, 'codexdns_log_dropped_lines_total'), 7);
      const warnings = s.logs.filter((l) => l.includes('query log buffer full'));
      assert.equal(warnings.length, 1, warnings.join('\n'));
      assert.match(warnings[0], /dropped=7/);
    } finally {
      await s.stop();
    }
  });

  test('an unknown placeholder is a configuration error at its line', async () => {
    await assert.rejects(startServer(corefile("{ format: '{remote} {bogus}' }")), (err: unknown) => {
      assert.ok(err instanceof ConfigError);
      assert.match(err.issues.map(formatIssue).join('\n'), /Corefile\.yaml:\d+:\d+ plugin log: .*unknown placeholder \{bogus\}/);
      return true;
    });
  });

  test('with log.level warn, the plugin says its lines will not appear', async () => {
    const s = await startServer(corefile('{}', 'log: { level: warn }\n'));
    try {
      assert.ok(s.logs.some((l) => /query lines are written at level info, but log.level is warn/.test(l)), s.logs.join('\n'));
    } finally {
      await s.stop();
    }
  });
});

/** Every ```yaml example of the README: it validates, and it runs (ports → 0, upstream → the fake one, files → a temp dir). */
describe('log README examples', () => {
  const md = fs.readFileSync(README, 'utf8');
  const examples = [...md.matchAll(/```yaml\n([\s\S]*?)```/g)].map((m) => m[1]).filter((t) => /^servers:/m.test(t));
  let up: FakeUpstream;
  before(async () => {
    up = await startFakeUpstream({ records: RECORDS });
  });
  after(async () => up.stop());

  test('the README has its examples', () => assert.ok(examples.length >= 3));

  examples.forEach((text, i) => {
    test(`example ${i + 1} validates and logs a query`, async () => {
      try {
        await parseConfig(text, path.join(os.tmpdir(), 'codexdns-readme', 'Corefile.yaml'), builtinCatalog);
      } catch (err) {
        if (err instanceof ConfigError) assert.fail(`example ${i + 1}:\n${err.issues.map(formatIssue).join('\n')}`);
        throw err;
      }
      const doc = parseYaml(text) as { servers: { listen: string[]; plugins: unknown[] }[] };
      const outDir = fs.mkdtempSync(path.join(os.tmpdir(), 'codexdns-logex-'));
      let logFile: string | undefined;
      for (const block of doc.servers) {
        block.listen = block.listen.map((l) => l.replace(/:\d+$/, ':0'));
        block.plugins = block.plugins.map((p) => {
          if (p === 'log') return { log: { flush: '50ms' } };
          if (typeof p !== 'object' || p === null) return p;
          const entry = p as Record<string, Record<string, unknown>>;
          if (entry.forward) entry.forward.to = [up.address];
          if (entry.log) {
            entry.log.flush = '50ms';
            if (typeof entry.log.output === 'string' && entry.log.output !== 'log') entry.log.output = logFile = path.join(outDir, path.basename(entry.log.output));
          }
          return entry;
        });
      }
      const s = await startServer(stringifyYaml(doc));
      try {
        assert.equal((await s.query('example.org', 'A')).rcode, 'NOERROR');
        assert.equal((await s.query('nx.example', 'A')).rcode, 'NXDOMAIN');
        await s.stop();
        const lines = logFile !== undefined
          ? (fs.existsSync(logFile) ? fs.readFileSync(logFile, 'utf8').split('\n').filter(Boolean) : [])
          : s.logs.filter((l) => / INFO \[log\] |"plugin":"log","msg":"query"/.test(l));
        // Every example logs both queries, except the one keeping only denials and errors (the NXDOMAIN).
        const expected = /class: \[denial, error\]/.test(text) ? ['nx.example.'] : ['example.org.', 'nx.example.'];
        assert.deepEqual(lines.map((l) => /(example\.org\.|nx\.example\.)/.exec(l)?.[1]), expected, lines.join('\n'));
      } finally {
        await s.stop();
        fs.rmSync(outDir, { recursive: true, force: true });
      }
    });
  });
});
