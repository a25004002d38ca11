/**
 * bench/filter.ts — the filter plugin's memory and speed (issue 17, point 7). Bounded: it stops by itself.
 *
 *   node dist/bench/filter.js [--names 1000000] [--refreshes 20] [--seconds 5] [--rounds 3] [--skip-qps] [--as-is]
 *
 * It re-runs itself with the service unit's environment and node flags (packaging/codexdns.service).
 *
 * 1. Generates `names` names in 4 lists locally and serves them from a loopback HTTP server.
 * 2. Builds the tables as the plugin does (download and build, each in a worker thread: stream → sorted chunks →
 *    merge), sampling RSS every 10 ms:
 *    bytes a name, peak RSS rise while building, and the event loop's delay meanwhile (the answer path's pause).
 * 3. Refreshes all 4 lists `refreshes` times: RSS / heap after each, and their trend (mean of the first 5 against
 *    the last 5, a fitted slope): no growth allowed.
 * 4. Verdict cost (ns) for hits and misses against the 4 tables.
 * 5. Cache-hit QPS of a real server with and without the plugin (1 M names loaded), a UDP load generator in a
 *    child process, `rounds` alternating rounds of `seconds` each.
 */
import { fork } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import * as v8 from 'node:v8';
import * as vm from 'node:vm';
import { buildConfig, loadAll, FilterState, options as filterOptions } from '../plugins/filter';
import { startFakeUpstream, startServer } from '../testing';
import { encodeQuery, parseArgs, unitEnvironment, unitExecNodeFlags } from './common';

const args = parseArgs(process.argv.slice(2));
const N = Number(args.get('names') ?? 1_000_000);
const REFRESHES = Number(args.get('refreshes') ?? 20);
const SECONDS = Number(args.get('seconds') ?? 5);
const ROUNDS = Number(args.get('rounds') ?? 3);
/** The bench's temporary folder (lists, copies, scripts), removed at the end. */
let workDir = os.tmpdir();

function gc(): void {
  const g = (globalThis as { gc?: () => void }).gc ?? (v8.setFlagsFromString('--expose-gc'), vm.runInNewContext('gc') as () => void);
  g();
  g();
}
const MB = (b: number): number => Math.round((b / 1e6) * 10) / 10;

function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
const TLDS = ['com', 'net', 'org', 'io', 'de', 'co.uk', 'info', 'biz'];
const WORDS = ['ads', 'track', 'metrics', 'cdn', 'stats', 'pixel', 'telemetry', 'beacon', 'tag', 'collect'];
function makeName(r: () => number, i: number): string {
  const letters = 'abcdefghijklmnopqrstuvwxyz0123456789';
  const word = (min: number, max: number): string => {
    const len = min + Math.floor(r() * (max - min + 1));
    let s = '';
    for (let k = 0; k < len; k++) s += letters[Math.floor(r() * letters.length)];
    return s;
  };
  const base = `${word(4, 12)}.${TLDS[Math.floor(r() * TLDS.length)]}`;
  const d = r();
  return d < 0.3 ? base : d < 0.85 ? `${WORDS[Math.floor(r() * WORDS.length)]}${i % 97}.${base}` : `${word(2, 6)}.${WORDS[Math.floor(r() * WORDS.length)]}.${base}`;
}

