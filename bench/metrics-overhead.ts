// What the metrics plugin costs on the cache-hit path (issue 5: per-plugin timing + request metrics < 5% of
// cache-hit throughput). `npm run build && node dist/bench/metrics-overhead.js`.
//
// Three codexdns processes with the same chain (acl, cache, forward to a local upstream), started side by side:
//   none       — no metrics plugin;
//   metrics    — `metrics` with its defaults: request metrics from the `served` hook, every tap timed
//                (codexdns_plugin_duration_seconds), the dashboard sampler; /metrics scraped every second and a
//                dashboard stream (/api/stream) open during the run, as a worst case;
//   no-timing  — the same with `plugin_timing: false` (the request metrics alone).
// Each is loaded by dnsperf with the cache-hit set (1,000 names replayed after a warm-up pass), in interleaved
// rounds (none, metrics, no-timing, none, …) so drift affects all three alike; the medians are compared.
// Pinned as bench/run.ts pins (DESIGN §8): dnsperf and the upstream on CPU 0, the server under test on CPU 1.
//
// Then, in-process and independent of the machine's load: the nanoseconds per query of the `served` recorder and
// of one timed tap (two monotonic clock reads and a histogram observation), against an untimed tap.
//
// Environment: BENCH_SECONDS (default 10), BENCH_REPEAT (rounds, default 3), BENCH_CLIENTS (10),
// BENCH_OUTSTANDING (200), BENCH_PIN=0 (no taskset), BENCH_MICRO_ONLY=1 (only the in-process figures),
// BENCH_QUIET_WAIT=SECONDS (shared machines: before each run wait, at most that long, until other processes use
// < 10% of a CPU). Rounds during which other processes used ≥ 10% of a CPU are reported and left out of the medians. Traffic only on 127.0.0.1; every process runs under
// `timeout` and is stopped at the end, on error and on Ctrl-C.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import dgram from 'node:dgram';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { Registry } from 'prom-client';
import { encodeQuery, envInt, findBinary, statTicks } from './common';
import { waitReady } from './qps/ports';
import { QueryContext } from '../core/context';
import { DnsResponse } from '../core/response';
import { callbackForm, timed } from '../core/tapForm';
import type { TapTiming } from '../core/timing';
import { parseQuery, type ParsedQuery } from '../core/wire/query';
import { RequestRecorder, coreMetrics } from '../plugins/metrics';

const ROOT = path.resolve(__dirname, '..', '..');
const CLI = path.join(ROOT, 'dist', 'cli', 'codexdns.js');
const UPSTREAM = path.join(__dirname, 'upstream.js');
const RESULTS = path.join(ROOT, 'bench', 'results', 'metrics-overhead.json');


const SECONDS = envInt('BENCH_SECONDS', 10, 1, 120);
const REPEAT = envInt('BENCH_REPEAT', 3, 1, 20);
const CLIENTS = envInt('BENCH_CLIENTS', 10, 1, 100);
const OUTSTANDING = envInt('BENCH_OUTSTANDING', 200, 1, 10000);
const LIFETIME_S = 300 + SECONDS * REPEAT * 3 * 3;


const DNSPERF = findBinary('dnsperf');
const TASKSET = findBinary('taskset');
const PIN = process.env.BENCH_PIN !== '0' && os.cpus().length >= 2 && TASKSET !== null;
const CLK_TCK = Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout.trim()) || 100;

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

// ------------------------------------------------------------------------------------------------ processes

interface Proc {
  name: string;
  child: ChildProcess;
  pid: number;
  output: string;
  exited: boolean;
}

const procs = new Set<Proc>();
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'codexdns-metrics-bench-'));

function pinned(cpu: number, cmd: string, args: string[]): [string, string[]] {
  return PIN ? [TASKSET as string, ['-c', String(cpu), cmd, ...args]] : [cmd, args];
}

function childOf(pid: number): number | null {
  try {
    const kids = fs.readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim();
    return kids === '' ? null : Number(kids.split(/\s+/)[0]);
  } catch {
    return null;
  }
}

