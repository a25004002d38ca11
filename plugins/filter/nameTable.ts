/**
 * The compact name table, grown from examples/plugins/blocklist/table.js: every name is stored with its labels
 * reversed and separated by a 0 byte (`ads.example.com` → `com\0example\0ads`), sorted, in ONE Buffer, with a
 * Uint32Array of where each key starts and a small sampled index that stays in the CPU cache. ≈ 18 + 4 + 0.7
 * bytes a name, no per-name object for the garbage collector to walk. A key may end with the separator
 * (`com\0example\0`, from `*.example.com`): it matches the subdomains only.
 *
 * Lookup is one binary search: names under a listed parent are dropped while building, so the greatest key ≤ the
 * query's key is the only one that can be the query itself or one of its parents.
 *
 * Building streams: keys are collected as bytes in chunks of CHUNK (one buffer, reused), each chunk sorted and
 * packed into a run, and the runs merged (a heap) into the final buffer, yielding to the event loop between
 * chunks so the answer path never waits more than one chunk's sort (≈ 2 ms). Memory while building: the runs and
 * the final buffer, about twice the finished table, and no string per key.
 */

/** Keys sorted at once: bounds both the pause (one sort) and the chunk buffer. */
export const CHUNK = 8192;
/** Every SAMPLE-th key is copied into the sampled index (≈ 3% of the table). */
const SAMPLE = 32;
const SEP = 0;
/** Longest key: a DNS name has at most 253 characters (+1 for a subdomains-only key). */
export const MAX_KEY = 256;

const yieldToLoop = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

function compare(a: Uint8Array, as: number, alen: number, b: Uint8Array, bs: number, blen: number): number {
  const n = alen < blen ? alen : blen;
  for (let i = 0; i < n; i++) {
    const c = a[as + i] - b[bs + i];
    if (c !== 0) return c;
  }
  return alen - blen;
}

/** Writes the reversed key of `name` into `out`; returns its length, or -1 for a name the table cannot hold. */
export function reverseInto(name: string, out: Uint8Array): number {
  const len = name.length;
  if (len === 0 || len > 253) return -1;
  let pos = 0;
  let end = len;
  for (;;) {
    const dot = name.lastIndexOf('.', end - 1);
    for (let i = dot + 1; i < end; i++) out[pos++] = name.charCodeAt(i) & 0xff;
    if (dot < 0) break;
    out[pos++] = SEP;
    end = dot;
  }
  return pos;
}

const labelStarts = new Int32Array(128);

/**
 * The same key from the question's wire form (`ctx.query.wireKey`: length-prefixed labels, already lower case),
 * without making the dotted name: the answer path of a name that is not listed allocates nothing.
 */
export function reverseWireInto(wireKey: string, out: Uint8Array): number {
  let n = 0;
  let pos = 0;
  while (pos < wireKey.length) {
    const len = wireKey.charCodeAt(pos);
    if (len === 0) break;
    if (n === labelStarts.length) return -1;
    labelStarts[n++] = pos;
    pos += len + 1;
  }
  if (n === 0 || pos > 254) return -1;
  let o = 0;
  for (let i = n - 1; i >= 0; i--) {
    const start = labelStarts[i];
    const len = wireKey.charCodeAt(start);
    for (let j = 1; j <= len; j++) out[o++] = wireKey.charCodeAt(start + j) & 0xff;
    if (i > 0) out[o++] = SEP;
  }
  return o;
}

interface Run {
  keys: Uint8Array;
  offsets: Uint32Array;
  count: number;
}

const EMPTY_RUN: Run = { keys: new Uint8Array(0), offsets: new Uint32Array(1), count: 0 };

export class NameTable {
  readonly keys: Uint8Array;
  readonly offsets: Uint32Array;
  readonly count: number;
  private readonly sampleKeys: Uint8Array;
  private readonly sampleOffsets: Uint32Array;
  private readonly samples: number;

  constructor(run: Run) {
    this.keys = run.keys;
    this.offsets = run.offsets;
    this.count = run.count;
    const samples = Math.ceil(this.count / SAMPLE);
    let bytes = 0;
    for (let j = 0; j < samples; j++) bytes += this.offsets[j * SAMPLE + 1] - this.offsets[j * SAMPLE];
    this.sampleKeys = new Uint8Array(bytes);
    this.sampleOffsets = new Uint32Array(samples + 1);
    let pos = 0;
    for (let j = 0; j < samples; j++) {
      const ks = this.offsets[j * SAMPLE];
      const ke = this.offsets[j * SAMPLE + 1];
      this.sampleOffsets[j] = pos;
      this.sampleKeys.set(this.keys.subarray(ks, ke), pos);
      pos += ke - ks;
    }
    this.sampleOffsets[samples] = pos;
    this.samples = samples;
  }