async function main(): Promise<void> {
  const out: Record<string, unknown> = { node: process.version, cpu: os.cpus()[0]?.model, cores: os.cpus().length, loadavg: os.loadavg().map((x) => Math.round(x * 100) / 100), names: N };
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'filter-bench-'));
  workDir = dir;
  const r = rng(1);
  const sample: string[] = [];
  for (let f = 0; f < 4; f++) {
    const fd = fs.openSync(path.join(dir, `list${f}.txt`), 'w');
    let buf = f === 0 ? '# hosts format\n' : '';
    for (let i = 0; i < N / 4; i++) {
      const n = makeName(r, i);
      if (i % 1000 === 0) sample.push(n);
      buf += f === 0 ? `0.0.0.0 ${n}\n` : f === 3 ? `||${n}^\n` : `${n}\n`;
      if (buf.length > 1 << 20) {
        fs.writeSync(fd, buf);
        buf = '';
      }
    }
    fs.writeSync(fd, buf);
    fs.closeSync(fd);
  }
  // The list server runs in a child process, so its buffers are not counted in this process's RSS.
  const serverScript = path.join(dir, 'serve.js');
  fs.writeFileSync(serverScript, `
const http = require('node:http'), fs = require('node:fs'), path = require('node:path');
const dir = process.argv[2];
const s = http.createServer((req, res) => {
  const f = path.join(dir, path.basename(req.url || ''));
  if (!fs.existsSync(f)) return void res.writeHead(404).end();
  res.writeHead(200, { 'content-type': 'text/plain' });
  fs.createReadStream(f).pipe(res);
});
s.listen(0, '127.0.0.1', () => process.send(s.address().port));
process.on('disconnect', () => process.exit(0));`);
  const served = fork(serverScript, [dir], { stdio: 'inherit' });
  const port = await new Promise<number>((res) => served.once('message', (p) => res(p as number)));
  const urls = [0, 1, 2, 3].map((f) => `http://127.0.0.1:${port}/list${f}.txt`);

  // --- build ------------------------------------------------------------------------------------------------
  // The event loop's delay with nothing to do, for comparison (on a busy machine it is the scheduler's share).
  const idle = monitorEventLoopDelay({ resolution: 1 });
  idle.enable();
  const tick = setInterval(() => undefined, 1);
  await new Promise((res) => setTimeout(res, 3000));
  clearInterval(tick);
  idle.disable();
  out.idleEventLoopDelayMs = { p50: idle.percentile(50) / 1e6, p99: idle.percentile(99) / 1e6, max: idle.max / 1e6 };
  console.log(JSON.stringify({ idleEventLoopDelayMs: out.idleEventLoopDelayMs }));
  const opts = { ...defaults(), block: urls, cache_dir: path.join(dir, 'copies') };
  gc();
  const base = process.memoryUsage();
  let peak = base.rss;
  const sampler = setInterval(() => {
    const rss = process.memoryUsage().rss;
    if (rss > peak) peak = rss;
  }, 10);
  const loop = monitorEventLoopDelay({ resolution: 1 });
  loop.enable();
  const built = buildConfig(opts, (p) => path.resolve(dir, p));
  const state = new FilterState(built.sources, built.lists, built.groups, 10);
  const t0 = performance.now();
  await loadAll(state, built.limits);
  const buildMs = performance.now() - t0;
  loop.disable();
  clearInterval(sampler);
  gc();
  const afterBuild = process.memoryUsage();
  out.build = {
    ms: Math.round(buildMs),
    kept: state.engine.names,
    tableMB: MB(state.engine.byteLength),
    bytesPerName: Math.round((state.engine.byteLength / N) * 10) / 10,
    peakRssRiseMB: MB(peak - base.rss),
    heapPlusExternalRiseMB: MB(afterBuild.heapUsed + afterBuild.external + afterBuild.arrayBuffers - (base.heapUsed + base.external + base.arrayBuffers)),
    rssAfterMB: MB(afterBuild.rss),
    eventLoopDelayMs: { p50: loop.percentile(50) / 1e6, p99: loop.percentile(99) / 1e6, max: loop.max / 1e6 },
  };
  console.log(JSON.stringify({ build: out.build }));

  // --- refreshes ----------------------------------------------------------------------------------------------
  const rss: number[] = [];
  const heap: number[] = [];
  let refreshPeak = 0;
  const s2 = setInterval(() => {
    const x = process.memoryUsage().rss;
    if (x > refreshPeak) refreshPeak = x;
  }, 10);
  const loop2 = monitorEventLoopDelay({ resolution: 1 });
  for (let i = 0; i < REFRESHES; i++) {
    // Measured while refreshing only: the forced full GCs below are the bench's, not the plugin's.
    loop2.enable();
    for (const s of state.sources) {
      s.etag = undefined;
      s.lastModified = undefined;
      await state.serialize(() => s.refresh(built.limits));
    }
    state.engine.recompile();
    loop2.disable();
    gc();
    const m = process.memoryUsage();
    rss.push(MB(m.rss));
    heap.push(MB(m.heapUsed + m.arrayBuffers));
  }
  clearInterval(s2);
  out.refreshes = {
    count: REFRESHES,
    rssMB: rss,
    heapPlusBuffersMB: heap,
    growthMB: Math.round((rss[rss.length - 1] - rss[0]) * 10) / 10,
    rssTrend: trend(rss),
    heapTrend: trend(heap),
    peakRssRiseOverFirstMB: MB(refreshPeak - afterBuild.rss),
    eventLoopDelayMs: { p99: loop2.percentile(99) / 1e6, max: loop2.max / 1e6 },
  };
  console.log(JSON.stringify({ refreshes: out.refreshes }));

  // --- verdict cost -------------------------------------------------------------------------------------------
  const hits = sample.map((n, i) => (i % 2 === 0 ? n : `x${i}.${n}`));
  const misses = hits.map((n, i) => `miss${i}.example-${i}.test`);
  const ns = (names: string[]): number => {
    let best = Infinity;
    for (let round = 0; round < 5; round++) {
      // CPU time, not wall time: on a shared machine the wall clock also counts other processes' turns.
      const t = process.cpuUsage();
      for (let k = 0; k < 200; k++) for (const n of names) state.engine.verdict(state.groups.defaultIndex, n);
      const d = process.cpuUsage(t);
      best = Math.min(best, ((d.user + d.system) * 1000) / (names.length * 200));
    }
    return Math.round(best);
  };
  const hitBlocked = hits.filter((n) => state.engine.verdict(state.groups.defaultIndex, n) === 1).length;
  out.verdictNs = { hit: ns(hits), miss: ns(misses), hitsFound: `${hitBlocked}/${hits.length}` };
  console.log(JSON.stringify({ verdictNs: out.verdictNs }));

  // --- QPS ----------------------------------------------------------------------------------------------------
  if (!args.has('skip-qps')) {
    const up = await startFakeUpstream({ unknown: 'NOERROR', records: { 'hit.bench.test': { A: '192.0.2.1' } }, ttl: 3600 });
    const text = (filter: boolean, refresh = '24h'): string => `
servers:
  - listen: [udp://127.0.0.1:0]
    plugins:
${filter ? `      - filter: { block: [${urls.map((u) => `"${u}"`).join(', ')}], cache_dir: "${path.join(dir, 'copies')}", refresh: ${refresh}, jitter: 0s, cname: ${args.get('cname') ?? 'true'} }\n` : ''}      - cache: { capacity: 1000 }
      - forward: { to: ["${up.address}"] }
`;
    const without = await startServer(text(false));
    const withF = await startServer(text(true));
    const qps: { without: number[]; with: number[] } = { without: [], with: [] };
    const cpu: { without: number[]; with: number[] } = { without: [], with: [] };
    for (let round = 0; round < ROUNDS; round++) {
      const a = await load(without.port);
      qps.without.push(a.qps);
      cpu.without.push(a.cpuUsPerQuery);
      const b = await load(withF.port);
      qps.with.push(b.qps);
      cpu.with.push(b.cpuUsPerQuery);
    }
    await without.stop();
    // Hit latency while the lists are rebuilt without pause (every list due every 2 s; the child's list server
    // sends no validators, so each refresh is a full download and build), against the same server idle.
    const building = await startServer(text(true, '2s'));
    const idleLat: number[] = [];
    const buildLat: number[] = [];
    const idleMax: number[] = [];
    const buildMax: number[] = [];
    const refreshesBefore = building.logs.filter((l) => l.includes('list refreshed')).length;
    await new Promise((res) => setTimeout(res, 2500));
    for (let round = 0; round < ROUNDS; round++) {
      const a = await load(withF.port);
      idleLat.push(a.p99);
      idleMax.push(a.max);
      const b = await load(building.port);
      buildLat.push(b.p99);
      buildMax.push(b.max);
    }
    const rebuilt = building.logs.filter((l) => l.includes('list refreshed')).length - refreshesBefore;
    await building.stop();
    await withF.stop();
    await up.stop();
    const med = (a: number[]): number => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)];
    out.qps = {
      ...qps,
      medianWithout: med(qps.without),
      medianWith: med(qps.with),
      ratio: Math.round((med(qps.with) / med(qps.without)) * 1000) / 1000,
      serverCpuUsPerQuery: cpu,
      cpuRatio: Math.round((med(cpu.without) / med(cpu.with)) * 1000) / 1000,
      hitLatencyMs: { idleP99: idleLat, duringBuildsP99: buildLat, idleMax, duringBuildsMax: buildMax, p99Ratio: Math.round((med(buildLat) / Math.max(1e-6, med(idleLat))) * 100) / 100, listsRebuilt: rebuilt },
      loadavg: os.loadavg().map((x) => Math.round(x * 100) / 100),
    };
    console.log(JSON.stringify({ qps: out.qps }));
  }
  served.kill();
  fs.rmSync(dir, { recursive: true, force: true });
  console.log(JSON.stringify(out, null, 2));
  process.exit(0);
}

