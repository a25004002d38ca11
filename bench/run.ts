// codexdns benchmark harness (DESIGN §8, issue 2 point 10). `npm run bench` builds and runs it.
//
// One run: a local authoritative upstream for bench.test. (Debian's nsd, or bench/upstream.ts when nsd cannot
// run), then every peer, each on its own 127.0.0.1 high port forwarding "." to that upstream: the bare Node
// responder, Node + dns-packet, the Node bare relay, dnsmasq, unbound (1 thread) and codexdns. They are
// loaded one at a time by dnsperf with a cache-hit set (1,000 names replayed after a warm-up pass) and a
// cache-miss set (unique names), in rounds. dnsperf and the upstream run on CPU 0, the server under test
// alone on CPU 1. bench/README.md explains the method and holds the results.
//
// Traffic goes only to 127.0.0.1; no peer has any upstream but ours; every load is bounded by dnsperf's -l
// and by a kill timer; every process runs under `timeout` and is stopped at the end, on error and on Ctrl-C.
//
// Environment: BENCH_SECONDS (default 10) per measured run, BENCH_CLIENTS (10), BENCH_OUTSTANDING (200),
// BENCH_ONLY=bare,packet,relay,relay-fresh,dnsmasq,unbound,codexdns (default: all but relay-fresh),
// BENCH_UPSTREAM=nsd|node (default nsd, falling back to node), BENCH_PIN=0 (no taskset),
// BENCH_CODEXDNS_NODE_FLAGS (e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof"), BENCH_CODEXDNS_CLI (another
// build's dist/cli/codexdns.js), BENCH_REPEAT (default 2: rounds, the best QPS of each row is kept), BENCH_KEEP_TMP=1,
// BENCH_QUIET_WAIT=SECONDS (shared machines: before each run wait, at most that long, until other processes use
// < 10% of a CPU, and measure a disturbed run again, up to twice).
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import dgram from 'node:dgram';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { encodeQuery, envInt, findBinary, statTicks } from './common';

// ---------------------------------------------------------------------------------------------- settings

const ROOT = path.resolve(__dirname, '..', '..');
const PEERS_DIR = path.join(ROOT, 'bench', 'peers');
const CODEXDNS_CLI = path.resolve(process.env.BENCH_CODEXDNS_CLI ?? path.join(ROOT, 'dist', 'cli', 'codexdns.js'));
const RESULTS_FILE = path.join(ROOT, 'bench', 'results', 'latest.json');


const SECONDS = envInt('BENCH_SECONDS', 10, 1, 120);
const CLIENTS = envInt('BENCH_CLIENTS', 10, 1, 100);
const OUTSTANDING = envInt('BENCH_OUTSTANDING', 200, 1, 10000);
const REPEAT = envInt('BENCH_REPEAT', 2, 1, 10);
const QUIET_WAIT_S = envInt('BENCH_QUIET_WAIT', 0, 0, 3600);
const BUSY_PCT = 10; // other processes using more than this % of a CPU during a run make it unreliable
const QUERY_TIMEOUT_S = 1; // dnsperf -t: a query unanswered this long counts as lost
const HIT_NAMES = 1000;
const MISS_LINES = Math.max(1_500_000, SECONDS * 150_000); // unique names: never looped at < 150k QPS
const READY_MS = 20_000;
const ALL_ROWS = ['bare', 'packet', 'relay', 'relay-fresh', 'dnsmasq', 'unbound', 'codexdns'] as const;
// `timeout` bound on every process we start: the longest the whole run can take, plus a margin.
const LIFETIME_S = 600 + ALL_ROWS.length * 2 * REPEAT * (QUIET_WAIT_S > 0 ? 3 : 1) * (QUIET_WAIT_S + SECONDS + 15);
type RowId = (typeof ALL_ROWS)[number];
const DEFAULT_ROWS: RowId[] = ['bare', 'packet', 'relay', 'dnsmasq', 'unbound', 'codexdns'];
/** `BENCH_SETS=misses` (or `hits`): only those runs, e.g. for a --cpu-prof of the miss path alone. */
const SETS = (process.env.BENCH_SETS ?? 'hits,misses').split(',').map((s) => s.trim()).filter((s): s is 'hits' | 'misses' => s === 'hits' || s === 'misses');

function selectedRows(): RowId[] {
  const raw = process.env.BENCH_ONLY;
  if (raw === undefined || raw.trim() === '') return DEFAULT_ROWS;
  const ids = raw.split(',').map((s) => s.trim()).filter((s) => s !== '');
  for (const id of ids) {
    if (!(ALL_ROWS as readonly string[]).includes(id)) {
      console.error(`BENCH_ONLY: unknown row "${id}" (rows: ${ALL_ROWS.join(', ')})`);
      process.exit(2);
    }
  }
  return ALL_ROWS.filter((r) => ids.includes(r));
}


function commandOutput(cmd: string, args: string[]): string {
  const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: 5000 });
  return `${r.stdout ?? ''}\n${r.stderr ?? ''}`;
}

function toolVersion(bin: string | null, args: string[], re: RegExp): string | null {
  if (bin === null) return null;
  return re.exec(commandOutput(bin, args))?.[1] ?? 'unknown';
}

const CLK_TCK = (() => {
  const v = Number(commandOutput('getconf', ['CLK_TCK']).trim());
  return Number.isFinite(v) && v > 0 ? v : 100;
})();

