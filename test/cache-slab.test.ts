/**
 * Issue 20, point 3: the cache's entries keep their bytes in slab chunks and are keyed by a name hash. The slab
 * reuses and releases pages; two names with the same hash stay apart; an entry that leaves the store while a
 * serve-stale refresh holds it still renders its own answer; the byte count follows the chunks.
 */
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import * as dnsPacket from 'dns-packet';
import { ManualClock } from '../core/clock';
import { DnsResponse } from '../core/response';
import { parseQuery, type ParsedQuery } from '../core/wire/query';
import { buildQuery } from '../testing/client';
import { CacheStore, type StoreLimits } from '../plugins/cache/store';
import { wireNameHash } from '../core/wire/names';
import { Slab } from '../plugins/cache/slab';

const LIMITS: StoreLimits = { capacity: 1000, maxTtl: 3600, minTtl: 0, denialTtl: 1800, servfailMs: 5000, maxStaleMs: 60_000 };

function q(name: string, type = 'A'): ParsedQuery {
  const p = parseQuery(buildQuery(name, type));
  assert.equal(p.kind, 'query');
  return p as ParsedQuery;
}

function reply(name: string, address: string, ttl = 300): DnsResponse {
  return DnsResponse.fromWire(
    dnsPacket.encode({
      type: 'response',
      id: 1,
      flags: dnsPacket.RECURSION_AVAILABLE,
      questions: [{ name, type: 'A', class: 'IN' }],
      answers: [{ name, type: 'A', class: 'IN', ttl, data: address }],
    }),
  );
}

function addresses(res: DnsResponse): string[] {
  return (dnsPacket.decode(res.wire).answers ?? []).map((r) => String((r as { data: unknown }).data));
}

/** Two different lower-case names whose wire keys hash alike (found by search: 31 bits, ~50,000 tries). */
function collidingNames(): [string, string] {
  const seen = new Map<number, string>();
  for (let i = 0; i < 2_000_000; i++) {
    const name = `c${i}.test`;
    const key = parseQuery(buildQuery(name, 'A')) as ParsedQuery;
    const h = wireNameHash(key.raw, 12, key.questionEnd - 4);
    const other = seen.get(h);
    if (other !== undefined) return [other, name];
    seen.set(h, name);
  }
  throw new Error('no collision found');
}

