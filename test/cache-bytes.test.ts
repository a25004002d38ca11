/**
 * Issue 15, point 5 (the cache): bounded in bytes as well as entries. `max_bytes` evicts the least recently used
 * to stay within it, `max_entry_bytes` keeps one huge answer out entirely; `codexdns_cache_bytes` and
 * `codexdns_cache_size_drops_total` show both.
 */
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import * as dnsPacket from 'dns-packet';
import { ManualClock } from '../core/clock';
import { DnsResponse } from '../core/response';
import { parseQuery, type ParsedQuery } from '../core/wire/query';
import { buildQuery } from '../testing/client';
import { startServer, startFakeUpstream, type TestServer } from '../testing';
import { CacheStore, entryCost, type SizeDropReason, type StoreLimits } from '../plugins/cache/store';
import { metric } from './helpers/metrics';

const LIMITS: StoreLimits = { capacity: 1000, maxTtl: 3600, minTtl: 0, denialTtl: 1800, servfailMs: 5000, maxStaleMs: 0 };

function q(name: string, type = 'TXT'): ParsedQuery {
  const p = parseQuery(buildQuery(name, type));
  assert.equal(p.kind, 'query');
  return p as ParsedQuery;
}

/** A TXT answer of about `size` bytes. */
function txt(name: string, size: number): DnsResponse {
  const strings: string[] = [];
  for (let left = size; left > 0; left -= 200) strings.push('t'.repeat(Math.min(200, left)));
  return DnsResponse.fromWire(
    dnsPacket.encode({
      type: 'response',
      id: 1,
      flags: dnsPacket.RECURSION_AVAILABLE,
      questions: [{ name, type: 'TXT', class: 'IN' }],
      answers: [{ name, type: 'TXT', class: 'IN', ttl: 300, data: strings } as dnsPacket.Answer],
    }),
  );
}


describe('cache: bounded in bytes (issue 15.5)', () => {
  test('store: bytes follow stores, replacements, deletions and evictions, and never pass max_bytes', () => {
    const drops: SizeDropReason[] = [];
    const store = new CacheStore({ ...LIMITS, maxBytes: 20_000, maxEntryBytes: 4000 }, new ManualClock(1000));
    store.listener = { evicted: () => undefined, sizeDropped: (r) => drops.push(r) };
    assert.equal(store.put(q('a.test'), txt('a.test', 1000)), 'stored');
    const one = store.bytes;
    assert.ok(one > 1000 && one === entryCost(store.peek(q('a.test'))!.wire.length, q('a.test').wireKey.length, 1), `cost ${one}`);
    assert.equal(store.put(q('a.test'), txt('a.test', 1000)), 'stored');
    assert.equal(store.bytes, one, 'a replacement is not counted twice');
    assert.equal(store.put(q('huge.test'), txt('huge.test', 5000)), 'too-big');
    assert.deepEqual(drops, ['entry_too_big']);
    for (let i = 0; i < 60; i++) {
      store.put(q(`n${i}.test`), txt(`n${i}.test`, 1000));
      assert.ok(store.bytes <= 20_000, `after ${i}: ${store.bytes}`);
    }
    assert.ok(store.size < 20, `entries held: ${store.size}`);
    assert.ok(drops.filter((d) => d === 'max_bytes').length >= 40, 'evictions for bytes counted');
    let sum = 0;
    for (const e of store.entries()) sum += e.size;
    assert.equal(store.bytes, sum, 'the running total matches the entries');
    for (const e of [...store.entries()]) store.delete(e);
    assert.equal(store.bytes, 0);
  });

  test("one client's big TXT answers cannot pin more than max_bytes; one above max_entry_bytes is not cached", async () => {
    const up = await startFakeUpstream();
    for (let i = 0; i < 150; i++) up.set(`big${i}.test`, 'TXT', Array.from({ length: 15 }, (_, j) => `${i}-${j}-`.padEnd(200, 'x')));
    up.set('huge.test', 'TXT', Array.from({ length: 40 }, () => 'h'.repeat(200)));
    const s = await startServer(`servers:
  - listen: [udp://127.0.0.1:0, tcp://127.0.0.1:0]
    plugins:
      - cache: { max_bytes: 200000, max_entry_bytes: 4096 }
      - forward: { to: [${up.address}] }
`);
    try {
      // 150 answers of ~3.1 KB each: ~470 KB of answers, from one client over TCP.
      for (let i = 0; i < 150; i++) {
        const a = await s.query(`big${i}.test`, 'TXT', { tcp: true, from: '127.0.0.5' });
        assert.equal(a.rcode, 'NOERROR');
        assert.equal((a.answers ?? []).length, 15);
      }
      const bytes = await metric(s, 'codexdns_cache_bytes');
      assert.ok(bytes > 150_000 && bytes <= 200_000, `codexdns_cache_bytes ${bytes}`);
      assert.ok((await metric(s, 'codexdns_cache_size_drops_total', { reason: 'max_bytes' })) >= 80);
      // ~8 KB: answered complete, never stored.
      for (let i = 0; i < 2; i++) assert.equal((await s.query('huge.test', 'TXT', { tcp: true })).answers?.length, 40);
      assert.equal(up.count('huge.test', 'TXT'), 2, 'not cached');
      assert.equal(await metric(s, 'codexdns_cache_size_drops_total', { reason: 'entry_too_big' }), 2);
      // An ordinary answer is cached as ever.
      up.set('small.test', 'A', '192.0.2.1');
      await s.query('small.test', 'A');
      await s.query('small.test', 'A');
      assert.equal(up.count('small.test', 'A'), 1);
    } finally {
      await s.stop();
      await up.stop();
    }
  });

  test('max_bytes too small for one max_entry_bytes answer is an error naming the option', async () => {
    await assert.rejects(
      startServer(`servers:
  - listen: [udp://127.0.0.1:0]
    plugins:
      - cache: { max_bytes: 65536, max_entry_bytes: 65535 }
      - forward: { to: [127.0.0.1:9] }
`),
      /max_bytes/,
    );
  });
});
