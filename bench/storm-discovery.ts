// Storm with discovery (issue 4 point 7): the storm of bench/storm.ts (same load, same generator), with the real
// discovery plugin in the chain — rdns against a PTR upstream whose answers take 2.5 s, discovery timeout 3 s,
// guarded by `breaker` and `ratelimit` (discovery 10/s, burst 20) — against the same load with tracking off.
//
//   npx tsc -p tsconfig.json && node dist/bench/storm-discovery.js
//
// Runs (STORMD_ONLY, default `discovery,baseline,drain`):
//   discovery — acl → breaker → ratelimit → cache → clienttrack (priority) → discovery → forward. After the
//               storm the server keeps running for STORMD_DRAIN_SECONDS (default 60) so the backlog's drain
//               rate can be measured; then it is stopped and the backlog accounted for (database rows still
//               `discovering` = what the engine still held: nothing dropped).
//   baseline  — the same chain without breaker, ratelimit, clienttrack and discovery (tracking off).
//   drain     — a small storm (STORMD_DRAIN_RATE, default 50 new clients/s for 10 s) run until the backlog is
//               empty, to show it drains completely at the limiter's rate.
// Load (as bench/storm.ts): STORM_RATE (default 1,000) new clients/s for STORM_SECONDS (default 60), each from
// its own 127.x.y.z address sending 3 queries one second apart, plus 10 known clients at 20 queries/s; 20 % of
// the names unique (forwarded), the rest from a pool of 2,000. The PTR upstream runs in this process and records
// when each PTR question arrives: one per discovery job, so its arrival rate is the discovery rate.
//
// Bounds: only 127.0.0.0/8, high ports; STORM_SECONDS ≤ 120, STORM_RATE ≤ 5,000; every child runs under
// `timeout` and is killed at the end, on error and on Ctrl-C. STORM_PIN=0: no taskset (default: generator and
// upstreams on CPU 0, the server alone on CPU 1); STORM_SPLIT_THREADS=1: only the server's main thread on CPU 1,
// its other threads (SQLite's, V8's GC helpers) on CPU 0. STORMD_NODE_FLAGS: the server's node flags (default: the
// unit's, packaging/codexdns.service — `--single-threaded-gc --max-old-space-size=128 --max-semi-space-size=2`; set
// it to add e.g. `--cpu-prof`, or to an empty value for node's defaults). STORMPROBE_STALL_MS (default 100): the
// server's event-loop stalls longer than this are listed. Besides the generator's latencies, the probe reports the
// time each query spent inside the server (dispatch to reply) and the collector's main-thread pauses by kind
// (`gc_pauses`), so a slow answer can be placed; each run also keeps `slowBySecond` (answers of 20 ms or more per
// second: a tail spread thin or in bursts). STORMPROBE_HEAP_PROFILE=FILE: a sampling profile of what was promoted
// to the old generation (STORMPROBE_HEAP_PROFILE_ALL=1: of every allocation); STORMPROBE_HEAP_SNAPSHOT=FILE@SECONDS: a heap snapshot that long after the server's start;
// STORMPROBE_TRACE=PREFIX: the server's loop gaps and collections as a timeline (PREFIX.<pid>.json).
// STORM_REPEAT=N runs N interleaved pairs (the drain phase after the first discovery run only) and reports each
// side's p99s and the ratio of their medians.
// Results: bench/results/storm-discovery.json and stdout.
import { spawnSync, type ChildProcess } from 'node:child_process';
import dgram from 'node:dgram';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { monitorEventLoopDelay, performance } from 'node:perf_hooks';
import * as dnsPacket from 'dns-packet';
import { Generator, PIN, STORM_LOAD, STORM_RATE, STORM_SECONDS, childPidOf, cpuSeconds, threadCpuDelta, threadCpuLine, threadCpuSeconds, answeredCell, envNum, failedAnswersLine, freeUdpPort, serverNodeFlags, killAll, parseFields, readStatus, medianLine, medianRatios, runLabel, runStorm, sleep, start, stopGracefully, type StormRunResult } from './stormKit';
import { openStorage } from '../storage/open';

