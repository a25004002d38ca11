/**
 * The most blocked names, in bounded memory: at most `capacity` names are counted; a new name arriving when the
 * table is full takes the place of the least counted one only when that one has been seen once (the long tail),
 * otherwise it is dropped and counted. Cheap per blocked query (one Map update); the sort happens when asked.
 */
export class TopNames {
  private readonly counts = new Map<string, number>();
  dropped = 0;

  constructor(readonly capacity: number) {}

  get size(): number {
    return this.counts.size;
  }

  add(name: string): void {
    const c = this.counts.get(name);
    if (c !== undefined) {
      this.counts.set(name, c + 1);
      return;
    }
    if (this.counts.size >= this.capacity) {
      // Evict one name seen only once (oldest first); when all are busier, this one is not tracked.
      let victim: string | undefined;
      for (const [n, k] of this.counts) {
        if (k <= 1) {
          victim = n;
          break;
        }
      }
      if (victim === undefined) {
        this.dropped++;
        // Age everything so that names blocked long ago make room eventually.
        for (const [n, k] of this.counts) this.counts.set(n, k >> 1);
        return;
      }
      this.counts.delete(victim);
    }
    this.counts.set(name, 1);
  }

  top(n: number): { name: string; count: number }[] {
    return [...this.counts].filter(([, c]) => c > 0).sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1)).slice(0, n).map(([name, count]) => ({ name, count }));
  }
}
