// Footprint benchmark (issue 7 point 3): what codexdns costs on a small always-on box.
//
//   npx tsc -p tsconfig.json && node dist/bench/footprint.js
//
// The server is the NAS build: packaging/Corefile.yaml (acl, metrics, breaker, ratelimit, cache 10,000, clienttrack
// with flush 30s, discovery, forward) with only the listen addresses (127.0.0.1, free high ports), the upstream and
// the rdns resolver (a local fixed responder, bench/upstream.ts, in its own process) and the database file (a
// temporary folder) changed, and node started as packaging/codexdns.service starts it (its ExecStart node options and NODE_OPTIONS). It measures:
//   1. start-up: spawn → first answer (wall and the server's CPU time), on a new database (created and
//      migrated) and on an existing one; `codexdns validate` (the unit's ExecStartPre) and bare `node -e 0`;
//   2. RSS idle (10 queries, then FOOTPRINT_SETTLE seconds of nothing); every RSS figure is also split into RssAnon
//      (the process's own memory, what it takes from the box's other services) and RssFile (mapped files: mostly
//      the node binary's pages, shared and reclaimable), from /proc/PID/status;
//   3. RSS under load: 5,000 clients, each its own 127.21.x.y source address (every 127/8 address is local on
//      Linux), 3 queries each for distinct names (15,000 names: the 10,000-entry cache fills and evicts), at
//      FOOTPRINT_QPS (the storm of new clients); peak RSS and peak RssAnon sampled every 100 ms, VmHWM, RSS after;
//      rows in the database;
//   4. database writes at a household load: 30 clients, 20 queries/s in all, for FOOTPRINT_HOUSEHOLD seconds,
//      with the shipped flush (30s) and with clienttrack's default (5s), RSS and RssAnon sampled every second
//      through it; then FOOTPRINT_QUIET seconds without
//      queries. Commits are counted from a separate SQLite connection polling `PRAGMA data_version` every
//      25 ms (it changes when another connection commits); WAL frames appended are read from the -wal file's
//      size (frames = (size − 32) / (page size + 24), reset detected through the WAL header's salt); the bytes
//      the process caused to be written to storage from /proc/PID/io (write_bytes). The quiet window starts one
//      flush after the load (the last queries' rows belong to the load).
// The heap is read from a Node diagnostic report (`--report-on-signal`, SIGUSR2): no change to the server.
//
// Bounds: only 127.0.0.0/8 high ports; every phase stops by itself; the server and the load run under
// `timeout`; FOOTPRINT_HOUSEHOLD ≤ 600 s, FOOTPRINT_QUIET ≤ 600 s, FOOTPRINT_QPS ≤ 5,000. Results:
// bench/results/footprint.json and a summary on stdout.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import dgram from 'node:dgram';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { parse as parseYaml, stringify as stringifyYaml } from 'yaml';
import { CLOCK_TICKS_PER_SECOND, encodeQuery, envNum, freeUdpPort as freePort, statTicks, unitEnvironment, unitExecNodeFlags } from './common';

const ROOT = path.resolve(__dirname, '..', '..');
const CLI = path.join(ROOT, 'dist', 'cli', 'codexdns.js');
const NAS_CONF = path.join(ROOT, 'packaging', 'Corefile.yaml');
const UPSTREAM = path.join(ROOT, 'dist', 'bench', 'upstream.js');
const RESULTS = path.join(ROOT, 'bench', 'results', 'footprint.json');


const STARTS = envNum('FOOTPRINT_STARTS', 5, 2, 20);
const SETTLE_S = envNum('FOOTPRINT_SETTLE', 10, 1, 120);
const CLIENTS = envNum('FOOTPRINT_CLIENTS', 5000, 1, 20_000);
const PER_CLIENT = 3;
const LOAD_QPS = envNum('FOOTPRINT_QPS', 1000, 100, 5000);
const HOUSEHOLD_S = envNum('FOOTPRINT_HOUSEHOLD', 120, 10, 600);
const HOUSEHOLD_QPS = 20;
const HOUSEHOLD_CLIENTS = 30;
const QUIET_S = envNum('FOOTPRINT_QUIET', 60, 0, 600);
const ONLY = new Set((process.env.FOOTPRINT_ONLY ?? 'startup,memory,household').split(',').map((s) => s.trim()));
/** Extra node arguments for the server (a profile: FOOTPRINT_NODE_ARGS="--cpu-prof --cpu-prof-dir=/tmp/prof"). */
const NODE_ARGS = (process.env.FOOTPRINT_NODE_ARGS ?? '').split(/\s+/).filter(Boolean);
const LIFETIME_S = 60 + STARTS * 20 + HOUSEHOLD_S * 2 + QUIET_S + 300;

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const MB = (bytes: number): number => Math.round((bytes / 1048576) * 10) / 10;

