// What the query log costs and what it stores (issue 18). `npm run build && node dist/bench/querylog.js`.
//
// 1. Hit path: two codexdns processes with the full chain (acl, metrics, cache, clienttrack, forward to a local
//    upstream), one without and one with `querylog`, loaded in interleaved rounds by a Node UDP client with a
//    fixed window of outstanding cache-hit queries; QPS, p50/p99 latency and the queries logged per second.
//    Pinned as the other benches pin (the server on CPU 1, the load and the upstream on CPU 0) when taskset is there.
// 2. Household: the default options (flush 30 s) at 5 queries/s for BENCH_HOUSEHOLD_SECONDS: database commits
//    per minute (codexdns_querylog_batches_total).
// 3. Storage: BENCH_ROWS (1,000,000) realistic rows written through QuerylogStore into a fresh SQLite file (and
//    PostgreSQL when CODEXDNS_BENCH_PG is set): rows/s, bytes on disk per row; then a server on that database
//    and the first page of /api/queries over HTTP with several filters (median of 5, and the worst).
//
// Environment: BENCH_SECONDS (per round, default 5), BENCH_REPEAT (rounds, 2), BENCH_OUTSTANDING (50),
// BENCH_HOUSEHOLD_SECONDS (60), BENCH_ROWS (1000000), BENCH_PIN=0. Traffic only on 127.0.0.1; every child
// runs under `timeout` and is stopped at the end, on error and on Ctrl-C; every loop is bounded in count and time.
import { spawn, type ChildProcess } from 'node:child_process';
import dgram from 'node:dgram';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { encodeQuery, envInt, findBinary, freeUdpPort } from './common';
import { openStorage, type Storage } from '../storage/open';
import { QueryLog, QuerylogStore, migrationsDir, queryLogOptions, type LogRow } from '../plugins/querylog';
import { QueryContext } from '../core/context';
import { DnsResponse } from '../core/response';
import { parseQuery, type ParsedQuery } from '../core/wire/query';
import { startServer } from '../testing';

const ROOT = path.resolve(__dirname, '..', '..');
const CLI = path.join(ROOT, 'dist', 'cli', 'codexdns.js');
const UPSTREAM = path.join(__dirname, 'upstream.js');
const SECONDS = envInt('BENCH_SECONDS', 5, 1, 60);
const REPEAT = envInt('BENCH_REPEAT', 2, 1, 10);
const OUTSTANDING = envInt('BENCH_OUTSTANDING', 50, 1, 1000);
const HOUSEHOLD_S = envInt('BENCH_HOUSEHOLD_SECONDS', 60, 0, 600);
const ROWS = envInt('BENCH_ROWS', 1_000_000, 1000, 5_000_000);
const PG = process.env.CODEXDNS_BENCH_PG;
/** The stored log ends now: one query every 500 ms before it (1,000,000 rows: 5.8 days). */
const LOG_START = Date.now() - ROWS * 500;
const TASKSET = findBinary('taskset');
const PIN = process.env.BENCH_PIN !== '0' && os.cpus().length >= 2 && TASKSET !== null;
const LIFETIME_S = 120 + SECONDS * REPEAT * 2 + HOUSEHOLD_S;

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const children: ChildProcess[] = [];
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'codexdns-bench-ql-'));

function run(cmd: string, args: string[], cpu: number | null, cwd = tmp): ChildProcess {
  const pin = PIN && cpu !== null ? [TASKSET as string, '-c', String(cpu)] : [];
  const all = [...pin, cmd, ...args];
  const child = spawn('timeout', ['-k', '5', String(LIFETIME_S), ...all], { cwd, stdio: ['ignore', 'ignore', 'pipe'] });
  child.stderr?.on('data', (d: Buffer) => process.stderr.write(d));
  children.push(child);
  return child;
}

function stopAll(): void {
  for (const c of children) if (c.exitCode === null) c.kill('SIGTERM');
}
for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.on(sig, () => {
    stopAll();
    fs.rmSync(tmp, { recursive: true, force: true });
    process.exit(130);
  });
}

function getJson(port: number, p: string): Promise<{ ms: number; body: Record<string, unknown>; text: string }> {
  const t0 = performance.now();
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, path: p, agent: false, timeout: 10_000 }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        let body: Record<string, unknown> = {};
        try {
          body = JSON.parse(text) as Record<string, unknown>;
        } catch {
          // /metrics
        }
        resolve({ ms: performance.now() - t0, body, text });
      });
    });
    req.on('error', reject);
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.end();
  });
}

