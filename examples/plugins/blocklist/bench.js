'use strict';
/**
 * Measures the blocklist table against a plain Set of strings: memory held and lookup time.
 *
 *   node --expose-gc examples/plugins/blocklist/bench.js [names=1000000]
 *
 * Prints one JSON object. Memory is measured as (heapUsed + external) after a full GC, before and after
 * building, so it counts what the structure keeps and nothing transient.
 */
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { NameTable, buildInWorker } = require('./table');

/** Deterministic pseudo-random generator (tests and runs compare like with like). */
function rng(seed) {
  let s = seed >>> 0;
  return () => {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    return s / 0x100000000;
  };
}

const TLDS = ['com', 'net', 'org', 'io', 'de', 'co.uk', 'info', 'ru', 'xyz', 'app'];
const WORDS = ['ads', 'track', 'metrics', 'pixel', 'cdn', 'stats', 'tag', 'click', 'beacon', 'log', 'img', 'api', 'srv', 'collect', 'sync'];

/** Names shaped like a real blocklist's (2–4 labels, ≈ 18 characters on average). */
function makeNames(n, seed = 1) {
  const r = rng(seed);
  const letters = 'abcdefghijklmnopqrstuvwxyz0123456789';
  const word = (min, max) => {
    const len = min + Math.floor(r() * (max - min + 1));
    let s = '';
    for (let i = 0; i < len; i++) s += letters[Math.floor(r() * letters.length)];
    return s;
  };
  const out = new Array(n);
  for (let i = 0; i < n; i++) {
    const base = `${word(4, 12)}.${TLDS[Math.floor(r() * TLDS.length)]}`;
    const depth = r();
    out[i] = depth < 0.3 ? base : depth < 0.85 ? `${WORDS[Math.floor(r() * WORDS.length)]}${i % 97}.${base}` : `${word(2, 6)}.${WORDS[Math.floor(r() * WORDS.length)]}.${base}`;
  }
  return out;
}

function gc() {
  if (typeof global.gc === 'function') {
    global.gc();
    global.gc();
    return;
  }
  // eslint-disable-next-line global-require
  require('node:v8').setFlagsFromString('--expose-gc');
  const g = require('node:vm').runInNewContext('gc');
  g();
  g();
}

function held() {
  gc();
  const m = process.memoryUsage();
  return m.heapUsed + m.external;
}

/** ns per lookup over `queries`, best of 3 rounds. */
function timeLookups(has, queries) {
  let best = Infinity;
  let hits = 0;
  for (let round = 0; round < 3; round++) {
    hits = 0;
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < queries.length; i++) if (has(queries[i])) hits++;
    const ns = Number(process.hrtime.bigint() - t0) / queries.length;
    if (ns < best) best = ns;
  }
  return { ns: Math.round(best), hits };
}

/** A Set that matches subdomains the obvious way: try the name, then each parent. */
function setHas(set) {
  return (name) => {
    let n = name;
    for (;;) {
      if (set.has(n)) return true;
      const dot = n.indexOf('.');
      if (dot === -1) return false;
      n = n.slice(dot + 1);
    }
  };
}

async function measure(n = 1_000_000, opts = {}) {
  const names = makeNames(n, opts.seed ?? 1);
  const text = names.join('\n') + '\n';
  const fileBytes = Buffer.byteLength(text);
  const probe = 200_000;
  const r = rng(7);
  const hitQ = [];
  const subQ = [];
  const missQ = makeNames(probe, 99);
  for (let i = 0; i < probe; i++) {
    const name = names[Math.floor(r() * n)];
    hitQ.push(name);
    subQ.push(`x${i % 100}.${name}`);
  }
  const result = { names: n, fileMB: +(fileBytes / 1e6).toFixed(1) };

  // The table, built in a worker as the plugin does it.
  let file = opts.file;
  let tmp;
  if (!file) {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'blocklist-bench-'));
    file = path.join(tmp, 'list.txt');
    fs.writeFileSync(file, text);
  }
  const before = held();
  const t0 = Date.now();
  const built = await buildInWorker(file);
  const buildMs = Date.now() - t0;
  const table = built.table;
  const after = held();
  result.table = {
    kept: table.count,
    bytes: table.byteLength,
    MB: +(table.byteLength / 1e6).toFixed(1),
    heapDeltaMB: +((after - before) / 1e6).toFixed(1),
    buildMs,
    lookupNs: {
      hit: timeLookups((q) => table.has(q), hitQ).ns,
      subdomain: timeLookups((q) => table.has(q), subQ).ns,
      miss: timeLookups((q) => table.has(q), missQ).ns,
    },
  };
  result.table.check = {
    hits: timeLookups((q) => table.has(q), hitQ).hits,
    subdomains: timeLookups((q) => table.has(q), subQ).hits,
    misses: timeLookups((q) => table.has(q), missQ).hits,
  };

  if (opts.compareSet !== false) {
    // Built the way a plugin would, from the file's text: the strings V8 makes by splitting are slices that
    // keep the whole text alive, which is part of what a Set of names really costs.
    const setFile = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'blocklist-set-')), 'list.txt');
    fs.writeFileSync(setFile, text);
    const before2 = held();
    const t1 = Date.now();
    let set = (() => new Set(fs.readFileSync(setFile, 'utf8').split('\n').map((l) => l.trim().toLowerCase()).filter(Boolean)))();
    const setBuildMs = Date.now() - t1;
    const after2 = held();
    fs.rmSync(path.dirname(setFile), { recursive: true, force: true });
    const has = setHas(set);
    result.set = {
      MB: +((after2 - before2) / 1e6).toFixed(1),
      buildMs: setBuildMs,
      lookupNs: { hit: timeLookups(has, hitQ).ns, subdomain: timeLookups(has, subQ).ns, miss: timeLookups(has, missQ).ns },
    };
    set = null;
  }
  if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
  return result;
}

module.exports = { measure, makeNames };

if (require.main === module) {
  const n = Number(process.argv[2] ?? 1_000_000);
  measure(n).then((r) => {
    console.log(JSON.stringify({ node: process.version, cpu: os.cpus()[0]?.model, ...r }, null, 2));
  });
}
