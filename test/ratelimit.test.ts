/**
 * The ratelimit plugin: its limiters driven by a ManualClock, then real servers: queries over budget are
 * refused, dropped or slipped to TCP; `allow` networks are never limited; `per: /24` shares a bucket; the
 * order check of `codexdns validate`. The discovery part end to end (100 clients at once) is in
 * discovery.test.ts.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import * as path from 'node:path';
import { ManualClock } from '../core/clock';
import { parseConfig } from '../config/load';
import { builtinCatalog } from '../server/catalog';
import { startFakeUpstream, startServer, type FakeUpstream } from '../testing';
import { DiscoveryLimiter, QueryLimiter, RATE_LIMITED } from '../plugins/ratelimit';

describe('limiters (ManualClock)', () => {
  test('per client: burst at once, then rate per second; each client its own bucket', () => {
    const clock = new ManualClock();
    const q = new QueryLimiter({ rate: 2, burst: 3, per: 'client', allow: [], maxClients: 100, clock });
    assert.deepEqual([1, 2, 3, 4].map(() => q.take('10.0.0.1')), [true, true, true, false]);
    assert.equal(q.take('10.0.0.2'), true);
    clock.advance(499);
    assert.equal(q.take('10.0.0.1'), false);
    clock.advance(1);
    assert.equal(q.take('10.0.0.1'), true);
    assert.equal(q.take('10.0.0.1'), false);
    assert.equal(q.limited, 3);
  });

  test('per /24 (and IPv6 /56): a network shares one bucket', () => {
    const clock = new ManualClock();
    for (const per of ['/24', '/56'] as const) {
      const q = new QueryLimiter({ rate: 1, burst: 2, per, allow: [], maxClients: 100, clock });
      assert.equal(q.take('192.168.1.10'), true);
      assert.equal(q.take('192.168.1.11'), true);
      assert.equal(q.take('192.168.1.12'), false, 'same /24');
      assert.equal(q.take('192.168.2.10'), true, 'another /24');
      assert.equal(q.take('2001:db8:0:ab01::1'), true);
      assert.equal(q.take('2001:db8:0:abff::2'), true);
      assert.equal(q.take('2001:db8:0:ab02::3'), false, 'same /56');
      assert.equal(q.take('2001:db8:0:ac00::1'), true, 'another /56');
      assert.equal(q.keyOf('::ffff:192.168.1.99'), q.keyOf('192.168.1.1'), 'an IPv4-mapped address is its IPv4 client');
    }
  });

  test('allow networks are never limited; buckets are bounded by max_clients (LRU)', () => {
    const clock = new ManualClock();
    const q = new QueryLimiter({ rate: 1, burst: 1, per: 'client', allow: ['127.0.0.0/8', '10.9.9.9'], maxClients: 3, clock });
    for (let i = 0; i < 10; i++) assert.equal(q.take('127.0.0.1'), true);
    for (let i = 0; i < 10; i++) assert.equal(q.take('10.9.9.9'), true);
    assert.equal(q.size, 0);
    for (let i = 1; i <= 5; i++) q.take(`10.0.0.${i}`);
    assert.equal(q.size, 3);
    assert.equal(q.evictions, 2);
    assert.throws(() => new QueryLimiter({ rate: 1, burst: 1, per: 'client', allow: ['nope'], maxClients: 3 }), /nope is not a CIDR/);
  });

  test('discovery: one token per job; a denial says when the next token comes', () => {
    const clock = new ManualClock();
    const d = new DiscoveryLimiter({ rate: 10, burst: 20, clock });
    for (let i = 0; i < 20; i++) assert.equal(d.beforeDiscover(), undefined);
    assert.deepEqual(d.beforeDiscover(), { reason: RATE_LIMITED, retryAfterMs: 100 });
    clock.advance(60);
    assert.deepEqual(d.beforeDiscover(), { reason: RATE_LIMITED, retryAfterMs: 40 });
    clock.advance(40);
    assert.equal(d.beforeDiscover(), undefined);
    // Over 10 s: burst + rate × elapsed at most.
    let started = 0;
    for (let ms = 0; ms < 10_000; ms += 7) {
      clock.advance(7);
      if (d.beforeDiscover() === undefined) started++;
    }
    assert.ok(started <= 100 + 1 && started >= 99, `${started} in 10 s at 10/s`);
    assert.equal(d.allowed, 21 + started);
  });
});

describe('ratelimit in a server', () => {
  let up: FakeUpstream;
  const conf = (queries: string, before = ''): string => `
servers:
  - listen: [udp://127.0.0.1:0, tcp://127.0.0.1:0]
    plugins:
${before}      - ratelimit: { queries: ${queries} }
      - forward: { to: ["${up.address}"] }
`;

  test('refuse, drop and slip; TCP after a slip is answered; allow is never limited', async () => {
    up = await startFakeUpstream({ records: { '*.test': { A: '192.0.2.1' } } });
    try {
      for (const action of ['refuse', 'drop', 'slip'] as const) {
        const s = await startServer(conf(`{ rate: 0.5, burst: 3, action: ${action}, allow: [127.0.9.0/24] }`));
        try {
          const from = '127.0.8.1';
          for (let i = 0; i < 3; i++) assert.equal((await s.query(`a${i}.test`, 'A', { from })).rcode, 'NOERROR');
          if (action === 'refuse') {
            const r = await s.query('b.test', 'A', { from });
            assert.equal(r.rcode, 'REFUSED');
          } else if (action === 'drop') {
            await assert.rejects(s.query('b.test', 'A', { from, timeoutMs: 300 }));
          } else {
            const r = await s.query('b.test', 'A', { from });
            assert.equal(r.rcode, 'NOERROR');
            assert.equal(r.flag_tc, true);
            assert.equal(r.answers?.length ?? 0, 0);
            // The client retries over TCP, which proves its address: answered.
            const tcp = await s.query('b.test', 'A', { from, tcp: true });
            assert.equal(tcp.flag_tc, false);
            assert.equal((tcp.answers?.[0] as { data?: unknown } | undefined)?.data, '192.0.2.1');
          }
          // Another client has its own budget; the allow network has none.
          assert.equal((await s.query('c.test', 'A', { from: '127.0.8.2' })).rcode, 'NOERROR');
          for (let i = 0; i < 6; i++) assert.equal((await s.query(`d${i}.test`, 'A', { from: '127.0.9.7' })).rcode, 'NOERROR');
          const metric = await s.server.metrics.registry.getSingleMetricAsString('codexdns_ratelimit_limited_total');
          assert.match(metric, new RegExp(`part="queries",action="${action}"\\} 1`));
        } finally {
          await s.stop();
        }
      }
    } finally {
      await up.stop();
    }
  });

  test('per: /24 shares a bucket across a network', async () => {
    up = await startFakeUpstream({ records: { '*.test': { A: '192.0.2.1' } } });
    const s = await startServer(conf('{ rate: 0.5, burst: 2, per: /24 }'));
    try {
      assert.equal((await s.query('a.test', 'A', { from: '127.0.10.1' })).rcode, 'NOERROR');
      assert.equal((await s.query('a.test', 'A', { from: '127.0.10.2' })).rcode, 'NOERROR');
      assert.equal((await s.query('a.test', 'A', { from: '127.0.10.3' })).rcode, 'REFUSED');
      assert.equal((await s.query('a.test', 'A', { from: '127.0.11.3' })).rcode, 'NOERROR');
    } finally {
      await s.stop();
      await up.stop();
    }
  });

  test('the query limit is a guard for `validate`: listed after cache it warns; the discovery part alone is not', async () => {
    const file = path.join('/tmp', 'codexdns-ratelimit-check', 'Corefile.yaml');
    const text = (plugins: string): string => `servers:\n  - listen: [udp://127.0.0.1:0]\n    plugins:\n${plugins}      - forward: { to: [127.0.0.1:5301] }\n`;
    const after = await parseConfig(text('      - cache: {}\n      - ratelimit: { queries: { rate: 10 } }\n'), file, builtinCatalog);
    assert.ok(after.warnings.some((w) => w.plugin === 'ratelimit' || /ratelimit/.test(w.message)), JSON.stringify(after.warnings));
    const discoveryOnly = await parseConfig(text('      - cache: {}\n      - ratelimit: { discovery: { rate: 10 } }\n'), file, builtinCatalog);
    assert.deepEqual(discoveryOnly.warnings, []);
    const first = await parseConfig(text('      - ratelimit: { queries: { rate: 10 } }\n      - cache: {}\n'), file, builtinCatalog);
    assert.deepEqual(first.warnings, []);
    // Defaults: `- ratelimit` alone limits discovery at 10/s, burst 20.
    const bare = await parseConfig(text('      - ratelimit\n'), file, builtinCatalog);
    assert.deepEqual(bare.servers[0].plugins[0].options, {});
    const q = await parseConfig(text('      - ratelimit: { queries: {} }\n'), file, builtinCatalog);
    assert.deepEqual(q.servers[0].plugins[0].options, { queries: { rate: 100, burst: 200, per: 'client', action: 'refuse', allow: [], max_clients: 10000 } });
  });
});
