// codexdns benchmark harness (DESIGN §8, issue 2 point 10). `npm run bench` builds and runs it; its parts are in
// bench/qps/ (settings, processes, ports, dnsperf, hits, misses, peers, report).
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
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { DNSPERF, measure, waitQuiet } from './qps/dnsperf';
import { HIT_NAMES, warmUp, writeHitSet } from './qps/hits';
import { MISS_LINES, MissSets } from './qps/misses';
import { NSD, peerDefs, startUpstream, type PeerDef } from './qps/peers';
import { freePort, waitReady } from './qps/ports';
import { cleanup, isStopping, peakRssKiB, stopAllOnSignals, stopProcess, tmpDirs, type Managed } from './qps/processes';
import { report, type Row } from './qps/report';
import {
  BUSY_PCT, CLIENTS, OUTSTANDING, PIN, QUERY_TIMEOUT_S, QUIET_WAIT_S, REPEAT, RESULTS_FILE, SECONDS, SETS, selectedRows, toolVersion, type RowId,
} from './qps/settings';

stopAllOnSignals();


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
  const hitsFile = await writeHitSet(tmp);
  const misses = new MissSets(tmp);
  await misses.file(0);

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
    if (isStopping()) return;
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
      await warmUp(port, hitsFile);
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
        if (isStopping()) return;
        try {
          for (let attempt = 0; ; attempt++) {
            if (QUIET_WAIT_S > 0) await waitQuiet();
            const file = set === 'hits' ? hitsFile : await misses.file(a.missRuns++);
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