/** Levels that should stay flat: a single pair (last − first) hides a band, so compare means and fit a line. */
const TREND_WINDOW = 5;
/** Growth over the whole series above this (MB) counts as growing. */
const GROWTH_ALLOWED_MB = 5;
function trend(xs: number[]): { firstMeanMB: number; lastMeanMB: number; slopeMBPerRefresh: number; bandMB: [number, number]; grows: boolean } {
  const w = Math.min(TREND_WINDOW, Math.floor(xs.length / 2)) || 1;
  const mean = (a: number[]): number => a.reduce((x, y) => x + y, 0) / a.length;
  const first = mean(xs.slice(0, w));
  const last = mean(xs.slice(-w));
  const mx = (xs.length - 1) / 2;
  const my = mean(xs);
  let num = 0;
  let den = 0;
  xs.forEach((y, i) => {
    num += (i - mx) * (y - my);
    den += (i - mx) ** 2;
  });
  const slope = den === 0 ? 0 : num / den;
  const r1 = (x: number): number => Math.round(x * 10) / 10;
  return {
    firstMeanMB: r1(first),
    lastMeanMB: r1(last),
    slopeMBPerRefresh: Math.round(slope * 100) / 100,
    bandMB: [Math.min(...xs), Math.max(...xs)],
    grows: last - first > GROWTH_ALLOWED_MB || slope * (xs.length - 1) > GROWTH_ALLOWED_MB,
  };
}

