import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import * as dnsPacket from 'dns-packet';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { startFakeUpstream, startServer, recordA as a, recordSoa as soa, type TestServer, type Answer, type FakeUpstream, type FakeQuery, type FakeReply } from '../testing';
import { parseConfig } from '../config/load';
import { builtinCatalog } from '../server/catalog';

/** What the upstream answers to one question. */
type Script = (name: string, type: string, q: FakeQuery) => FakeReply;

/** A cache in front of forward in front of a fake upstream on loopback. */
async function stack(cacheOptions: string, script: Script, forwardExtra = ''): Promise<{ s: TestServer; up: FakeUpstream; done(): Promise<void> }> {
  const up = await startFakeUpstream({ answer: (q) => script(q.name, q.type, q) });
  const s = await startServer(`
servers:
  - listen: [udp://127.0.0.1:0, tcp://127.0.0.1:0]
    zones: ["."]
    plugins:
      - cache: ${cacheOptions}
      - forward: { to: ["127.0.0.1:${up.port}"], max_fails: 0${forwardExtra} }
`);
  return {
    s,
    up,
    async done() {
      await s.stop();
      await up.stop();
    },
  };
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function ttlOf(ans: Answer, section: 'answers' | 'authorities' = 'answers'): number {
  const rr = ans[section]?.[0] as { ttl?: number } | undefined;
  assert.ok(rr, `no record in ${section}`);
  return rr.ttl ?? -1;
}

/** The Extended DNS Error code in the reply's OPT, or undefined. */
function edeOf(ans: Answer): number | undefined {
  const opt = ans.additionals?.find((r) => r.type === 'OPT') as unknown as { options?: { code: number; data: Buffer }[] } | undefined;
  const ede = opt?.options?.find((o) => o.code === 15);
  return ede ? ede.data.readUInt16BE(0) : undefined;
}

async function metric(s: TestServer, name: string, labels: Record<string, string> = {}): Promise<number> {
  const m = s.server.metrics.registry.getSingleMetric(name);
  assert.ok(m, `metric ${name} registered`);
  const got = await m.get();
  const v = got.values.find((x) => Object.entries(labels).every(([k, val]) => (x.labels as Record<string, unknown>)[k] === val));
  return v ? v.value : 0;
}

const positive: Script = (name) => ({ answers: [a(name, 300, '192.0.2.1')] });

describe('cache: hits, TTLs, keys', () => {
  let t: Awaited<ReturnType<typeof stack>>;
  before(async () => {
    t = await stack('{}', (name, type) => {
      if (name.startsWith('nx.')) return { rcode: 'NXDOMAIN', authorities: [soa('example', 900, 60)] };
      if (name.startsWith('nxbare.')) return { rcode: 'NXDOMAIN' };
      if (name.startsWith('nodata.')) return { authorities: [soa('example', 40, 3600)] };
      if (name.startsWith('nodatabare.')) return {};
      if (name.startsWith('big.')) return { answers: Array.from({ length: 8 }, (_, i) => ({ name, type: 'TXT', ttl: 300, data: [`${i}`.repeat(100)] }) as dnsPacket.Answer) };
      if (type === 'A') return positive(name, type, undefined as never);
      return { authorities: [soa('example', 300, 300)] };
    });
  });
  after(async () => t.done());

  test('the second query is answered from the cache, ID and question case echoed', async () => {
    const first = await t.s.query('www.example.com', 'A', { id: 1111 });
    assert.equal(first.rcode, 'NOERROR');
    assert.equal(t.up.count('www.example.com'), 1);
    const second = await t.s.query('WwW.ExAmPlE.cOm', 'A', { id: 2222 });
    assert.equal(t.up.count('www.example.com'), 1, 'the upstream was not asked again');
    assert.equal(second.id, 2222);
    assert.equal(second.questions![0].name, 'WwW.ExAmPlE.cOm');
    assert.equal(second.flag_qr, true);
    assert.equal(second.flag_aa, false);
    assert.equal(second.flag_ra, true);
    assert.equal((second.answers![0] as { data: string }).data, '192.0.2.1');
    assert.equal(await metric(t.s, 'codexdns_cache_hits_total', { type: 'success' }) >= 1, true);
    assert.equal(await metric(t.s, 'codexdns_cache_misses_total') >= 1, true);
    assert.equal(await metric(t.s, 'codexdns_cache_entries', { type: 'success' }) >= 1, true);
  });

  test('TTLs count down in real time', async () => {
    const first = await t.s.query('ttl.example.com', 'A');
    assert.equal(ttlOf(first), 300);
    await sleep(1100);
    const later = await t.s.query('ttl.example.com', 'A');
    assert.equal(t.up.count('ttl.example.com'), 1);
    assert.ok(ttlOf(later) === 299 || ttlOf(later) === 298, `TTL ${ttlOf(later)}`);
  });

  test('NXDOMAIN and NODATA with an SOA are cached for min(SOA TTL, MINIMUM)', async () => {
    const nx1 = await t.s.query('nx.example', 'A');
    assert.equal(nx1.rcode, 'NXDOMAIN');
    const nx2 = await t.s.query('nx.example', 'A');
    assert.equal(nx2.rcode, 'NXDOMAIN');
    assert.equal(t.up.count('nx.example'), 1);
    assert.ok(ttlOf(nx2, 'authorities') <= 60, 'the SOA shows the negative TTL');

    const nd1 = await t.s.query('nodata.example', 'AAAA');
    assert.equal(nd1.rcode, 'NOERROR');
    assert.equal(nd1.answers!.length, 0);
    const nd2 = await t.s.query('nodata.example', 'AAAA');
    assert.equal(nd2.answers!.length, 0);
    assert.equal(t.up.count('nodata.example'), 1);
    assert.ok(ttlOf(nd2, 'authorities') <= 40);
    assert.equal(await metric(t.s, 'codexdns_cache_hits_total', { type: 'denial' }) >= 2, true);
  });

  test('a negative answer without an SOA is not cached', async () => {
    await t.s.query('nxbare.example', 'A');
    const again = await t.s.query('nxbare.example', 'A');
    assert.equal(again.rcode, 'NXDOMAIN');
    assert.equal(t.up.count('nxbare.example'), 2);
    await t.s.query('nodatabare.example', 'AAAA');
    await t.s.query('nodatabare.example', 'AAAA');
    assert.equal(t.up.count('nodatabare.example'), 2);
  });

  test('the key includes DO and CD', async () => {
    const name = 'keys.example.com';
    await t.s.query(name, 'A');
    await t.s.query(name, 'A', { edns: 1232, dnssecOk: true });
    await t.s.query(name, 'A', { checkingDisabled: true });
    await t.s.query(name, 'A', { edns: 1232, dnssecOk: true, checkingDisabled: true });
    assert.equal(t.up.count(name), 4);
    const seen = t.up.queries.filter((q) => q.name === name);
    assert.deepEqual(seen.map((q) => [q.dnssecOk, q.checkingDisabled]), [[false, false], [true, false], [false, true], [true, true]]);
    await t.s.query(name, 'A', { edns: 4096 });
    await t.s.query(name, 'A', { edns: 1232, dnssecOk: true });
    const cd = await t.s.query(name, 'A', { checkingDisabled: true });
    assert.equal(cd.flag_cd, true);
    await t.s.query(name, 'A', { edns: 1232, dnssecOk: true, checkingDisabled: true });
    assert.equal(t.up.count(name), 4, 'each variant answered from its own entry');
  });

  test('a hit larger than 512 bytes: TC=1 without EDNS, complete with EDNS 4096 and over TCP', async () => {
    const first = await t.s.query('big.example', 'TXT', { edns: 4096 });
    assert.equal(first.answers!.length, 8);
    assert.ok(first.raw.length > 512);
    const plain = await t.s.query('big.example', 'TXT');
    assert.equal(plain.flag_tc, true);
    assert.equal(plain.answers!.length, 0);
    assert.ok(plain.raw.length <= 512);
    const edns = await t.s.query('big.example', 'TXT', { edns: 4096 });
    assert.equal(edns.flag_tc, false);
    assert.equal(edns.answers!.length, 8);
    const opt = edns.additionals!.filter((r) => r.type === 'OPT');
    assert.equal(opt.length, 1, 'exactly one OPT: ours, not the upstream one');
    const tcp = await t.s.query('big.example', 'TXT', { tcp: true });
    assert.equal(tcp.flag_tc, false);
    assert.equal(tcp.answers!.length, 8);
    assert.equal(t.up.count('big.example'), 1);
  });

  test('a reload with unchanged options keeps the entries', async () => {
    await t.s.query('reload.example.com', 'A');
    const r = await t.s.reload();
    assert.equal(r.ok, true, r.error);
    await t.s.query('reload.example.com', 'A');
    assert.equal(t.up.count('reload.example.com'), 1);
  });
});

describe('cache: limits', () => {
  test('max_ttl and min_ttl clamp what a hit shows; denial_ttl caps negative answers', async () => {
    const t = await stack('{ max_ttl: 60, min_ttl: 30s, denial_ttl: 10 }', (name) => {
      if (name.startsWith('long.')) return { answers: [a(name, 86400, '192.0.2.1')] };
      if (name.startsWith('short.')) return { answers: [a(name, 0, '192.0.2.2')] };
      return { rcode: 'NXDOMAIN', authorities: [soa('example', 900, 300)] };
    });
    try {
      await t.s.query('long.example', 'A');
      const long = await t.s.query('long.example', 'A');
      assert.ok(ttlOf(long) <= 60 && ttlOf(long) >= 59, `max_ttl: ${ttlOf(long)}`);
      await t.s.query('short.example', 'A');
      const short = await t.s.query('short.example', 'A');
      assert.equal(t.up.count('short.example'), 1, 'a TTL-0 answer is cached for min_ttl');
      assert.ok(ttlOf(short) <= 30 && ttlOf(short) >= 29, `min_ttl: ${ttlOf(short)}`);
      await t.s.query('nx.example', 'A');
      const nx = await t.s.query('nx.example', 'A');
      assert.equal(t.up.count('nx.example'), 1);
      assert.ok(ttlOf(nx, 'authorities') <= 10, `denial_ttl: ${ttlOf(nx, 'authorities')}`);
    } finally {
      await t.done();
    }
  });

  test('denial_ttl: a negative entry expires at the cap', async () => {
    const t = await stack('{ denial_ttl: 1 }', () => ({ rcode: 'NXDOMAIN', authorities: [soa('example', 900, 300)] }));
    try {
      await t.s.query('gone.example', 'A');
      await t.s.query('gone.example', 'A');
      assert.equal(t.up.count('gone.example'), 1);
      await sleep(1100);
      await t.s.query('gone.example', 'A');
      assert.equal(t.up.count('gone.example'), 2);
    } finally {
      await t.done();
    }
  });

  test('capacity: the least recently used entry is evicted and counted', async () => {
    const t = await stack('{ capacity: 2 }', positive);
    try {
      await t.s.query('one.example', 'A');
      await t.s.query('two.example', 'A');
      await t.s.query('one.example', 'A'); // hit: one is now the most recently used
      await t.s.query('three.example', 'A'); // evicts two
      assert.equal(t.up.count('one.example'), 1);
      await t.s.query('one.example', 'A');
      assert.equal(t.up.count('one.example'), 1, 'one survived');
      await t.s.query('two.example', 'A');
      assert.equal(t.up.count('two.example'), 2, 'two was evicted');
      assert.ok((await metric(t.s, 'codexdns_cache_evictions_total', { type: 'success' })) >= 1);
      assert.equal(await metric(t.s, 'codexdns_cache_entries', { type: 'success' }), 2);
    } finally {
      await t.done();
    }
  });

  test('a truncated answer is never cached', async () => {
    // Truncated over UDP and over TCP alike: forward's TCP retry gets a TC answer too.
    const t = await stack('{}', (name) => ({ tc: true, tcAlways: true, answers: [a(name, 300, '192.0.2.1')] }));
    try {
      const first = await t.s.query('tc.example', 'A');
      assert.equal(first.flag_tc, true);
      const before = t.up.count('tc.example');
      const second = await t.s.query('tc.example', 'A');
      assert.equal(second.flag_tc, true);
      assert.ok(t.up.count('tc.example') > before, 'asked again');
    } finally {
      await t.done();
    }
  });
});

describe('cache: SERVFAIL, prefetch, serve_stale', () => {
  test('SERVFAIL is kept only servfail_ttl, then a good answer is cached', async () => {
    let fail = true;
    const t = await stack('{ servfail_ttl: 1s }', (name) => (fail ? { rcode: 'SERVFAIL' } : { answers: [a(name, 300, '192.0.2.1')] }));
    try {
      assert.equal((await t.s.query('sf.example', 'A')).rcode, 'SERVFAIL');
      const n = t.up.count('sf.example');
      assert.equal((await t.s.query('sf.example', 'A')).rcode, 'SERVFAIL');
      assert.equal(t.up.count('sf.example'), n, 'the SERVFAIL came from the cache');
      fail = false;
      await sleep(1100);
      assert.equal((await t.s.query('sf.example', 'A')).rcode, 'NOERROR');
      assert.equal((await t.s.query('sf.example', 'A')).rcode, 'NOERROR');
      assert.equal(t.up.count('sf.example'), n + 1);
    } finally {
      await t.done();
    }
  });

  test('SERVFAIL from below never hides a good entry (serve_stale answers instead)', async () => {
    let fail = false;
    const t = await stack('{ serve_stale: { recheck: 30s } }', (name) => (fail ? { rcode: 'SERVFAIL' } : { answers: [a(name, 1, '192.0.2.7')] }));
    try {
      assert.equal((await t.s.query('good.example', 'A', { edns: 1232 })).rcode, 'NOERROR');
      await sleep(1100);
      fail = true;
      const stale = await t.s.query('good.example', 'A', { edns: 1232 });
      assert.equal(stale.rcode, 'NOERROR');
      assert.equal((stale.answers![0] as { data: string }).data, '192.0.2.7');
      assert.equal(ttlOf(stale), 30);
      assert.equal(edeOf(stale), 3);
      const n = t.up.count('good.example');
      const again = await t.s.query('good.example', 'A', { edns: 1232 });
      assert.equal(again.rcode, 'NOERROR', 'still the good entry, not a cached SERVFAIL');
      assert.equal(t.up.count('good.example'), n, 'within recheck: not asked again');
    } finally {
      await t.done();
    }
  });

  test('prefetch refreshes a popular entry once, detached from the client', async () => {
    let version = 1;
    const t = await stack('{ prefetch: { amount: 2, percentage: 90 } }', (name) => ({ answers: [a(name, 10, `192.0.2.${version}`)] }));
    try {
      await t.s.query('hot.example', 'A');
      await t.s.query('hot.example', 'A');
      assert.equal(t.up.count('hot.example'), 1, 'not yet inside the prefetch window');
      await sleep(1100); // remaining 8.9 s of 10: under 90 %
      version = 2;
      const burst = await Promise.all(Array.from({ length: 5 }, () => t.s.query('hot.example', 'A')));
      for (const r of burst) assert.equal(r.rcode, 'NOERROR');
      assert.equal((burst[0].answers![0] as { data: string }).data, '192.0.2.1', 'the client got the cached answer at once');
      await sleep(100);
      assert.equal(t.up.count('hot.example'), 2, 'exactly one refresh');
      const refreshed = await t.s.query('hot.example', 'A');
      assert.equal((refreshed.answers![0] as { data: string }).data, '192.0.2.2');
      assert.equal(ttlOf(refreshed), 10);
      assert.equal(t.up.count('hot.example'), 2);
      assert.equal(await metric(t.s, 'codexdns_cache_prefetch_total'), 1);
    } finally {
      await t.done();
    }
  });

  test('serve_stale: a silent upstream gets a stale answer after client_timeout, and recheck is respected', async () => {
    const t = await stack(
      '{ serve_stale: { client_timeout: 1.8s, recheck: 1s } }',
      (name) => ({ answers: [a(name, 1, '192.0.2.9')] }),
      ', timeout: 3s, deadline: 3s',
    );
    try {
      await t.s.query('stale.example', 'A', { edns: 1232 });
      await sleep(1100);
      t.up.silent = true;
      const started = Date.now();
      const stale = await t.s.query('stale.example', 'A', { edns: 1232, timeoutMs: 4000 });
      const waited = Date.now() - started;
      assert.ok(waited >= 1700 && waited < 2900, `answered after ${waited} ms`);
      assert.equal(stale.rcode, 'NOERROR');
      assert.equal((stale.answers![0] as { data: string }).data, '192.0.2.9');
      assert.equal(ttlOf(stale), 30);
      assert.equal(edeOf(stale), 3);
      // forward gives up at its 3 s deadline: that failure starts the 1 s recheck window.
      await sleep(1400);
      const n = t.up.count('stale.example');
      const t0 = Date.now();
      const quick = await t.s.query('stale.example', 'A', { edns: 1232 });
      assert.ok(Date.now() - t0 < 500, 'inside recheck: stale at once');
      assert.equal(edeOf(quick), 3);
      assert.equal(t.up.count('stale.example'), n, 'inside recheck: upstream not asked');
      assert.ok((await metric(t.s, 'codexdns_cache_served_stale_total')) >= 2);
      // After recheck the upstream is asked again; it is back, so the answer is fresh.
      t.up.silent = false;
      await sleep(1100);
      const fresh = await t.s.query('stale.example', 'A', { edns: 1232 });
      assert.equal(edeOf(fresh), undefined);
      assert.equal(ttlOf(fresh), 1);
      assert.equal(t.up.count('stale.example'), n + 1);
    } finally {
      await t.done();
    }
  });

  test('without serve_stale an expired entry is a plain miss', async () => {
    const t = await stack('{}', (name) => ({ answers: [a(name, 1, '192.0.2.1')] }), ', timeout: 300ms, deadline: 600ms');
    try {
      await t.s.query('plain.example', 'A');
      await sleep(1100);
      t.up.silent = true;
      const r = await t.s.query('plain.example', 'A');
      assert.equal(r.rcode, 'SERVFAIL');
    } finally {
      await t.done();
    }
  });
});

describe('cache: README', () => {
  test('every example in plugins/cache/README.md is a valid configuration', async () => {
    const file = path.resolve(__dirname, '../../plugins/cache/README.md');
    const text = fs.readFileSync(file, 'utf8');
    const blocks = [...text.matchAll(/```yaml\n([\s\S]*?)```/g)].map((m) => m[1]);
    assert.ok(blocks.length >= 3, `found ${blocks.length} examples`);
    for (const yaml of blocks) {
      assert.match(yaml, /^servers:/m);
      const cfg = await parseConfig(yaml, path.join(path.dirname(file), 'Corefile.yaml'), builtinCatalog);
      assert.ok(cfg.servers[0].plugins.some((p) => p.name === 'cache'));
    }
  });

  test('an unknown option and min_ttl above max_ttl are refused', async () => {
    const conf = (opts: string): string => `servers:\n  - listen: [udp://127.0.0.1:0]\n    zones: ["."]\n    plugins:\n      - cache: ${opts}\n`;
    await assert.rejects(parseConfig(conf('{ capacityy: 5 }'), '/tmp/Corefile.yaml', builtinCatalog), /capacityy/);
    await assert.rejects(startServer(conf('{ min_ttl: 2h, max_ttl: 1h }')), /min_ttl/);
  });
});