const TASKSET = findBinary('taskset');
const PIN = process.env.BENCH_PIN !== '0' && os.cpus().length >= 2 && TASKSET !== null;

// ------------------------------------------------------------------------------------- process control

interface Managed {
  name: string;
  wrapper: ChildProcess; // `timeout ... [taskset -c N] cmd`
  pid: number; // the server itself (child of `timeout`; taskset execs)
  output: string; // last 8 KB of stdout + stderr
  exited: boolean;
  exitNote: string;
  exitPromise: Promise<void>;
}

const live = new Set<Managed>();
let stopping = false; // set on SIGINT/SIGTERM/SIGHUP
const tmpDirs: string[] = [];
const transient = new Set<ChildProcess>(); // dnsperf runs

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

function childrenOf(pid: number): number[] {
  const out: number[] = [];
  let tasks: string[];
  try {
    tasks = fs.readdirSync(`/proc/${pid}/task`);
  } catch {
    return out;
  }
  for (const t of tasks) {
    try {
      const txt = fs.readFileSync(`/proc/${pid}/task/${t}/children`, 'utf8').trim();
      if (txt !== '') for (const c of txt.split(/\s+/)) out.push(Number(c));
    } catch {
      // thread gone
    }
  }
  return out;
}

function processTree(pid: number): number[] {
  const all = [pid];
  for (let i = 0; i < all.length; i++) all.push(...childrenOf(all[i]!));
  return all;
}

/** utime+stime (+ reaped children's) of a process tree, in clock ticks. */
function cpuTicks(pid: number): number {
  let sum = 0;
  // A process that exited between listing and reading counts nothing.
  for (const p of processTree(pid)) sum += statTicks(`/proc/${p}/stat`, true) ?? 0;
  return sum;
}