function defaults(): import('../plugins/filter').FilterOptions {
  // The schema's defaults, as the loader fills them in (durations in ms).
  void filterOptions;
  return {
    block: [], allow: [], groups: [], answer: 'null', address: [], ttl: 60, cname: true, cache_dir: './data/filter', refresh: 86_400_000, jitter: 3_600_000, retry: 300_000,
    file_check: 30_000, timeout: 120_000, max_size: 256 * 1024 * 1024, max_patterns: 1000, max_identities: 10_000, max_clients: 10_000, top_names: 1000,
  };
}

/**
 * Cache-hit load from a child process: a window of 64 queries in flight for SECONDS seconds. Resolves with the
 * QPS and the server's CPU microseconds per query (this process's CPU time over the window: the servers run
 * here, the load generator does not), which a busy machine does not distort the way it distorts QPS.
 */
function load(port: number): Promise<{ qps: number; cpuUsPerQuery: number; p50: number; p99: number; max: number }> {
  const script = `
const dgram = require('node:dgram');
const q = Buffer.from(process.argv[2], 'hex');
const port = Number(process.argv[3]);
const seconds = Number(process.argv[4]);
const s = dgram.createSocket('udp4');
let got = 0, id = 0, done = false, measuring = false;
const sentAt = new Float64Array(65536);
const lat = [];
const send = () => { id = (id + 1) & 0xffff; q.writeUInt16BE(id, 0); sentAt[id] = performance.now(); s.send(q, port, '127.0.0.1'); };
let last = Date.now();
s.on('message', (m) => { if (done) return; got++; last = Date.now(); if (measuring && lat.length < 5e6) lat.push(performance.now() - sentAt[m.readUInt16BE(0)]); send(); });
const pct = (p) => { lat.sort((a, b) => a - b); return lat.length ? Math.round(lat[Math.min(lat.length - 1, Math.floor(lat.length * p))] * 1000) / 1000 : 0; };
s.bind(0, '127.0.0.1', () => {
  for (let i = 0; i < 64; i++) send();
  const t0 = Date.now();
  const warm = setTimeout(() => { got = 0; measuring = true; process.send({ start: true }); const t1 = Date.now(); setTimeout(() => { done = true; const qps = got / ((Date.now() - t1) / 1000); process.send({ qps, got, p50: pct(0.5), p99: pct(0.99), max: pct(1) }); s.close(); }, seconds * 1000); }, 500);
  // Lost packets shrink the window: refill it when nothing came back for 100 ms.
  const top = setInterval(() => { if (!done && Date.now() - last > 100) for (let i = 0; i < 64; i++) send(); }, 100); top.unref();
});`;
  const f = path.join(workDir, 'load.js');
  fs.writeFileSync(f, script);
  return new Promise((resolve, reject) => {
    const child = fork(f, [encodeQuery(1, 'hit.bench.test').toString('hex'), String(port), String(SECONDS)], { stdio: 'inherit' });
    const killer = setTimeout(() => child.kill(), (SECONDS + 10) * 1000);
    let cpu0 = process.cpuUsage();
    child.on('message', (m: { start?: boolean; qps?: number; got?: number; p50?: number; p99?: number; max?: number }) => {
      if (m.start) {
        cpu0 = process.cpuUsage();
        return;
      }
      const d = process.cpuUsage(cpu0);
      clearTimeout(killer);
      child.kill();
      resolve({ qps: Math.round(m.qps ?? 0), cpuUsPerQuery: Math.round(((d.user + d.system) / Math.max(1, m.got ?? 0)) * 100) / 100, p50: m.p50 ?? 0, p99: m.p99 ?? 0, max: m.max ?? 0 });
    });
    child.once('error', reject);
  });
}

