// The long fuzz run (issue 15, point 7): FUZZ_COUNT (default 1,000,000) mutated packets over UDP and TCP at
// codexdns (the CLI, in a child process) behind the test kit's fake upstream on loopback, with the same mutations
// as test/fuzz.test.ts. Bounded in count and in time (FUZZ_MAX_SECONDS, default 900): it stops by itself.
// Prints packets/s absorbed (taken in by the server, by its own counter), crashes, uncaught exceptions, reply
// rule violations, the largest UDP reply/query size ratio (amplification) and RSS; exits 1 on any failure.
//
//   npm run build && nice node dist/bench/fuzz.js
import { startFakeUpstream, query } from '../testing';
import { startChildServer, metricValue } from '../test/helpers/childServer';
import { runFuzz } from '../test/helpers/packetFuzzer';

async function main(): Promise<void> {
  const count = Number(process.env.FUZZ_COUNT ?? 1_000_000);
  const maxMs = Number(process.env.FUZZ_MAX_SECONDS ?? 900) * 1000;
  const seed = Number(process.env.FUZZ_SEED ?? 0x15b0);
  const TXT = Array.from({ length: 4 }, (_, i) => String.fromCharCode(97 + i).repeat(250));
  const up = await startFakeUpstream({ records: { 'big.example': { TXT }, '*.example': { A: '192.0.2.5', AAAA: '2001:db8::5' } } });
  const s = await startChildServer(`servers:
  - listen: [udp://127.0.0.1:{{port}}, tcp://127.0.0.1:{{port}}]
    plugins:
      - metrics: { listen: "127.0.0.1:{{metricsPort}}" }
      - log: { sample: 0.001 }
      - cache: {}
      - forward: { to: ["${up.address}"] }
reload: { watch: false }
`);
  let failed = false;
  try {
    const received = async (proto: string): Promise<number> => metricValue(await s.metrics(), 'codexdns_dns_packets_received_total', `proto="${proto}"`);
    const rssStart = s.rss();
    let peak = rssStart;
    const sampler = setInterval(() => (peak = Math.max(peak, s.rss())), 250);
    let lastReport = Date.now();
    const stats = await runFuzz({
      port: s.port,
      count,
      seed,
      maxMs,
      serverUdpReceived: () => received('udp'),
      onProgress: (st) => {
        up.reset();
        if (Date.now() - lastReport > 10_000) {
          lastReport = Date.now();
          process.stderr.write(`${st.sent} sent, ${Math.round(st.sent / (st.elapsedMs / 1000))}/s, RSS ${(s.rss() / 1048576).toFixed(0)} MB\n`);
        }
      },
    });
    clearInterval(sampler);
    await new Promise((r) => setTimeout(r, 3000));
    const m = await s.metrics();
    const taken = metricValue(m, 'codexdns_dns_packets_received_total');
    const alive = s.child.exitCode === null && s.child.signalCode === null;
    const log = s.log();
    const uncaught = (log.match(/uncaught exception|unhandled rejection/g) ?? []).length;
    let answered = false;
    if (alive) {
      const until = Date.now() + 15_000;
      while (!answered && Date.now() < until) {
        try {
          answered = (await query('after.example', 'A', { port: s.port, timeoutMs: 2000 })).rcode === 'NOERROR';
        } catch {
          // retry
        }
        if (!answered) await new Promise((r) => setTimeout(r, 500));
      }
    }
    const secs = stats.elapsedMs / 1000;
    const mb = (n: number): string => (n / 1048576).toFixed(1);
    const lines = [
      `packets sent            ${stats.sent} (${stats.udpSent} UDP, ${stats.tcpSent} TCP)${stats.timedOut ? ' — stopped by the time bound' : ''}`,
      `time                    ${secs.toFixed(1)} s`,
      `packets/s sent          ${Math.round(stats.sent / secs)}`,
      `messages taken in       ${taken} (${Math.round(taken / secs)}/s absorbed; TCP messages counted as framed)`,
      `UDP replies             ${stats.udpReplies}`,
      `crashes                 ${alive ? 0 : 1}`,
      `uncaught exceptions     ${uncaught}`,
      `reply rule violations   ${stats.violations}${stats.examples.length ? ': ' + stats.examples.join('; ') : ''}`,
      `largest UDP reply       ${stats.largestUdpReply} B`,
      `amplification (UDP)     ${stats.maxRatio.toFixed(1)} (${stats.maxRatioQuery} B query -> ${stats.maxRatioReply} B reply)`,
      `FORMERR by the core     ${metricValue(m, 'codexdns_dns_formerr_total')}`,
      `RSS                     ${mb(rssStart)} MB at start, ${mb(peak)} MB peak, ${mb(s.rss())} MB at the end`,
      `valid query after       ${answered ? 'NOERROR' : 'FAILED'}`,
    ];
    process.stdout.write(lines.join('\n') + '\n');
    failed = !alive || uncaught > 0 || stats.violations > 0 || !answered;
  } finally {
    await s.stop();
    await up.stop();
  }
  process.exit(failed ? 1 : 0);
}

main().catch((err) => {
  process.stderr.write(`${(err as Error).stack ?? err}\n`);
  process.exit(1);
});
