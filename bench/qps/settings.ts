/** The QPS benchmark's settings: its environment variables (bench/README.md lists them), paths and bounds. */
import { spawnSync } from 'node:child_process';
import os from 'node:os';
import path from 'node:path';
import { envInt, findBinary } from '../common';

/** The repository (this file runs from dist/bench/qps/). */
export const ROOT = path.resolve(__dirname, '..', '..', '..');
/** Where the compiled peer scripts (bareResponder.js, relay.js, upstream.js) are. */
export const BENCH_BUILD_DIR = path.resolve(__dirname, '..');
export const PEERS_DIR = path.join(ROOT, 'bench', 'peers');
export const CODEXDNS_CLI = path.resolve(process.env.BENCH_CODEXDNS_CLI ?? path.join(ROOT, 'dist', 'cli', 'codexdns.js'));
export const RESULTS_FILE = path.join(ROOT, 'bench', 'results', 'latest.json');

export const SECONDS = envInt('BENCH_SECONDS', 10, 1, 120);
export const CLIENTS = envInt('BENCH_CLIENTS', 10, 1, 100);
export const OUTSTANDING = envInt('BENCH_OUTSTANDING', 200, 1, 10000);
export const REPEAT = envInt('BENCH_REPEAT', 2, 1, 10);
export const QUIET_WAIT_S = envInt('BENCH_QUIET_WAIT', 0, 0, 3600);
export const BUSY_PCT = 10; // other processes using more than this % of a CPU during a run make it unreliable
export const QUERY_TIMEOUT_S = 1; // dnsperf -t: a query unanswered this long counts as lost
export const READY_MS = 20_000;
export const ALL_ROWS = ['bare', 'packet', 'relay', 'relay-fresh', 'dnsmasq', 'unbound', 'codexdns'] as const;
// `timeout` bound on every process we start: the longest the whole run can take, plus a margin.
export const LIFETIME_S = 600 + ALL_ROWS.length * 2 * REPEAT * (QUIET_WAIT_S > 0 ? 3 : 1) * (QUIET_WAIT_S + SECONDS + 15);
export type RowId = (typeof ALL_ROWS)[number];
export type SetName = 'hits' | 'misses';
const DEFAULT_ROWS: RowId[] = ['bare', 'packet', 'relay', 'dnsmasq', 'unbound', 'codexdns'];
/** `BENCH_SETS=misses` (or `hits`): only those runs, e.g. for a --cpu-prof of the miss path alone. */
export const SETS = (process.env.BENCH_SETS ?? 'hits,misses').split(',').map((s) => s.trim()).filter((s): s is SetName => s === 'hits' || s === 'misses');

export function selectedRows(): RowId[] {
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

export function toolVersion(bin: string | null, args: string[], re: RegExp): string | null {
  if (bin === null) return null;
  return re.exec(commandOutput(bin, args))?.[1] ?? 'unknown';
}

export const CLK_TCK = (() => {
  const v = Number(commandOutput('getconf', ['CLK_TCK']).trim());
  return Number.isFinite(v) && v > 0 ? v : 100;
})();

export const TASKSET = findBinary('taskset');
export const PIN = process.env.BENCH_PIN !== '0' && os.cpus().length >= 2 && TASKSET !== null;
