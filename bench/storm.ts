// Storm benchmark (issue 3 point 11, DESIGN §8): a storm of new clients against codexdns with client tracking,
// and the same load with `clienttrack` removed from the chain.
//
//   npx tsc -p tsconfig.json && node dist/bench/storm.js
//
// Load: STORM_RATE (default 1,000) new clients per second for STORM_SECONDS (default 60), each from its own
// source address in 127.0.0.0/8 (every such address is local on Linux: each is a different client) sending
// 3 queries one second apart; plus steady traffic from 10 known clients (20 queries/s each) that were seen
// before the storm. 20 % of the names are unique (cache misses, forwarded), the rest come from a pool of 2,000.
// Server chain: stormprobe (bench/stormProbe.ts: the server's event-loop delay, stalls and memory, logged at
// shutdown) → acl → cache → clienttrack → stormdiscovery (bench/stormStandInDiscovery.ts: a stand-in for the discovery
// plugin, 2.5 s per client on its own pool) → forward to a local fake upstream (bench/upstream.ts). The baseline
// run drops clienttrack and the stand-in, nothing else.
//
// Reported per run: answered %, latency p50/p99/p99.9 for known and for new clients, the ratio to the
// baseline, tracking drops, database rows vs distinct clients, total query_count vs queries sent, peak RSS,
// server CPU time. Results go to bench/results/storm.json and stdout.
//
// Bounds: only 127.0.0.0/8; the storm stops after STORM_SECONDS (at most 120) and STORM_RATE (at most 5,000);
// every child runs under `timeout`, and is killed at the end, on error and on Ctrl-C. STORM_PIN=0: no taskset
// (by default the generator and the upstream run on CPU 0, the server alone on CPU 1). STORM_ONLY=tracking or
// baseline runs one of the two; STORM_CLI runs another build's dist/cli/codexdns.js; STORM_NODE_FLAGS: the server's node flags (default: the unit's, packaging/codexdns.service; set it to add e.g. --cpu-prof, or empty for node's defaults);
// STORM_KEEP_TMP=1 keeps each run's folder (Corefile, database, server.log).
// STORM_REPEAT=N runs N interleaved pairs and reports each side's p99s and the ratio of their medians.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { Generator, PIN, STORM_LOAD, STORM_RATE, STORM_SECONDS, cpuSeconds, threadCpuDelta, threadCpuLine, threadCpuSeconds, answeredCell, envNum, failedAnswersLine, freeUdpPort, serverNodeFlags, killAll, parseFields, readStatus, medianLine, medianRatios, runLabel, runStorm, sleep, start, stopGracefully, type StormRunResult } from './stormKit';
import { openStorage } from '../storage/open';

const ROOT = path.resolve(__dirname, '..', '..');
const CLI = path.resolve(process.env.STORM_CLI ?? path.join(ROOT, 'dist', 'cli', 'codexdns.js'));
const UPSTREAM = path.join(ROOT, 'dist', 'bench', 'upstream.js');
const STANDIN = path.join(ROOT, 'dist', 'bench', 'stormStandInDiscovery.js');
const PROBE = path.join(ROOT, 'dist', 'bench', 'stormProbe.js');
const RESULTS = path.join(ROOT, 'bench', 'results', 'storm.json');

const SECONDS = STORM_SECONDS;
const NODE_FLAGS = serverNodeFlags('STORM_NODE_FLAGS');
const RATE = STORM_RATE;
const { known: KNOWN, knownQps: KNOWN_QPS, newQueries: NEW_QUERIES, queryTimeoutMs: QUERY_TIMEOUT_MS, poolNames: POOL_NAMES, uniqueShare: UNIQUE_SHARE } = STORM_LOAD;
const DELAY_MS = envNum('STORM_DISCOVERY_MS', 2500, 0, 10_000);
/** STORM_REPEAT: how many tracking/baseline pairs to run, interleaved (default 1). */
const REPEAT = envNum('STORM_REPEAT', 1, 1, 10);
const ONLY = (process.env.STORM_ONLY ?? 'tracking,baseline').split(',').map((s) => s.trim());
const LIFETIME_S = Math.ceil(SECONDS + 180);
/** The upstream serves every run: it lives as long as all of them may take. */
const UPSTREAM_LIFETIME_S = LIFETIME_S * (2 * REPEAT + 1);

// ---------------------------------------------------------------------------------------------- processes