async function start(name: string, cpu: number, cmd: string, args: string[]): Promise<Proc> {
  const [c, a] = pinned(cpu, cmd, args);
  const child = spawn('timeout', ['-k', '5', String(LIFETIME_S), c, ...a], { cwd: tmp, stdio: ['ignore', 'pipe', 'pipe'] });
  const p: Proc = { name, child, pid: -1, output: '', exited: false };
  const keep = (b: Buffer): void => {
    p.output = (p.output + b.toString()).slice(-8192);
  };
  child.stdout?.on('data', keep);
  child.stderr?.on('data', keep);
  child.on('exit', () => {
    p.exited = true;
    procs.delete(p);
  });
  procs.add(p);
  for (let i = 0; i < 300 && p.pid < 0 && !p.exited; i++) {
    const k = child.pid === undefined ? null : childOf(child.pid);
    if (k !== null) p.pid = k;
    else await sleep(10);
  }
  if (p.pid < 0) throw new Error(`${name} did not start\n${p.output}`);
  return p;
}

async function stop(p: Proc): Promise<void> {
  if (p.exited) return;
  p.child.kill('SIGTERM');
  for (let i = 0; i < 100 && !p.exited; i++) await sleep(50);
  if (!p.exited) {
    try {
      process.kill(p.pid, 'SIGKILL');
    } catch {
      // gone
    }
    p.child.kill('SIGKILL');
  }
}

async function stopAll(): Promise<void> {
  await Promise.all([...procs].map(stop));
  fs.rmSync(tmp, { recursive: true, force: true });
}

for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
  process.on(sig, () => void stopAll().finally(() => process.exit(130)));
}
process.on('exit', () => {
  for (const p of procs) {
    try {
      process.kill(p.pid, 'SIGKILL');
    } catch {
      // gone
    }
  }
});

/** utime+stime of a process (with `children`: plus its reaped children's, e.g. our dnsperf runs), in ticks. */
function cpuTicks(pid: number, children = false): number {
  return statTicks(`/proc/${pid}/stat`, children) ?? 0;
}

/** Busy ticks of the whole machine (user + nice + system), from /proc/stat. */
function machineBusy(): number {
  const f = fs.readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
  return f[0] + f[1] + f[2];
}

/**
 * CPU (% of one CPU) used during `fn` by processes that are not part of this benchmark: on a shared machine a
 * run with more than a few % is not comparable (another process took time from the server's CPU).
 */
async function foreignCpu<T>(ours: number[], fn: () => Promise<T>): Promise<{ value: T; foreignPct: number }> {
  const t0 = performance.now();
  const sum = (): number => ours.reduce((a, pid) => a + cpuTicks(pid), 0) + cpuTicks(process.pid, true);
  const b0 = machineBusy();
  const o0 = sum();
  const value = await fn();
  const o1 = sum();
  const b1 = machineBusy();
  const s = (performance.now() - t0) / 1000;
  return { value, foreignPct: Math.max(0, ((b1 - b0 - (o1 - o0)) * 100) / (CLK_TCK * s)) };
}

const QUIET_WAIT_S = envInt('BENCH_QUIET_WAIT', 0, 0, 3600);
const BUSY_PCT = 10;

/** Waits (at most BENCH_QUIET_WAIT s) until other processes use less than BUSY_PCT of a CPU. */
async function waitQuiet(ours: number[]): Promise<void> {
  const until = Date.now() + QUIET_WAIT_S * 1000;
  while (Date.now() < until) {
    const { foreignPct } = await foreignCpu(ours, () => sleep(1000));
    if (foreignPct < BUSY_PCT) return;
  }
}

function peakRssMiB(pid: number): number | null {
  try {
    const m = /VmHWM:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) / 1024 : null;
  } catch {
    return null;
  }
}

// ------------------------------------------------------------------------------------------------- network

async function freePort(): Promise<number> {
  for (;;) {
    const port = await new Promise<number>((resolve) => {
      const s = dgram.createSocket('udp4');
      s.bind(0, '127.0.0.1', () => {
        const p = s.address().port;
        s.close(() => resolve(p));
      });
    });
    const tcpFree = await new Promise<boolean>((resolve) => {
      const srv = net.createServer();
      srv.once('error', () => resolve(false));
      srv.listen(port, '127.0.0.1', () => srv.close(() => resolve(true)));
    });
    if (tcpFree) return port;
  }
}

function get(port: number, p: string): Promise<number> {
  return new Promise((resolve) => {
    const req = http.get({ host: '127.0.0.1', port, path: p, agent: false }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    });
    req.on('error', () => resolve(0));
  });
}

