/**
 * arp: the client's MAC from the kernel's neighbour table — /proc/net/arp for IPv4 and, when the `ip` tool
 * exists, `ip -6 neigh show` for IPv6. Only clients on the server's own link are there (a client behind a
 * router shows the router's MAC, which is why /proc/net/arp is keyed by the client's address and a routed
 * client is simply absent).
 *
 * The table is re-read on a schedule (default every 60 s, timer unref'd) and, on a miss, at most once per 5 s
 * (a new client has usually just been resolved by the kernel when its first query arrives). A lookup yields a
 * MAC only. Entries that are incomplete (flags 0x0 / INCOMPLETE / FAILED) or all-zero are skipped.
 *
 * Outcomes: a MAC is `found`; no entry is `negative`; when the table could not be read at the last refresh
 * (for IPv4 /proc/net/arp, for IPv6 the `ip` command — other than being absent) a miss is a `failure`.
 */
import { execFile } from 'node:child_process';
import { promises as fsp } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { normalizeIp, normalizeMac } from '../../pkg/address.js';
import { failure, found, NEGATIVE, type DiscoveryMethod, type MethodOutcome } from './types.js';

export interface ArpOptions {
  procPath?: string;
  /** Scheduled refresh interval. Default 60 s. */
  refreshMs?: number;
  /** Read IPv6 neighbours with `ip -6 neigh show` (default true; silently off when `ip` is not installed). */
  ipNeigh?: boolean;
  /** The `ip` binary. Default `ip` (found on PATH). */
  ipCommand?: string;
  /** Minimum time between refreshes caused by misses. Default 5 s. */
  missRefreshMs?: number;
}

export interface ArpMethod extends DiscoveryMethod {
  readonly ready: Promise<void>;
  refresh(): Promise<void>;
}

/**
 * Parses /proc/net/arp:
 * `IP address  HW type  Flags  HW address  Mask  Device`. Flags 0x0 (incomplete) and the all-zero address
 * are skipped. Returns ip → mac.
 */
export function parseProcArp(text: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const line of text.split('\n')) {
    const f = line.trim().split(/\s+/);
    if (f.length < 4 || !/^0x[0-9a-f]+$/i.test(f[2]!)) continue; // the header, blank lines
    if (parseInt(f[2]!, 16) === 0) continue; // incomplete
    const ip = normalizeIp(f[0]!);
    const mac = normalizeMac(f[3]);
    if (ip !== undefined && mac !== undefined) out.set(ip, mac);
  }
  return out;
}

/**
 * Parses `ip neigh show` output: `ADDR dev IF lladdr MAC [router] STATE`. Entries without lladdr (FAILED,
 * INCOMPLETE) are skipped. Returns ip → mac.
 */
export function parseIpNeigh(text: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const line of text.split('\n')) {
    const f = line.trim().split(/\s+/);
    const at = f.indexOf('lladdr');
    if (at < 1 || at + 1 >= f.length) continue;
    const state = f[f.length - 1]!;
    if (state === 'FAILED' || state === 'INCOMPLETE') continue;
    const ip = normalizeIp(f[0]!);
    const mac = normalizeMac(f[at + 1]);
    if (ip !== undefined && mac !== undefined) out.set(ip, mac);
  }
  return out;
}

function runIpNeigh(cmd: string): Promise<{ ok: true; text: string } | { ok: false; code: string }> {
  return new Promise((resolve) => {
    execFile(cmd, ['-6', 'neigh', 'show'], { timeout: 2000, maxBuffer: 4 * 1024 * 1024, windowsHide: true }, (err, stdout) => {
      if (err) {
        const e = err as NodeJS.ErrnoException & { killed?: boolean };
        resolve({ ok: false, code: typeof e.code === 'string' ? e.code : e.killed ? 'ETIMEDOUT' : `exit ${String(e.code)}` });
      } else {
        resolve({ ok: true, text: stdout });
      }
    });
  });
}

export function createArp(options: ArpOptions = {}): ArpMethod {
  const procPath = options.procPath ?? '/proc/net/arp';
  const refreshMs = options.refreshMs ?? 60_000;
  const missRefreshMs = options.missRefreshMs ?? 5_000;
  const ipCommand = options.ipCommand ?? 'ip';
  let useIpNeigh = options.ipNeigh ?? true;

  let v4 = new Map<string, string>();
  let v6 = new Map<string, string>();
  let v4Error: string | undefined;
  let v6Error: string | undefined;
  let lastRefresh = -Infinity;
  let refreshing: Promise<void> | undefined;
  let closed = false;

  async function refreshOnce(): Promise<void> {
    lastRefresh = performance.now();
    const tasks: Promise<void>[] = [
      fsp.readFile(procPath, 'utf8').then(
        (text) => {
          v4 = parseProcArp(text);
          v4Error = undefined;
        },
        (err: NodeJS.ErrnoException) => {
          v4Error = `${procPath}: ${err.code ?? err.message}`;
        },
      ),
    ];
    if (useIpNeigh) {
      tasks.push(
        runIpNeigh(ipCommand).then((r) => {
          if (r.ok) {
            v6 = parseIpNeigh(r.text);
            v6Error = undefined;
          } else if (r.code === 'ENOENT') {
            useIpNeigh = false; // no `ip` tool: IPv6 neighbours are simply not available
            v6Error = undefined;
          } else {
            v6Error = `${ipCommand} -6 neigh show: ${r.code}`;
          }
        }),
      );
    }
    await Promise.all(tasks);
  }

  function refresh(): Promise<void> {
    if (closed) return Promise.resolve();
    if (!refreshing) {
      refreshing = refreshOnce().finally(() => {
        refreshing = undefined;
      });
    }
    return refreshing;
  }

  const ready = refresh();
  const timer = setInterval(() => void refresh(), refreshMs);
  timer.unref();

  async function lookup(ip: string, signal: AbortSignal): Promise<MethodOutcome> {
    try {
      if (refreshing && !signal.aborted) await refreshing;
      const key = normalizeIp(ip);
      if (key === undefined) return NEGATIVE;
      const isV6 = key.includes(':');
      const table = (): Map<string, string> => (isV6 ? v6 : v4);
      let mac = table().get(key);
      if (mac === undefined && !signal.aborted && performance.now() - lastRefresh >= missRefreshMs) {
        await refresh();
        mac = table().get(key);
      }
      if (mac !== undefined) return found({ mac, source: 'arp' });
      const err = isV6 ? v6Error : v4Error;
      return err !== undefined ? failure(`arp: ${err}`) : NEGATIVE;
    } catch (err) {
      return failure(`arp: ${err instanceof Error ? err.message : String(err)}`);
    }
  }

  return {
    name: 'arp',
    ready,
    lookup,
    refresh,
    close(): void {
      closed = true;
      clearInterval(timer);
    },
  };
}