/** NODE_OPTIONS as the unit sets it, so the figures are the service's. */
function unitNodeOptions(): string {
  return unitEnvironment().NODE_OPTIONS ?? '';
}

/** Other Environment= variables of the unit (MALLOC_ARENA_MAX). */
function unitEnv(): Record<string, string> {
  const { NODE_OPTIONS: _, ...rest } = unitEnvironment();
  return rest;
}

/** The node options of the unit's ExecStart (--single-threaded-gc), which NODE_OPTIONS cannot carry. */
const UNIT_NODE_ARGS = unitExecNodeFlags();

// ---------------------------------------------------------------------------------------------- processes

const children = new Set<ChildProcess>();
/** Node processes started under `timeout`: killing `timeout` with SIGKILL would leave them running. */
const grandchildren = new Set<number>();
function killAll(): void {
  for (const pid of grandchildren) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // gone
    }
  }
  for (const c of children) c.kill('SIGKILL');
}
process.on('exit', killAll);
process.on('SIGINT', () => {
  killAll();
  process.exit(130);
});

interface Server {
  readonly child: ChildProcess;
  /** The node process (a child of `timeout`). */
  readonly pid: number;
  readonly spawnedAt: number;
  log: string;
  readonly exited: Promise<number | null>;
}

function childPidOf(pid: number): number {
  for (let i = 0; i < 200; i++) {
    try {
      const kids = fs.readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean);
      if (kids.length > 0) return Number(kids[0]);
    } catch {
      return pid;
    }
    // `timeout` forks right away; spin briefly (this runs before the server has loaded anything).
    const until = performance.now() + 1;
    while (performance.now() < until);
  }
  return pid;
}

function startServer(conf: string, reportDir: string): Server {
  const spawnedAt = performance.now();
  const child = spawn('timeout', ['-s', 'KILL', String(LIFETIME_S), process.execPath, '--report-on-signal', '--report-signal=SIGUSR2', `--report-directory=${reportDir}`, '--report-compact', ...UNIT_NODE_ARGS, ...NODE_ARGS, CLI, '--conf', conf], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, ...unitEnv(), NODE_OPTIONS: unitNodeOptions() },
  });
  children.add(child);
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => {
    children.delete(child);
    r(code);
  }));
  const s: Server = { child, pid: childPidOf(child.pid!), spawnedAt, log: '', exited };
  if (s.pid !== child.pid) grandchildren.add(s.pid);
  void exited.then(() => grandchildren.delete(s.pid));
  child.stdout!.on('data', (d: Buffer) => (s.log += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (s.log += d.toString()));
  return s;
}

function killServer(s: Server): void {
  try {
    process.kill(s.pid, 'SIGKILL');
  } catch {
    // gone
  }
  s.child.kill('SIGKILL');
}

async function stopServer(s: Server): Promise<number | null> {
  process.kill(s.pid, 'SIGTERM');
  const t = setTimeout(() => killServer(s), 30_000);
  const code = await s.exited;
  clearTimeout(t);
  return code;
}

/** VmRSS (= RssAnon + RssFile + RssShmem), VmHWM (peak RSS). RssFile is mostly the pages of the node binary. */
function readStatus(pid: number): { rss: number; hwm: number; anon: number; file: number } {
  try {
    const text = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
    const kb = (k: string): number => Number(new RegExp(`^${k}:\\s+(\\d+) kB`, 'm').exec(text)?.[1] ?? 0);
    return { rss: kb('VmRSS') * 1024, hwm: kb('VmHWM') * 1024, anon: kb('RssAnon') * 1024, file: kb('RssFile') * 1024 };
  } catch {
    return { rss: 0, hwm: 0, anon: 0, file: 0 };
  }
}

function cpuMs(pid: number): number {
  const ticks = statTicks(`/proc/${pid}/stat`);
  return ticks === null ? NaN : (ticks * 1000) / CLOCK_TICKS_PER_SECOND;
}

/** Datagrams each UDP socket bound to `port` on 127.0.0.1 dropped (receive buffer full), from `ss -uanm`. */
function socketDrops(port: number): number | null {
  const r = spawnSync('ss', ['-uanm'], { encoding: 'utf8' });
  if (r.status !== 0) return null;
  let total = 0;
  const lines = r.stdout.split('\n');
  for (let i = 0; i < lines.length; i++) {
    if (!new RegExp(`\\s127\\.0\\.0\\.1:${port}\\s`).test(lines[i])) continue;
    const m = /skmem:\([^)]*\bd(\d+)\)/.exec(lines[i] + (lines[i + 1] ?? ''));
    if (m) total += Number(m[1]);
  }
  return total;
}

