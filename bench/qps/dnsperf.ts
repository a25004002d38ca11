/**
 * One measured run: dnsperf against a peer (pinned to CPU 0), the peer's CPU time per query, and the CPU that
 * processes outside the benchmark used meanwhile (a run they disturbed is marked, and with BENCH_QUIET_WAIT waited out).
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import { findBinary } from '../common';
import { childrenOf, cpuTicks, isStopping, live, pinned, sleep, transient, type Managed } from './processes';
import { BUSY_PCT, CLIENTS, CLK_TCK, OUTSTANDING, QUERY_TIMEOUT_S, QUIET_WAIT_S, SECONDS } from './settings';


export const DNSPERF = findBinary('dnsperf');

export interface PerfResult {
  sent: number;
  completed: number;
  lost: number;
  lostPct: number;
  qps: number;
  runTimeS: number;
  avgLatencyMs: number | null;
  rcodes: string;
}

export interface RunResult extends PerfResult {
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

export function dnsperf(port: number, file: string, opts: { seconds?: number; passes?: number }): Promise<PerfResult> {
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
export async function waitQuiet(): Promise<number> {
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
    if (Date.now() > deadline || isStopping()) {
      console.log(`  machine still busy (${pct.toFixed(0)}% of a CPU used by other processes): measuring anyway`);
      return pct;
    }
    if (!announced) {
      console.log(`  waiting for other processes to quiet down (${pct.toFixed(0)}% of a CPU)…`);
      announced = true;
    }
  }
}

export async function measure(m: Managed, port: number, file: string): Promise<RunResult> {
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