function metric(text: string, name: string): number {
  const line = text.split('\n').find((l) => l.startsWith(`${name} `));
  return line === undefined ? NaN : Number(line.split(' ').pop());
}

async function waitHttp(port: number): Promise<void> {
  for (let i = 0; i < 200; i++) {
    try {
      await getJson(port, '/ready');
      return;
    } catch {
      await sleep(100);
    }
  }
  throw new Error(`server on ${port} did not start`);
}

// ---------------------------------------------------------------------------------------- 1. the hit path

interface LoadResult {
  qps: number;
  p50: number;
  p99: number;
  sent: number;
  lost: number;
}

/**
 * A loopback UDP socket that times each answer against `sentAt[id]` (set it when sending; a late or repeated
 * answer finds 0 and is not counted); `onAnswer` runs after each reply. `finish` closes it and sums up.
 */
async function timedSocket(onAnswer: (counted: boolean) => void = () => {}): Promise<{
  sock: dgram.Socket;
  sentAt: Float64Array;
  finish: (t0: number, sent: number) => LoadResult;
}> {
  const sock = dgram.createSocket('udp4');
  await new Promise<void>((r) => sock.bind(0, '127.0.0.1', r));
  const sentAt = new Float64Array(65536);
  const lat: number[] = [];
  sock.on('message', (msg) => {
    const id = msg.readUInt16BE(0);
    const t = sentAt[id];
    if (t > 0) {
      lat.push(performance.now() - t);
      sentAt[id] = 0;
    }
    onAnswer(t > 0);
  });
  const finish = (t0: number, sent: number): LoadResult => {
    const elapsed = (performance.now() - t0) / 1000;
    sock.close();
    lat.sort((a, b) => a - b);
    const q = (p: number): number => lat[Math.min(lat.length - 1, Math.floor(lat.length * p))] ?? NaN;
    return { qps: lat.length / elapsed, p50: q(0.5), p99: q(0.99), sent, lost: sent - lat.length };
  };
  return { sock, sentAt, finish };
}

/** A fixed window of outstanding queries over `names` (all cached), for `seconds`; latency per answer. */
async function load(port: number, names: string[], seconds: number): Promise<LoadResult> {
  let next = 0;
  let sent = 0;
  let inflight = 0;
  const until = performance.now() + seconds * 1000;
  const packets = names.map((n, i) => encodeQuery(i, n));
  const { sock, sentAt, finish } = await timedSocket((counted) => {
    if (counted) inflight--;
    if (performance.now() < until) send();
  });
  const send = (): void => {
    const id = next++ & 0xffff;
    const p = packets[sent % packets.length];
    p.writeUInt16BE(id, 0);
    sentAt[id] = performance.now();
    sent++;
    inflight++;
    sock.send(p, port, '127.0.0.1');
  };
  const t0 = performance.now();
  for (let i = 0; i < OUTSTANDING; i++) send();
  // Lost packets would shrink the window: top it up every 50 ms.
  while (performance.now() < until) {
    await sleep(50);
    const now = performance.now();
    let stale = 0;
    for (let i = 0; i < 65536; i++) if (sentAt[i] > 0 && now - sentAt[i] > 1000) (sentAt[i] = 0), stale++;
    inflight -= stale;
    while (inflight < OUTSTANDING && performance.now() < until) send();
  }
  await sleep(300);
  return finish(t0, sent);
}

/** Open loop: `rate` cache-hit queries per second, sent in 10-ms slices, for `seconds`; latency per answer. */
async function rateLoad(port: number, names: string[], rate: number, seconds: number): Promise<LoadResult> {
  let sent = 0;
  const packets = names.map((n, i) => encodeQuery(i, n));
  const { sock, sentAt, finish } = await timedSocket();
  const t0 = performance.now();
  const total = Math.round(rate * seconds);
  while (sent < total && performance.now() - t0 < seconds * 1000 + 2000) {
    const due = Math.min(total, Math.floor(((performance.now() - t0) / 1000) * rate));
    while (sent < due) {
      const id = sent & 0xffff;
      const p = packets[sent % packets.length];
      p.writeUInt16BE(id, 0);
      sentAt[id] = performance.now();
      sock.send(p, port, '127.0.0.1');
      sent++;
    }
    await sleep(5);
  }
  await sleep(500);
  return finish(t0, sent);
}