/** Peak RSS (VmHWM) of a process tree, in KiB. */
function peakRssKiB(pid: number): number | null {
  let sum = 0;
  let any = false;
  for (const p of processTree(pid)) {
    try {
      const m = /VmHWM:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${p}/status`, 'utf8'));
      if (m) {
        sum += Number(m[1]);
        any = true;
      }
    } catch {
      // gone
    }
  }
  return any ? sum : null;
}

function pinned(cpu: number, cmd: string, args: string[]): [string, string[]] {
  return PIN ? [TASKSET!, ['-c', String(cpu), cmd, ...args]] : [cmd, args];
}

async function startProcess(name: string, cpu: number, cmd: string, args: string[], cwd: string): Promise<Managed> {
  if (stopping) throw new Error('interrupted');
  const [c, a] = pinned(cpu, cmd, args);
  const wrapper = spawn('timeout', ['-k', '5', String(LIFETIME_S), c, ...a], {
    cwd,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const m: Managed = {
    name,
    wrapper,
    pid: -1,
    output: '',
    exited: false,
    exitNote: '',
    exitPromise: Promise.resolve(),
  };
  const keep = (b: Buffer): void => {
    m.output = (m.output + b.toString('utf8')).slice(-8192);
  };
  wrapper.stdout?.on('data', keep);
  wrapper.stderr?.on('data', keep);
  m.exitPromise = new Promise((resolve) => {
    wrapper.on('exit', (code, signal) => {
      m.exited = true;
      m.exitNote = signal !== null ? `killed by ${signal}` : `exit code ${code}`;
      live.delete(m);
      resolve();
    });
    wrapper.on('error', (err) => {
      m.exited = true;
      m.exitNote = err.message;
      live.delete(m);
      resolve();
    });
  });
  live.add(m);
  const deadline = Date.now() + 3000;
  while (m.pid < 0 && !m.exited && Date.now() < deadline && wrapper.pid !== undefined) {
    const kids = childrenOf(wrapper.pid);
    if (kids.length > 0) m.pid = kids[0]!;
    else await sleep(10);
  }
  if (m.pid < 0) {
    await stopProcess(m);
    throw new Error(`${name}: did not start (${m.exitNote || 'no child process'})\n${m.output}`);
  }
  return m;
}

function killTree(pid: number, signal: NodeJS.Signals): void {
  for (const p of processTree(pid).reverse()) {
    try {
      process.kill(p, signal);
    } catch {
      // already gone
    }
  }
}

async function stopProcess(m: Managed): Promise<void> {
  if (m.exited) return;
  try {
    m.wrapper.kill('SIGTERM'); // timeout forwards it to the server
  } catch {
    // gone
  }
  const done = await Promise.race([m.exitPromise.then(() => true), sleep(5000).then(() => false)]);
  if (!done) {
    if (m.pid > 0) killTree(m.pid, 'SIGKILL');
    try {
      m.wrapper.kill('SIGKILL');
    } catch {
      // gone
    }
    await Promise.race([m.exitPromise, sleep(2000)]);
  }
  // Descendants left behind (none expected): by id, never by name.
  if (m.pid > 0) killTree(m.pid, 'SIGKILL');
}

async function cleanup(): Promise<void> {
  for (const c of transient) c.kill('SIGKILL');
  await Promise.all([...live].map((m) => stopProcess(m)));
  removeTmp();
}

function removeTmp(): void {
  if (process.env.BENCH_KEEP_TMP === '1') {
    for (const d of tmpDirs) console.error(`kept ${d}`);
    return;
  }
  for (const d of tmpDirs.splice(0)) fs.rmSync(d, { recursive: true, force: true });
}

function cleanupSync(): void {
  for (const c of transient) c.kill('SIGKILL');
  for (const m of live) {
    if (m.pid > 0) killTree(m.pid, 'SIGKILL');
    try {
      m.wrapper.kill('SIGKILL');
    } catch {
      // gone
    }
  }
  removeTmp();
}

for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
  process.on(sig, () => {
    if (stopping) return;
    stopping = true;
    console.error(`\n${sig}: stopping every benchmark process`);
    void cleanup().finally(() => process.exit(sig === 'SIGINT' ? 130 : 143));
  });
}
process.on('exit', cleanupSync);

// -------------------------------------------------------------------------------------------- DNS helpers

const usedPorts = new Set<number>();

function tryUdp(port: number): Promise<number | null> {
  return new Promise((resolve) => {
    const s = dgram.createSocket('udp4');
    s.once('error', () => {
      s.close();
      resolve(null);
    });
    s.bind(port, '127.0.0.1', () => {
      const p = s.address().port;
      s.close(() => resolve(p));
    });
  });
}

function tryTcp(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const srv = net.createServer();
    srv.once('error', () => resolve(false));
    srv.listen(port, '127.0.0.1', () => srv.close(() => resolve(true)));
  });
}

/** A high port free on 127.0.0.1 for both UDP and TCP. */
async function freePort(): Promise<number> {
  for (let i = 0; i < 50; i++) {
    const p = await tryUdp(0);
    if (p === null || p < 1024 || usedPorts.has(p)) continue;
    if (await tryTcp(p)) {
      usedPorts.add(p);
      return p;
    }
  }
  throw new Error('no free port on 127.0.0.1');
}

/** Send a query until a NOERROR answer with at least one record comes back (bounded). */
async function waitReady(port: number, m: Managed | null, timeoutMs = READY_MS): Promise<void> {
  const sock = dgram.createSocket('udp4');
  let lastNote = 'no reply';
  try {
    await new Promise<void>((resolve) => sock.bind(0, '127.0.0.1', () => resolve()));
    const ok = await new Promise<boolean>((resolve) => {
      let id = 1;
      const deadline = Date.now() + timeoutMs;
      const timer = setInterval(() => {
        if (Date.now() > deadline || (m !== null && m.exited)) {
          clearInterval(timer);
          resolve(false);
          return;
        }
        id = (id + 1) & 0xffff;
        sock.send(encodeQuery(id, `ready-${id}.bench.test`), port, '127.0.0.1');
      }, 100);
      sock.on('message', (msg) => {
        if (msg.length < 12 || msg.readUInt16BE(0) !== id) return;
        const rcode = msg[3]! & 0x0f;
        const ancount = msg.readUInt16BE(6);
        if (rcode === 0 && ancount > 0) {
          clearInterval(timer);
          resolve(true);
        } else {
          lastNote = `rcode ${rcode}, ${ancount} answers`;
        }
      });
    });
    if (!ok) {
      const why = m !== null && m.exited ? `exited (${m.exitNote})` : `no good answer within ${timeoutMs} ms (${lastNote})`;
      throw new Error(`127.0.0.1:${port} not ready: ${why}${m !== null && m.output ? `\n--- output ---\n${m.output.trim()}` : ''}`);
    }
  } finally {
    sock.close();
  }
}

// ------------------------------------------------------------------------------------------------ dnsperf

const DNSPERF = findBinary('dnsperf');

interface PerfResult {
  sent: number;
  completed: number;
  lost: number;
  lostPct: number;
  qps: number;
  runTimeS: number;
  avgLatencyMs: number | null;
  rcodes: string;
}

interface RunResult extends PerfResult {
  cpuUsPerQuery: number | null;
  /** The server's CPU use during the run, % of one CPU (100 = saturated). */
  serverCpuPct: number;
  /** CPU used by processes outside the benchmark during the run, % of one CPU. */
  otherCpuPct: number;
  stealPct: number;
}

function parseDnsperf(out: string): PerfResult {
  const num = (re: RegExp): number => {
    const m = re.exec(out);
    if (!m) throw new Error(`cannot read dnsperf output (${re.source}):\n${out.trim().slice(-2000)}`);
    return Number(m[1]);
  };
  const lat = /Average Latency \(s\):\s+([\d.]+)/.exec(out);
  const sent = num(/Queries sent:\s+(\d+)/);
  const lost = num(/Queries lost:\s+(\d+)/);
  return {
    sent,
    completed: num(/Queries completed:\s+(\d+)/),
    lost,
    lostPct: sent > 0 ? (lost * 100) / sent : 0,
    qps: num(/Queries per second:\s+([\d.]+)/),
    runTimeS: num(/Run time \(s\):\s+([\d.]+)/),
    avgLatencyMs: lat ? Number(lat[1]) * 1000 : null,
    rcodes: /Response codes:\s+(.*)/.exec(out)?.[1]?.trim() ?? '',
  };
}

function dnsperf(port: number, file: string, opts: { seconds?: number; passes?: number }): Promise<PerfResult> {
  const args = ['-s', '127.0.0.1', '-p', String(port), '-d', file, '-c', String(CLIENTS), '-q', String(OUTSTANDING),
    '-t', String(QUERY_TIMEOUT_S)];
  if (opts.seconds !== undefined) args.push('-l', String(opts.seconds));
  if (opts.passes !== undefined) args.push('-n', String(opts.passes));
  const [cmd, a] = pinned(0, DNSPERF!, args);
  const limitMs = ((opts.seconds ?? 30) + QUERY_TIMEOUT_S + 15) * 1000;
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, a, { stdio: ['ignore', 'pipe', 'pipe'] });
    transient.add(child);
    let out = '';
    child.stdout?.on('data', (b: Buffer) => (out += b.toString('utf8')));
    child.stderr?.on('data', (b: Buffer) => (out += b.toString('utf8')));
    const killer = setTimeout(() => child.kill('SIGKILL'), limitMs);
    child.on('error', (err) => {
      clearTimeout(killer);
      transient.delete(child);
      reject(err);
    });
    child.on('exit', (code, signal) => {
      clearTimeout(killer);
      transient.delete(child);
      if (code !== 0) {
        reject(new Error(`dnsperf ${signal ?? `exit ${code}`}:\n${out.trim().slice(-2000)}`));
        return;
      }
      try {
        resolve(parseDnsperf(out));
      } catch (err) {
        reject(err);
      }
    });
  });
}

/** Busy ticks of the whole machine (user+nice+system, all CPUs) and steal ticks, from /proc/stat. */
function machineTicks(): { busy: number; steal: number } {
  try {
    const f = fs.readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number);
    return { busy: (f[0] ?? 0) + (f[1] ?? 0) + (f[2] ?? 0), steal: f[7] ?? 0 };
  } catch {
    return { busy: 0, steal: 0 };
  }
}

/** This harness's own CPU ticks, with its reaped children's (dnsperf). */
function selfTicks(): number {
  return cpuTicks(process.pid) - childrenOf(process.pid).reduce((a, p) => a + cpuTicks(p), 0);
}

/** CPU ticks of everything the benchmark runs: this harness, dnsperf (reaped), every server and the upstream. */
function benchTicks(): number {
  let sum = selfTicks();
  for (const m of live) if (m.pid > 0) sum += cpuTicks(m.pid);
  return sum;
}

/**
 * Wait (at most BENCH_QUIET_WAIT seconds) until processes outside the benchmark use less than BUSY_PCT of a
 * CPU over one second. For shared machines; returns the last figure.
 */
async function waitQuiet(): Promise<number> {
  const deadline = Date.now() + QUIET_WAIT_S * 1000;
  let announced = false;
  for (;;) {
    const t0 = process.hrtime.bigint();
    const b0 = machineTicks().busy;
    const o0 = benchTicks();
    await sleep(1000);
    const o1 = benchTicks();
    const b1 = machineTicks().busy;
    const elapsedS = Number(process.hrtime.bigint() - t0) / 1e9;
    const pct = Math.max(0, ((b1 - b0 - (o1 - o0)) * 100) / (CLK_TCK * elapsedS));
    if (pct < BUSY_PCT) return pct;
    if (Date.now() > deadline || stopping) {
      console.log(`  machine still busy (${pct.toFixed(0)}% of a CPU used by other processes): measuring anyway`);
      return pct;
    }
    if (!announced) {
      console.log(`  waiting for other processes to quiet down (${pct.toFixed(0)}% of a CPU)…`);
      announced = true;
    }
  }
}

async function measure(m: Managed, port: number, file: string): Promise<RunResult> {
  const t0 = process.hrtime.bigint();
  const mach0 = machineTicks();
  const ours0 = benchTicks();
  const before = cpuTicks(m.pid);
  const perf = await dnsperf(port, file, { seconds: SECONDS });
  const after = cpuTicks(m.pid);
  const ours1 = benchTicks();
  const mach1 = machineTicks();
  const elapsedS = Number(process.hrtime.bigint() - t0) / 1e9;
  if (m.exited) throw new Error(`${m.name} exited during the run (${m.exitNote})\n${m.output.trim()}`);
  const cpuUs = ((after - before) * 1e6) / CLK_TCK;
  // CPU used meanwhile by processes that are not part of the benchmark (other work on the machine): in % of
  // one CPU. Anything above a few % makes the run unreliable.
  const foreign = mach1.busy - mach0.busy - (ours1 - ours0);
  const pct = (ticks: number): number => Math.max(0, (ticks * 100) / (CLK_TCK * elapsedS));
  return {
    ...perf,
    cpuUsPerQuery: perf.completed > 0 ? cpuUs / perf.completed : null,
    serverCpuPct: pct(after - before),
    otherCpuPct: pct(foreign),
    stealPct: pct(mach1.steal - mach0.steal),
  };
}

// ------------------------------------------------------------------------------------------------ files

function fill(template: string, vars: Record<string, string | number>): string {
  return template.replace(/\{\{(\w+)\}\}/g, (all, k: string) => (k in vars ? String(vars[k]) : all));
}

function writeFromTemplate(name: string, dir: string, vars: Record<string, string | number>, as = name): string {
  const out = path.join(dir, as);
  fs.writeFileSync(out, fill(fs.readFileSync(path.join(PEERS_DIR, name), 'utf8'), vars));
  return out;
}

async function writeLines(file: string, count: number, line: (i: number) => string): Promise<void> {
  const ws = fs.createWriteStream(file);
  const chunk = 10_000;
  for (let i = 0; i < count; i += chunk) {
    let s = '';
    for (let j = i; j < Math.min(count, i + chunk); j++) s += line(j);
    if (!ws.write(s)) await new Promise<void>((r) => ws.once('drain', () => r()));
  }
  await new Promise<void>((resolve, reject) => ws.end((err?: Error | null) => (err ? reject(err) : resolve())));
}

// ------------------------------------------------------------------------------------------------- peers

type SetName = 'hits' | 'misses';

interface PeerDef {
  id: RowId;
  label: string;
  sets: SetName[];
  version: string | null;
  /** Returns the started server, or a reason to skip the row. */
  start(dir: string, port: number, upstreamPort: number): Promise<Managed | string>;
}

const NODE = process.execPath;
const UNBOUND = findBinary('unbound');
const DNSMASQ = findBinary('dnsmasq');
const NSD = findBinary('nsd');

function nodePeer(id: RowId, label: string, sets: SetName[], script: string, extra: (up: number) => string[]): PeerDef {
  return {
    id,
    label,
    sets,
    version: null,
    start: (dir, port, up) =>
      startProcess(label, 1, NODE, [path.join(__dirname, script), '--port', String(port), ...extra(up),
        '--max-seconds', String(LIFETIME_S)], dir),
  };
}

function peerDefs(): PeerDef[] {
  return [
    nodePeer('bare', 'bare Node responder', ['hits'], 'bareResponder.js', () => []),
    nodePeer('packet', 'Node + dns-packet', ['hits'], 'packetResponder.js', () => []),
    nodePeer('relay', 'Node bare relay', ['misses'], 'relay.js', (up) => ['--upstream', String(up)]),
    nodePeer('relay-fresh', 'Node relay, socket per query', ['misses'], 'relay.js',
      (up) => ['--upstream', String(up), '--socket-per-query']),
    {
      id: 'dnsmasq',
      label: 'dnsmasq',
      sets: ['hits', 'misses'],
      version: toolVersion(DNSMASQ, ['--version'], /Dnsmasq version (\S+)/),
      start: async (dir, port, up) => {
        if (DNSMASQ === null) return 'dnsmasq not installed (apt-get install -y dnsmasq-base)';
        const conf = writeFromTemplate('dnsmasq.conf', dir, { PORT: port, UPSTREAM_PORT: up, DIR: dir });
        return startProcess('dnsmasq', 1, DNSMASQ, ['-k', '-C', conf], dir);
      },
    },
    {
      id: 'unbound',
      label: 'unbound',
      sets: ['hits', 'misses'],
      version: toolVersion(UNBOUND, ['-V'], /Version (\S+)/),
      start: async (dir, port, up) => {
        if (UNBOUND === null) return 'unbound not installed (apt-get install -y unbound)';
        const conf = writeFromTemplate('unbound.conf', dir, { PORT: port, UPSTREAM_PORT: up, DIR: dir });
        return startProcess('unbound', 1, UNBOUND, ['-d', '-c', conf], dir);
      },
    },
    {
      id: 'codexdns',
      label: 'codexdns',
      sets: ['hits', 'misses'],
      version: (() => {
        try {
          return (JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { version?: string }).version ?? null;
        } catch {
          return null;
        }
      })(),
      start: async (dir, port, up) => {
        if (!fs.existsSync(CODEXDNS_CLI)) return `${path.relative(ROOT, CODEXDNS_CLI)} does not exist yet (npm run build)`;
        const conf = writeFromTemplate('Corefile.yaml', dir, { PORT: port, UPSTREAM_PORT: up });
        const flags = (process.env.BENCH_CODEXDNS_NODE_FLAGS ?? '').split(/\s+/).filter((s) => s !== '');
        return startProcess('codexdns', 1, NODE, [...flags, CODEXDNS_CLI, '--conf', conf], dir);
      },
    },
  ];
}

// ------------------------------------------------------------------------------------------------ upstream

interface Upstream {
  kind: string;
  port: number;
  proc: Managed;
}

async function startUpstream(dir: string): Promise<Upstream> {
  const want = process.env.BENCH_UPSTREAM ?? 'nsd';
  if (want !== 'nsd' && want !== 'node') throw new Error(`BENCH_UPSTREAM=${want}: expected nsd or node`);
  if (want === 'nsd') {
    if (NSD === null) {
      console.log('upstream: nsd not installed (apt-get install -y nsd): using bench/upstream.ts');
    } else {
      const port = await freePort();
      const nsdDir = path.join(dir, 'nsd');
      fs.mkdirSync(nsdDir);
      const conf = writeFromTemplate('nsd.conf', nsdDir, { PORT: port, DIR: nsdDir });
      writeFromTemplate('bench.test.zone', nsdDir, {});
      let proc: Managed | null = null;
      try {
        proc = await startProcess('nsd', 0, NSD, ['-d', '-c', conf], nsdDir);
        await waitReady(port, proc, 10_000);
        const version = toolVersion(NSD, ['-v'], /NSD version (\S+)/);
        return { kind: `nsd ${version}`, port, proc };
      } catch (err) {
        let log = '';
        try {
          log = fs.readFileSync(path.join(nsdDir, 'nsd.log'), 'utf8');
        } catch {
          // no log
        }
        console.log(`upstream: nsd could not be started, using bench/upstream.ts instead: ${(err as Error).message}\n${log}`);
        if (proc !== null) await stopProcess(proc);
      }
    }
  }
  const port = await freePort();
  const proc = await startProcess('node upstream', 0, NODE,
    [path.join(__dirname, 'upstream.js'), '--port', String(port), '--max-seconds', String(LIFETIME_S)], dir);
  await waitReady(port, proc, 10_000);
  return { kind: 'Node fixed responder (bench/upstream.ts)', port, proc };
}

// ------------------------------------------------------------------------------------------------ report

interface Row {
  id: RowId;
  label: string;
  version: string | null;
  port?: number;
  hits?: RunResult;
  misses?: RunResult;
  peakRssKiB?: number | null;
  skipped?: string;
  error?: string;
  /** Every measured run when BENCH_REPEAT > 1 (the row keeps the best QPS of each set). */
  all?: Array<RunResult & { set: SetName; load?: string }>;
}

function fmtQps(r: RunResult | undefined, applies: boolean): string {
  if (!applies) return '—';
  if (r === undefined) return 'n/a';
  const q = r.qps >= 1000 ? `${(r.qps / 1000).toFixed(1)}k` : r.qps.toFixed(0);
  const us = r.cpuUsPerQuery === null ? '?' : r.cpuUsPerQuery.toFixed(1);
  let s = `${q} (${us})`;
  if (r.lostPct >= 0.1) s += ` lost ${r.lostPct.toFixed(1)}%`;
  if (!/^NOERROR \d+ \(100\.00%\)$/.test(r.rcodes)) s += ` ⚠ ${r.rcodes}`;
  if (r.otherCpuPct >= BUSY_PCT) s += ` ⚠ busy machine (+${r.otherCpuPct.toFixed(0)}% CPU)`;
  return s;
}

function fmtRss(kib: number | null | undefined): string {
  return kib === null || kib === undefined ? 'n/a' : `${(kib / 1024).toFixed(0)} MB`;
}

function ratio(a: RunResult | undefined, b: RunResult | undefined): number | null {
  return a !== undefined && b !== undefined && b.qps > 0 ? a.qps / b.qps : null;
}

function report(rows: Row[], defs: PeerDef[]): { markdown: string; ratios: Record<string, unknown> } {
  const lines: string[] = [];
  lines.push('| | cache hits, QPS (µs/query) | cache misses, QPS (µs/query) | peak RSS |');
  lines.push('|---|---|---|---|');
  for (const row of rows) {
    const def = defs.find((d) => d.id === row.id)!;
    const label = row.version ? `${row.label} ${row.version}` : row.label;
    if (row.skipped !== undefined) {
      lines.push(`| ${label} | skipped: ${row.skipped} | | |`);
      continue;
    }
    const err = row.error !== undefined ? ` (error: ${row.error.split('\n')[0]})` : '';
    lines.push(`| ${label} | ${fmtQps(row.hits, def.sets.includes('hits'))} | ${fmtQps(row.misses, def.sets.includes('misses'))}${err} | ${fmtRss(row.peakRssKiB)} |`);
  }
  const by = (id: RowId): Row | undefined => rows.find((r) => r.id === id);
  const cx = by('codexdns');
  const hitRatio = ratio(cx?.hits, by('bare')?.hits);
  const missRatio = ratio(cx?.misses, by('unbound')?.misses);
  // CPU-cost ratio: the other's µs/query ÷ codexdns's, i.e. the QPS ratio both would reach with one CPU each
  // saturated. Steadier than QPS when the machine is shared or a run did not saturate the server.
  const costRatio = (a: RunResult | undefined, b: RunResult | undefined): number | null =>
    a?.cpuUsPerQuery != null && b?.cpuUsPerQuery != null && a.cpuUsPerQuery > 0 ? b.cpuUsPerQuery / a.cpuUsPerQuery : null;
  const hitCost = costRatio(cx?.hits, by('bare')?.hits);
  const missCost = costRatio(cx?.misses, by('unbound')?.misses);
  const relayRatio = ratio(cx?.misses, by('relay')?.misses);
  const relayCost = costRatio(cx?.misses, by('relay')?.misses);
  const verdict = (r: number | null, cost: number | null, target: number): string =>
    r === null
      ? 'not measured'
      : `${r.toFixed(2)} (target ≥ ${target.toFixed(2)}: ${r >= target ? 'met' : 'MISSED'}); ` +
        `by CPU µs/query: ${cost === null ? '?' : cost.toFixed(2)}`;
  lines.push('');
  // Issue 20's targets.
  lines.push(`- codexdns cache hits QPS ÷ bare Node responder's: ${verdict(hitRatio, hitCost, 0.9)}`);
  lines.push(`- codexdns cache misses QPS ÷ unbound's (1 thread): ${verdict(missRatio, missCost, 1.5)}`);
  lines.push(`- codexdns cache misses QPS ÷ the one-socket Node relay's: ${verdict(relayRatio, relayCost, 0.6)}`);
  const others: string[] = [];
  if (cx !== undefined && cx.skipped === undefined) {
    for (const r of rows) {
      if (r.id === 'codexdns') continue;
      const h = ratio(cx.hits, r.hits);
      const m = ratio(cx.misses, r.misses);
      if (h === null && m === null) continue;
      others.push(`${r.label}: hits ${h === null ? '—' : h.toFixed(2)}, misses ${m === null ? '—' : m.toFixed(2)}`);
    }
  }
  if (others.length > 0) lines.push(`- codexdns QPS ÷ each peer's: ${others.join('; ')}`);
  // Issue 20 asks for the median of the rounds and their spread, beside the best run above.
  const med = (a: number[]): number => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)];
  const medians = new Map<string, { qps: number; us: number }>();
  lines.push('');
  lines.push('Medians of the rounds [spread], QPS and CPU µs/query, with the 1-minute load average of each run:');
  lines.push('');
  lines.push('| | set | QPS median [min–max] | µs/query median [min–max] | load average per run |');
  lines.push('|---|---|---|---|---|');
  for (const row of rows) {
    for (const set of ['hits', 'misses'] as const) {
      const runs = (row.all ?? []).filter((r) => r.set === set);
      if (runs.length === 0) continue;
      const q = runs.map((r) => r.qps);
      const c = runs.map((r) => r.cpuUsPerQuery ?? NaN).filter((x) => Number.isFinite(x));
      const m = { qps: med(q), us: c.length > 0 ? med(c) : NaN };
      medians.set(`${row.id}/${set}`, m);
      lines.push(`| ${row.label} | ${set} | ${(m.qps / 1000).toFixed(1)}k [${(Math.min(...q) / 1000).toFixed(1)}–${(Math.max(...q) / 1000).toFixed(1)}] | ` +
        `${c.length > 0 ? `${m.us.toFixed(1)} [${Math.min(...c).toFixed(1)}–${Math.max(...c).toFixed(1)}]` : '?'} | ${runs.map((r) => r.load?.split(' ')[0] ?? '?').join(', ')} |`);
    }
  }
  const mr = (a: string, b: string): string => {
    const x = medians.get(a);
    const y = medians.get(b);
    return x && y ? `${(x.qps / y.qps).toFixed(2)} (by CPU µs/query ${(y.us / x.us).toFixed(2)})` : '—';
  };
  lines.push('');
  lines.push(`- medians: codexdns hits ÷ bare ${mr('codexdns/hits', 'bare/hits')}; misses ÷ unbound ${mr('codexdns/misses', 'unbound/misses')}; misses ÷ relay ${mr('codexdns/misses', 'relay/misses')}`);
  return {
    markdown: lines.join('\n'),
    ratios: { hitsVsBare: hitRatio, missesVsUnbound: missRatio, missesVsRelay: relayRatio, hitsVsBareByCpu: hitCost, missesVsUnboundByCpu: missCost, missesVsRelayByCpu: relayCost },
  };
}