/** UDP datagrams dropped by the kernel because a socket's receive buffer was full (all sockets). */
function rcvbufErrors(): number {
  const lines = fs.readFileSync('/proc/net/snmp', 'utf8').split('\n').filter((l) => l.startsWith('Udp:'));
  const keys = lines[0].split(/\s+/);
  const vals = lines[1].split(/\s+/);
  return Number(vals[keys.indexOf('RcvbufErrors')]);
}

function readIo(pid: number): { syscw: number; writeBytes: number; wchar: number } {
  try {
    const t = fs.readFileSync(`/proc/${pid}/io`, 'utf8');
    const v = (k: string): number => Number(new RegExp(`^${k}:\\s+(\\d+)`, 'm').exec(t)?.[1] ?? 0);
    return { syscw: v('syscw'), writeBytes: v('write_bytes'), wchar: v('wchar') };
  } catch {
    return { syscw: NaN, writeBytes: NaN, wchar: NaN };
  }
}

/** The V8 heap as a diagnostic report sees it (SIGUSR2 → report file). */
async function heapOf(s: Server, reportDir: string): Promise<{ heapUsed: number; heapTotal: number; rss: number; external?: number } | null> {
  const before = new Set(fs.readdirSync(reportDir));
  process.kill(s.pid, 'SIGUSR2');
  for (let i = 0; i < 100; i++) {
    await sleep(50);
    const fresh = fs.readdirSync(reportDir).filter((f) => !before.has(f) && f.endsWith('.json'));
    if (fresh.length > 0) {
      await sleep(50);
      try {
        const r = JSON.parse(fs.readFileSync(path.join(reportDir, fresh[0]), 'utf8')) as {
          javascriptHeap: { totalMemory: number; usedMemory: number };
          resourceUsage: { rss?: number };
        };
        fs.rmSync(path.join(reportDir, fresh[0]));
        return { heapUsed: r.javascriptHeap.usedMemory, heapTotal: r.javascriptHeap.totalMemory, rss: Number(r.resourceUsage.rss ?? 0) };
      } catch {
        // partially written: retry
      }
    }
  }
  return null;
}


// ---------------------------------------------------------------------------------------------- config

interface Setup {
  dir: string;
  conf: string;
  db: string;
  port: number;
  reports: string;
}

async function makeConfig(upstreamPort: number, tag: string, tweak?: (plugins: Record<string, Record<string, unknown>>[]) => void): Promise<Setup> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `codexdns-footprint-${tag}-`));
  const port = await freePort();
  const doc = parseYaml(fs.readFileSync(NAS_CONF, 'utf8')) as {
    servers: { listen: string[]; plugins: Record<string, Record<string, unknown>>[] }[];
    storage: { connection: { filename: string } };
    reload?: { watch?: boolean };
  };
  const block = doc.servers[0];
  block.listen = [`udp://127.0.0.1:${port}`, `tcp://127.0.0.1:${port}`];
  for (const p of block.plugins) {
    if (p.forward) p.forward.to = [`127.0.0.1:${upstreamPort}`];
    if (p.metrics) p.metrics.listen = `127.0.0.1:${await freePort()}`;
    // Reverse DNS to the local responder instead of the default gateway: no packet leaves loopback.
    if (p.discovery) p.discovery.rdns = { resolvers: [`127.0.0.1:${upstreamPort}`] };
  }
  tweak?.(block.plugins);
  const db = path.join(dir, 'state', 'codexdns.sqlite');
  doc.storage.connection.filename = db;
  doc.reload = { watch: false };
  const conf = path.join(dir, 'Corefile.yaml');
  fs.writeFileSync(conf, stringifyYaml(doc));
  const reports = path.join(dir, 'reports');
  fs.mkdirSync(reports);
  return { dir, conf, db, port, reports };
}

// ---------------------------------------------------------------------------------------------- load

/** Sends a query every 5 ms until one is answered; resolves with the time of the answer (performance.now()). */
function firstAnswer(port: number, deadlineMs: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const sock = dgram.createSocket('udp4');
    let id = 1;
    let timer: NodeJS.Timeout | undefined;
    const stop = setTimeout(() => {
      clearInterval(timer);
      sock.close();
      reject(new Error('no answer'));
    }, deadlineMs);
    sock.on('message', (msg) => {
      if (msg.length < 12) return;
      const at = performance.now();
      clearInterval(timer);
      clearTimeout(stop);
      sock.close();
      resolve(at);
    });
    sock.on('error', () => undefined);
    sock.bind(0, '127.0.0.1', () => {
      const send = (): void => sock.send(encodeQuery(id++ & 0xffff, 'first.footprint.test'), port, '127.0.0.1');
      send();
      timer = setInterval(send, 5);
    });
  });
}