const RATES = (process.env.BENCH_RATES ?? '500,1000,2000,4000,8000').split(',').map(Number).filter((n) => n > 0 && n <= 100_000).slice(0, 8);

function median(xs: number[]): number {
  return [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
}

function droppedOf(text: string): number {
  return text
    .split('\n')
    .filter((l) => l.startsWith('codexdns_querylog_dropped_total'))
    .map((l) => Number(l.split(' ').pop()))
    .reduce((a, b) => a + b, 0);
}

async function hitPath(): Promise<Record<string, unknown>> {
  const upPort = await freeUdpPort();
  run(process.execPath, [UPSTREAM, '--port', String(upPort), '--max-seconds', String(LIFETIME_S)], 0);
  const servers: { name: string; port: number; http: number }[] = [];
  for (const [name, ql] of [
    ['none', ''],
    ['querylog', '      - querylog: {}\n'],
  ] as const) {
    const port = await freeUdpPort();
    const httpPort = await freeUdpPort();
    const dir = path.join(tmp, name);
    fs.mkdirSync(dir, { recursive: true });
    fs.writeFileSync(
      path.join(dir, 'Corefile.yaml'),
      `servers:
  - listen: [udp://127.0.0.1:${port}]
    plugins:
      - acl: {}
      - metrics: { listen: 127.0.0.1:${httpPort} }
      - cache: {}
      - clienttrack: {}
${ql}      - forward: { to: ["127.0.0.1:${upPort}"] }
storage: { client: sqlite3, connection: { filename: ./db.sqlite } }
log: { level: warn }
`,
    );
    run(process.execPath, [CLI, '--conf', path.join(dir, 'Corefile.yaml')], 1, dir);
    servers.push({ name, port, http: httpPort });
  }
  for (const s of servers) await waitHttp(s.http);
  const names = Array.from({ length: 1000 }, (_, i) => `n${i}.bench.example`);
  for (const s of servers) await load(s.port, names, 1); // warm the cache
  const rounds: Record<string, LoadResult[]> = { none: [], querylog: [] };
  for (let r = 0; r < REPEAT; r++) {
    for (const s of servers) {
      const res = await load(s.port, names, SECONDS);
      rounds[s.name].push(res);
      console.log(`saturation round ${r + 1} ${s.name}: ${res.qps.toFixed(0)} q/s, p50 ${res.p50.toFixed(2)} ms, p99 ${res.p99.toFixed(2)} ms, lost ${res.lost}`);
    }
  }
  // Fixed rates, interleaved: the highest rate at which querylog's p99 stays within 1.2x and nothing is dropped.
  const rates: Record<string, unknown>[] = [];
  let best = 0;
  for (const rate of RATES) {
    const m0 = (await getJson(servers[1].http, '/metrics')).text;
    const drop0 = droppedOf(m0);
    const per: Record<string, LoadResult[]> = { none: [], querylog: [] };
    for (let r = 0; r < REPEAT; r++) for (const s of servers) per[s.name].push(await rateLoad(s.port, names, rate, SECONDS));
    const m1 = (await getJson(servers[1].http, '/metrics')).text;
    const p99none = median(per.none.map((x) => x.p99));
    const p99ql = median(per.querylog.map((x) => x.p99));
    const dropped = droppedOf(m1) - drop0;
    const row = { rate, p99none, p99querylog: p99ql, ratio: p99ql / p99none, dropped, lost: per.querylog.reduce((a, x) => a + x.lost, 0) };
    console.log(`rate ${rate}/s: p99 ${p99none.toFixed(2)} ms without, ${p99ql.toFixed(2)} ms with querylog (${row.ratio.toFixed(2)}x), dropped ${dropped}`);
    rates.push(row);
    // The figure is the highest rate below which every rate passed: one noisy pass above a failure does not count.
    if (row.ratio <= 1.2 && dropped === 0 && rates.every((x) => (x.ratio as number) <= 1.2 && x.dropped === 0)) best = rate;
  }
  await sleep(1500);
  const ql = servers[1];
  const m = (await getJson(ql.http, '/metrics')).text;
  const logged = metric(m, 'codexdns_querylog_entries_total');
  const dropped = (m.split('\n').filter((l) => l.startsWith('codexdns_querylog_dropped_total')).map((l) => Number(l.split(' ').pop())) as number[]).reduce((a, b) => a + b, 0);
  const med = median;
  const out = {
    rates,
    bestRateWithin1_2x: best,
    none: { qps: med(rounds.none.map((x) => x.qps)), p99: med(rounds.none.map((x) => x.p99)), p50: med(rounds.none.map((x) => x.p50)) },
    querylog: { qps: med(rounds.querylog.map((x) => x.qps)), p99: med(rounds.querylog.map((x) => x.p99)), p50: med(rounds.querylog.map((x) => x.p50)) },
    logged,
    dropped,
    batches: metric(m, 'codexdns_querylog_batches_total'),
  };
  console.log(JSON.stringify(out));
  return out;
}

// -------------------------------------------------------------------------------------- 2. a household

async function household(): Promise<Record<string, unknown>> {
  if (HOUSEHOLD_S === 0) return {};
  const up = dgram.createSocket('udp4');
  const upPort = await freeUdpPort();
  run(process.execPath, [UPSTREAM, '--port', String(upPort), '--max-seconds', String(LIFETIME_S)], 0);
  const port = await freeUdpPort();
  const httpPort = await freeUdpPort();
  const dir = path.join(tmp, 'household');
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(
    path.join(dir, 'Corefile.yaml'),
    `servers:
  - listen: [udp://127.0.0.1:${port}]
    plugins:
      - metrics: { listen: 127.0.0.1:${httpPort} }
      - cache: {}
      - querylog: { flush: 30s, retention: 7d, max_rows: 1000000 }
      - forward: { to: ["127.0.0.1:${upPort}"] }
storage: { client: sqlite3, connection: { filename: ./db.sqlite } }
log: { level: warn }
`,
  );
  run(process.execPath, [CLI, '--conf', path.join(dir, 'Corefile.yaml')], 1, dir);
  await waitHttp(httpPort);
  await new Promise<void>((r) => up.bind(0, '127.0.0.1', r));
  const before = metric((await getJson(httpPort, '/metrics')).text, 'codexdns_querylog_batches_total') || 0;
  const t0 = performance.now();
  let i = 0;
  while (performance.now() - t0 < HOUSEHOLD_S * 1000 && i < HOUSEHOLD_S * 5 + 10) {
    up.send(encodeQuery(i & 0xffff, `site${i % 40}.home.example`), port, '127.0.0.1');
    i++;
    await sleep(200);
  }
  const after = metric((await getJson(httpPort, '/metrics')).text, 'codexdns_querylog_batches_total') || 0;
  up.close();
  const minutes = (performance.now() - t0) / 60_000;
  const out = { queries: i, seconds: HOUSEHOLD_S, commits: after - before, commitsPerMinute: (after - before) / minutes };
  console.log(JSON.stringify(out));
  return out;
}

// ------------------------------------------------------------------------------------------- 3. storage

function rows(n: number, start: number): LogRow[] {
  const out: LogRow[] = [];
  for (let i = 0; i < n; i++) {
    const k = start + i;
    // 30 devices, 5,000 names with a skew (a few popular ones), 5 % blocked, 3 % NXDOMAIN, 0.1 % SERVFAIL.
    const name = k % 3 === 0 ? `popular${k % 20}.example.com` : `site${(k * 7919) % 5000}.cdn${k % 13}.example.net`;
    const blocked = k % 20 === 7;
    out.push({
      t: LOG_START + k * 500,
      client: `192.168.1.${10 + (k % 30)}`,
      name: blocked ? `ads${k % 300}.tracker.example` : name,
      qtype: k % 4 === 0 ? 28 : 1,
      rcode: blocked || k % 33 === 0 ? 3 : k % 1000 === 5 ? 2 : 0,
      answeredBy: blocked ? 'filter' : k % 3 === 0 ? 'cache' : 'forward',
      upstream: null,
      durationUs: blocked || k % 3 === 0 ? 40 : 8000 + (k % 50) * 300,
      flags: (blocked ? 2 : 0) | (k % 3 === 0 ? 4 : 0),
    });
  }
  return out;
}

async function fill(storage: Storage): Promise<{ rowsPerSecond: number }> {
  storage.migrate.addPlugin('querylog', migrationsDir());
  await storage.migrate.latest('querylog');
  const store = new QuerylogStore(storage.writer, storage.reader, storage.client === 'pg');
  const t0 = performance.now();
  for (let k = 0; k < ROWS; k += 5000) await store.write(rows(Math.min(5000, ROWS - k), k), []);
  return { rowsPerSecond: ROWS / ((performance.now() - t0) / 1000) };
}

const FILTERS: [string, string][] = [
  ['no filter', ''],
  ['client', 'client=192.168.1.17'],
  ['name substring (common)', 'name=popular'],
  ['name substring (rare)', 'name=site4999.'],
  ['qtype AAAA', 'qtype=AAAA'],
  ['rcode SERVFAIL (0.1 %)', 'rcode=SERVFAIL'],
  ['blocked', 'blocked=1'],
  ['answered by cache', 'answered_by=cache'],
  ['client + blocked', 'client=192.168.1.17&blocked=1'],
  ['time range (one hour, mid-log)', `from=${LOG_START + ROWS * 250}&to=${LOG_START + ROWS * 250 + 3_600_000}`],
  ['page 10 (cursor)', 'cursor=@'],
];

async function apiTimes(storageYaml: string): Promise<Record<string, { median: number; max: number; rows: number; partial: boolean }>> {
  const s = await startServer(
    `servers:
  - listen: [udp://127.0.0.1:0]
    plugins:
      - metrics: { listen: "127.0.0.1:0" }
      - querylog: { flush: 1h, retention: 3650d, max_rows: 100000000 }
storage: ${storageYaml}
`,
  );
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const { httpListeners } = require('../plugins/metrics') as typeof import('../plugins/metrics');
    const port = httpListeners(s.server.metrics.registry)[0].port;
    await getJson(port, '/api/queries?limit=1');
    const out: Record<string, { median: number; max: number; rows: number; partial: boolean }> = {};
    for (const [label, q0] of FILTERS) {
      let q = q0;
      if (q === 'cursor=@') {
        const first = await getJson(port, '/api/queries?limit=50');
        q = `cursor=${Number(first.body.cursor) - 450}`;
      }
      const times: number[] = [];
      let last: Record<string, unknown> = {};
      for (let i = 0; i < 5; i++) {
        const r = await getJson(port, `/api/queries?limit=50&${q}`);
        times.push(r.ms);
        last = r.body;
      }
      times.sort((a, b) => a - b);
      out[label] = { median: Math.round(times[2] * 10) / 10, max: Math.round(times[4] * 10) / 10, rows: (last.queries as unknown[]).length, partial: last.partial === true };
      console.log(`/api/queries ${label}: median ${out[label].median} ms, worst ${out[label].max} ms, ${out[label].rows} rows${out[label].partial ? ' (partial)' : ''}`);
    }
    return out;
  } finally {
    await s.stop();
  }
}

