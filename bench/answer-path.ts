// The answer path's CPU cost in one process, without client sockets: queries are fed to the dispatcher's
// sink directly (parse, route, chain, cache, write), so the figure does not depend on dnsperf getting a CPU on
// a busy machine. Cache hits run synchronously (CPU ns per query); misses go through `forward` to the test
// kit's fake upstream in this same process (its CPU included), 200 in flight. Not part of `npm test`.
//
//   node dist/bench/answer-path.js [--dist OTHER/dist] [--rounds 7]
//
// `--dist` measures another build (its testing kit and server) with this script, to compare before/after.
// Pin it (`taskset -c 1`) and alternate builds; it prints one JSON line: min and median over the rounds.
import path from 'node:path';
import { encodeQuery } from './common';
import type * as Testing from '../testing';

const HITS_PER_ROUND = 200_000;
const MISSES_PER_ROUND = 20_000;
const IN_FLIGHT = 200;

function arg(name: string, fallback: string): string {
  const i = process.argv.indexOf(name);
  return i !== -1 && i + 1 < process.argv.length ? process.argv[i + 1] : fallback;
}

const dist = path.resolve(arg('--dist', path.resolve(__dirname, '..')));
const rounds = Math.max(1, Math.min(50, Number(arg('--rounds', '7')) || 7));

interface Sink {
  onMessage(raw: Buffer, peer: object, transport: 'udp', reply: (b: Buffer) => void, done: () => void): void;
}

async function main(): Promise<void> {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const kit = require(path.join(dist, 'testing')) as typeof Testing;
  const up = await kit.startFakeUpstream({ records: { '*.bench.test': { A: '192.0.2.1' } }, ttl: 3600 });
  const s = await kit.startServer(`servers:\n  - listen: [udp://127.0.0.1:0]\n    plugins:\n      - cache: { capacity: 100000 }\n      - forward: { to: ["${up.address}"] }\n`);
  try {
    const sink = (s.server.dispatcher as unknown as { sinkFor(key: string): Sink }).sinkFor('udp://127.0.0.1:0');
    const peer = { address: '127.0.0.1', port: 40000, family: 4, localAddress: '127.0.0.1' };
    const hits = Array.from({ length: 1000 }, (_, i) => encodeQuery(i, `h${i}.bench.test`));
    const done = (): void => {};
    let replies = 0;
    const count = (): void => {
      replies++;
    };
    // Warm the cache 100 at a time: forward answers REFUSED past its in-flight bound, and that is not cached.
    for (let i = 0; i < hits.length; i += 100) {
      const batch = hits.slice(i, i + 100);
      const rcodes = await Promise.all(batch.map((q) => new Promise<number>((resolve) => sink.onMessage(q, peer, 'udp', (b) => resolve(b[3] & 0x0f), done))));
      if (rcodes.some((r) => r !== 0)) throw new Error(`warm-up: answers not NOERROR: ${rcodes.join(',')}`);
    }
    const hitNs: number[] = [];
    const missUs: number[] = [];
    let missErrors = 0;
    // Which RCODEs the misses that failed got (2 SERVFAIL: a timeout on a starved machine; 5 REFUSED: a bound).
    const missRcodes: Record<number, number> = {};
    for (let round = 0; round < rounds; round++) {
      const c0 = process.cpuUsage();
      for (let i = 0; i < HITS_PER_ROUND; i++) sink.onMessage(hits[i % hits.length], peer, 'udp', count, done);
      const c1 = process.cpuUsage(c0);
      hitNs.push(((c1.user + c1.system) * 1000) / HITS_PER_ROUND);
      const m0 = process.cpuUsage();
      await new Promise<void>((resolve) => {
        let sent = 0;
        let got = 0;
        const one = (): void => {
          if (sent >= MISSES_PER_ROUND) return;
          const q = encodeQuery(sent & 0xffff, `m${round}-${sent}.bench.test`);
          sent++;
          sink.onMessage(q, peer, 'udp', (b) => {
            const rcode = b[3] & 0x0f;
            if (rcode !== 0) {
              missErrors++;
              missRcodes[rcode] = (missRcodes[rcode] ?? 0) + 1;
            }
            if (++got === MISSES_PER_ROUND) resolve();
            else one();
          }, done);
        };
        for (let k = 0; k < IN_FLIGHT; k++) one();
      });
      const m1 = process.cpuUsage(m0);
      missUs.push((m1.user + m1.system) / MISSES_PER_ROUND);
    }
    const median = (a: number[]): number => [...a].sort((x, y) => x - y)[a.length >> 1];
    console.log(
      JSON.stringify({
        dist,
        hitCpuNs: { min: Math.round(Math.min(...hitNs)), median: Math.round(median(hitNs)) },
        missCpuUs: { min: +Math.min(...missUs).toFixed(1), median: +median(missUs).toFixed(1) },
        // Every hit answered synchronously: the loop measured hits, not misses.
        hitsAnswered: replies === rounds * HITS_PER_ROUND,
        missesNotNoerror: missErrors,
        missRcodes,
      }),
    );
  } finally {
    await s.stop();
    await up.stop();
  }
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    console.error(err);
    process.exit(1);
  },
);