function startPinned(cmd: string[], cpu: number, onStderr?: (s: string) => void, lifetimeS = LIFETIME_S): ReturnType<typeof start> {
  return start(cmd, { lifetimeS, cpu: PIN ? cpu : null, onStderr });
}

/** Datagrams the kernel dropped on the server's UDP socket (receive buffer full), from /proc/net/udp. */
function udpDrops(port: number): number {
  try {
    const hex = port.toString(16).toUpperCase().padStart(4, '0');
    for (const line of fs.readFileSync('/proc/net/udp', 'utf8').split('\n').slice(1)) {
      const f = line.trim().split(/\s+/);
      if (f[1] === `0100007F:${hex}`) return Number(f[f.length - 1]);
    }
  } catch {
    // not Linux
  }
  return NaN;
}

interface RunResult extends StormRunResult {
  run: 'tracking' | 'baseline';
  /** UDP drops on the server's socket. */
  serverSocketDrops: number;
  tracking?: {
    stopped: Record<string, string>;
    standin: Record<string, string>;
    dbRows: number;
    dbQueryCount: number;
    dbDiscovering: number;
    dbDiscovered: number;
    queriesSentToServer: number;
  };
}

async function run(kind: 'tracking' | 'baseline', pair: number, upstreamPort: number): Promise<RunResult> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `codexdns-storm-${kind}-`));
  const port = await freeUdpPort();
  const db = path.join(dir, 'clients.sqlite');
  const tracking = kind === 'tracking';
  const conf = `servers:
  - listen: [udp://127.0.0.1:${port}, tcp://127.0.0.1:${port}]
    zones: ["."]
    plugins:
      - use: ${JSON.stringify(PROBE)}
      - acl: { allow: [127.0.0.0/8] }
      - cache: { capacity: 10000 }
${tracking ? `      - workerpool: { tracking: { workers: 100, queue: 10000 } }
      - priority: { high: 5000, low: 5000 }
      - clienttrack: {}
      - use: ${JSON.stringify(STANDIN)}
        options: { delay: ${DELAY_MS}ms }