interface LoadResult {
  sent: number;
  answered: number;
  seconds: number;
}

/**
 * `clients` clients, each from its own 127.21.x.y address, each asking `perClient` questions for its own names,
 * paced to `qps`; like a stub resolver, a question not answered within 700 ms is asked again (3 tries in all).
 * At most 500 client sockets are open at once; a client's socket closes after its answers or its last try.
 * Stops by itself.
 */
async function clientLoad(port: number, clients: number, perClient: number, qps: number, nameOf: (client: number, q: number) => string): Promise<LoadResult & { retries: number; clientsAnswered: number }> {
  let sent = 0;
  let answered = 0;
  let retries = 0;
  let clientsAnswered = 0;
  let open = 0;
  const t0 = performance.now();
  const runClient = (i: number): Promise<void> =>
    new Promise((resolve) => {
      const sock = dgram.createSocket('udp4');
      open++;
      const waiting = new Set<number>();
      let tries = 0;
      let timer: NodeJS.Timeout | undefined;
      const done = (): void => {
        clearTimeout(timer);
        open--;
        if (waiting.size < perClient) clientsAnswered++;
        sock.close();
        resolve();
      };
      const sendWaiting = (): void => {
        tries++;
        for (const q of waiting) {
          sock.send(encodeQuery((i * perClient + q) & 0xffff, nameOf(i, q)), port, '127.0.0.1');
          sent++;
          if (tries > 1) retries++;
        }
        timer = setTimeout(() => (tries < 3 ? sendWaiting() : done()), 700);
      };
      sock.on('message', (msg) => {
        if (msg.length < 12) return;
        const q = msg.readUInt16BE(0) - ((i * perClient) & 0xffff);
        if (!waiting.delete(q)) return;
        answered++;
        if (waiting.size === 0) done();
      });
      sock.on('error', () => undefined);
      for (let q = 0; q < perClient; q++) waiting.add(q);
      sock.bind(0, `127.21.${Math.floor(i / 250)}.${(i % 250) + 1}`, sendWaiting);
    });
  const pending: Promise<void>[] = [];
  let next = 0;
  while (next < clients) {
    const due = Math.min(clients, Math.floor(((performance.now() - t0) / 1000) * (qps / perClient)) + 1);
    while (next < due && open < 500) pending.push(runClient(next++));
    await sleep(5);
  }
  await Promise.all(pending);
  return { sent, answered, retries, clientsAnswered, seconds: (performance.now() - t0) / 1000 };
}

