import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import * as dnsPacket from 'dns-packet';
import { ManualClock } from '../core/clock';
import { DnsResponse } from '../core/response';
import { parseQuery, type ParsedQuery } from '../core/wire/query';
import { layoutOf } from '../core/wire/message';
import { writeForClient } from '../core/wire/finalize';
import { buildQuery } from '../testing/client';
import { recordA as a, recordSoa as soa } from '../testing/fakeUpstream';
import { CacheStore, EntryKind, cacheKey, type StoreLimits } from '../plugins/cache/store';
import { lowerAscii, wireNameHash } from '../core/wire/names';

const LIMITS: StoreLimits = { capacity: 100, maxTtl: 3600, minTtl: 0, denialTtl: 1800, servfailMs: 5000, maxStaleMs: 0 };

function q(name: string, type = 'A', opts: { edns?: number; dnssecOk?: boolean; checkingDisabled?: boolean } = {}): ParsedQuery {
  const p = parseQuery(buildQuery(name, type, opts));
  assert.equal(p.kind, 'query');
  return p as ParsedQuery;
}

function reply(name: string, type: string, parts: { rcode?: number; answers?: dnsPacket.Answer[]; authorities?: dnsPacket.Answer[]; tc?: boolean; opt?: boolean }): DnsResponse {
  const additionals = parts.opt ? [{ type: 'OPT', name: '.', udpPayloadSize: 4096, flags: 0, options: [] } as unknown as dnsPacket.Answer] : [];
  const wire = dnsPacket.encode({
    type: 'response',
    id: 1,
    flags: dnsPacket.RECURSION_AVAILABLE | (parts.tc ? dnsPacket.TRUNCATED_RESPONSE : 0) | (parts.rcode ?? 0),
    questions: [{ name, type: type as dnsPacket.RecordType, class: 'IN' }],
    answers: parts.answers ?? [],
    authorities: parts.authorities ?? [],
    additionals,
  });
  return DnsResponse.fromWire(wire);
}

function ttls(res: DnsResponse): number[] {
  const p = dnsPacket.decode(res.wire);
  return [...(p.answers ?? []), ...(p.authorities ?? [])].map((r) => (r as { ttl?: number }).ttl ?? -1);
}

function setup(limits: Partial<StoreLimits> = {}): { store: CacheStore; clock: ManualClock } {
  const clock = new ManualClock(1000);
  return { store: new CacheStore({ ...LIMITS, ...limits }, clock), clock };
}

function put(store: CacheStore, query: ParsedQuery, res: DnsResponse): string {
  return store.put(query, res);
}