// -------------------------------------------------------------------------------------------------- main

async function main(): Promise<void> {
  if (DNSPERF === null) {
    console.error('dnsperf is not installed: apt-get install -y dnsperf');
    process.exitCode = 1;
    return;
  }
  const rowsWanted = selectedRows();
  const defs = peerDefs();
  const started = Date.now();
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'codexdns-bench-'));
  tmpDirs.push(tmp);

  const machine = {
    cpus: os.cpus().length,
    cpuModel: os.cpus()[0]?.model ?? 'unknown',
    kernel: os.release(),
    node: process.version,
    pinning: PIN ? 'dnsperf + upstream on CPU 0, server under test alone on CPU 1 (taskset)' : 'none (unpinned: expect ±10–20%)',
    memTotalMiB: Math.round(os.totalmem() / 1048576),
  };
  const tools = {
    dnsperf: toolVersion(DNSPERF, ['-h'], /Version (\S+)/),
    nsd: toolVersion(NSD, ['-v'], /NSD version (\S+)/),
    unbound: defs.find((d) => d.id === 'unbound')!.version,
    dnsmasq: defs.find((d) => d.id === 'dnsmasq')!.version,
  };
  console.log(`codexdns bench: ${SECONDS} s per run, dnsperf -c ${CLIENTS} -q ${OUTSTANDING} -t ${QUERY_TIMEOUT_S}; ` +
    `${machine.cpus} CPUs (${machine.cpuModel}), Node ${machine.node}; pinning: ${machine.pinning}`);

  // Query sets, generated once.
  const hitsFile = path.join(tmp, 'hits.txt');
  const runTag = Date.now().toString(36);
  await writeLines(hitsFile, HIT_NAMES, (i) => `h${i}.bench.test A\n`);
  // Files of unique names: the k-th miss run of any peer reads file k, so a peer never sees a miss name twice
  // (each peer is a fresh process, so peers can share the files). Generated when first needed.
  const missFiles = new Map<number, string>();
  const missFile = async (k: number): Promise<string> => {
    let f = missFiles.get(k);
    if (f === undefined) {
      f = path.join(tmp, `misses-${k}.txt`);
      await writeLines(f, MISS_LINES, (i) => `m${runTag}${k > 0 ? `r${k}` : ''}-${i}.bench.test A\n`);
      missFiles.set(k, f);
    }
    return f;
  };
  await missFile(0);

  const upstream = await startUpstream(tmp);
  console.log(`upstream: ${upstream.kind} on 127.0.0.1:${upstream.port}`);

  // Start every selected peer (each idles on CPU 1 while another is loaded), then load them in turn: all the
  // hit runs, then all the miss runs, BENCH_REPEAT rounds. Interleaving spreads any drift of the machine over
  // every peer instead of favouring the ones measured first.
  interface Active {
    def: PeerDef;
    row: Row;
    proc: Managed;
    port: number;
    missRuns: number;
  }
  const rows: Row[] = [];
  const active: Active[] = [];
  const retire = async (a: Active, err: unknown): Promise<void> => {
    a.row.error = (err as Error).message;
    console.log(`[${a.def.label}] error: ${a.row.error}`);
    if (!a.proc.exited) a.row.peakRssKiB = peakRssKiB(a.proc.pid);
    active.splice(active.indexOf(a), 1);
    await stopProcess(a.proc);
  };
  for (const def of defs.filter((d) => rowsWanted.includes(d.id))) {
    if (stopping) return;
    const row: Row = { id: def.id, label: def.label, version: def.version };
    rows.push(row);
    const dir = path.join(tmp, def.id);
    fs.mkdirSync(dir);
    const port = await freePort();
    row.port = port;
    let proc: Managed | null = null;
    try {
      const s = await def.start(dir, port, upstream.port);
      if (typeof s === 'string') {
        row.skipped = s;
        console.log(`[${def.label}] skipped: ${s}`);
        continue;
      }
      proc = s;
      try {
        await waitReady(port, proc);
      } catch (err) {
        if (def.id !== 'codexdns') throw err;
        row.skipped = `did not start: ${(err as Error).message.split('\n')[0]}`;
        console.log(`[${def.label}] skipped: ${(err as Error).message}`);
        await stopProcess(proc);
        continue;
      }
      // Warm-up: one pass over the hit set (fills the caches, wakes the JIT).
      await dnsperf(port, hitsFile, { passes: 1 });
      active.push({ def, row, proc, port, missRuns: 0 });
      console.log(`[${def.label}] ready on 127.0.0.1:${port}`);
    } catch (err) {
      row.error = (err as Error).message;
      console.log(`[${def.label}] error: ${row.error}`);
      if (proc !== null) await stopProcess(proc);
    }
  }

  for (let rep = 0; rep < REPEAT; rep++) {
    for (const set of SETS) {
      // The pairs behind the two targets run back to back (bare responder then codexdns for hits, unbound then
      // codexdns for misses), so that a drift of the machine affects both sides alike.
      const partner: RowId = set === 'hits' ? 'bare' : 'unbound';
      const rank = (a: Active): number => (a.def.id === 'codexdns' ? 2 : a.def.id === partner ? 1 : 0);
      const order = [...active].sort((x, y) => rank(x) - rank(y)); // stable: otherwise the table's order
      for (const a of order) {
        if (!a.def.sets.includes(set) || !active.includes(a)) continue;
        if (stopping) return;
        try {
          for (let attempt = 0; ; attempt++) {
            if (QUIET_WAIT_S > 0) await waitQuiet();
            const file = set === 'hits' ? hitsFile : await missFile(a.missRuns++);
            const r = await measure(a.proc, a.port, file);
            // The machine's load beside each figure (shared machines: other builds and tests run meanwhile).
            const load = os.loadavg().map((x) => x.toFixed(2)).join(' ');
            (a.row.all ??= []).push({ set, load, ...r });
            console.log(`[${a.def.label}] ${set}: ${r.qps.toFixed(0)} QPS, ${r.cpuUsPerQuery?.toFixed(1) ?? '?'} µs/query, ` +
              `server CPU ${r.serverCpuPct.toFixed(0)}%, lost ${r.lostPct.toFixed(2)}%, ` +
              `avg latency ${r.avgLatencyMs?.toFixed(2) ?? '?'} ms, ${r.rcodes}, load average ${load}` +
              (r.otherCpuPct >= BUSY_PCT ? ` — other processes used ${r.otherCpuPct.toFixed(0)}% of a CPU meanwhile` : ''));
            const disturbed = r.otherCpuPct >= BUSY_PCT;
            const best = a.row[set];
            // Keep the best undisturbed run; a disturbed one only while nothing better exists.
            const bestDisturbed = best !== undefined && best.otherCpuPct >= BUSY_PCT;
            if (best === undefined || (bestDisturbed && !disturbed) || (bestDisturbed === disturbed && r.qps > best.qps)) {
              a.row[set] = r;
            }
            if (!disturbed || QUIET_WAIT_S === 0 || attempt >= 2) break;
            console.log(`[${a.def.label}] ${set}: disturbed by other processes, measuring again`);
          }
        } catch (err) {
          await retire(a, err);
        }
      }
    }
  }
  for (const a of active.splice(0)) {
    a.row.peakRssKiB = peakRssKiB(a.proc.pid);
    await stopProcess(a.proc);
  }
  await stopProcess(upstream.proc);

  const { markdown, ratios } = report(rows, defs);
  const date = new Date().toISOString();
  console.log(`\n## Results (${date.slice(0, 10)})\n`);
  console.log(`Upstream: ${upstream.kind}. dnsperf ${tools.dnsperf ?? '?'}: -c ${CLIENTS} -q ${OUTSTANDING} -l ${SECONDS}; ` +
    `hits = ${HIT_NAMES} names replayed after one warm-up pass, misses = unique names; best of ${REPEAT} round(s). ` +
    `${machine.cpus} CPUs, Node ${machine.node}, pinning: ${machine.pinning}.\n`);
  console.log(markdown);
  console.log(`\n(total ${((Date.now() - started) / 1000).toFixed(0)} s)`);

  fs.mkdirSync(path.dirname(RESULTS_FILE), { recursive: true });
  fs.writeFileSync(RESULTS_FILE, `${JSON.stringify({
    date,
    machine,
    tools,
    upstream: upstream.kind,
    settings: { seconds: SECONDS, clients: CLIENTS, outstanding: OUTSTANDING, queryTimeoutS: QUERY_TIMEOUT_S,
      hitNames: HIT_NAMES, missLines: MISS_LINES },
    rows,
    ratios,
    markdown,
  }, null, 2)}\n`);
  console.log(`results: ${path.relative(process.cwd(), RESULTS_FILE) || RESULTS_FILE}`);
}

main()
  .catch((err: unknown) => {
    console.error(err instanceof Error ? err.stack ?? err.message : err);
    process.exitCode = 1;
  })
  .finally(() => cleanup());