  static readonly EMPTY = new NameTable({ keys: new Uint8Array(0), offsets: new Uint32Array(1), count: 0 });

  /** Memory held, counting the whole buffers a view may sit in. */
  get byteLength(): number {
    return this.keys.buffer.byteLength + this.offsets.buffer.byteLength + this.sampleKeys.byteLength + this.sampleOffsets.byteLength;
  }

  /** The key at `i` as a string (for `why` and tests). */
  keyAt(i: number): string {
    return String.fromCharCode(...this.keys.subarray(this.offsets[i], this.offsets[i + 1]));
  }

  /**
   * True when the key q[0, qlen) (from reverseInto) or one of its parents is listed; -1 would mean "not here",
   * the index of the matching key otherwise.
   */
  find(q: Uint8Array, qlen: number): number {
    if (qlen <= 0 || this.count === 0) return -1;
    const sk = this.sampleKeys;
    const so = this.sampleOffsets;
    let lo = 0;
    let hi = this.samples - 1;
    let block = -1;
    while (lo <= hi) {
      const mid = (lo + hi) >>> 1;
      const c = compare(sk, so[mid], so[mid + 1] - so[mid], q, 0, qlen);
      if (c === 0) return mid * SAMPLE;
      if (c < 0) {
        block = mid;
        lo = mid + 1;
      } else hi = mid - 1;
    }
    if (block === -1) return -1;
    const keys = this.keys;
    const offsets = this.offsets;
    let found = block * SAMPLE;
    lo = found + 1;
    hi = Math.min(found + SAMPLE, this.count) - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >>> 1;
      const c = compare(keys, offsets[mid], offsets[mid + 1] - offsets[mid], q, 0, qlen);
      if (c === 0) return mid;
      if (c < 0) {
        found = mid;
        lo = mid + 1;
      } else hi = mid - 1;
    }
    const ks = offsets[found];
    const klen = offsets[found + 1] - ks;
    // A parent: a prefix of q that ends where a label of q ends (or a subdomains-only key, which ends on SEP).
    if (klen >= qlen) return -1;
    if (keys[ks + klen - 1] !== SEP && q[klen] !== SEP) return -1;
    for (let i = 0; i < klen; i++) if (keys[ks + i] !== q[i]) return -1;
    return found;
  }

  /** Convenience for names (allocates a key buffer: not for the answer path). */
  hasName(name: string): boolean {
    const q = new Uint8Array(MAX_KEY);
    return this.find(q, reverseInto(name, q)) !== -1;
  }
}

/** Streams keys in, sorted chunk by chunk; `finish()` merges the runs into a NameTable. */
export class TableBuilder {
  /**
   * The chunk being filled, as bytes (one buffer reused for every chunk): keys as strings would cost the heap
   * ~100 bytes each and the garbage collector a million objects a list. Grown on demand, so the allow builder of a
   * block list, or an inline list of three names, costs next to nothing.
   */
  private chunkKeys = new Uint8Array(0);
  /** Where each buffered key starts; past CHUNK + 1 only when one line (a hosts line) brings more names than a chunk. */
  private chunkStarts = new Uint32Array(0);
  private order = new Uint32Array(0);
  private n = 0;
  private used = 0;
  private runs: Run[] = [];
  added = 0;

  private room(len: number): void {
    if (this.used + len <= this.chunkKeys.length) return;
    const grown = new Uint8Array(Math.max(this.chunkKeys.length * 2, this.used + len, 4096));
    grown.set(this.chunkKeys.subarray(0, this.used));
    this.chunkKeys = grown;
  }

  /** Adds a key; once `full`, the caller should `await flush()` (it yields to the event loop). */
  add(key: string): void {
    this.room(key.length);
    const k = this.chunkKeys;
    let p = this.used;
    for (let j = 0; j < key.length; j++) k[p++] = key.charCodeAt(j);
    this.push(p);
  }

  /** Adds the key src[0, len) (from nameKeyOfBytes). */
  addBytes(src: Uint8Array, len: number): void {
    this.room(len);
    this.chunkKeys.set(src.subarray(0, len), this.used);
    this.push(this.used + len);
  }

  private push(end: number): void {
    if (this.n + 1 >= this.chunkStarts.length) {
      const grown = new Uint32Array(Math.max(this.chunkStarts.length * 2, 256));
      grown.set(this.chunkStarts);
      this.chunkStarts = grown;
      this.order = new Uint32Array(grown.length);
    }
    this.chunkStarts[this.n++] = this.used;
    this.used = end;
    this.added++;
  }

