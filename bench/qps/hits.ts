/**
 * The cache-hit set: HIT_NAMES names under bench.test., replayed by every run after one warm-up pass (which fills
 * the caches and wakes the JIT). Its partner row is the bare Node responder (target: codexdns ≥ 0.9× its QPS).
 */
import path from 'node:path';
import { dnsperf } from './dnsperf';
import { writeLines } from './queryFile';

export const HIT_NAMES = 1000;

/** Writes the hit set into `dir`; returns its path. */
export async function writeHitSet(dir: string): Promise<string> {
  const file = path.join(dir, 'hits.txt');
  await writeLines(file, HIT_NAMES, (i) => `h${i}.bench.test A\n`);
  return file;
}

/** One pass over the hit set, unmeasured. */
export async function warmUp(port: number, hitsFile: string): Promise<void> {
  await dnsperf(port, hitsFile, { passes: 1 });
}
