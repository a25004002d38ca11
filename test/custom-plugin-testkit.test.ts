/**
 * The test kit's fake upstream (`startFakeUpstream` from codexdns/testing), which plugin authors point
 * `forward` at: records, CNAME chains, wildcards, negative answers with an SOA, delay, RCODE, silence, TC over
 * UDP, TCP, and counting.
 */
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { query, startFakeUpstream, startServer, type FakeUpstream } from '../testing';

describe('startFakeUpstream', () => {
  let up: FakeUpstream;
  const ask = (name: string, type = 'A', opts: { tcp?: boolean; timeoutMs?: number; edns?: number } = {}) => query(name, type, { port: up.port, ...opts });
  before(async () => {
    up = await startFakeUpstream({
      records: {
        'www.example.org': { A: ['192.0.2.1', '192.0.2.2'], AAAA: '2001:db8::1', TXT: ['one', 'two'] },
        'Alias.Example.Org.': { CNAME: 'www.example.org' },
        'mail.example.org': { MX: { preference: 10, exchange: 'mx.example.org' } },
        '*.apps.example.org': { A: '192.0.2.9', ttl: 30 },
        'broken.example.org': { rcode: 'SERVFAIL' },
        'slow.example.org': { A: '192.0.2.5', delayMs: 300 },
        'mute.example.org': { A: '192.0.2.6', silent: true },
      },
      negativeTtl: 120,
    });
  });
  after(async () => up.stop());

  test('answers from its records over UDP and TCP on one port, echoing ID and question case', async () => {
    const a = await query('WWW.example.org', 'A', { port: up.port, id: 777 });
    assert.equal(a.id, 777);
    assert.equal(a.questions![0].name, 'WWW.example.org');
    assert.deepEqual(a.answers!.map((r) => (r as { data: string }).data), ['192.0.2.1', '192.0.2.2']);
    assert.equal((a.answers![0] as { ttl: number }).ttl, 300);
    const t = await ask('www.example.org', 'AAAA', { tcp: true });
    assert.deepEqual(t.answers!.map((r) => (r as { data: string }).data), ['2001:db8::1']);
    const txt = await ask('www.example.org', 'TXT');
    assert.deepEqual(txt.answers!.map((r) => Buffer.concat((r as { data: Buffer[] }).data).toString()), ['one', 'two']);
    const mx = await ask('mail.example.org', 'MX');
    assert.deepEqual((mx.answers![0] as { data: unknown }).data, { preference: 10, exchange: 'mx.example.org' });
    assert.equal(up.address, `127.0.0.1:${up.port}`);
  });

  test('follows CNAMEs in its map; wildcards; NXDOMAIN and NODATA carry an SOA with negativeTtl', async () => {
    const c = await ask('alias.example.org');
    assert.deepEqual(c.answers!.map((r) => r.type), ['CNAME', 'A', 'A']);
    const w = await ask('x.y.apps.example.org');
    assert.deepEqual(w.answers!.map((r) => [(r as { data: string }).data, (r as { ttl: number }).ttl]), [['192.0.2.9', 30]]);
    const nx = await ask('nope.example.org');
    assert.equal(nx.rcode, 'NXDOMAIN');
    assert.equal(nx.authorities![0].type, 'SOA');
    assert.equal((nx.authorities![0] as { ttl: number }).ttl, 120);
    const nodata = await ask('mail.example.org', 'AAAA');
    assert.equal(nodata.rcode, 'NOERROR');
    assert.equal(nodata.answers!.length, 0);
    assert.equal(nodata.authorities![0].type, 'SOA');
  });

  test('per name and for everything: rcode, delay, silence, truncation; changes while running; counting', async () => {
    up.reset();
    assert.equal((await ask('broken.example.org')).rcode, 'SERVFAIL');
    const t0 = Date.now();
    await ask('slow.example.org');
    assert.ok(Date.now() - t0 >= 280);
    await assert.rejects(ask('mute.example.org', 'A', { timeoutMs: 300 }), /no reply/);
    up.truncate = true;
    const tc = await ask('www.example.org');
    assert.equal(tc.flag_tc, true);
    assert.equal(tc.answers!.length, 0);
    assert.equal((await ask('www.example.org', 'A', { tcp: true })).answers!.length, 2);
    up.truncate = false;
    up.rcode = 'REFUSED';
    assert.equal((await ask('www.example.org')).rcode, 'REFUSED');
    up.rcode = undefined;
    up.silent = true;
    await assert.rejects(ask('www.example.org', 'A', { timeoutMs: 300 }), /no reply/);
    up.silent = false;
    up.set('new.example.org', 'A', '192.0.2.77');
    assert.deepEqual((await ask('new.example.org')).answers!.map((r) => (r as { data: string }).data), ['192.0.2.77']);
    up.remove('new.example.org');
    assert.equal((await ask('new.example.org')).rcode, 'NXDOMAIN');
    // Truncated (UDP), over TCP, refused, unanswered: every query is counted, answered or not.
    assert.equal(up.count('www.example.org'), 4);
    assert.equal(up.count('WWW.Example.Org.', 'A'), 4);
    assert.equal(up.count(undefined, 'A'), up.count());
    assert.deepEqual(up.queries.filter((q) => q.transport === 'tcp').map((q) => q.name), ['www.example.org']);
    const withEdns = await ask('www.example.org', 'A', { edns: 1232 });
    assert.ok(withEdns.additionals!.some((r) => r.type === 'OPT'));
  });

  test('behind forward, in a server started by the kit', async () => {
    up.reset();
    const s = await startServer(`servers:
  - listen: [udp://127.0.0.1:0, tcp://127.0.0.1:0]
    plugins:
      - cache: {}
      - forward: { to: ["${up.address}"] }
`);
    try {
      assert.equal(((await s.query('www.example.org', 'A')).answers![0] as { data: string }).data, '192.0.2.1');
      await s.query('www.example.org', 'A');
      assert.equal(up.count('www.example.org', 'A'), 1);
      assert.equal((await s.query('nope.example.org', 'A')).rcode, 'NXDOMAIN');
      await s.query('nope.example.org', 'A');
      assert.equal(up.count('nope.example.org'), 1, 'the negative answer was cached thanks to its SOA');
    } finally {
      await s.stop();
    }
  });
});