const ROOT = path.resolve(__dirname, '..', '..');
const CLI = path.join(ROOT, 'dist', 'cli', 'codexdns.js');
const UPSTREAM = path.join(ROOT, 'dist', 'bench', 'upstream.js');
const PROBE = path.join(ROOT, 'dist', 'bench', 'stormProbe.js');
const RESULTS = path.join(ROOT, 'bench', 'results', 'storm-discovery.json');

const SECONDS = STORM_SECONDS;
const RATE = STORM_RATE;
const { known: KNOWN, knownQps: KNOWN_QPS, newQueries: NEW_QUERIES, queryTimeoutMs: QUERY_TIMEOUT_MS, poolNames: POOL_NAMES, uniqueShare: UNIQUE_SHARE } = STORM_LOAD;
const PTR_DELAY_MS = envNum('STORMD_PTR_MS', 2500, 0, 10_000);
const DRAIN_SECONDS = envNum('STORMD_DRAIN_SECONDS', 60, 0, 600);
const DRAIN_RATE = envNum('STORMD_DRAIN_RATE', 50, 1, 1000);
const DRAIN_STORM_SECONDS = 10;
const NODE_FLAGS = serverNodeFlags('STORMD_NODE_FLAGS');
const WORKERS = envNum('STORMD_WORKERS', 30, 1, 1000);
const LIMIT = envNum('STORMD_LIMIT', 10, 1, 1000);
/** STORMD_TRACK_OPTS: more clienttrack options, e.g. `batch: 2000, flush: 10s` (YAML flow-map entries). */
const TRACK_EXTRA = process.env.STORMD_TRACK_OPTS ? `, ${process.env.STORMD_TRACK_OPTS}` : '';
/** STORMD_DISCOVERY_OPTS: more discovery options, e.g. `backlog: 5000` (YAML flow-map entries). */
const DISC_EXTRA = process.env.STORMD_DISCOVERY_OPTS ? `, ${process.env.STORMD_DISCOVERY_OPTS}` : '';
/** STORM_REPEAT: how many discovery/baseline pairs to run, interleaved (default 1). */
const REPEAT = envNum('STORM_REPEAT', 1, 1, 10);
const ONLY = (process.env.STORMD_ONLY ?? 'discovery,baseline,drain').split(',').map((s) => s.trim());
const LIFETIME_S = Math.ceil(SECONDS + DRAIN_SECONDS + 600);
/** The upstream serves every run: it lives as long as all of them may take. */
const UPSTREAM_LIFETIME_S = LIFETIME_S * (2 * REPEAT + 2);

// ---------------------------------------------------------------------------------------------- processes

function startPinned(cmd: string[], cpu: number, onStderr?: (s: string) => void, lifetimeS = LIFETIME_S): ReturnType<typeof start> {
  return start(cmd, { lifetimeS, cpu: PIN ? cpu : null, onStderr });
}

/** Pins every thread of `pid` but the main one to `cpu`. */
function moveHelperThreads(pid: number, cpu: number): void {
  for (const tid of fs.readdirSync(`/proc/${pid}/task`)) {
    if (Number(tid) !== pid) spawnSync('taskset', ['-p', '-c', String(cpu), tid], { stdio: 'ignore' });
  }
}

// ---------------------------------------------------------------------------------------------- PTR upstream

/**
 * The PTR resolver: this same file run as `--ptr-upstream DELAY_MS`, in a process of its own (on CPU 0 with the
 * generator, but with its own event loop: a generator busy opening 1,000 sockets a second must not delay a
 * 2.5 s answer past discovery's 3 s timeout). It answers every PTR question after DELAY_MS, prints
 * `port N` once and then `count N` (questions so far) every 100 ms.
 */
