/**
 * Bytes per cache entry (issue 20, point 3): 100,000 ordinary A answers stored in a CacheStore, memory measured
 * after a full GC (heap used + external, and RSS) before and after, divided by the entries held; beside it the
 * answer's wire size, the target (2 × wire + 150) and what `codexdns_cache_bytes` says per entry. Then a long
 * "miss run" under a byte budget: rounds of fresh names through a store bounded by max_bytes, RSS after each, to
 * show it stays within the budget plus a constant and does not grow round after round.
 *
 *   npx tsc -p tsconfig.json && node --expose-gc dist/bench/cache-memory.js
 *
 * CACHE_ENTRIES (100000), CACHE_BUDGET_MB (16), CACHE_ROUNDS (5), CACHE_ROUND_ENTRIES (200000) change the sizes;
 * CACHE_STORE_MODULE=/path/to/dist/plugins/cache/store.js measures another build's store (before/after). Bounded:
 * every loop has a fixed count; it stops by itself.
 */
import * as path from 'node:path';
import { parseQuery, type ParsedQuery } from '../core/wire/query';
import { DnsResponse } from '../core/response';
import type { CacheStore as CacheStoreType, StoreLimits } from '../plugins/cache/store';

const gc = (globalThis as { gc?: () => void }).gc;
if (gc === undefined) {
  console.error('run with node --expose-gc');
  process.exit(2);
}

const modPath = process.env.CACHE_STORE_MODULE ? path.resolve(process.env.CACHE_STORE_MODULE) : '../plugins/cache/store';
// eslint-disable-next-line @typescript-eslint/no-require-imports
const { CacheStore } = require(modPath) as { CacheStore: new (l: StoreLimits) => CacheStoreType };

const ENTRIES = Number(process.env.CACHE_ENTRIES ?? 100_000);
const BUDGET_MB = Number(process.env.CACHE_BUDGET_MB ?? 16);
const ROUNDS = Number(process.env.CACHE_ROUNDS ?? 5);
const ROUND_ENTRIES = Number(process.env.CACHE_ROUND_ENTRIES ?? 200_000);

/** A query for `name` A IN with an EDNS OPT (as clients send), parsed as the core does. */
function query(name: string): { q: ParsedQuery; raw: Buffer } {
  const labels = name.split('.');
  const nameLen = labels.reduce((n, l) => n + 1 + l.length, 1);
  const raw = Buffer.alloc(12 + nameLen + 4 + 11);
  raw.writeUInt16BE(0x1234, 0);
  raw.writeUInt16BE(0x0100, 2);
  raw.writeUInt16BE(1, 4);
  raw.writeUInt16BE(1, 10);
  let p = 12;
  for (const l of labels) {
    raw[p++] = l.length;
    p += raw.write(l, p, 'latin1');
  }
  raw[p++] = 0;
  raw.writeUInt16BE(1, p);
  raw.writeUInt16BE(1, p + 2);
  p += 4;
  raw[p] = 0;
  raw.writeUInt16BE(41, p + 1);
  raw.writeUInt16BE(1232, p + 3);
  const parsed = parseQuery(raw);
  if (parsed.kind !== 'query') throw new Error(`unparsable query for ${name}`);
  return { q: parsed as ParsedQuery, raw };
}

/** The upstream's answer: the question, one A record (name compressed), and an OPT record, as a resolver sends. */
function answer(raw: Buffer, q: ParsedQuery): DnsResponse {
  const qEnd = q.questionEnd;
  const out = Buffer.alloc(qEnd + 16 + 11);
  raw.copy(out, 0, 0, qEnd);
  out.writeUInt16BE(0x8180, 2);
  out.writeUInt16BE(1, 6);
  out.writeUInt16BE(1, 10);
  let p = qEnd;
  out.writeUInt16BE(0xc00c, p);
  out.writeUInt16BE(1, p + 2);
  out.writeUInt16BE(1, p + 4);
  out.writeUInt32BE(3600, p + 6);
  out.writeUInt16BE(4, p + 10);
  out.writeUInt32BE(0xc0000201, p + 12);
  p += 16;
  out[p] = 0;
  out.writeUInt16BE(41, p + 1);
  out.writeUInt16BE(1232, p + 3);
  return DnsResponse.fromWire(out);
}