` : ''}      - forward: { to: ["127.0.0.1:${upstreamPort}"] }
storage: { client: sqlite3, connection: { filename: ${JSON.stringify(db)} } }
reload: { watch: false }
`;
  fs.writeFileSync(path.join(dir, 'Corefile.yaml'), conf);
  let stderr = '';
  const server = startPinned([process.execPath, ...NODE_FLAGS, CLI, '--conf', path.join(dir, 'Corefile.yaml')], 1, (s) => (stderr += s));
  const t0 = Date.now();
  while (!/codexdns started/.test(stderr)) {
    if (Date.now() - t0 > 20_000 || server.child.exitCode !== null) throw new Error(`${kind}: server did not start:\n${stderr}`);
    await sleep(50);
  }
  const pid = server.pid();
  const gen = new Generator(port, { uniqueShare: UNIQUE_SHARE, poolNames: POOL_NAMES, queryTimeoutMs: QUERY_TIMEOUT_MS });

  // Warm-up: the known clients are seen (and become known) before the storm, and the name pool gets cached.
  const known = Array.from({ length: KNOWN }, (_, i) => gen.open(`127.1.0.${i + 1}`, true));
  for (let k = 0; k < POOL_NAMES; k++) {
    gen.send(known[k % KNOWN], `n${k}.storm.test`);
    if (k % 200 === 199) await sleep(50);
  }
  await sleep(1000);
  // Every warm-up answer in (or timed out) before the counters are reset.
  const warmT0 = Date.now();
  while (known.some((c) => c.pending.size > 0) && Date.now() - warmT0 < QUERY_TIMEOUT_MS + 500) {
    gen.sweep();
    await sleep(20);
  }
  gen.sweep();
  // Discard the warm-up figures.
  gen.resetKnown();

  let peakRss = readStatus(pid).rss;
  const rssTimer = setInterval(() => (peakRss = Math.max(peakRss, readStatus(pid).rss)), 250);
  const cpu0 = cpuSeconds(pid);
  const threads0 = threadCpuSeconds(pid);
  const loop = monitorEventLoopDelay({ resolution: 10 });
  loop.enable();

  await runStorm(gen, known, { seconds: SECONDS, rate: RATE, addressBase: 2, knownQps: KNOWN_QPS, newQueries: NEW_QUERIES });
  loop.disable();
  clearInterval(rssTimer);
  const cpu = cpuSeconds(pid) - cpu0;
  const threadCpu = threadCpuDelta(threads0, threadCpuSeconds(pid));
  const socketDrops = udpDrops(port);
  const hwm = readStatus(pid).hwm;
  peakRss = Math.max(peakRss, hwm);

  // Stop the server: it flushes the tracking queue and logs its totals.
  await stopGracefully(server.child, pid);

  const sentTotal = gen.sent.known + gen.sent.new;
  const result: RunResult = {
    run: kind,
    pair,
    seconds: SECONDS,
    rate: RATE,
    sent: { known: gen.sent.known, new: gen.sent.new, total: sentTotal },
    answered: gen.answeredSummary(),
    latencyMs: { known: gen.lat.known.percentiles(), new: gen.lat.new.percentiles(), all: gen.lat.known.merge(gen.lat.new).percentiles() },
    distinctClients: KNOWN + gen.newClients,
    peakRssMB: peakRss / 1048576,
    serverCpuSeconds: cpu,
    serverThreadCpuSeconds: threadCpu,
    generatorLoopDelayP99Ms: loop.percentile(99) / 1e6,
    slowBySecond: Array.from(gen.slowBySecond, (n) => n ?? 0),
    server: parseFields(stderr.split('\n').find((l) => /storm probe/.test(l))),
    serverSocketDrops: socketDrops,
  };
  if (tracking) {
    const stopped = parseFields(stderr.split('\n').find((l) => /tracking stopped/.test(l)));
    const standin = parseFields(stderr.split('\n').find((l) => /stand-in discovery stopped/.test(l)));
    const s = await openStorage({ client: 'sqlite3', connection: { filename: db } }, { baseDir: dir });
    try {
      const [r] = (await s.reader('clients').count({ n: '*' }).sum({ q: 'query_count' })) as Array<{ n: number; q: number }>;
      const [d] = (await s.reader('clients').where('discovering', 1).count({ n: '*' })) as Array<{ n: number }>;
      const [h] = (await s.reader('clients').whereNotNull('hostname').count({ n: '*' })) as Array<{ n: number }>;
      result.tracking = {
        stopped,
        standin,
        dbRows: Number(r.n),
        dbQueryCount: Number(r.q),
        dbDiscovering: Number(d.n),
        dbDiscovered: Number(h.n),
        // The warm-up queries count too (they reached the server from the known clients).
        queriesSentToServer: sentTotal + POOL_NAMES,
      };
    } finally {
      await s.close();
    }
  }
  if (!/codexdns stopped/.test(stderr)) console.error(`${kind}: the server did not log a clean stop:\n${stderr.slice(-3000)}`);
  fs.writeFileSync(path.join(dir, 'server.log'), stderr);
  const warnings = stderr.split('\n').filter((l) => / (WARN|ERROR) /.test(l));
  if (warnings.length > 0) console.error(`${kind}: ${warnings.length} warning lines from the server, e.g.\n${warnings.slice(0, 5).join('\n')}`);
  if (process.env.STORM_KEEP_TMP !== '1') fs.rmSync(dir, { recursive: true, force: true });
  return result;
}

function fmt(n: number, d = 2): string {
  return Number.isFinite(n) ? n.toFixed(d) : '—';
}

