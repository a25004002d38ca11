// Deterministic fuzzing of the wire layer (issue 15, point 7): ~100,000 mutated packets over UDP and TCP at a
// server in a child process (its crashes, uncaught exceptions and memory are its own), with the test kit's
// fake upstream on loopback behind it. The longer run is bench/fuzz.ts.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startFakeUpstream, query } from '../testing';
import { startChildServer, metricValue } from './helpers/childServer';
import { runFuzz } from './helpers/packetFuzzer';

const SEED = 0x15b;
const COUNT = 100_000;

test('100,000 mutated packets: no crash, no uncaught exception, memory back to its level, valid queries answered after', { timeout: 170_000 }, async () => {
  const TXT = Array.from({ length: 4 }, (_, i) => String.fromCharCode(97 + i).repeat(250));
  const up = await startFakeUpstream({ records: { 'big.example': { TXT }, '*.example': { A: '192.0.2.5', AAAA: '2001:db8::5' } } });
  const s = await startChildServer(`servers:
  - listen: [udp://127.0.0.1:{{port}}, tcp://127.0.0.1:{{port}}]
    plugins:
      - metrics: { listen: "127.0.0.1:{{metricsPort}}" }
      - log: { sample: 0.01 }
      - cache: { capacity: 1000 }
      - forward: { to: ["${up.address}"] }
reload: { watch: false }
`);
  try {
    const udpReceived = async (): Promise<number> => metricValue(await s.metrics(), 'codexdns_dns_packets_received_total', 'proto="udp"');
    // A short run with another seed first, so the baseline includes what such a load grows (heap, a full cache:
    // 1,000 entries here, which the warm-up fills; the default 10,000 of fuzzed names alone take ≈ 35 MB).
    await runFuzz({ port: s.port, count: 25_000, seed: SEED + 1, maxMs: 10_000, serverUdpReceived: udpReceived });
    up.reset();
    await new Promise((r) => setTimeout(r, 1500));
    const before = s.rss();
    let peak = before;
    const sampler = setInterval(() => (peak = Math.max(peak, s.rss())), 100);
    const stats = await runFuzz({
      port: s.port,
      count: COUNT,
      seed: SEED,
      // Bounded in time as well as count: on a loaded machine the run ends early rather than late.
      maxMs: 40_000,
      serverUdpReceived: udpReceived,
      onProgress: () => up.reset(),
    });
    clearInterval(sampler);
    await new Promise((r) => setTimeout(r, 3000));
    const after = s.rss();
    const mb = (n: number): string => (n / 1048576).toFixed(1);
    process.stdout.write(`# fuzz: ${stats.sent} packets (${stats.udpSent} UDP, ${stats.tcpSent} TCP) in ${stats.elapsedMs} ms, ${Math.round(stats.sent / (stats.elapsedMs / 1000))}/s; ` +
      `${stats.udpReplies} UDP replies, largest ${stats.largestUdpReply} B, amplification ${stats.maxRatio.toFixed(1)} (${stats.maxRatioQuery} B -> ${stats.maxRatioReply} B); ` +
      `RSS ${mb(before)} MB before, ${mb(peak)} peak, ${mb(after)} after\n`);

    assert.equal(s.child.exitCode, null, 'the server is still running');
    assert.equal(stats.violations, 0, stats.examples.join('\n'));
    assert.ok(stats.sent >= 50_000, `only ${stats.sent} packets sent within the time bound`);
    const log = s.log();
    assert.doesNotMatch(log, /uncaught exception|unhandled rejection/, 'nothing reached the process-wide handlers');
    let m = await s.metrics();
    assert.ok(metricValue(m, 'codexdns_dns_formerr_total') > 1000, 'the mutations reached the parser');
    // Nothing stays behind: queries still waiting on the upstream time out, the fuzzer's connections are gone.
    const settle = Date.now() + 15_000;
    while ((metricValue(m, 'codexdns_dns_inflight_queries') > 0 || metricValue(m, 'codexdns_dns_tcp_connections') > 0) && Date.now() < settle) {
      await new Promise((r) => setTimeout(r, 250));
      m = await s.metrics();
    }
    assert.equal(metricValue(m, 'codexdns_dns_inflight_queries'), 0, 'queries in flight after the run');
    assert.equal(metricValue(m, 'codexdns_dns_tcp_connections'), 0, 'TCP connections open after the run');
    assert.equal(metricValue(m, 'codexdns_dns_tcp_connections_paused'), 0);
    assert.ok(after - before < 32 * 1048576, `RSS ${mb(before)} MB -> ${mb(after)} MB`);
    // UDP replies never exceed what a client without EDNS may get unless it asked for more (at most 4096 here).
    assert.ok(stats.largestUdpReply <= 4096, `a ${stats.largestUdpReply}-byte UDP reply`);

    for (const tcp of [false, true]) {
      // Answered at once; NOERROR once the forwarder has its upstream back (queries the fake upstream could not
      // decode went unanswered and may have cost it its health for a moment: that is forward's business).
      const first = await query('after.example', 'A', { port: s.port, tcp, timeoutMs: 3000, id: 4321 });
      assert.equal(first.id, 4321);
      let a = first;
      const until = Date.now() + 15_000;
      while (a.rcode !== 'NOERROR' && Date.now() < until) {
        await new Promise((r) => setTimeout(r, 250));
        a = await query('after.example', 'A', { port: s.port, tcp, timeoutMs: 3000 });
      }
      assert.equal(a.rcode, 'NOERROR', `first answer ${first.rcode}`);
      assert.equal((a.answers![0] as { data: string }).data, '192.0.2.5');
    }
  } finally {
    await s.stop();
    await up.stop();
  }
});