async function storageFigures(): Promise<Record<string, unknown>> {
  const file = path.join(tmp, 'big.sqlite');
  const st = await openStorage({ client: 'sqlite3', connection: { filename: file } }, { baseDir: tmp });
  const sqlite: Record<string, unknown> = {};
  try {
    const base = fs.statSync(file).size;
    Object.assign(sqlite, await fill(st));
    await st.writer.raw('PRAGMA wal_checkpoint(TRUNCATE)');
    const size = fs.statSync(file).size;
    sqlite.bytesPerRow = Math.round((size - base) / ROWS);
    sqlite.fileMB = Math.round(size / 1e5) / 10;
  } finally {
    await st.close();
  }
  console.log('sqlite', JSON.stringify(sqlite));
  sqlite.api = await apiTimes(`{ client: sqlite3, connection: { filename: ${JSON.stringify(file)} } }`);
  const out: Record<string, unknown> = { rows: ROWS, sqlite };
  if (PG) {
    const schema = `codexdns_bench_ql_${process.pid}`;
    const admin = await openStorage({ client: 'pg', connection: PG }, { baseDir: '.' });
    await admin.writer.raw(`create schema "${schema}"`);
    await admin.close();
    const connection = { connectionString: PG, options: `-c search_path=${schema}` };
    const pg: Record<string, unknown> = {};
    const s = await openStorage({ client: 'pg', connection }, { baseDir: '.' });
    try {
      Object.assign(pg, await fill(s));
      await s.writer.raw('VACUUM ANALYZE querylog');
      const r = (await s.writer.raw(`select pg_total_relation_size('querylog') as n`)) as { rows: { n: string }[] };
      pg.bytesPerRow = Math.round(Number(r.rows[0].n) / ROWS);
      console.log('pg', JSON.stringify(pg));
      pg.api = await apiTimes(`{ client: pg, connection: ${JSON.stringify(connection)} }`);
    } finally {
      await s.writer.raw(`drop schema if exists "${schema}" cascade`);
      await s.close();
    }
    out.pg = pg;
  }
  return out;
}

