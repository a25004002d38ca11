/**
 * A fixed-size table of values by 32-bit key, for what is in flight on the answer path (a UDP pool's tries by
 * socket and ID, forward's questions by hash): open addressing, linear probing, deletion by backward shift (no
 * tombstones, so it never needs rebuilding), no allocation per entry.
 *
 * Not a Map: a Map that took a value per query and deleted it on the answer kept that value, and everything it
 * holds, alive into the young generation's next collection, so V8 copied it into the old generation where it
 * died (bench/README.md, "Answer path, round 3"). Here a removed value's slot is cleared at once.
 *
 * Several values may share a key (a hash): walk them with `first` and `next`.
 */
export class ProbeTable<V> {
  private readonly keys: Uint32Array;
  /** null marks an empty slot. */
  private readonly values: (V | null)[];
  private readonly mask: number;
  private readonly shift: number;
  private count = 0;

  /** `bound`: the most values ever held at once; the table is at least twice that, so probe runs stay short. */
  constructor(bound: number) {
    let cap = 16;
    while (cap < 2 * bound) cap *= 2;
    this.keys = new Uint32Array(cap);
    this.values = new Array<V | null>(cap).fill(null);
    this.mask = cap - 1;
    this.shift = 32 - Math.log2(cap);
  }

  get size(): number {
    return this.count;
  }

  /** Slots, for a scan with `at` and `keyAt`. */
  get capacity(): number {
    return this.mask + 1;
  }

  /** The first slot holding `key`, or -1. */
  first(key: number): number {
    return this.from(this.home(key), key >>> 0);
  }

  /** The next slot after `slot` holding `key`, or -1. */
  next(slot: number, key: number): number {
    return this.from((slot + 1) & this.mask, key >>> 0);
  }

  /** The slot holding this value under `key`, or -1. */
  slotOf(key: number, value: V): number {
    for (let s = this.first(key); s !== -1; s = this.next(s, key)) if (this.values[s] === value) return s;
    return -1;
  }

  /** The value in `slot` (null: empty). */
  at(slot: number): V | null {
    return this.values[slot];
  }

  keyAt(slot: number): number {
    return this.keys[slot];
  }

  /** Adds `value` under `key`; the caller keeps within the bound given to the constructor. */
  add(key: number, value: V): void {
    if (this.count >= this.mask) throw new Error('probe table full');
    let i = this.home(key);
    while (this.values[i] !== null) i = (i + 1) & this.mask;
    this.keys[i] = key;
    this.values[i] = value;
    this.count++;
  }

  /** Empties `slot`; an entry further on its probe run may move into it (look at `slot` again when scanning). */
  removeAt(slot: number): void {
    const keys = this.keys;
    const values = this.values;
    const mask = this.mask;
    let hole = slot;
    for (let i = (slot + 1) & mask; values[i] !== null; i = (i + 1) & mask) {
      const h = this.home(keys[i]);
      // Move the entry at i into the hole when its home is not cyclically within (hole, i].
      if (hole <= i ? h <= hole || h > i : h <= hole && h > i) {
        keys[hole] = keys[i];
        values[hole] = values[i];
        hole = i;
      }
    }
    values[hole] = null;
    this.count--;
  }

  clear(): void {
    this.values.fill(null);
    this.count = 0;
  }

  private from(start: number, key: number): number {
    const values = this.values;
    for (let i = start; values[i] !== null; i = (i + 1) & this.mask) if (this.keys[i] === key) return i;
    return -1;
  }

  private home(key: number): number {
    return Math.imul(key, 0x9e3779b1) >>> this.shift;
  }
}