describe('cache: slab-backed entries (issue 20.3)', () => {
  test('slab: chunks are reused after free, an empty page goes back, sizes follow the classes', () => {
    const slab = new Slab(20_000);
    assert.equal(slab.chunkSize(70), 80);
    assert.ok(slab.chunkSize(5000) >= 5000 && slab.chunkSize(5000) <= 5000 * 1.125 + 16);
    const refs: number[] = [];
    for (let i = 0; i < 5000; i++) refs.push(slab.alloc(70));
    assert.equal(slab.usedBytes, 5000 * 80);
    const pages = slab.allocatedBytes;
    assert.ok(pages >= 5000 * 80 && pages < 5000 * 80 + 3 * 65536, `pages ${pages}`);
    // Distinct, non-overlapping chunks.
    const spans = new Set(refs.map((r) => `${slab.bufferOf(r) === slab.bufferOf(refs[0]) ? 0 : 1}:${r}`));
    assert.equal(spans.size, 5000);
    // Every other chunk freed: no page empties, and the freed chunks are handed out again before any new page.
    for (let i = 0; i < 5000; i += 2) slab.free(refs[i]);
    assert.equal(slab.usedBytes, 2500 * 80);
    assert.equal(slab.allocatedBytes, pages);
    for (let i = 0; i < 5000; i += 2) refs[i] = slab.alloc(70);
    assert.equal(slab.allocatedBytes, pages);
    // Pages whose chunks are all freed go back (one kept for the class).
    const byPage = new Map<Buffer, number[]>();
    for (const r of refs) {
      const b = slab.bufferOf(r);
      byPage.set(b, [...(byPage.get(b) ?? []), r]);
    }
    const [first, second, ...rest] = [...byPage.values()];
    for (const r of [...first, ...second]) slab.free(r);
    assert.ok(slab.allocatedBytes <= pages - 2 * 819 * 80, `released: ${slab.allocatedBytes} of ${pages}`);
    for (const r of rest.flat()) slab.free(r);
    assert.equal(slab.usedBytes, 0);
    assert.ok(slab.allocatedBytes <= 65536, `one empty page kept at most: ${slab.allocatedBytes}`);
  });

  test('two names with the same hash are two entries, each found, replaced and deleted on its own', () => {
    const [n1, n2] = collidingNames();
    const hashOf = (p: ParsedQuery): number => wireNameHash(p.raw, 12, p.questionEnd - 4);
    assert.equal(hashOf(q(n1)), hashOf(q(n2)));
    const store = new CacheStore(LIMITS, new ManualClock(1000));
    assert.equal(store.put(q(n1), reply(n1, '192.0.2.1')), 'stored');
    assert.equal(store.get(q(n2)), undefined, 'a hash neighbour is not a hit');
    assert.equal(store.put(q(n2), reply(n2, '192.0.2.2')), 'stored');
    assert.equal(store.size, 2);
    assert.deepEqual(addresses(store.render(store.get(q(n1))!, 1000)), ['192.0.2.1']);
    assert.deepEqual(addresses(store.render(store.get(q(n2))!, 1000)), ['192.0.2.2']);
    // Replacing one leaves the other.
    assert.equal(store.put(q(n1), reply(n1, '192.0.2.3')), 'stored');
    assert.equal(store.size, 2);
    assert.deepEqual(addresses(store.render(store.get(q(n1))!, 1000)), ['192.0.2.3']);
    assert.deepEqual(addresses(store.render(store.get(q(n2))!, 1000)), ['192.0.2.2']);
    store.delete(store.get(q(n1))!);
    assert.equal(store.get(q(n1)), undefined);
    assert.deepEqual(addresses(store.render(store.get(q(n2))!, 1000)), ['192.0.2.2']);
    assert.equal(store.get(q(n2))!.name, q(n2).wireKey);
  });

  test('an entry that leaves while a refresh holds it still renders its own answer, not its chunk\'s next tenant', () => {
    const store = new CacheStore({ ...LIMITS, capacity: 2 }, new ManualClock(1000));
    store.put(q('old.test'), reply('old.test', '192.0.2.10'));
    const e = store.get(q('old.test'))!;
    e.pending = Promise.resolve(null);
    // Two more names evict it (capacity 2, never used since), and their chunks may reuse its bytes.
    e.used = false;
    store.put(q('new1.test'), reply('new1.test', '192.0.2.11'));
    store.put(q('new2.test'), reply('new2.test', '192.0.2.12'));
    assert.equal(store.peek(q('old.test')), undefined);
    assert.deepEqual(addresses(store.renderStale(e, 30)), ['192.0.2.10']);
    assert.deepEqual(addresses(store.render(store.get(q('new2.test'))!, 1000)), ['192.0.2.12']);
  });

  test('bytes: each entry counts its chunk and the fixed overhead; the total follows the store to 0', () => {
    const store = new CacheStore(LIMITS, new ManualClock(1000));
    for (let i = 0; i < 500; i++) store.put(q(`b${i}.test`), reply(`b${i}.test`, '192.0.2.1'));
    let sum = 0;
    for (const e of store.entries()) sum += e.size;
    assert.equal(store.bytes, sum);
    assert.ok(store.bytes / store.size < 250, `per entry ${store.bytes / store.size}`);
    assert.ok(store.slabBytes >= store.size * 64);
    // A hit keeps the entry's layout for the hits to come, and the entry's size says so.
    const cold = store.bytes;
    const e = store.get(q('b7.test'))!;
    const r1 = store.render(e, 1000);
    const r2 = store.render(e, 1000);
    assert.equal(r1.layout, r2.layout, 'one layout object per hit entry');
    assert.ok(store.bytes > cold && store.bytes - cold <= 300, `a hit entry costs ${store.bytes - cold} more`);
    sum = 0;
    for (const x of store.entries()) sum += x.size;
    assert.equal(store.bytes, sum);
    for (const x of [...store.entries()]) store.delete(x);
    assert.equal(store.bytes, 0);
    assert.ok(store.slabBytes <= 65536);
  });
});
