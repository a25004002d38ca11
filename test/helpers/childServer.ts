// A codexdns server run as the CLI runs it, in a child process: what a test measures (RSS) or provokes
// (uncaught exceptions, crashes) is then the server's alone, not the test runner's.
import { spawn, type ChildProcess } from 'node:child_process';
import * as dgram from 'node:dgram';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { query } from '../../testing';

const CLI = path.resolve(__dirname, '..', '..', 'cli', 'codexdns.js');

export interface ChildServer {
  readonly child: ChildProcess;
  /** The DNS port (UDP and TCP). */
  readonly port: number;
  /** The metrics plugin's port, when the Corefile used `{{metricsPort}}`. */
  readonly metricsPort: number;
  readonly dir: string;
  /** Everything the server wrote on stderr so far. */
  log(): string;
  /** Resident set size in bytes (Linux /proc), or 0 once the process has gone. */
  rss(): number;
  /** The text of /metrics. */
  metrics(): Promise<string>;
  /** SIGTERM, then SIGKILL if it has not exited within 10 s; resolves with the exit code (null when killed). */
  stop(): Promise<number | null>;
}

/** A port free for both UDP and TCP on 127.0.0.1. */
export async function freePort(): Promise<number> {
  for (let i = 0; i < 50; i++) {
    const u = dgram.createSocket('udp4');
    const port = await new Promise<number>((r) => u.bind(0, '127.0.0.1', () => r(u.address().port)));
    const ok = await new Promise<boolean>((r) => {
      const t = net.createServer();
      t.once('error', () => r(false));
      t.listen(port, '127.0.0.1', () => t.close(() => r(true)));
    });
    await new Promise<void>((r) => u.close(() => r()));
    if (ok) return port;
  }
  throw new Error('no free port');
}

/**
 * Starts the CLI on a Corefile template where `{{port}}` is the DNS port and `{{metricsPort}}` a second free
 * port, and waits until it answers `ready.probe` over UDP (any RCODE).
 */
export async function startChildServer(template: string, opts: { nodeArgs?: string[] } = {}): Promise<ChildServer> {
  const port = await freePort();
  let metricsPort = await freePort();
  while (metricsPort === port) metricsPort = await freePort();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'codexdns-child-'));
  const file = path.join(dir, 'Corefile.yaml');
  fs.writeFileSync(file, template.replace(/\{\{port\}\}/g, String(port)).replace(/\{\{metricsPort\}\}/g, String(metricsPort)));
  const child = spawn(process.execPath, [...(opts.nodeArgs ?? []), CLI, '--conf', file], { stdio: ['ignore', 'ignore', 'pipe'], cwd: dir });
  let log = '';
  child.stderr!.on('data', (d: Buffer) => {
    // Keep the head and the tail: a long run must not grow the test's own memory.
    log = log.length > 1_000_000 ? log.slice(0, 200_000) + log.slice(-200_000) + d.toString() : log + d.toString();
  });
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  const s: ChildServer = {
    child,
    port,
    metricsPort,
    dir,
    log: () => log,
    rss: () => {
      try {
        const m = /VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${child.pid}/status`, 'utf8'));
        return m ? Number(m[1]) * 1024 : 0;
      } catch {
        return 0;
      }
    },
    metrics: async () => {
      const res = await fetch(`http://127.0.0.1:${metricsPort}/metrics`);
      return res.text();
    },
    stop: async () => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      const t = setTimeout(() => child.kill('SIGKILL'), 10_000);
      const code = await exited;
      clearTimeout(t);
      fs.rmSync(dir, { recursive: true, force: true });
      return code;
    },
  };
  const until = Date.now() + 20_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`server exited with ${child.exitCode}: ${log}`);
    try {
      await query('ready.probe', 'A', { port, timeoutMs: 300 });
      return s;
    } catch {
      if (Date.now() > until) {
        child.kill('SIGKILL');
        throw new Error(`server did not answer within 20 s: ${log}`);
      }
    }
  }
}

/** Sums the values of a metric's series in Prometheus text, optionally only those whose labels include `match`. */
export function metricValue(text: string, name: string, match = ''): number {
  let sum = 0;
  let seen = false;
  for (const line of text.split('\n')) {
    if (!line.startsWith(name)) continue;
    const rest = line.slice(name.length);
    if (rest[0] !== ' ' && rest[0] !== '{') continue;
    if (match && !rest.includes(match)) continue;
    seen = true;
    sum += Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return seen ? sum : NaN;
}