function ptrUpstreamMain(delayMs: number, maxSeconds: number): void {
  const sock = dgram.createSocket('udp4');
  let count = 0;
  let printed = -1;
  let maxLate = 0;
  sock.on('message', (msg, rinfo) => {
    let q: dnsPacket.DecodedPacket;
    try {
      q = dnsPacket.decode(msg);
    } catch {
      return;
    }
    const question = q.questions?.[0];
    if (!question || question.type !== 'PTR') return;
    count++;
    const name = question.name;
    const host = `c-${name.split('.').slice(0, 4).reverse().join('-')}.storm`;
    const received = performance.now();
    setTimeout(() => {
      const late = performance.now() - received - delayMs;
      if (late > maxLate) maxLate = late;
      sock.send(
        dnsPacket.encode({ type: 'response', id: q.id, flags: dnsPacket.RECURSION_DESIRED | dnsPacket.RECURSION_AVAILABLE, questions: [question], answers: [{ type: 'PTR', name, class: 'IN', ttl: 300, data: host }] }),
        rinfo.port,
        rinfo.address,
      );
    }, delayMs);
  });
  sock.bind(0, '127.0.0.1', () => {
    process.stdout.write(`port ${sock.address().port}\n`);
    setInterval(() => {
      if (count !== printed) process.stdout.write(`count ${count}\nlate ${Math.round(maxLate)}\n`);
      printed = count;
    }, 100);
  });
  setTimeout(() => process.exit(0), maxSeconds * 1000).unref();
  process.on('SIGTERM', () => process.exit(0));
}

/** The parent's view of the PTR resolver: its port, and its question count over time. */
class SlowPtrUpstream {
  /** (performance.now(), questions so far) as reported. */
  private readonly samples: Array<[number, number]> = [[0, 0]];
  /** The latest any answer left after its `delayMs` (this resolver's own lateness). */
  maxLateMs = 0;
  private constructor(readonly port: number, private readonly child: ChildProcess) {}

  static async start(delayMs: number): Promise<SlowPtrUpstream> {
    let out = '';
    let port = 0;
    let self: SlowPtrUpstream | null = null;
    // Niced up: the resolver under test must answer at `delayMs`, even with the generator saturating CPU 0.
    const proc = startPinned(['nice', '-n', '-10', process.execPath, __filename, '--ptr-upstream', String(delayMs), String(LIFETIME_S)], 0);
    proc.child.stdout?.removeAllListeners('data');
    proc.child.stdout?.on('data', (d: Buffer) => {
      out += d.toString();
      let nl: number;
      while ((nl = out.indexOf('\n')) >= 0) {
        const line = out.slice(0, nl);
        out = out.slice(nl + 1);
        const [k, v] = line.split(' ');
        if (k === 'port') port = Number(v);
        else if (k === 'count' && self !== null) self.samples.push([performance.now(), Number(v)]);
        else if (k === 'late' && self !== null) self.maxLateMs = Number(v);
      }
    });
    const t0 = Date.now();
    while (port === 0) {
      if (Date.now() - t0 > 10_000) throw new Error('the PTR upstream did not start');
      await sleep(20);
    }
    self = new SlowPtrUpstream(port, proc.child);
    return self;
  }

  /** Questions received by `t` (within the 100 ms reporting period). */
  countAt(t: number): number {
    let n = 0;
    for (const [at, c] of this.samples) {
      if (at > t) break;
      n = c;
    }
    return n;
  }

  /** Questions that arrived in [from, to) (performance.now() times). */
  between(from: number, to: number): number {
    return this.countAt(to) - this.countAt(from);
  }

  close(): void {
    const inner = childPidOf(this.child.pid!);
    try {
      if (inner !== this.child.pid) process.kill(inner, 'SIGKILL');
    } catch {
      // already gone
    }
    this.child.kill('SIGKILL');
  }
}

// ---------------------------------------------------------------------------------------------- one run

type Kind = 'discovery' | 'baseline' | 'drain';

interface DrainSample {
  /** Seconds after the end of the storm. */
  t: number;
  /** Rows saying `discovering` (the database lags the engine by at most one flush, 5 s). */
  discovering: number;
  /** Rows with a hostname. */
  named: number;
  /** PTR questions (discovery jobs started) so far. */
  jobs: number;
}