/** `clients` fixed clients (127.30.0.x) sending `qps` queries per second in all, for `seconds`. */
async function householdLoad(port: number, clients: number, qps: number, seconds: number): Promise<LoadResult> {
  const socks: dgram.Socket[] = [];
  let answered = 0;
  for (let i = 0; i < clients; i++) {
    const s = dgram.createSocket('udp4');
    s.on('message', () => answered++);
    s.on('error', () => undefined);
    await new Promise<void>((r) => s.bind(0, `127.30.0.${i + 1}`, () => r()));
    socks.push(s);
  }
  // A household: a few hundred popular names (mostly cache hits) and some one-off ones.
  const names = Array.from({ length: 300 }, (_, i) => `site${i}.household.test`);
  let sent = 0;
  let rnd = 12345;
  const rand = (): number => ((rnd = (rnd * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff);
  const t0 = performance.now();
  const end = t0 + seconds * 1000;
  while (performance.now() < end) {
    const due = Math.floor(((performance.now() - t0) / 1000) * qps);
    while (sent < due) {
      const name = rand() < 0.1 ? `once${sent}.household.test` : names[Math.floor(rand() * rand() * names.length)];
      socks[sent % clients].send(encodeQuery(sent & 0xffff, name), port, '127.0.0.1');
      sent++;
    }
    await sleep(10);
  }
  await sleep(500);
  for (const s of socks) s.close();
  return { sent, answered, seconds };
}

// ---------------------------------------------------------------------------------------------- database watch

interface WriteCounter {
  pageSize: number;
  commits: number;
  walFrames: number;
  stop(): Promise<void>;
}

interface SqliteDb {
  get(sql: string, cb: (err: Error | null, row: Record<string, unknown>) => void): void;
  close(cb: (err: Error | null) => void): void;
}

/**
 * Counts the server's commits from a separate connection: `PRAGMA data_version` changes when another
 * connection has committed since the previous call. Polled every 25 ms; the server commits at most a batch per
 * `flush` (seconds apart) plus the occasional discovery or prune transaction, so two commits inside one poll
 * interval are not expected at this load (if they happen they count as one: the figure is a lower bound).
 * WAL frames appended: from the -wal file's size, page size + 24 bytes per frame after a 32-byte header; when the
 * WAL restarts after a checkpoint (the header's salt changes) the frames seen so far are banked.
 */
async function watchWrites(db: string): Promise<WriteCounter> {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const sqlite3 = require('sqlite3') as { Database: new (file: string, mode: number, cb: (err: Error | null) => void) => SqliteDb; OPEN_READWRITE: number };
  const conn = await new Promise<SqliteDb>((resolve, reject) => {
    const d = new sqlite3.Database(db, sqlite3.OPEN_READWRITE, (err) => (err ? reject(err) : resolve(d)));
  });
  const get = (sql: string): Promise<Record<string, unknown>> => new Promise((res, rej) => conn.get(sql, (e, row) => (e ? rej(e) : res(row))));
  const pageSize = Number((await get('PRAGMA page_size')).page_size);
  const counter: WriteCounter = { pageSize, commits: 0, walFrames: 0, stop: async () => undefined };
  let version = Number((await get('PRAGMA data_version')).data_version);
  const wal = `${db}-wal`;
  let salt = '';
  let banked = 0;
  let lastFrames = 0;
  const readWal = (): void => {
    try {
      const fd = fs.openSync(wal, 'r');
      const head = Buffer.alloc(32);
      const n = fs.readSync(fd, head, 0, 32, 0);
      const size = fs.fstatSync(fd).size;
      fs.closeSync(fd);
      if (n < 32) return;
      const s = head.subarray(16, 24).toString('hex');
      const frames = Math.max(0, Math.floor((size - 32) / (pageSize + 24)));
      if (salt !== '' && s !== salt) {
        banked += lastFrames;
        lastFrames = 0;
      }
      salt = s;
      lastFrames = Math.max(lastFrames, frames);
      counter.walFrames = banked + lastFrames - startFrames;
    } catch {
      // no WAL yet
    }
  };
  readWal();
  const startFrames = lastFrames;
  counter.walFrames = 0;
  let stopped = false;
  const loop = (async () => {
    while (!stopped) {
      await sleep(25);
      const v = Number((await get('PRAGMA data_version')).data_version);
      if (v !== version) {
        counter.commits++;
        version = v;
        readWal();
      }
    }
  })();
  counter.stop = async () => {
    stopped = true;
    await loop;
    readWal();
    await new Promise<void>((r) => conn.close(() => r()));
  };
  return counter;
}

async function rowCount(db: string): Promise<number> {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const sqlite3 = require('sqlite3') as { Database: new (file: string, mode: number, cb: (err: Error | null) => void) => SqliteDb; OPEN_READONLY: number };
  const conn = await new Promise<SqliteDb>((resolve, reject) => {
    const d = new sqlite3.Database(db, sqlite3.OPEN_READONLY, (err) => (err ? reject(err) : resolve(d)));
  });
  const row = await new Promise<Record<string, unknown>>((res, rej) => conn.get('select count(*) as n from clients', (e, r) => (e ? rej(e) : res(r))));
  await new Promise<void>((r) => conn.close(() => r()));
  return Number(row.n);
}

// ---------------------------------------------------------------------------------------------- phases

function parseDuration(text: string): number {
  const m = /^(\d+)(ms|s|m)$/.exec(text);
  if (!m) throw new Error(`bad duration ${text}`);
  return Number(m[1]) * (m[2] === 'ms' ? 1 : m[2] === 's' ? 1000 : 60_000);
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};
const r1 = (x: number): number => Math.round(x * 10) / 10;

async function startupPhase(upstreamPort: number): Promise<Record<string, unknown>> {
  // Wall time of a child is inflated by other load on the machine; its CPU time much less: a preload prints
  // the child's own CPU time (all threads, bootstrap included) when it exits.
  const preload = path.join(os.tmpdir(), `codexdns-footprint-cpu-${process.pid}.js`);
  fs.writeFileSync(preload, "process.on('exit', () => { const u = process.cpuUsage(); require('fs').writeSync(2, '\\ncpu-ms ' + (u.user + u.system) / 1000 + '\\n'); });\n");
  const childCpu = (stderr: string): number => Number(/cpu-ms ([\d.]+)/.exec(stderr)?.[1] ?? NaN);
  const nodeBare: number[] = [];
  const nodeBareCpu: number[] = [];
  const validate: number[] = [];
  const validateCpu: number[] = [];
  try {
    for (let i = 0; i < STARTS; i++) {
      let t = performance.now();
      const b = spawnSync(process.execPath, ['-r', preload, '-e', '0'], { encoding: 'utf8' });
      nodeBare.push(performance.now() - t);
      nodeBareCpu.push(childCpu(b.stderr));
      t = performance.now();
      const v = spawnSync(process.execPath, ['-r', preload, CLI, 'validate', NAS_CONF], { encoding: 'utf8', env: { ...process.env, ...unitEnv(), NODE_OPTIONS: unitNodeOptions() } });
      if (v.status !== 0) throw new Error(`validate failed: ${v.stderr}`);
      validate.push(performance.now() - t);
      validateCpu.push(childCpu(v.stderr));
    }
  } finally {
    fs.rmSync(preload, { force: true });
  }
  const setup = await makeConfig(upstreamPort, 'startup');
  const runs: { wallMs: number; cpuMs: number; rss: number; newDatabase: boolean }[] = [];
  try {
    for (let i = 0; i < STARTS; i++) {
      const s = startServer(setup.conf, setup.reports);
      const at = await firstAnswer(setup.port, 15_000).catch((err: Error) => {
        throw new Error(`${err.message}\n${s.log}`);
      });
      runs.push({ wallMs: at - s.spawnedAt, cpuMs: cpuMs(s.pid), rss: readStatus(s.pid).rss, newDatabase: i === 0 });
      // Let clienttrack load its index and write, as a normal start does, before stopping.
      await sleep(1000);
      const code = await stopServer(s);
      if (code !== 0) throw new Error(`server exited ${code}\n${s.log}`);
    }
  } finally {
    fs.rmSync(setup.dir, { recursive: true, force: true });
  }
  const again = runs.slice(1);
  return {
    nodeBare: { wallMsMedian: r1(median(nodeBare)), cpuMsMedian: r1(median(nodeBareCpu)) },
    validate: { wallMsMedian: r1(median(validate)), wallMsMax: r1(Math.max(...validate)), cpuMsMedian: r1(median(validateCpu)) },
    firstAnswerNewDatabase: { wallMs: r1(runs[0].wallMs), cpuMs: runs[0].cpuMs },
    firstAnswer: { wallMsMedian: r1(median(again.map((r) => r.wallMs))), wallMsMax: r1(Math.max(...again.map((r) => r.wallMs))), cpuMsMedian: median(again.map((r) => r.cpuMs)) },
    rssAtFirstAnswerMB: MB(median(runs.map((r) => r.rss))),
  };
}

/** RSS of a Node process that does nothing, with the same options: the floor codexdns is compared with. */
async function bareNodeRss(): Promise<{ rss: number; anon: number; file: number }> {
  const child = spawn('timeout', ['-s', 'KILL', '30', process.execPath, ...UNIT_NODE_ARGS, '-e', 'setInterval(() => {}, 1000)'], { stdio: 'ignore', env: { ...process.env, ...unitEnv(), NODE_OPTIONS: unitNodeOptions() } });
  children.add(child);
  const pid = childPidOf(child.pid!);
  await sleep(3000);
  const st = readStatus(pid);
  if (pid !== child.pid) process.kill(pid, 'SIGKILL');
  child.kill('SIGKILL');
  children.delete(child);
  return st;
}

async function memoryPhase(upstreamPort: number): Promise<Record<string, unknown>> {
  const bare = await bareNodeRss();
  const setup = await makeConfig(upstreamPort, 'memory');
  const s = startServer(setup.conf, setup.reports);
  try {
    await firstAnswer(setup.port, 15_000).catch((err: Error) => {
      throw new Error(`${err.message}\n${s.log}`);
    });
    for (let i = 0; i < 10; i++) await firstAnswer(setup.port, 2000);
    await sleep(SETTLE_S * 1000);
    const idle = readStatus(s.pid);
    const idleHeap = await heapOf(s, setup.reports);

    // Load: CLIENTS clients × PER_CLIENT distinct names.
    let peak = 0;
    let peakAnon = 0;
    let peakFile = 0;
    const sampler = setInterval(() => {
      const st = readStatus(s.pid);
      peak = Math.max(peak, st.rss);
      peakAnon = Math.max(peakAnon, st.anon);
      peakFile = Math.max(peakFile, st.file);
    }, 100);
    const cpu0 = cpuMs(s.pid);
    const drops0 = rcvbufErrors();
    const load = await clientLoad(setup.port, CLIENTS, PER_CLIENT, LOAD_QPS, (c, q) => `n${c}-${q}.footprint.test`);
    const loadCpu = cpuMs(s.pid) - cpu0;
    const kernelDrops = rcvbufErrors() - drops0;
    const serverSocketDrops = socketDrops(setup.port);
    const upstreamSocketDrops = socketDrops(upstreamPort);
    const during = readStatus(s.pid);
    const loadHeap = await heapOf(s, setup.reports);
    // The rows of the new clients are written with the next batch (flush 30s).
    await sleep(35_000);
    clearInterval(sampler);
    const after = readStatus(s.pid);
    const afterHeap = await heapOf(s, setup.reports);
    const rows = await rowCount(setup.db);
    const code = await stopServer(s);
    if (code !== 0) throw new Error(`server exited ${code}\n${s.log}`);
    return {
      bareNodeIdle: { rssMB: MB(bare.rss), anonMB: MB(bare.anon), fileMB: MB(bare.file) },
      idle: { rssMB: MB(idle.rss), anonMB: MB(idle.anon), fileMB: MB(idle.file), heapUsedMB: idleHeap ? MB(idleHeap.heapUsed) : null, heapTotalMB: idleHeap ? MB(idleHeap.heapTotal) : null },
      load: {
        clients: CLIENTS,
        questions: CLIENTS * PER_CLIENT,
        queriesSent: load.sent,
        retries: load.retries,
        answered: load.answered,
        clientsAnswered: load.clientsAnswered,
        udpRcvbufErrors: kernelDrops,
        droppedByServerSocket: serverSocketDrops,
        droppedByUpstreamSocket: upstreamSocketDrops,
        seconds: r1(load.seconds),
        qps: Math.round(load.sent / load.seconds),
        serverCpuMs: loadCpu,
        distinctNames: CLIENTS * PER_CLIENT,
        rssEndOfLoadMB: MB(during.rss),
        anonEndOfLoadMB: MB(during.anon),
        fileEndOfLoadMB: MB(during.file),
        peakRssMB: MB(Math.max(peak, during.rss)),
        peakAnonMB: MB(Math.max(peakAnon, during.anon)),
        peakFileMB: MB(Math.max(peakFile, during.file)),
        vmHwmMB: MB(after.hwm),
        heapUsedMB: loadHeap ? MB(loadHeap.heapUsed) : null,
        heapTotalMB: loadHeap ? MB(loadHeap.heapTotal) : null,
      },
      afterLoad: { rssMB: MB(after.rss), anonMB: MB(after.anon), fileMB: MB(after.file), heapUsedMB: afterHeap ? MB(afterHeap.heapUsed) : null, rowsInDatabase: rows },
    };
  } finally {
    if (s.child.exitCode === null) killServer(s);
    fs.rmSync(setup.dir, { recursive: true, force: true });
  }
}

async function householdPhase(upstreamPort: number, flush: string): Promise<Record<string, unknown>> {
  const setup = await makeConfig(upstreamPort, `household-${flush}`, (plugins) => {
    for (const p of plugins) if (p.clienttrack) p.clienttrack.flush = flush;
  });
  const s = startServer(setup.conf, setup.reports);
  try {
    await firstAnswer(setup.port, 15_000).catch((err: Error) => {
      throw new Error(`${err.message}\n${s.log}`);
    });
    // Let start-up writes (migrations, the first batch) settle, then count.
    await sleep(2000);
    const counter = await watchWrites(setup.db);
    const io0 = readIo(s.pid);
    // RSS and its parts once a second through the load: what a household's steady use costs, not a single sample.
    const samples: { rss: number; anon: number; file: number }[] = [];
    const sampler = setInterval(() => samples.push(readStatus(s.pid)), 1000);
    const load = await householdLoad(setup.port, HOUSEHOLD_CLIENTS, HOUSEHOLD_QPS, HOUSEHOLD_S);
    clearInterval(sampler);
    // The rows of the last queries are written with the next batch, at most one flush later: that batch
    // belongs to the load. Then the quiet window starts.
    await sleep(parseDuration(flush) + 2000);
    const loadCommits = counter.commits;
    const loadFrames = counter.walFrames;
    const io1 = readIo(s.pid);
    await sleep(QUIET_S * 1000);
    await counter.stop();
    const io2 = readIo(s.pid);
    const rss = readStatus(s.pid);
    const code = await stopServer(s);
    if (code !== 0) throw new Error(`server exited ${code}\n${s.log}`);
    const minutes = HOUSEHOLD_S / 60;
    return {
      flush,
      seconds: HOUSEHOLD_S,
      queries: load.sent,
      answered: load.answered,
      clients: HOUSEHOLD_CLIENTS,
      commits: loadCommits,
      commitsPerMinute: r1(loadCommits / minutes),
      walFrames: loadFrames,
      walKiBPerMinute: r1((loadFrames * counter.pageSize) / 1024 / minutes),
      // Bytes the process caused to be written to storage (/proc/PID/io write_bytes): the database, its WAL, and
      // nothing else here (the log goes to a pipe).
      processWriteKiBPerMinute: r1((io1.writeBytes - io0.writeBytes) / 1024 / minutes),
      quiet: { seconds: QUIET_S, commits: counter.commits - loadCommits, walFrames: counter.walFrames - loadFrames, writeKiB: r1((io2.writeBytes - io1.writeBytes) / 1024) },
      rssMB: MB(rss.rss),
      anonMB: MB(rss.anon),
      fileMB: MB(rss.file),
      duringLoad: samples.length === 0 ? null : {
        samples: samples.length,
        rssMedianMB: MB(median(samples.map((x) => x.rss))),
        rssMaxMB: MB(Math.max(...samples.map((x) => x.rss))),
        anonMedianMB: MB(median(samples.map((x) => x.anon))),
        anonMaxMB: MB(Math.max(...samples.map((x) => x.anon))),
        fileMedianMB: MB(median(samples.map((x) => x.file))),
      },
    };
  } finally {
    if (s.child.exitCode === null) killServer(s);
    fs.rmSync(setup.dir, { recursive: true, force: true });
  }
}

async function main(): Promise<void> {
  if (!fs.existsSync(CLI)) throw new Error(`${CLI} missing: run npx tsc -p tsconfig.json first`);
  const upstreamPort = await freePort();
  // The upstream in its own process (bench/upstream.ts: a fixed answer, AA), so the load generator's event loop
  // never delays its answers.
  const upstream = spawn('timeout', ['-s', 'KILL', String(LIFETIME_S), process.execPath, UPSTREAM, '--port', String(upstreamPort), '--max-seconds', String(LIFETIME_S)], { stdio: 'ignore' });
  children.add(upstream);
  const upstreamPid = childPidOf(upstream.pid!);
  if (upstreamPid !== upstream.pid) grandchildren.add(upstreamPid);
  await sleep(300);
  const out: Record<string, unknown> = {
    date: new Date().toISOString(),
    machine: `${os.cpus().length} × ${os.cpus()[0]?.model ?? '?'}, ${MB(os.totalmem())} MB, ${os.type()} ${os.release()}, Node ${process.version}`,
    loadAverageAtStart: os.loadavg().map((x) => r1(x)),
    nodeOptions: unitNodeOptions(),
    execStartNodeFlags: UNIT_NODE_ARGS.join(' '),
    environment: unitEnv(),
    chain: 'packaging/Corefile.yaml: acl, metrics (loopback), breaker, ratelimit, cache (10,000), clienttrack (flush 30s), discovery (rdns → the local responder), forward → local fixed responder',
  };
  try {
    if (ONLY.has('startup')) {
      console.log('start-up …');
      out.startup = await startupPhase(upstreamPort);
      console.log(JSON.stringify(out.startup));
    }
    if (ONLY.has('memory')) {
      console.log(`memory: idle, then ${CLIENTS} clients × ${PER_CLIENT} names at ${LOAD_QPS} q/s …`);
      out.memory = await memoryPhase(upstreamPort);
      console.log(JSON.stringify(out.memory));
      const m = out.memory as { idle: { rssMB: number; anonMB: number; fileMB: number }; load: { peakRssMB: number; peakAnonMB: number }; bareNodeIdle: { anonMB: number } };
      console.log(`idle: RSS ${m.idle.rssMB} MB = RssAnon ${m.idle.anonMB} + RssFile ${m.idle.fileMB} (bare node: anon ${m.bareNodeIdle.anonMB}); storm of new clients: peak RSS ${m.load.peakRssMB} MB, peak RssAnon ${m.load.peakAnonMB} MB`);
    }
    if (ONLY.has('household')) {
      const runs: Record<string, unknown>[] = [];
      for (const flush of ['30s', '5s']) {
        console.log(`household: ${HOUSEHOLD_CLIENTS} clients, ${HOUSEHOLD_QPS} q/s, ${HOUSEHOLD_S} s, flush ${flush}, then ${QUIET_S} s quiet …`);
        const r = await householdPhase(upstreamPort, flush);
        runs.push(r);
        console.log(JSON.stringify(r));
      }
      out.household = runs;
    }
    out.loadAverageAtEnd = os.loadavg().map((x) => r1(x));
  } finally {
    killAll();
  }
  fs.mkdirSync(path.dirname(RESULTS), { recursive: true });
  // A partial run (FOOTPRINT_ONLY) replaces only its phases in the results file.
  if (ONLY.size < 3 && fs.existsSync(RESULTS)) {
    try {
      const prev = JSON.parse(fs.readFileSync(RESULTS, 'utf8')) as Record<string, unknown>;
      for (const k of ['startup', 'memory', 'household']) if (!(k in out) && k in prev) out[k] = prev[k];
    } catch {
      // unreadable: write ours alone
    }
  }
  fs.writeFileSync(RESULTS, JSON.stringify(out, null, 2) + '\n');
  console.log(`written ${path.relative(process.cwd(), RESULTS)}`);
}

main().catch((err: unknown) => {
  console.error(err instanceof Error ? err.stack ?? err.message : String(err));
  killAll();
  process.exit(1);
});