async function main(): Promise<void> {
  for (const f of [CLI, UPSTREAM, STANDIN]) if (!fs.existsSync(f)) throw new Error(`${f} missing: run npx tsc -p tsconfig.json first`);
  if (PIN) spawnSync('taskset', ['-p', '-c', '0', String(process.pid)], { stdio: 'ignore' });
  const upstreamPort = await freeUdpPort();
  let upErr = '';
  startPinned([process.execPath, UPSTREAM, '--port', String(upstreamPort), '--max-seconds', String(UPSTREAM_LIFETIME_S)], 0, (s) => (upErr += s), UPSTREAM_LIFETIME_S);
  await sleep(300);
  if (upErr) throw new Error(`upstream: ${upErr}`);
  const results: RunResult[] = [];
  // STORM_REPEAT pairs, interleaved (tracking, baseline, tracking, …): the medians say more than any one pair.
  for (let pair = 1; pair <= REPEAT; pair++) {
    for (const kind of ['tracking', 'baseline'] as const) {
      if (!ONLY.includes(kind)) continue;
      console.error(`storm: ${kind} run${REPEAT > 1 ? ` ${pair}/${REPEAT}` : ''}, ${RATE} new clients/s for ${SECONDS} s …`);
      results.push(await run(kind, pair, upstreamPort));
    }
  }
  killAll();
  const tr = results.find((r) => r.run === 'tracking');
  const base = results.find((r) => r.run === 'baseline');
  const out = {
    date: new Date().toISOString(),
    machine: `${os.cpus().length} × ${os.cpus()[0]?.model ?? '?'}, Node ${process.version}`,
    nodeFlags: NODE_FLAGS.join(' '),
    pinning: PIN ? 'generator + upstream on CPU 0, server alone on CPU 1' : 'none',
    results,
    medians: medianRatios(results.filter((r) => r.run === 'tracking'), results.filter((r) => r.run === 'baseline')),
    ratio:
      tr && base
        ? {
            p99All: tr.latencyMs.all.p99 / base.latencyMs.all.p99,
            p99Known: tr.latencyMs.known.p99 / base.latencyMs.known.p99,
            p99New: tr.latencyMs.new.p99 / base.latencyMs.new.p99,
            p50All: tr.latencyMs.all.p50 / base.latencyMs.all.p50,
          }
        : undefined,
  };
  fs.mkdirSync(path.dirname(RESULTS), { recursive: true });
  fs.writeFileSync(RESULTS, JSON.stringify(out, null, 2) + '\n');
  const lines = [
    `server: node ${NODE_FLAGS.join(' ') || '(no flags)'}; ${out.pinning}`,
    '',
    `| run | sent | answered | p50 known | p99 known | p50 new | p99 new | p99 all | p99.9 all | peak RSS | server CPU | server loop p99 / max | socket drops | generator loop p99 |`,
    `|---|---|---|---|---|---|---|---|---|---|---|---|---|---|`,
  ];
  for (const r of results) {
    lines.push(
      `| ${runLabel(r.run, r.pair, REPEAT)} | ${r.sent.total} | ${answeredCell(r)} | ${fmt(r.latencyMs.known.p50)} ms | ${fmt(r.latencyMs.known.p99)} ms | ${fmt(r.latencyMs.new.p50)} ms | ${fmt(r.latencyMs.new.p99)} ms | ${fmt(r.latencyMs.all.p99)} ms | ${fmt(r.latencyMs.all.p999)} ms | ${fmt(r.peakRssMB, 1)} MB | ${fmt(r.serverCpuSeconds, 1)} s | ${r.server.loop_p99_ms ?? '?'} / ${r.server.loop_max_ms ?? '?'} ms | ${r.serverSocketDrops} | ${fmt(r.generatorLoopDelayP99Ms, 1)} ms |`,
    );
  }
  lines.push(...failedAnswersLine(results, REPEAT));
  for (const r of results) lines.push(`${runLabel(r.run, r.pair, REPEAT)}: ${threadCpuLine(r.serverThreadCpuSeconds)}`);
  if (out.ratio) lines.push('', `p99 ratio tracking / baseline: all ${fmt(out.ratio.p99All)}, known ${fmt(out.ratio.p99Known)}, new ${fmt(out.ratio.p99New)}${REPEAT > 1 ? ' (first pair)' : ''}`);
  if (out.medians) lines.push(medianLine(out.medians));
  for (const r of results) {
    const t = r.tracking;
    if (!t) continue;
    const label = runLabel(r.run, r.pair, REPEAT);
    lines.push(
      '',
      `${label}: jobs dropped ${t.stopped.dropped ?? '?'} (${t.stopped.dropped_at_shutdown ?? '?'} of them updates arriving during shutdown), queries dropped ${t.stopped.queries_dropped ?? '?'}, ` +
        `failed ${t.stopped.failed ?? '?'}, writer dropped ${t.stopped.dropped_queries ?? '?'} queries; batches ${t.stopped.batches ?? '?'} (failed ${t.stopped.failed_batches ?? '?'}); evicted from the index ${t.stopped.evicted ?? '?'}`,
      `  database: ${t.dbRows} rows for ${r.distinctClients} distinct clients; query_count total ${t.dbQueryCount} for ${t.queriesSentToServer} queries sent (warm-up included); ` +
        `${t.dbDiscovering} still discovering, ${t.dbDiscovered} discovered (stand-in: ${t.standin.completed ?? '?'} completed, ${t.standin.dropped ?? '?'} not queued)`,
    );
  }
  console.log(lines.join('\n'));
}

main().then(() => process.exit(0), (err: unknown) => {
  console.error(err instanceof Error ? err.stack : err);
  killAll();
  process.exit(1);
});