interface RunResult extends StormRunResult {
  run: Kind;
  discovery?: {
    /** Discovery jobs started per second during the storm (PTR questions ÷ storm seconds), and per 10 s window. */
    stormRate: number;
    stormWindows: number[];
    drain: DrainSample[];
    /** Backlog drain rate after the storm, rows per second (database) and jobs per second (PTR questions). */
    drainRowsPerSecond: number | null;
    drainJobsPerSecond: number | null;
    stopped: Record<string, string>;
    tracking: Record<string, string>;
    dbRows: number;
    dbDiscovering: number;
    dbNamed: number;
    /** last_error of the rows, counted (a failed attempt stores its error while the client stays discovering). */
    dbErrors: Record<string, number>;
    /** The breaker's state changes, as logged. */
    breaker: string[];
    /** How late the PTR resolver itself answered at worst (beyond its 2.5 s), ms. */
    ptrMaxLateMs: number;
    /** Seconds until nothing was discovering (drain run only). */
    drainedAfterSeconds?: number | null;
  };
}

async function dbCounts(db: string, dir: string): Promise<{ rows: number; discovering: number; named: number }> {
  const s = await openStorage({ client: 'sqlite3', connection: { filename: db } }, { baseDir: dir });
  try {
    const [r] = (await s.reader('clients').count({ n: '*' })) as Array<{ n: number }>;
    const [d] = (await s.reader('clients').where('discovering', 1).count({ n: '*' })) as Array<{ n: number }>;
    const [h] = (await s.reader('clients').whereNotNull('hostname').count({ n: '*' })) as Array<{ n: number }>;
    return { rows: Number(r.n), discovering: Number(d.n), named: Number(h.n) };
  } catch {
    return { rows: 0, discovering: 0, named: 0 };
  } finally {
    await s.close();
  }
}

async function dbErrors(db: string, dir: string): Promise<Record<string, number>> {
  const s = await openStorage({ client: 'sqlite3', connection: { filename: db } }, { baseDir: dir });
  try {
    const rows = (await s.reader('clients').select('last_error').count({ n: '*' }).whereNotNull('last_error').groupBy('last_error')) as Array<{ last_error: string; n: number }>;
    // Group by the error's shape (the port differs per run).
    const out: Record<string, number> = {};
    for (const r of rows) {
      const key = r.last_error.replace(/127\.0\.0\.1:\d+/g, 'RESOLVER');
      out[key] = (out[key] ?? 0) + Number(r.n);
    }
    return out;
  } catch {
    return {};
  } finally {
    await s.close();
  }
}

async function run(kind: Kind, pair: number, upstreamPort: number, ptr: SlowPtrUpstream | null): Promise<RunResult> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `codexdns-stormd-${kind}-`));
  const port = await freeUdpPort();
  const db = path.join(dir, 'clients.sqlite');
  const withDiscovery = kind !== 'baseline';
  const seconds = kind === 'drain' ? DRAIN_STORM_SECONDS : SECONDS;
  const rate = kind === 'drain' ? DRAIN_RATE : RATE;
  const probe = fs.existsSync(PROBE) ? `      - use: ${JSON.stringify(PROBE)}\n` : '';
  const conf = `servers:
  - listen: [udp://127.0.0.1:${port}, tcp://127.0.0.1:${port}]
    zones: ["."]
    plugins:
${probe}      - acl: { allow: [127.0.0.0/8] }
${withDiscovery ? `      - breaker: { discovery: { failures: 5, reset: 30s } }
      - ratelimit: { discovery: { rate: ${LIMIT}, burst: ${2 * LIMIT} } }
` : ''}      - cache: { capacity: 10000 }
${withDiscovery ? `      - workerpool: { tracking: { workers: 100, queue: 10000 }, discovery: { workers: ${WORKERS} } }
      - priority: { high: 5000, low: 5000 }
      - clienttrack: { ${TRACK_EXTRA.replace(/^, /, '')} }
      - discovery: { methods: [rdns], timeout: 3s, rdns: { resolvers: ["127.0.0.1:${ptr!.port}"] }${DISC_EXTRA} }
