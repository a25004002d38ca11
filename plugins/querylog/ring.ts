/** One served query as the `served` tap saw it; names and masks are worked out later, by the writer. */
export interface RawEntry {
  /** Wall-clock epoch ms (shown to people, compared across restarts). */
  t: number;
  client: string;
  /** The question name in wire form, lower case (`ParsedQuery.wireKey`): decoding it waits for the writer. */
  wireKey: string;
  qtype: number;
  rcode: number;
  answeredBy: string;
  upstream: string | null;
  durationUs: number;
  flags: number;
}

export const FLAG_TRUNCATED = 1;
export const FLAG_BLOCKED = 2;
export const FLAG_CACHED = 4;

/**
 * A fixed-size FIFO between the answer path and the writer. `push` is O(1) and never allocates beyond the
 * entry; when full it refuses (the caller counts the drop) instead of growing or evicting the oldest, so a
 * stalled database costs the newest entries only and memory stays at `capacity` entries.
 */
export class Ring {
  private readonly slots: (RawEntry | undefined)[];
  private head = 0;
  private count = 0;

  constructor(readonly capacity: number) {
    this.slots = new Array<RawEntry | undefined>(capacity);
  }

  get size(): number {
    return this.count;
  }

  push(e: RawEntry): boolean {
    if (this.count === this.capacity) return false;
    this.slots[(this.head + this.count) % this.capacity] = e;
    this.count++;
    return true;
  }

  /** Removes and returns up to `max` of the oldest entries. */
  drain(max: number): RawEntry[] {
    const n = Math.min(max, this.count);
    const out = new Array<RawEntry>(n);
    for (let i = 0; i < n; i++) {
      const at = (this.head + i) % this.capacity;
      out[i] = this.slots[at] as RawEntry;
      this.slots[at] = undefined;
    }
    this.head = (this.head + n) % this.capacity;
    this.count -= n;
    return out;
  }

  /** The entries in order, oldest first, without removing them. */
  peekAll(): RawEntry[] {
    const out = new Array<RawEntry>(this.count);
    for (let i = 0; i < this.count; i++) out[i] = this.slots[(this.head + i) % this.capacity] as RawEntry;
    return out;
  }
}
