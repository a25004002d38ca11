/**
 * The processes a QPS run starts (peers, the upstream, dnsperf): each under `timeout` and, when pinning, `taskset`;
 * their CPU ticks and peak RSS from /proc; stopped by id at the end, on error and on a signal.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import { statTicks } from '../common';
import { LIFETIME_S, PIN, TASKSET } from './settings';


export interface Managed {
  name: string;
  wrapper: ChildProcess; // `timeout ... [taskset -c N] cmd`
  pid: number; // the server itself (child of `timeout`; taskset execs)
  output: string; // last 8 KB of stdout + stderr
  exited: boolean;
  exitNote: string;
  exitPromise: Promise<void>;
}

export const live = new Set<Managed>();
let stopping = false; // set on SIGINT/SIGTERM/SIGHUP

/** True once a signal asked the run to stop: start nothing more. */
export function isStopping(): boolean {
  return stopping;
}
export const tmpDirs: string[] = [];
export const transient = new Set<ChildProcess>(); // dnsperf runs

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

export function childrenOf(pid: number): number[] {
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
export function cpuTicks(pid: number): number {
  let sum = 0;
  // A process that exited between listing and reading counts nothing.
  for (const p of processTree(pid)) sum += statTicks(`/proc/${p}/stat`, true) ?? 0;
  return sum;
}

/** Peak RSS (VmHWM) of a process tree, in KiB. */
export function peakRssKiB(pid: number): number | null {
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

export function pinned(cpu: number, cmd: string, args: string[]): [string, string[]] {
  return PIN ? [TASKSET!, ['-c', String(cpu), cmd, ...args]] : [cmd, args];
}

export async function startProcess(name: string, cpu: number, cmd: string, args: string[], cwd: string): Promise<Managed> {
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

export async function stopProcess(m: Managed): Promise<void> {
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

export async function cleanup(): Promise<void> {
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

/** Every process this run started is stopped on Ctrl-C, SIGTERM, SIGHUP and exit. */
export function stopAllOnSignals(): void {
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.on(sig, () => {
      if (stopping) return;
      stopping = true;
      console.error(`\n${sig}: stopping every benchmark process`);
      void cleanup().finally(() => process.exit(sig === 'SIGINT' ? 130 : 143));
    });
  }
  process.on('exit', cleanupSync);
}