function mem(): { heap: number; ext: number; rss: number } {
  (gc as () => void)();
  (gc as () => void)();
  const m = process.memoryUsage();
  return { heap: m.heapUsed, ext: m.external, rss: m.rss };
}

const limits = (capacity: number, maxBytes: number): StoreLimits => ({
  capacity,
  maxTtl: 86400,
  minTtl: 0,
  denialTtl: 1800,
  servfailMs: 5000,
  maxStaleMs: 0,
  maxBytes,
  maxEntryBytes: 16384,
});

const MB = 1024 * 1024;
const f = (n: number, d = 0): string => n.toFixed(d);

// ---- bytes per entry
const sample = query('host-000000.example.net');
const wireSize = answer(sample.raw, sample.q).wire.length - 11; // stored without the OPT
const store = new CacheStore(limits(ENTRIES, 4096 * MB));
const before = mem();
for (let i = 0; i < ENTRIES; i++) {
  const { q, raw } = query(`host-${String(i).padStart(6, '0')}.example.net`);
  store.put(q, answer(raw, q));
}
const after = mem();
const held = store.size;
const perHeapExt = (after.heap - before.heap + after.ext - before.ext) / held;
const perRss = (after.rss - before.rss) / held;
const gauge = store.bytes / held;
const target = 2 * wireSize + 150;
console.log(`cache-memory: ${held} entries of an A answer of ${wireSize} wire bytes (${modPath === '../plugins/cache/store' ? 'this build' : modPath})`);
console.log('');
console.log('| entries | wire bytes | heap+external per entry | RSS per entry | codexdns_cache_bytes per entry | target (2×wire+150) |');
console.log('|---|---|---|---|---|---|');
console.log(`| ${held} | ${wireSize} | ${f(perHeapExt)} | ${f(perRss)} | ${f(gauge)} | ${target} (${perHeapExt <= target ? 'met' : 'missed'}) |`);
// The same entries once each hit: a hit entry keeps its layout for later hits (and counts it).
const hot = mem();
for (let i = 0; i < ENTRIES; i++) {
  const { q } = query(`host-${String(i).padStart(6, '0')}.example.net`);
  const e = store.get(q);
  if (e !== undefined) store.render(e, 0);
}
const hotAfter = mem();
const hotPer = (hotAfter.heap - hot.heap + hotAfter.ext - hot.ext) / held + perHeapExt;
console.log(`| ${held}, each hit once | ${wireSize} | ${f(hotPer)} | — | ${f(store.bytes / held)} | — |`);
console.log('');
// Keep the store alive until measured.
if (store.size !== held) throw new Error('store changed');
store.clear();

// ---- a long miss run under a byte budget
const budget = BUDGET_MB * MB;
const bounded = new CacheStore(limits(10_000_000, budget));
const base = mem();
console.log(`miss run under max_bytes = ${BUDGET_MB} MiB: ${ROUNDS} rounds of ${ROUND_ENTRIES} fresh names`);
console.log('');
console.log('| round | entries held | codexdns_cache_bytes | heap+external growth | RSS growth | RSS |');
console.log('|---|---|---|---|---|---|');
let n = 0;
for (let r = 1; r <= ROUNDS; r++) {
  for (let i = 0; i < ROUND_ENTRIES; i++, n++) {
    const { q, raw } = query(`m${n}.example.net`);
    bounded.put(q, answer(raw, q));
  }
  const m = mem();
  console.log(`| ${r} | ${bounded.size} | ${f(bounded.bytes / MB, 1)} MiB | ${f((m.heap - base.heap + m.ext - base.ext) / MB, 1)} MiB | ${f((m.rss - base.rss) / MB, 1)} MiB | ${f(m.rss / MB, 1)} MiB |`);
}