describe('cache store: TTL math (ManualClock)', () => {
  test('TTLs count down in whole seconds and the entry expires at the TTL', () => {
    const { store, clock } = setup();
    const query = q('www.example.com');
    assert.equal(put(store, query, reply('www.example.com', 'A', { answers: [a('www.example.com', 300, '192.0.2.1'), a('www.example.com', 600, '192.0.2.2')] })), 'stored');
    const e = store.get(query)!;
    assert.equal(e.kind, EntryKind.Success);
    assert.deepEqual(ttls(store.render(e, clock.now())), [300, 600]);
    clock.advance(1500);
    assert.deepEqual(ttls(store.render(e, clock.now())), [299, 599]);
    clock.advance(297_499); // 298.999 s elapsed
    assert.ok(store.isFresh(e, clock.now()));
    assert.deepEqual(ttls(store.render(e, clock.now())), [2, 302]);
    clock.advance(1001); // 300 s
    assert.equal(store.isFresh(e, clock.now()), false);
    assert.equal(store.remainingTtl(e, clock.now()), 0);
  });

  test('a render at a time before the store time (a query that waited its turn) never shows more than the TTL', () => {
    const { store, clock } = setup();
    const query = q('early.example');
    put(store, query, reply('early.example', 'A', { answers: [a('early.example', 300, '192.0.2.1')] }));
    assert.deepEqual(ttls(store.render(store.get(query)!, clock.now() - 1500)), [300]);
  });

  test('the stored bytes are never modified by a render', () => {
    const { store, clock } = setup();
    const query = q('x.example');
    put(store, query, reply('x.example', 'A', { answers: [a('x.example', 100, '192.0.2.1')] }));
    const e = store.get(query)!;
    const before = Buffer.from(e.wire);
    clock.advance(10_000);
    store.render(e, clock.now());
    store.renderStale(e, 30);
    assert.deepEqual(e.wire, before);
  });

  test('a hit is copied once: the reply is written over the render, never over the stored bytes', () => {
    const { store, clock } = setup();
    const stored = q('x.example');
    put(store, stored, reply('x.example', 'A', { answers: [a('x.example', 100, '192.0.2.1')] }));
    const e = store.get(stored)!;
    const before = Buffer.from(e.wire);
    // Two clients, another letter case and ID each, one with EDNS (our OPT goes into the render's room).
    const clients = [buildQuery('X.Example', 'A', { id: 0x1111, edns: 1232, dnssecOk: true }), buildQuery('x.EXAMPLE', 'A', { id: 0x2222 })];
    for (const raw of clients) {
      const cq = parseQuery(raw) as ParsedQuery;
      const res = store.render(e, clock.now());
      const rendered = res.wire;
      const out = writeForClient(res, cq, raw, { tcp: false, ourUdpSize: 1232 });
      assert.equal(out.buffer, rendered.buffer, 'the reply lies where the render is');
      assert.equal(out.byteOffset, rendered.byteOffset);
      const p = dnsPacket.decode(out);
      assert.equal(p.id, cq.id);
      assert.equal(p.questions![0].name, cq.id === 0x1111 ? 'X.Example' : 'x.EXAMPLE');
      assert.deepEqual(p.answers!.map((r) => (r as { data: string }).data), ['192.0.2.1']);
      assert.equal(p.additionals!.length, cq.edns !== null ? 1 : 0);
      // What observers of `served` read afterwards is exactly what was sent.
      assert.deepEqual(res.wire, out);
      assert.deepEqual(e.wire, before);
    }
  });

  test('max_ttl caps the entry and every record TTL', () => {
    const { store } = setup({ maxTtl: 60 });
    const query = q('long.example');
    put(store, query, reply('long.example', 'A', { answers: [a('long.example', 86400, '192.0.2.1')] }));
    const e = store.get(query)!;
    assert.equal(e.ttlMs, 60_000);
    assert.deepEqual(ttls(store.render(e, 1000)), [60]);
  });

  test('min_ttl raises a short TTL (and makes a TTL-0 answer cacheable)', () => {
    const { store } = setup({ minTtl: 30 });
    const query = q('short.example');
    assert.equal(put(store, query, reply('short.example', 'A', { answers: [a('short.example', 0, '192.0.2.1')] })), 'stored');
    const e = store.get(query)!;
    assert.equal(e.ttlMs, 30_000);
    assert.deepEqual(ttls(store.render(e, 1000)), [30]);
  });

  test('a TTL of 0 is not cached without min_ttl; a TTL with the top bit set counts as 0 (RFC 2181)', () => {
    const { store } = setup();
    assert.equal(put(store, q('zero.example'), reply('zero.example', 'A', { answers: [a('zero.example', 0, '192.0.2.1')] })), 'zero-ttl');
    assert.equal(put(store, q('huge.example'), reply('huge.example', 'A', { answers: [a('huge.example', 0x80000001, '192.0.2.1')] })), 'zero-ttl');
  });

  test('NXDOMAIN and NODATA live min(SOA TTL, SOA MINIMUM), capped by denial_ttl', () => {
    const { store } = setup();
    const nx = q('nope.example');
    assert.equal(put(store, nx, reply('nope.example', 'A', { rcode: 3, authorities: [soa('example', 900, 300)] })), 'stored');
    const e = store.get(nx)!;
    assert.equal(e.kind, EntryKind.Denial);
    assert.equal(e.ttlMs, 300_000);
    // The SOA's TTL shown to clients is the negative TTL, not its own 900.
    assert.deepEqual(ttls(store.render(e, 1000)), [300]);
    const nodata = q('host.example', 'AAAA');
    assert.equal(put(store, nodata, reply('host.example', 'AAAA', { authorities: [soa('example', 120, 3600)] })), 'stored');
    assert.equal(store.get(nodata)!.ttlMs, 120_000);

    const capped = setup({ denialTtl: 10 }).store;
    assert.equal(put(capped, nx, reply('nope.example', 'A', { rcode: 3, authorities: [soa('example', 900, 300)] })), 'stored');
    assert.equal(capped.get(nx)!.ttlMs, 10_000);
  });

  test('a negative answer without an SOA is not cached', () => {
    const { store } = setup();
    assert.equal(put(store, q('nope.example'), reply('nope.example', 'A', { rcode: 3 })), 'no-soa');
    assert.equal(put(store, q('nodata.example', 'AAAA'), reply('nodata.example', 'AAAA', {})), 'no-soa');
    assert.equal(store.size, 0);
  });

  test('truncated answers and other RCODEs are never cached', () => {
    const { store } = setup();
    assert.equal(put(store, q('tc.example'), reply('tc.example', 'A', { tc: true, answers: [a('tc.example', 300, '192.0.2.1')] })), 'truncated');
    assert.equal(put(store, q('r.example'), reply('r.example', 'A', { rcode: 5 })), 'rcode');
    assert.equal(put(store, q('f.example'), reply('f.example', 'A', { rcode: 1 })), 'rcode');
    assert.equal(store.size, 0);
  });

  test('the upstream OPT record is stripped from what is stored (ARCOUNT adjusted)', () => {
    const { store } = setup();
    const query = q('opt.example', 'A', { edns: 4096 });
    put(store, query, reply('opt.example', 'A', { answers: [a('opt.example', 300, '192.0.2.1')], opt: true }));
    const e = store.get(query)!;
    assert.equal(e.wire.readUInt16BE(10), 0);
    assert.equal(e.layout.optStart, -1);
    assert.deepEqual(layoutOf(e.wire)!.ttlOffsets, e.layout.ttlOffsets);
    const res = store.render(e, 1000);
    assert.equal(res.rcode, 0);
    assert.equal((dnsPacket.decode(res.wire).additionals ?? []).length, 0);
  });

  test('SERVFAIL is kept briefly and never replaces a usable entry', () => {
    const { store, clock } = setup({ maxStaleMs: 60_000 });
    const query = q('sf.example');
    const servfail = reply('sf.example', 'A', { rcode: 2 });
    // Nothing cached yet: SERVFAIL is kept for servfail_ttl.
    assert.equal(put(store, query, servfail), 'stored');
    assert.equal(store.get(query)!.kind, EntryKind.Servfail);
    clock.advance(4999);
    assert.ok(store.isFresh(store.get(query)!, clock.now()));
    clock.advance(1);
    assert.equal(store.isFresh(store.get(query)!, clock.now()), false);
    assert.equal(store.isStale(store.get(query)!, clock.now()), false, 'SERVFAIL is never served stale');
    // A good answer replaces it; a SERVFAIL then does not replace the good one, fresh or stale.
    assert.equal(put(store, query, reply('sf.example', 'A', { answers: [a('sf.example', 10, '192.0.2.1')] })), 'stored');
    assert.equal(put(store, query, servfail), 'servfail-behind-good-entry');
    clock.advance(30_000); // expired, inside the 60 s stale window
    assert.equal(put(store, query, servfail), 'servfail-behind-good-entry');
    assert.equal(store.get(query)!.kind, EntryKind.Success);
    clock.advance(60_000); // beyond the stale window: the old entry is dead
    assert.equal(put(store, query, servfail), 'stored');

    const off = setup({ servfailMs: 0 }).store;
    assert.equal(put(off, query, servfail), 'servfail-disabled');
  });

  test('capacity: the least recently used entry is evicted and counted', () => {
    const { store } = setup({ capacity: 2 });
    const evicted: number[] = [];
    store.listener = { evicted: (k) => evicted.push(k) };
    const names = ['one.example', 'two.example', 'three.example'];
    put(store, q(names[0]), reply(names[0], 'A', { answers: [a(names[0], 300, '192.0.2.1')] }));
    put(store, q(names[1]), reply(names[1], 'A', { rcode: 3, authorities: [soa('example', 300, 300)] }));
    store.get(q(names[0])); // touch one: two is now the oldest
    put(store, q(names[2]), reply(names[2], 'A', { answers: [a(names[2], 300, '192.0.2.3')] }));
    assert.equal(store.size, 2);
    assert.equal(store.peek(q(names[1])), undefined);
    assert.ok(store.peek(q(names[0])));
    assert.deepEqual(evicted, [EntryKind.Denial]);
    assert.equal(store.evictions, 1);
    assert.equal(store.successCount, 2);
    assert.equal(store.denialCount, 0);
  });

  test('entries of one name (types, DO, CD) live side by side; replacing one keeps the others', () => {
    const { store } = setup();
    const qa = q('multi.example');
    const qaaaa = q('multi.example', 'AAAA');
    const qdo = q('multi.example', 'A', { edns: 1232, dnssecOk: true });
    put(store, qa, reply('multi.example', 'A', { answers: [a('multi.example', 300, '192.0.2.1')] }));
    put(store, qaaaa, reply('multi.example', 'AAAA', { authorities: [soa('example', 60, 60)] }));
    put(store, qdo, reply('multi.example', 'A', { answers: [a('multi.example', 300, '192.0.2.3')] }));
    assert.equal(store.size, 3);
    assert.equal(store.get(qaaaa)!.kind, EntryKind.Denial);
    put(store, qa, reply('multi.example', 'A', { answers: [a('multi.example', 100, '192.0.2.2')] }));
    assert.equal(store.size, 3);
    assert.equal(store.get(qa)!.ttlMs, 100_000);
    assert.equal(store.get(qdo)!.ttlMs, 300_000);
    assert.equal(store.successCount, 2);
    assert.equal(store.denialCount, 1);
    store.delete(store.get(qdo)!);
    assert.equal(store.size, 2);
    assert.equal(store.get(qdo), undefined);
    assert.ok(store.get(qa));
    assert.ok(store.get(qaaaa));
  });

  test('eviction never drops the entry just stored, even at capacity 1', () => {
    const { store } = setup({ capacity: 1 });
    put(store, q('c1.example'), reply('c1.example', 'A', { answers: [a('c1.example', 300, '192.0.2.1')] }));
    put(store, q('c1.example', 'AAAA'), reply('c1.example', 'AAAA', { authorities: [soa('example', 60, 60)] }));
    assert.equal(store.size, 1);
    assert.ok(store.peek(q('c1.example', 'AAAA')));
    put(store, q('c2.example'), reply('c2.example', 'A', { answers: [a('c2.example', 300, '192.0.2.1')] }));
    assert.equal(store.size, 1);
    assert.ok(store.peek(q('c2.example')));
    assert.equal(store.evictions, 2);
  });

  test('the key: name case-insensitive; type, class, DO and CD distinguish', () => {
    const { store } = setup();
    put(store, q('WWW.Example.COM'), reply('WWW.Example.COM', 'A', { answers: [a('www.example.com', 300, '192.0.2.1')] }));
    assert.ok(store.get(q('www.example.com')));
    assert.ok(store.get(q('wWw.EXAMPLE.coM')), "found from the client's bytes in any letter case");
    assert.equal(store.get(q('www.example.co')), undefined);
    assert.ok(store.get(q('www.example.com', 'A', { edns: 1232 })), 'EDNS without DO shares the entry');
    assert.equal(store.get(q('www.example.com', 'AAAA')), undefined);
    assert.equal(store.get(q('www.example.com', 'A', { edns: 1232, dnssecOk: true })), undefined);
    assert.equal(store.get(q('www.example.com', 'A', { checkingDisabled: true })), undefined);
    const chaos = parseQuery(Buffer.from(dnsPacket.encode({ type: 'query', id: 1, questions: [{ name: 'www.example.com', type: 'A', class: 'CH' }] })));
    assert.equal(store.get(chaos as ParsedQuery), undefined);
    const keys = new Set([cacheKey(q('www.example.com')), cacheKey(q('www.example.com', 'AAAA')), cacheKey(q('www.example.com', 'A', { edns: 1232, dnssecOk: true })), cacheKey(q('www.example.com', 'A', { checkingDisabled: true }))]);
    assert.equal(keys.size, 4);
  });

  test('the hash of a name read from the wire is the hash of its wireKey (ASCII letters folded, other bytes kept)', () => {
    const wire = Buffer.from([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 4, 0x41, 0x62, 0xc9, 0x5a, 3, 0x63, 0x4f, 0x4d, 0]);
    const key = lowerAscii(wire.toString('latin1', 12));
    assert.equal(key, '\x04ab\xc9z\x03com\x00');
    assert.equal(wireNameHash(wire, 12, wire.length), wireNameHash(Buffer.from(key, 'latin1'), 0, key.length));
  });

  test('a stale render sets every TTL to the stale TTL', () => {
    const { store, clock } = setup({ maxStaleMs: 86_400_000 });
    const query = q('st.example');
    put(store, query, reply('st.example', 'A', { answers: [a('st.example', 5, '192.0.2.1')] }));
    const e = store.get(query)!;
    clock.advance(3_600_000);
    assert.ok(store.isStale(e, clock.now()));
    assert.deepEqual(ttls(store.renderStale(e, 30)), [30]);
    clock.advance(86_400_000);
    assert.equal(store.isStale(e, clock.now()), false);
    assert.equal(store.isUsable(e, clock.now()), false);
  });
});
