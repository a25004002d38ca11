// What the two storm benchmarks (bench/storm.ts, bench/storm-discovery.ts) share: their knobs, the child
// processes they start (each under `timeout`, optionally pinned with taskset, killed at the end), /proc readings,
// and the load generator — new clients, each from its own 127.x.y.z address, and known clients, with the
// latency of every answer. Nothing here is used by the server.
import { spawn, type ChildProcess } from 'node:child_process';
import dgram from 'node:dgram';
import fs from 'node:fs';
import { performance } from 'node:perf_hooks';
import os from 'node:os';
import { CLOCK_TICKS_PER_SECOND, encodeQuery, envNum, findBinary, statTicks } from './common';

export { envNum, findBinary, freeUdpPort, serverNodeFlags } from './common';

// The storm's load, the same in both benchmarks: STORM_RATE new clients a second for STORM_SECONDS, each asking
// `newQueries` names a second apart, beside `known` clients at `knownQps` each; `uniqueShare` of the names are
// unique (forwarded), the rest come from `poolNames`. STORM_PIN=0: no taskset.
export const STORM_SECONDS = envNum('STORM_SECONDS', 60, 1, 120);
export const STORM_RATE = envNum('STORM_RATE', 1000, 1, 5000);
export const STORM_LOAD = { known: 10, knownQps: 20, newQueries: 3, queryTimeoutMs: 2000, poolNames: 2000, uniqueShare: 0.2 } as const;
export const PIN = process.env.STORM_PIN !== '0' && findBinary('taskset') !== null && os.cpus().length >= 2;

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

// ---------------------------------------------------------------------------------------------- processes

const children = new Set<ChildProcess>();

export interface StartOptions {
  /** Killed by `timeout` after this many seconds whatever happens. */
  lifetimeS: number;
  /** The CPU to pin it to with taskset, or null for none. */
  cpu: number | null;
  onStderr?: (s: string) => void;
}

/** Starts `cmd` under `timeout` (and taskset); `pid()` is the command's own pid, not timeout's. */
export function start(cmd: string[], opts: StartOptions): { child: ChildProcess; pid: () => number } {
  const argv = ['timeout', '-s', 'KILL', String(opts.lifetimeS)];
  if (opts.cpu !== null) argv.push('taskset', '-c', String(opts.cpu));
  argv.push(...cmd);
  const child = spawn(argv[0], argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'] });
  children.add(child);
  child.on('exit', () => children.delete(child));
  child.stdout?.on('data', () => undefined);
  child.stderr?.on('data', (d: Buffer) => opts.onStderr?.(d.toString()));
  return { child, pid: () => childPidOf(child.pid!) };
}

/** `timeout` forks the command (taskset execs): the command's pid is the child of `timeout`. */
export function childPidOf(pid: number): number {
  try {
    const kids = fs.readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean);
    return kids.length > 0 ? Number(kids[0]) : pid;
  } catch {
    return pid;
  }
}

export function killAll(): void {
  for (const c of children) {
    // `timeout` does not pass a SIGKILL on: kill the command it runs, then `timeout` itself.
    const inner = childPidOf(c.pid!);
    if (inner !== c.pid) {
      try {
        process.kill(inner, 'SIGKILL');
      } catch {
        // already gone
      }
    }
    c.kill('SIGKILL');
  }
}
process.on('SIGINT', () => {
  killAll();
  process.exit(130);
});
process.on('exit', killAll);

/** SIGTERM to the server (it flushes and logs its totals), SIGKILL if it has not exited 30 s later. */
export async function stopGracefully(child: ChildProcess, pid: number): Promise<void> {
  try {
    process.kill(pid, 'SIGTERM');
  } catch {
    child.kill('SIGTERM');
  }
  const t0 = Date.now();
  while (child.exitCode === null && child.signalCode === null) {
    if (Date.now() - t0 > 30_000) {
      child.kill('SIGKILL');
      break;
    }
    await sleep(50);
  }
}