` : ''}      - forward: { to: ["127.0.0.1:${upstreamPort}"] }
storage: { client: sqlite3, connection: { filename: ${JSON.stringify(db)} } }
reload: { watch: false }
`;
  fs.writeFileSync(path.join(dir, 'Corefile.yaml'), conf);
  let stderr = '';
  let stdout = '';
  const server = startPinned([process.execPath, ...NODE_FLAGS, CLI, '--conf', path.join(dir, 'Corefile.yaml')], 1, (s) => (stderr += s));
  server.child.stdout?.on('data', (d: Buffer) => {
    stdout += d.toString();
  });
  const t0 = Date.now();
  while (!/codexdns started/.test(stderr)) {
    if (Date.now() - t0 > 20_000 || server.child.exitCode !== null) throw new Error(`${kind}: server did not start:\n${stderr}`);
    await sleep(50);
  }
  const pid = server.pid();
  // STORM_SPLIT_THREADS=1: the server's answer loop alone on CPU 1, its other threads (SQLite's in libuv's pool,
  // V8's GC helpers) moved to CPU 0 — what a box with more than one core does on its own.
  if (PIN && process.env.STORM_SPLIT_THREADS === '1') moveHelperThreads(pid, 0);
  const gen = new Generator(port, { uniqueShare: UNIQUE_SHARE, poolNames: POOL_NAMES, queryTimeoutMs: QUERY_TIMEOUT_MS });

  const known = Array.from({ length: KNOWN }, (_, i) => gen.open(`127.1.0.${i + 1}`, true));
  for (let k = 0; k < POOL_NAMES; k++) {
    gen.send(known[k % KNOWN], `n${k}.storm.test`);
    if (k % 200 === 199) await sleep(50);
  }
  // The known clients' own discoveries (10) finish before the storm.
  await sleep(withDiscovery ? PTR_DELAY_MS + 1500 : 1500);
  gen.sweep();
  gen.resetKnown();

  if (PIN && process.env.STORM_SPLIT_THREADS === '1') moveHelperThreads(pid, 0); // threads started since
  let peakRss = readStatus(pid).rss;
  const rssTimer = setInterval(() => (peakRss = Math.max(peakRss, readStatus(pid).rss)), 250);
  const cpu0 = cpuSeconds(pid);
  const threads0 = threadCpuSeconds(pid);
  const loop = monitorEventLoopDelay({ resolution: 10 });
  loop.enable();

  const start0 = performance.now();
  await runStorm(gen, known, { seconds, rate, addressBase: kind === 'drain' ? 100 : 2, knownQps: KNOWN_QPS, newQueries: NEW_QUERIES });
  loop.disable();
  const stormEnd = performance.now();
  const cpu = cpuSeconds(pid) - cpu0;
  const threadCpu = threadCpuDelta(threads0, threadCpuSeconds(pid));

  const result: RunResult = {
    run: kind,
    pair,
    seconds,
    rate,
    sent: { known: gen.sent.known, new: gen.sent.new, total: gen.sent.known + gen.sent.new },
    answered: gen.answeredSummary(),
    latencyMs: { known: gen.lat.known.percentiles(), new: gen.lat.new.percentiles(), all: gen.lat.known.merge(gen.lat.new).percentiles() },
    distinctClients: KNOWN + gen.newClients,
    peakRssMB: 0,
    serverCpuSeconds: cpu,
    serverThreadCpuSeconds: threadCpu,
    generatorLoopDelayP99Ms: loop.percentile(99) / 1e6,
    slowBySecond: Array.from(gen.slowBySecond, (n) => n ?? 0),
    server: {},
  };

  if (withDiscovery && ptr !== null) {
    // The discovery rate during the storm: PTR questions (one per job) per second, overall and per 10 s window.
    const windows: number[] = [];
    for (let w = start0; w + 10_000 <= start0 + seconds * 1000 + 1; w += 10_000) windows.push(ptr.between(w, w + 10_000) / 10);
    const stormRate = ptr.between(start0, start0 + seconds * 1000) / seconds;
    // Then the backlog drains: sample the database (after one flush) and the PTR questions.
    const drain: DrainSample[] = [];
    const sample = async (): Promise<DrainSample> => {
      const c = await dbCounts(db, dir);
      return { t: Math.round((performance.now() - stormEnd) / 100) / 10, discovering: c.discovering, named: c.named, jobs: ptr.countAt(Infinity) - ptr.countAt(start0) };
    };
    await sleep(6000);
    drain.push(await sample());
    let drainedAfter: number | null = null;
    // The backlog's drain is measured after the first discovery run only (the others are repetitions of the storm).
    const drainFor = kind === 'drain' ? 300 : pair === 1 ? DRAIN_SECONDS : 0;
    const drainUntil = performance.now() + drainFor * 1000;
    while (performance.now() < drainUntil) {
      await sleep(kind === 'drain' ? 5000 : 10_000);
      const s = await sample();
      drain.push(s);
      if (kind === 'drain' && s.discovering === 0) {
        drainedAfter = s.t;
        break;
      }
    }
    peakRss = Math.max(peakRss, readStatus(pid).hwm);
    clearInterval(rssTimer);
    // The drain rate while there was a backlog: up to the last sample that still had one (the next may be 0).
    const first = drain[0];
    const lastBusy = drain.findIndex((x) => x.discovering === 0);
    const last = lastBusy > 0 ? drain[lastBusy - 1] : drain[drain.length - 1];
    const span = last.t - first.t;
    result.discovery = {
      stormRate,
      stormWindows: windows,
      drain,
      drainRowsPerSecond: span > 0 ? (first.discovering - last.discovering) / span : null,
      drainJobsPerSecond: span > 0 ? (last.jobs - first.jobs) / span : null,
      stopped: {},
      tracking: {},
      dbRows: 0,
      dbDiscovering: 0,
      dbNamed: 0,
      dbErrors: {},
      breaker: [],
      ptrMaxLateMs: ptr.maxLateMs,
      ...(kind === 'drain' ? { drainedAfterSeconds: drainedAfter } : {}),
    };
  } else {
    clearInterval(rssTimer);
    peakRss = Math.max(peakRss, readStatus(pid).hwm);
  }
  result.peakRssMB = peakRss / 1048576;

  await stopGracefully(server.child, pid);
  result.server = parseFields(stderr.split('\n').find((l) => /storm probe/.test(l)));
  if (result.discovery) {
    result.discovery.stopped = parseFields(stderr.split('\n').find((l) => /discovery stopped/.test(l)));
    result.discovery.tracking = parseFields(stderr.split('\n').find((l) => /tracking stopped/.test(l)));
    const c = await dbCounts(db, dir);
    result.discovery.dbErrors = await dbErrors(db, dir);
    result.discovery.breaker = stderr.split('\n').filter((l) => /breaker \w+: /.test(l)).map((l) => l.replace(/^\S+ \S+ \[breaker\] /, '').replace(/ method=.*$/, '').replace(/^(\S+)/, (m) => m) + ` at ${l.slice(11, 23)}`);
    result.discovery.dbRows = c.rows;
    result.discovery.dbDiscovering = c.discovering;
    result.discovery.dbNamed = c.named;
  }
  if (!/codexdns stopped/.test(stderr)) console.error(`${kind}: the server did not log a clean stop:\n${stderr.slice(-3000)}`);
  fs.writeFileSync(path.join(dir, 'server.log'), stderr);
  if (stdout !== '') fs.writeFileSync(path.join(dir, 'server.stdout'), stdout);
  const warnings = stderr.split('\n').filter((l) => / (WARN|ERROR) /.test(l));
  if (warnings.length > 0) console.error(`${kind}: ${warnings.length} warning lines from the server, e.g.\n${warnings.slice(0, 5).join('\n')}`);
  if (process.env.STORM_KEEP_TMP !== '1') fs.rmSync(dir, { recursive: true, force: true });
  else console.error(`${kind}: kept ${dir}`);
  return result;
}