// ----------------------------------------------------------------------------- 0. CPU per logged query

/**
 * In-process, so it holds on a busy machine: the `served` tap's nanoseconds per query, and the writer's CPU
 * (this process's user + system time: the event loop and SQLite's worker thread) per entry written, through the
 * real QueryLog and a real SQLite file, in batches of the default size.
 */
async function cpuCost(): Promise<Record<string, number>> {
  const file = path.join(tmp, 'cpu.sqlite');
  const st = await openStorage({ client: 'sqlite3', connection: { filename: file } }, { baseDir: tmp });
  try {
    st.migrate.addPlugin('querylog', migrationsDir());
    await st.migrate.latest('querylog');
    const store = new QuerylogStore(st.writer, st.reader, st.client === 'pg');
    const DAY = 86_400_000;
    const opts = queryLogOptions({ flush: 30_000, batch: 5000, ring: 20_000, retention: 7 * DAY, max_rows: 1_000_000, stats_retention: 30 * DAY, max_hourly_keys: 2000, sample: 1, exclude: [], prune_interval: 3_600_000, log_interval: 10_000, shutdown_flush: 5000 });
    const silent = { debug() {}, info() {}, warn() {}, error() {}, child() { return silent; } };
    const ql = new QueryLog({ ...opts, ring: 1_000_000, batch: 5000 }, async () => store, silent as never);
    const client = { address: '192.168.1.23', port: 5353, family: 4 as const, transport: 'udp' as const, localAddress: '127.0.0.1', ednsSize: 0, dnssecOk: false, checkingDisabled: false };
    const ctxs: QueryContext[] = [];
    for (let i = 0; i < 1000; i++) {
      const raw = encodeQuery(i, `site${i}.cdn${i % 7}.example.net`);
      const c = new QueryContext(raw, parseQuery(raw) as ParsedQuery, { ...client, address: `192.168.1.${10 + (i % 30)}` }, '', 'block0', performance.now());
      c.replyFlags = 0x8180;
      ctxs.push(c);
    }
    const raw = encodeQuery(1, 'x.example');
    const res = DnsResponse.fromWire(Buffer.concat([raw, Buffer.from([0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0x0e, 0x10, 0, 4, 192, 0, 2, 1])]));
    res.plugin = 'cache';
    const N = 200_000;
    for (let i = 0; i < 20_000; i++) ql.record(ctxs[i % 1000], res);
    await ql.flush();
    const t0 = performance.now();
    for (let i = 0; i < N; i++) ql.record(ctxs[i % 1000], res);
    const recordNs = ((performance.now() - t0) * 1e6) / N;
    const cpu0 = process.cpuUsage();
    const elu0 = performance.eventLoopUtilization();
    const w0 = performance.now();
    await ql.flush();
    const cpu = process.cpuUsage(cpu0);
    const elu = performance.eventLoopUtilization(elu0);
    const wall = performance.now() - w0;
    const out = { recordNsPerQuery: Math.round(recordNs), eventLoopUsPerEntry: Math.round(((elu.active * 1000) / N) * 100) / 100, writerCpuUsPerEntry: Math.round(((cpu.user + cpu.system) / N) * 100) / 100, writerWallUsPerEntry: Math.round(((wall * 1000) / N) * 100) / 100 };
    console.log('cpu', JSON.stringify(out));
    return out;
  } finally {
    await st.close();
  }
}

async function main(): Promise<void> {
  const started = new Date().toISOString();
  const load = fs.readFileSync('/proc/loadavg', 'utf8').trim();
  try {
    const cpu = await cpuCost();
    const hit = process.env.BENCH_SKIP_LOAD === '1' ? {} : await hitPath();
    stopAll();
    const home = process.env.BENCH_SKIP_LOAD === '1' ? {} : await household();
    stopAll();
    const storage = await storageFigures();
    const result = { started, loadavgAtStart: load, loadavgAtEnd: fs.readFileSync('/proc/loadavg', 'utf8').trim(), pinned: PIN, cpu, hit, household: home, storage };
    fs.mkdirSync(path.join(ROOT, 'bench', 'results'), { recursive: true });
    fs.writeFileSync(path.join(ROOT, 'bench', 'results', 'querylog.json'), JSON.stringify(result, null, 2));
    console.log(JSON.stringify(result, null, 2));
  } finally {
    stopAll();
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}

main().catch((err) => {
  console.error(err);
  stopAll();
  process.exit(1);
});