export function readStatus(pid: number): { rss: number; hwm: number } {
  try {
    const text = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
    const kb = (k: string): number => Number(new RegExp(`^${k}:\\s+(\\d+) kB`, 'm').exec(text)?.[1] ?? 0);
    return { rss: kb('VmRSS') * 1024, hwm: kb('VmHWM') * 1024 };
  } catch {
    return { rss: 0, hwm: 0 };
  }
}

/** CPU time (user + system, all threads) of a process, in seconds. */
export function cpuSeconds(pid: number): number {
  return (statTicks(`/proc/${pid}/stat`) ?? 0) / CLOCK_TICKS_PER_SECOND;
}

/** A server's CPU seconds during a storm: its main thread (the answer loop) and its other threads. */
export interface ThreadCpu {
  main: number;
  /** libuv's pool (SQLite's statements) and V8's helpers (concurrent marking, compilation), together. */
  others: number;
  busiestOther: number;
}

/**
 * CPU seconds of each of a process's threads, keyed by thread id, the main thread as `main` (Node leaves every
 * thread named `node`, so they are told apart by id only). Subtract two readings with threadCpuDelta.
 */
export function threadCpuSeconds(pid: number): Map<string, number> {
  const out = new Map<string, number>();
  let tids: string[] = [];
  try {
    tids = fs.readdirSync(`/proc/${pid}/task`);
  } catch {
    return out;
  }
  for (const tid of tids) {
    const ticks = statTicks(`/proc/${pid}/task/${tid}/stat`);
    if (ticks !== null) out.set(Number(tid) === pid ? 'main' : tid, ticks / CLOCK_TICKS_PER_SECOND);
  }
  return out;
}

/** `after − before`, rounded to 0.1 s. */
export function threadCpuDelta(before: Map<string, number>, after: Map<string, number>): ThreadCpu {
  let others = 0;
  let busiest = 0;
  for (const [k, v] of after) {
    if (k === 'main') continue;
    const d = v - (before.get(k) ?? 0);
    others += d;
    busiest = Math.max(busiest, d);
  }
  const r = (x: number): number => Math.round(x * 10) / 10;
  return { main: r((after.get('main') ?? 0) - (before.get('main') ?? 0)), others: r(others), busiestOther: r(busiest) };
}

/** A run's name in the output: its kind, numbered by its pair when STORM_REPEAT runs several. */
export function runLabel(run: string, pair: number, repeat: number): string {
  return repeat > 1 ? `${run} ${pair}` : run;
}

export function threadCpuLine(d: ThreadCpu): string {
  return `server CPU during the storm: main thread ${d.main} s, other threads ${d.others} s (busiest ${d.busiestOther} s)`;
}

function median(xs: number[]): number {
  const a = [...xs].sort((x, y) => x - y);
  return a.length === 0 ? NaN : a.length % 2 === 1 ? a[(a.length - 1) / 2] : (a[a.length / 2 - 1] + a[a.length / 2]) / 2;
}

export interface MedianRatios {
  pairs: number;
  /** p99 of all queries, each run of each side. */
  withP99: number[];
  withoutP99: number[];
  /** median(with) ÷ median(without), and the median of the pairs' own ratios. */
  ratioOfMedians: number;
  medianOfRatios: number;
}

/** Repeated storms (STORM_REPEAT): the p99s of both sides and their medians' ratio. Undefined for one pair. */
export function medianRatios(withRuns: StormRunResult[], withoutRuns: StormRunResult[]): MedianRatios | undefined {
  const n = Math.min(withRuns.length, withoutRuns.length);
  if (n < 2) return undefined;
  const withP99 = withRuns.slice(0, n).map((r) => r.latencyMs.all.p99);
  const withoutP99 = withoutRuns.slice(0, n).map((r) => r.latencyMs.all.p99);
  return {
    pairs: n,
    withP99,
    withoutP99,
    ratioOfMedians: median(withP99) / median(withoutP99),
    medianOfRatios: median(withP99.map((w, i) => w / withoutP99[i])),
  };
}