/**
 * Runs itself again the way the service unit runs the server (its Environment=, e.g. MALLOC_ARENA_MAX=2, and
 * its node flags, e.g. --single-threaded-gc, --max-semi-space-size=2): memory figures are the installed
 * service's. `--as-is` measures this process as started.
 */
function asTheUnitRunsIt(): boolean {
  if (args.has('as-is') || process.env.CODEXDNS_FILTER_BENCH_CHILD === '1') return false;
  const env: NodeJS.ProcessEnv = { ...process.env, ...unitEnvironment(), CODEXDNS_FILTER_BENCH_CHILD: '1' };
  const flags = [...unitExecNodeFlags(), '--expose-gc'];
  console.log(JSON.stringify({ runAs: { flags, NODE_OPTIONS: env.NODE_OPTIONS, MALLOC_ARENA_MAX: env.MALLOC_ARENA_MAX, MALLOC_MMAP_THRESHOLD_: env.MALLOC_MMAP_THRESHOLD_ } }));
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const r = (require('node:child_process') as typeof import('node:child_process')).spawnSync(process.execPath, [...flags, __filename, ...process.argv.slice(2)], { env, stdio: 'inherit', timeout: 20 * 60_000 });
  process.exit(r.status ?? 1);
}

const deadline = setTimeout(() => {
  console.error('bench/filter: deadline reached, stopping');
  process.exit(1);
}, 20 * 60_000);
deadline.unref();
if (!asTheUnitRunsIt()) main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