/** During a metrics run: /metrics every second (a busy Prometheus) and one open dashboard stream. */
function observer(port: number): { stop(): void; scrapes: () => number } {
  let n = 0;
  const timer = setInterval(() => void get(port, '/metrics').then((s) => (s === 200 ? n++ : undefined)), 1000);
  const sse = http.get({ host: '127.0.0.1', port, path: '/api/stream', agent: false }, (res) => res.resume());
  sse.on('error', () => undefined);
  return {
    stop: () => {
      clearInterval(timer);
      sse.destroy();
    },
    scrapes: () => n,
  };
}

// -------------------------------------------------------------------------------------------------- dnsperf

interface Perf {
  qps: number;
  completed: number;
  lostPct: number;
}

function dnsperf(port: number, file: string, opts: { seconds?: number; passes?: number }): Promise<Perf> {
  const args = ['-s', '127.0.0.1', '-p', String(port), '-d', file, '-c', String(CLIENTS), '-q', String(OUTSTANDING), '-t', '1'];
  if (opts.seconds !== undefined) args.push('-l', String(opts.seconds));
  if (opts.passes !== undefined) args.push('-n', String(opts.passes));
  const [cmd, a] = pinned(0, DNSPERF as string, args);
  return new Promise((resolve, reject) => {
    const child = spawn('timeout', ['-k', '5', String((opts.seconds ?? 30) + 30), cmd, ...a], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout?.on('data', (b: Buffer) => (out += b.toString()));
    child.stderr?.on('data', (b: Buffer) => (out += b.toString()));
    child.on('exit', (code) => {
      const n = (re: RegExp): number => Number(re.exec(out)?.[1] ?? NaN);
      if (code !== 0) return reject(new Error(`dnsperf exit ${code}\n${out.slice(-2000)}`));
      const sent = n(/Queries sent:\s+(\d+)/);
      resolve({ qps: n(/Queries per second:\s+([\d.]+)/), completed: n(/Queries completed:\s+(\d+)/), lostPct: sent > 0 ? (n(/Queries lost:\s+(\d+)/) * 100) / sent : 0 });
    });
  });
}

// --------------------------------------------------------------------------------------------------- main

interface Variant {
  id: 'none' | 'metrics' | 'no-timing';
  label: string;
  metrics: string | null;
  proc?: Proc;
  port?: number;
  httpPort?: number;
  runs: Array<Perf & { cpuUsPerQuery: number; scrapes: number; foreignCpuPct: number }>;
}

function corefile(port: number, upstream: number, metrics: string | null): string {
  return `servers:
  - listen: [udp://127.0.0.1:${port}, tcp://127.0.0.1:${port}]
    zones: ["."]
    plugins:
      - acl: { allow: [127.0.0.0/8] }
${metrics === null ? '' : `      - metrics: ${metrics}\n`}      - cache: { capacity: 100000 }
      - forward: { to: ["127.0.0.1:${upstream}"] }
`;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

/** ns per call of `fn`, best of 5 batches of `n` calls. */
function nsPerCall(n: number, fn: (i: number) => void): number {
  let best = Infinity;
  for (let b = 0; b < 5; b++) {
    const t0 = performance.now();
    for (let i = 0; i < n; i++) fn(i);
    best = Math.min(best, ((performance.now() - t0) * 1e6) / n);
  }
  return best;
}

/** The recorder and a timed tap, in isolation (what the metrics plugin adds to each query, in ns). */
function micro(): { servedNs: number; timedTapNs: number; untimedTapNs: number } {
  const registry = new Registry();
  const core = coreMetrics(registry);
  const recorder = new RequestRecorder(core, 'block0', [''], ['acl', 'cache', 'forward']);
  const raw = encodeQuery(0x1234, 'h1.bench.test');
  const q = parseQuery(raw) as ParsedQuery;
  const client = { address: '127.0.0.1', port: 5353, family: 4 as const, transport: 'udp' as const, localAddress: '127.0.0.1', ednsSize: 0, dnssecOk: false, checkingDisabled: false };
  const ctx = new QueryContext(raw, q, client, '', 'block0', performance.now());
  const wire = Buffer.concat([raw, Buffer.from([0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0x0e, 0x10, 0, 4, 192, 0, 2, 1])]);
  wire[2] |= 0x80;
  wire.writeUInt16BE(1, 6);
  const res = DnsResponse.fromWire(wire);
  res.plugin = 'cache';
  nsPerCall(200_000, () => recorder.onServed(ctx, res)); // warm-up: optimised code, every label child bound
  const servedNs = nsPerCall(2_000_000, () => recorder.onServed(ctx, res));
  // The chain's wrapper around a sync tap, as core/tapForm.ts makes it, with and without an observer bound.
  const slot: TapTiming = { plugin: 'cache', hook: 'query', observe: null };
  let sink = 0;
  const tapFn = (i: number): number => i & 1;
  const call = timed(callbackForm({ type: 'sync', name: 'cache', fn: tapFn }, 1), slot);
  const onResult = (_err: unknown, r: unknown): void => {
    sink += r as number;
  };
  const wrapped = (i: number): void => call(i, undefined, onResult);
  const untimedTapNs = nsPerCall(2_000_000, wrapped);
  slot.observe = core.pluginDuration.child(['block0', 'cache', 'query']).observe;
  const timedTapNs = nsPerCall(2_000_000, wrapped);
  if (sink < 0) console.log(sink);
  return { servedNs, timedTapNs, untimedTapNs };
}

async function main(): Promise<void> {
  const mc = micro();
  console.log(`in-process: served recorder ${mc.servedNs.toFixed(0)} ns/query; a timed tap ${mc.timedTapNs.toFixed(0)} ns vs ${mc.untimedTapNs.toFixed(0)} ns untimed (+${(mc.timedTapNs - mc.untimedTapNs).toFixed(0)} ns per tap run)`);
  if (process.env.BENCH_MICRO_ONLY === '1') return;
  if (DNSPERF === null) throw new Error('dnsperf is not installed (apt-get install -y dnsperf)');
  if (!fs.existsSync(CLI)) throw new Error('dist/cli/codexdns.js is missing: npm run build');
  console.log(`metrics overhead on cache hits: ${SECONDS} s runs, ${REPEAT} rounds, dnsperf -c ${CLIENTS} -q ${OUTSTANDING}, ${PIN ? 'pinned (dnsperf + upstream on CPU 0, server on CPU 1)' : 'NOT pinned'}`);
  const hits = path.join(tmp, 'hits.txt');
  fs.writeFileSync(hits, Array.from({ length: 1000 }, (_, i) => `h${i}.bench.test A\n`).join(''));

  const upPort = await freePort();
  const upstream = await start('upstream', 0, process.execPath, [UPSTREAM, '--port', String(upPort), '--max-seconds', String(LIFETIME_S)]);
  await sleep(300);

  const variants: Variant[] = [
    { id: 'none', label: 'no metrics plugin', metrics: null, runs: [] },
    { id: 'metrics', label: 'metrics (defaults: request metrics + per-plugin timing)', metrics: '', runs: [] },
    { id: 'no-timing', label: 'metrics, plugin_timing: false', metrics: '', runs: [] },
  ];
  for (const v of variants) {
    v.port = await freePort();
    if (v.metrics !== null) {
      v.httpPort = await freePort();
      v.metrics = `{ listen: "127.0.0.1:${v.httpPort}"${v.id === 'no-timing' ? ', plugin_timing: false' : ''} }`;
    }
    const dir = path.join(tmp, v.id);
    fs.mkdirSync(dir);
    const conf = path.join(dir, 'Corefile.yaml');
    fs.writeFileSync(conf, corefile(v.port, upPort, v.metrics));
    v.proc = await start(`codexdns ${v.id}`, 1, process.execPath, [CLI, '--conf', conf]);
    await waitReady(v.port, v.proc);
    await dnsperf(v.port, hits, { passes: 1 }); // warm the cache
  }

  for (let round = 1; round <= REPEAT; round++) {
    for (const v of variants) {
      const p = v.proc as Proc;
      const ours = [upstream.pid, ...variants.map((x) => (x.proc as Proc).pid)];
      await waitQuiet(ours);
      const obs = v.httpPort !== undefined ? observer(v.httpPort) : null;
      const before = cpuTicks(p.pid);
      const { value: perf, foreignPct } = await foreignCpu(ours, () => dnsperf(v.port as number, hits, { seconds: SECONDS }));
      const after = cpuTicks(p.pid);
      obs?.stop();
      if (p.exited) throw new Error(`${p.name} exited during the run\n${p.output}`);
      const cpuUs = ((after - before) * 1e6) / CLK_TCK;
      const run = { ...perf, cpuUsPerQuery: cpuUs / perf.completed, scrapes: obs?.scrapes() ?? 0, foreignCpuPct: foreignPct };
      v.runs.push(run);
      console.log(
        `  round ${round} ${v.id.padEnd(9)} ${Math.round(run.qps).toString().padStart(7)} QPS  ${run.cpuUsPerQuery.toFixed(2)} µs/query  lost ${run.lostPct.toFixed(2)}%${obs ? `  (${run.scrapes} scrapes)` : ''}${foreignPct >= BUSY_PCT ? `  ⚠ busy machine: other processes used ${foreignPct.toFixed(0)}% of a CPU` : ''}`,
      );
    }
  }

  // Rounds in which any run was disturbed by other processes are left out when quiet rounds exist.
  const quiet = (r: number): boolean => variants.every((v) => v.runs[r].foreignCpuPct < BUSY_PCT);
  const rounds = Array.from({ length: REPEAT }, (_, r) => r).filter(quiet);
  const useRounds = rounds.length > 0 ? rounds : Array.from({ length: REPEAT }, (_, r) => r);
  const kept = (v: Variant): Variant['runs'] => useRounds.map((r) => v.runs[r]);
  if (rounds.length < REPEAT) console.log(`\n${REPEAT - rounds.length} of ${REPEAT} rounds disturbed by other processes${rounds.length > 0 ? ': left out' : ' (all of them: the figures below are not reliable)'}`);
  const base = variants[0];
  const baseQps = median(kept(base).map((r) => r.qps));
  const baseUs = median(kept(base).map((r) => r.cpuUsPerQuery));
  const lines = [
    '| chain: acl, cache, forward — cache hits | QPS (median) | CPU µs/query (median) | QPS vs none | µs/query vs none | peak RSS |',
    '|---|---|---|---|---|---|',
  ];
  const summary: Record<string, unknown> = {};
  for (const v of variants) {
    const qps = median(kept(v).map((r) => r.qps));
    const us = median(kept(v).map((r) => r.cpuUsPerQuery));
    const dq = ((qps - baseQps) / baseQps) * 100;
    const du = ((us - baseUs) / baseUs) * 100;
    const rss = peakRssMiB((v.proc as Proc).pid);
    lines.push(`| ${v.label} | ${Math.round(qps).toLocaleString('en')} | ${us.toFixed(2)} | ${v === base ? '—' : `${dq >= 0 ? '+' : ''}${dq.toFixed(1)}%`} | ${v === base ? '—' : `${du >= 0 ? '+' : ''}${du.toFixed(1)}%`} | ${rss === null ? '?' : `${rss.toFixed(0)} MB`} |`);
    summary[v.id] = { qps, cpuUsPerQuery: us, qpsDeltaPct: dq, cpuDeltaPct: du, peakRssMiB: rss, runs: v.runs, roundsKept: useRounds.map((r) => r + 1) };
  }
  const m = summary.metrics as { qpsDeltaPct: number; cpuDeltaPct: number };
  const perHitNs = mc.servedNs + 2 * (mc.timedTapNs - mc.untimedTapNs);
  const microLine = `in-process: served recorder ${mc.servedNs.toFixed(0)} ns + 2 timed taps (acl, cache) × ${(mc.timedTapNs - mc.untimedTapNs).toFixed(0)} ns = ${perHitNs.toFixed(0)} ns per cache hit = ${((perHitNs / 1000 / baseUs) * 100).toFixed(1)}% of the ${baseUs.toFixed(2)} µs a hit costs without the plugin`;
  summary.micro = { ...mc, perHitNs, shareOfHitPct: (perHitNs / 1000 / baseUs) * 100 };
  const verdict = `metrics plugin cost on cache hits: ${(-m.qpsDeltaPct).toFixed(1)}% of QPS, ${m.cpuDeltaPct.toFixed(1)}% more CPU per query (target < 5%): ${-m.qpsDeltaPct < 5 && m.cpuDeltaPct < 5 ? 'met' : 'NOT met'}`;
  console.log(`\n${lines.join('\n')}\n\n${microLine}\n${verdict}`);
  fs.mkdirSync(path.dirname(RESULTS), { recursive: true });
  fs.writeFileSync(
    RESULTS,
    JSON.stringify({ date: new Date().toISOString(), machine: { cpus: os.cpus().length, model: os.cpus()[0]?.model, node: process.version }, settings: { SECONDS, REPEAT, CLIENTS, OUTSTANDING, PIN }, summary, verdict }, null, 2),
  );
  console.log(`results: ${path.relative(ROOT, RESULTS)}`);
  await stop(upstream);
}

main()
  .catch((err: unknown) => {
    console.error(err instanceof Error ? err.message : err);
    process.exitCode = 1;
  })
  .finally(() => void stopAll());