export function medianLine(m: MedianRatios): string {
  const ms = (xs: number[]): string => xs.map((x) => x.toFixed(1)).join(', ');
  return `over ${m.pairs} pairs: p99 all with tracking ${ms(m.withP99)} ms, without ${ms(m.withoutP99)} ms; median ÷ median ${m.ratioOfMedians.toFixed(2)}, median of the pairs' ratios ${m.medianOfRatios.toFixed(2)}`;
}

/** The table's "answered" cell: the share of queries answered, and how many answers were not NOERROR. */
export function answeredCell(r: StormRunResult): string {
  return `${r.answered.pct.toFixed(3)} %${r.answered.notNoError > 0 ? ` (${r.answered.notNoError} not NOERROR)` : ''}`;
}

/** A warning line when some run got answers other than NOERROR (its latencies are not those of real answers). */
export function failedAnswersLine(results: ReadonlyArray<StormRunResult & { run: string }>, repeat: number): string[] {
  const bad = results.filter((r) => r.answered.notNoError > 0).map((r) => `${runLabel(r.run, r.pair, repeat)} (${r.answered.notNoError})`);
  return bad.length === 0 ? [] : ['', `WARNING: answers other than NOERROR in ${bad.join(', ')}: those runs are not comparable`];
}

/** The `key=value` fields of a server log line. */
export function parseFields(line: string | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  if (!line) return out;
  for (const m of line.matchAll(/ (\w+)=("[^"]*"|\S+)/g)) out[m[1]] = m[2];
  return out;
}

// ---------------------------------------------------------------------------------------------- load

/** 127.a.b.c for new client i: a from `base` up, c in 1..250 (no .0 / .255 hosts). */
export function newClientAddress(i: number, base = 2): string {
  const c = 1 + (i % 250);
  const b = Math.floor(i / 250) % 256;
  const a = base + Math.floor(i / (250 * 256));
  if (a > 254) throw new Error('too many clients for 127.0.0.0/8');
  return `127.${a}.${b}.${c}`;
}

export class Samples {
  private buf = new Float64Array(1 << 16);
  n = 0;
  add(v: number): void {
    if (this.n === this.buf.length) {
      const b = new Float64Array(this.buf.length * 2);
      b.set(this.buf);
      this.buf = b;
    }
    this.buf[this.n++] = v;
  }
  percentiles(): { p50: number; p99: number; p999: number; max: number } {
    const a = this.buf.slice(0, this.n).sort();
    const at = (q: number): number => (a.length === 0 ? NaN : a[Math.min(a.length - 1, Math.floor(q * a.length))]);
    return { p50: at(0.5), p99: at(0.99), p999: at(0.999), max: a.length ? a[a.length - 1] : NaN };
  }
  merge(o: Samples): Samples {
    const m = new Samples();
    for (let i = 0; i < this.n; i++) m.add(this.buf[i]);
    for (let i = 0; i < o.n; i++) m.add(o.buf[i]);
    return m;
  }
}

export interface Client {
  sock: dgram.Socket;
  pending: Map<number, number>;
  known: boolean;
  nextId: number;
  ready: boolean;
  queue: Buffer[];
}

export interface GeneratorOptions {
  /** Share of the names that are unique (cache misses, forwarded). */
  uniqueShare: number;
  /** The other names come from this many (`n0.storm.test` …). */
  poolNames: number;
  /** Unanswered after this long: counted as lost by sweep(). */
  queryTimeoutMs: number;
}

/** An answer this slow counts in `Generator.slowBySecond`. */
export const SLOW_ANSWER_MS = 20;

/** Sends the storm's queries from many client sockets and records each answer's latency, known and new apart. */
export class Generator {
  readonly lat = { known: new Samples(), new: new Samples() };
  readonly sent = { known: 0, new: 0 };
  readonly answered = { known: 0, new: 0 };
  /** Answers whose rcode is not NOERROR (the local upstream fails only when it is gone): such a run is not comparable. */
  readonly failed = { known: 0, new: 0 };
  readonly lost = { known: 0, new: 0 };
  readonly live = new Set<Client>();
  newClients = 0;
  /** Answers that took SLOW_ANSWER_MS or more, per second since the generator started: is the tail spread or in bursts? */
  readonly slowBySecond: number[] = [];
  private readonly startedAt = performance.now();
  private uniqueSeq = 0;

  constructor(private readonly port: number, private readonly opts: GeneratorOptions) {}

  name(): string {
    if (Math.random() < this.opts.uniqueShare) return `u${this.uniqueSeq++}.${process.pid}.storm.test`;
    return `n${Math.floor(Math.random() * this.opts.poolNames)}.storm.test`;
  }

  open(address: string, known: boolean): Client {
    const sock = dgram.createSocket('udp4');
    const c: Client = { sock, pending: new Map(), known, nextId: Math.floor(Math.random() * 60000), ready: false, queue: [] };
    sock.on('message', (msg) => {
      if (msg.length < 2) return;
      const id = msg.readUInt16BE(0);
      const t0 = c.pending.get(id);
      if (t0 === undefined) return;
      c.pending.delete(id);
      const now = performance.now();
      const ms = now - t0;
      if (ms >= SLOW_ANSWER_MS) {
        const sec = Math.floor((now - this.startedAt) / 1000);
        this.slowBySecond[sec] = (this.slowBySecond[sec] ?? 0) + 1;
      }
      const failed = msg.length >= 4 && (msg[3] & 0x0f) !== 0;
      if (c.known) {
        this.answered.known++;
        if (failed) this.failed.known++;
        this.lat.known.add(ms);
      } else {
        this.answered.new++;
        if (failed) this.failed.new++;
        this.lat.new.add(ms);
      }
    });
    sock.on('error', (err) => console.error(`socket ${address}: ${err.message}`));
    sock.bind({ address, port: 0 }, () => {
      c.ready = true;
      for (const q of c.queue) this.transmit(c, q);
      c.queue = [];
    });
    this.live.add(c);
    return c;
  }

  send(c: Client, name = this.name()): void {
    const id = (c.nextId = (c.nextId + 1) & 0xffff);
    const q = encodeQuery(id, name);
    if (c.known) this.sent.known++;
    else this.sent.new++;
    if (c.ready) this.transmit(c, q);
    else c.queue.push(q);
  }

  private transmit(c: Client, q: Buffer): void {
    c.pending.set(q.readUInt16BE(0), performance.now());
    c.sock.send(q, this.port, '127.0.0.1');
  }

  /** Forgets the known clients' counts and latencies so far (the warm-up before the storm). */
  resetKnown(): void {
    this.sent.known = this.answered.known = this.failed.known = this.lost.known = 0;
    (this.lat as { known: Samples }).known = new Samples();
  }

  /** The run's answered counts, with the share of queries sent and the answers that were not NOERROR. */
  answeredSummary(): StormRunResult['answered'] {
    const total = this.answered.known + this.answered.new;
    const failed = this.failed.known + this.failed.new;
    return { known: this.answered.known, new: this.answered.new, total, pct: (100 * total) / (this.sent.known + this.sent.new), notNoError: failed };
  }

  get queryTimeoutMs(): number {
    return this.opts.queryTimeoutMs;
  }

  /** Counts queries unanswered for queryTimeoutMs as lost. */
  sweep(): void {
    const limit = performance.now() - this.opts.queryTimeoutMs;
    for (const c of this.live) {
      for (const [id, t0] of c.pending) {
        if (t0 > limit) continue;
        c.pending.delete(id);
        if (c.known) this.lost.known++;
        else this.lost.new++;
      }
    }
  }

  close(c: Client): void {
    if (c.known) this.lost.known += c.pending.size;
    else this.lost.new += c.pending.size;
    c.pending.clear();
    this.live.delete(c);
    c.sock.close();
  }
}

/** What both storm benchmarks report for a run (each adds its own parts). */
export interface StormRunResult {
  seconds: number;
  rate: number;
  sent: { known: number; new: number; total: number };
  answered: { known: number; new: number; total: number; pct: number; notNoError: number };
  latencyMs: { known: ReturnType<Samples['percentiles']>; new: ReturnType<Samples['percentiles']>; all: ReturnType<Samples['percentiles']> };
  distinctClients: number;
  peakRssMB: number;
  serverCpuSeconds: number;
  /** The server's CPU during the storm: main thread, other threads, the busiest other one (threadCpuDelta). */
  serverThreadCpuSeconds: ThreadCpu;
  generatorLoopDelayP99Ms: number;
  /** Which repetition (STORM_REPEAT) the run belongs to, from 1. */
  pair: number;
  /** Answers of SLOW_ANSWER_MS or more per second of the generator's life (warm-up included). */
  slowBySecond?: number[];
  /** The server's own event loop, memory and in-server times during the run (bench/stormProbe.ts). */
  server: Record<string, string>;
}

export interface StormOptions {
  seconds: number;
  /** New clients per second. */
  rate: number;
  /** New clients' addresses start at 127.`addressBase`.0.1. */
  addressBase: number;
  /** Queries per second from each known client. */
  knownQps: number;
  /** Queries from each new client, one second apart. */
  newQueries: number;
}

/**
 * The storm, on a 5 ms scheduler: `rate` new clients a second, each asking `newQueries` names one second apart,
 * beside the known clients' steady queries. Returns once every query was answered or counted lost; the known
 * clients' sockets are closed.
 *
 * A new client's later queries and the closing of its socket are scheduled when it opens, one FIFO per step
 * (k-th follow-up, close): clients open in time order, so each FIFO is in due order and its head is always the
 * next one due. (One FIFO for every step, as before, was not: a close due 2.1 s later at its head held back the
 * follow-ups queued behind it, which then left in bursts of ~1,100 queries every second or so — bursts that a
 * real network does not send and that made the tail of both runs mostly the time to drain them.)
 */
export async function runStorm(gen: Generator, known: Client[], o: StormOptions): Promise<void> {
  const timeoutMs = gen.queryTimeoutMs;
  interface Due {
    at: number;
    c: Client;
  }
  // steps[k - 1]: the k-th follow-up query (k = 1 … newQueries − 1); the last step closes the socket.
  const steps: Array<{ q: Due[]; head: number; close: boolean }> = [];
  for (let k = 1; k < o.newQueries; k++) steps.push({ q: [], head: 0, close: false });
  steps.push({ q: [], head: 0, close: true });
  const closeAfterMs = (o.newQueries - 1) * 1000 + timeoutMs + 100;
  const start0 = performance.now();
  const end = start0 + o.seconds * 1000;
  const knownNext = known.map((_, i) => start0 + (i * 1000) / (known.length * o.knownQps));
  let lastSweep = start0;
  for (;;) {
    const now = performance.now();
    if (now < end) {
      const target = Math.floor(((now - start0) / 1000) * o.rate);
      while (gen.newClients < target) {
        // Its own due time (not `now`): clients due in one tick keep their spacing in every later step.
        const openAt = start0 + (gen.newClients * 1000) / o.rate;
        const c = gen.open(newClientAddress(gen.newClients++, o.addressBase), false);
        gen.send(c);
        for (let k = 1; k < o.newQueries; k++) steps[k - 1].q.push({ at: openAt + k * 1000, c });
        steps[steps.length - 1].q.push({ at: openAt + closeAfterMs, c });
      }
      for (let i = 0; i < known.length; i++) {
        while (knownNext[i] <= now) {
          gen.send(known[i]);
          knownNext[i] += 1000 / o.knownQps;
        }
      }
    }
    let waiting = 0;
    for (const step of steps) {
      while (step.head < step.q.length && step.q[step.head].at <= now) {
        const { c } = step.q[step.head++];
        if (step.close) gen.close(c);
        else gen.send(c);
      }
      if (step.head > 100_000) {
        step.q.splice(0, step.head);
        step.head = 0;
      }
      waiting += step.q.length - step.head;
    }
    if (now - lastSweep >= 100) {
      gen.sweep();
      lastSweep = now;
    }
    if (now >= end && waiting === 0) break;
    await sleep(5);
  }
  gen.sweep();
  for (const c of [...gen.live]) if (!c.known) gen.close(c);
  await sleep(timeoutMs + 100);
  gen.sweep();
  for (const c of known) gen.close(c);
}