  get full(): boolean {
    return this.n >= CHUNK;
  }

  async flush(): Promise<void> {
    const count = this.n;
    if (count === 0) return;
    const starts = this.chunkStarts;
    starts[count] = this.used;
    const order = this.order.subarray(0, count);
    for (let i = 0; i < count; i++) order[i] = i;
    const k = this.chunkKeys;
    order.sort((a, b) => compare(k, starts[a], starts[a + 1] - starts[a], k, starts[b], starts[b + 1] - starts[b]));
    const keys = new Uint8Array(this.used);
    const offsets = new Uint32Array(count + 1);
    let pos = 0;
    for (let i = 0; i < count; i++) {
      offsets[i] = pos;
      const o = order[i];
      keys.set(k.subarray(starts[o], starts[o + 1]), pos);
      pos += starts[o + 1] - starts[o];
    }
    offsets[count] = pos;
    this.runs.push({ keys, offsets, count });
    this.n = 0;
    this.used = 0;
    await yieldToLoop();
  }

  async finish(): Promise<NameTable> {
    await this.flush();
    const runs = this.runs;
    this.runs = [];
    if (runs.length === 0) return NameTable.EMPTY;
    let total = 0;
    let count = 0;
    for (const r of runs) {
      total += r.keys.byteLength;
      count += r.count;
    }
    const keys = new Uint8Array(total);
    const offsets = new Uint32Array(count + 1);
    // A heap of run cursors, ordered by their current key.
    const pos = new Int32Array(runs.length);
    const heap: number[] = [];
    const less = (a: number, b: number): boolean => {
      const ra = runs[a];
      const rb = runs[b];
      const ia = pos[a];
      const ib = pos[b];
      const c = compare(ra.keys, ra.offsets[ia], ra.offsets[ia + 1] - ra.offsets[ia], rb.keys, rb.offsets[ib], rb.offsets[ib + 1] - rb.offsets[ib]);
      return c < 0 || (c === 0 && a < b);
    };
    const down = (i: number): void => {
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < heap.length && less(heap[l], heap[m])) m = l;
        if (r < heap.length && less(heap[r], heap[m])) m = r;
        if (m === i) return;
        [heap[i], heap[m]] = [heap[m], heap[i]];
        i = m;
      }
    };
    for (let i = 0; i < runs.length; i++) if (runs[i].count > 0) heap.push(i);
    for (let i = (heap.length >> 1) - 1; i >= 0; i--) down(i);
    let kept = 0;
    let out = 0;
    let lastStart = -1;
    let lastLen = 0;
    let steps = 0;
    while (heap.length > 0) {
      const r = heap[0];
      const run = runs[r];
      const i = pos[r];
      const ks = run.offsets[i];
      const klen = run.offsets[i + 1] - ks;
      let covered = false;
      if (lastStart !== -1 && klen >= lastLen) {
        covered = true;
        for (let j = 0; j < lastLen; j++) {
          if (keys[lastStart + j] !== run.keys[ks + j]) {
            covered = false;
            break;
          }
        }
        // Equal, or under the last kept key: a subdomain (on a label boundary) of it.
        if (covered && klen > lastLen && keys[lastStart + lastLen - 1] !== SEP && run.keys[ks + lastLen] !== SEP) covered = false;
      }
      if (!covered) {
        offsets[kept++] = out;
        keys.set(run.keys.subarray(ks, ks + klen), out);
        lastStart = out;
        lastLen = klen;
        out += klen;
      }
      pos[r] = i + 1;
      if (pos[r] >= run.count) {
        // Exhausted: let its memory go while the merge goes on.
        runs[r] = EMPTY_RUN;
        const lastItem = heap.pop() as number;
        if (heap.length > 0) {
          heap[0] = lastItem;
          down(0);
        }
      } else down(0);
      if (++steps % CHUNK === 0) await yieldToLoop();
    }
    offsets[kept] = out;
    // The merge buffers were sized before duplicates were dropped: copy to the exact size only when that saves
    // more than it costs at the peak (a copy briefly doubles the table).
    const exactKeys = out > keys.length * 0.95 ? keys.subarray(0, out) : keys.slice(0, out);
    const exactOffsets = kept + 1 > offsets.length * 0.95 ? offsets.subarray(0, kept + 1) : offsets.slice(0, kept + 1);
    return new NameTable({ keys: exactKeys, offsets: exactOffsets, count: kept });
  }
}
