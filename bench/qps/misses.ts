/**
 * The cache-miss sets: files of unique names. The k-th miss run of any peer reads file k, so a peer never sees a
 * miss name twice (each peer is a fresh process, so peers can share the files); generated when first needed. Its
 * partners are unbound (1 thread; target ≥ 1.5× its QPS) and the one-socket Node relay (target ≥ 0.6×).
 */
import path from 'node:path';
import { writeLines } from './queryFile';
import { SECONDS } from './settings';

/** Unique names per file: never looped at < 150k QPS. */
export const MISS_LINES = Math.max(1_500_000, SECONDS * 150_000);

export class MissSets {
  private readonly files = new Map<number, string>();
  private readonly runTag = Date.now().toString(36);

  constructor(private readonly dir: string) {}

  async file(k: number): Promise<string> {
    let f = this.files.get(k);
    if (f === undefined) {
      f = path.join(this.dir, `misses-${k}.txt`);
      await writeLines(f, MISS_LINES, (i) => `m${this.runTag}${k > 0 ? `r${k}` : ''}-${i}.bench.test A\n`);
      this.files.set(k, f);
    }
    return f;
  }
}