/** The run's kind, and its pair when STORM_REPEAT runs several (there is one drain run). */
function label(r: RunResult): string {
  return runLabel(r.run, r.pair, r.run === 'drain' ? 1 : REPEAT);
}

function fmt(n: number | null | undefined, d = 2): string {
  return n !== null && n !== undefined && Number.isFinite(n) ? n.toFixed(d) : '—';
}

async function main(): Promise<void> {
  for (const f of [CLI, UPSTREAM]) if (!fs.existsSync(f)) throw new Error(`${f} missing: run npx tsc -p tsconfig.json first`);
  if (PIN) spawnSync('taskset', ['-p', '-c', '0', String(process.pid)], { stdio: 'ignore' });
  const upstreamPort = await freeUdpPort();
  let upErr = '';
  startPinned([process.execPath, UPSTREAM, '--port', String(upstreamPort), '--max-seconds', String(UPSTREAM_LIFETIME_S)], 0, (s) => (upErr += s), UPSTREAM_LIFETIME_S);
  await sleep(300);
  if (upErr) throw new Error(`upstream: ${upErr}`);
  const results: RunResult[] = [];
  // STORM_REPEAT pairs, interleaved (discovery, baseline, discovery, …): a shared machine's noise then falls on
  // both sides, and the medians say more than any one pair.
  const order: Array<[Kind, number]> = [];
  for (let pair = 1; pair <= REPEAT; pair++) for (const kind of ['discovery', 'baseline'] as const) if (ONLY.includes(kind)) order.push([kind, pair]);
  if (ONLY.includes('drain')) order.push(['drain', 1]);
  for (const [kind, pair] of order) {
    const ptr = kind === 'baseline' ? null : await SlowPtrUpstream.start(PTR_DELAY_MS);
    const r = kind === 'drain' ? DRAIN_RATE : RATE;
    const s = kind === 'drain' ? DRAIN_STORM_SECONDS : SECONDS;
    console.error(`storm-discovery: ${kind} run${REPEAT > 1 && kind !== 'drain' ? ` ${pair}/${REPEAT}` : ''}, ${r} new clients/s for ${s} s …`);
    try {
      results.push(await run(kind, pair, upstreamPort, ptr));
    } finally {
      ptr?.close();
    }
  }
  killAll();
  const d = results.find((x) => x.run === 'discovery');
  const base = results.find((x) => x.run === 'baseline');
  const out = {
    date: new Date().toISOString(),
    machine: `${os.cpus().length} × ${os.cpus()[0]?.model ?? '?'}, Node ${process.version}`,
    nodeFlags: NODE_FLAGS.join(' '),
    pinning: !PIN
      ? 'none'
      : process.env.STORM_SPLIT_THREADS === '1'
        ? "generator + upstreams + the server's other threads on CPU 0, the server's main thread alone on CPU 1"
        : 'generator + upstreams on CPU 0, server alone on CPU 1',
    settings: { ptrDelayMs: PTR_DELAY_MS, discoveryTimeout: '3s', workers: WORKERS, limit: `${LIMIT}/s burst ${2 * LIMIT}`, drainSeconds: DRAIN_SECONDS },
    results,
    medians: medianRatios(results.filter((x) => x.run === 'discovery'), results.filter((x) => x.run === 'baseline')),
    ratio: d && base ? { p99All: d.latencyMs.all.p99 / base.latencyMs.all.p99, p99Known: d.latencyMs.known.p99 / base.latencyMs.known.p99, p99New: d.latencyMs.new.p99 / base.latencyMs.new.p99 } : undefined,
  };
  fs.mkdirSync(path.dirname(RESULTS), { recursive: true });
  fs.writeFileSync(RESULTS, JSON.stringify(out, null, 2) + '\n');
  const lines = [
    `server: node ${NODE_FLAGS.join(' ') || '(no flags)'}; ${out.pinning}`,
    '',
    `| run | new clients | sent | answered | p50 all | p99 known | p99 new | p99 all | peak RSS | server CPU | server loop p99 | in server p99 / max |`,
    `|---|---|---|---|---|---|---|---|---|---|---|---|`,
  ];
  for (const r of results) {
    lines.push(
      `| ${label(r)} | ${r.rate}/s × ${r.seconds} s | ${r.sent.total} | ${answeredCell(r)} | ${fmt(r.latencyMs.all.p50)} ms | ${fmt(r.latencyMs.known.p99)} ms | ${fmt(r.latencyMs.new.p99)} ms | ${fmt(r.latencyMs.all.p99)} ms | ${fmt(r.peakRssMB, 1)} MB | ${fmt(r.serverCpuSeconds, 1)} s | ${r.server.loop_p99_ms ?? '—'} ms | ${r.server.in_server_p99_ms ?? '—'} / ${r.server.in_server_max_ms ?? '—'} ms |`,
    );
  }
  lines.push(...failedAnswersLine(results, REPEAT));
  for (const r of results) lines.push(`${label(r)}: ${threadCpuLine(r.serverThreadCpuSeconds)}`);
  if (out.ratio) lines.push('', `p99 ratio discovery / tracking off: all ${fmt(out.ratio.p99All)}, known ${fmt(out.ratio.p99Known)}, new ${fmt(out.ratio.p99New)}${REPEAT > 1 ? ' (first pair)' : ''}`);
  if (out.medians) lines.push(medianLine(out.medians));
  for (const r of results) {
    const x = r.discovery;
    if (!x) continue;
    lines.push(
      '',
      `${label(r)}: discovery rate during the storm ${fmt(x.stormRate)}/s (per 10 s: ${x.stormWindows.map((w) => fmt(w, 1)).join(', ')}); ` +
        `backlog after the storm ${x.drain[0]?.discovering ?? '?'} clients discovering; drain ${fmt(x.drainRowsPerSecond)} rows/s, ${fmt(x.drainJobsPerSecond)} jobs/s over ${fmt((x.drain.at(-1)?.t ?? 0) - (x.drain[0]?.t ?? 0), 0)} s` +
        (x.drainedAfterSeconds !== undefined ? `; empty after ${x.drainedAfterSeconds ?? 'more than 300'} s` : ''),
      `  at stop: database ${x.dbRows} rows, ${x.dbDiscovering} discovering, ${x.dbNamed} named; engine: announced ${x.stopped.announced ?? '?'}, jobs ${x.stopped.jobs ?? '?'}, succeeded ${x.stopped.succeeded ?? '?'}, ` +
        `still discovering ${x.stopped.still_discovering ?? '?'} (backlog ${x.stopped.backlog ?? '?'}, queued ${x.stopped.queued ?? '?'}), queue-full drops ${x.stopped.dropped ?? '?'} (kept in the backlog), overflowed to the database ${x.stopped.overflowed ?? '?'}; ` +
        `tracking dropped ${x.tracking.dropped ?? '?'} jobs, ${x.tracking.dropped_updates ?? '?'} updates`,
      `  PTR resolver at worst ${x.ptrMaxLateMs} ms late; server loop (stormProbe) p99 ${r.server.loop_p99_ms ?? '?'} ms, max ${r.server.loop_max_ms ?? '?'} ms`,
      `  breaker: ${x.breaker.length > 0 ? x.breaker.join('; ') : 'stayed closed'}; errors stored: ${Object.keys(x.dbErrors).length > 0 ? JSON.stringify(x.dbErrors) : 'none'}`,
    );
  }
  console.log(lines.join('\n'));
  // Client sockets and timers of the generator must not keep the harness alive.
  process.exit(0);
}

if (process.argv[2] === '--ptr-upstream') ptrUpstreamMain(Number(process.argv[3]), Number(process.argv[4]));
else main().catch((err) => {
  console.error(err instanceof Error ? err.stack : err);
  killAll();
  process.exit(1);
});
