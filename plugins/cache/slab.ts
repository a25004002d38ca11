/**
 * Where the cache's bytes live: fixed-size chunks cut from 64 KiB pages, one size class per page (memcached's
 * slab allocator). An entry is then a few small integers and one chunk, not a Buffer object, a layout object and a
 * typed array of its own: about 100 bytes of heap per entry instead of about 400 around a 60-byte answer.
 *
 * A chunk is addressed by a `ref`, page × 65536 + its byte offset in the page (a page of more than 64 KiB holds
 * one chunk, at 0), a small integer V8 keeps unboxed and that reads back with a shift and a mask. Free chunks of a page
 * form a list threaded through the chunks themselves (the first two bytes of a free chunk name the next), so a
 * page costs nothing beyond its bytes; a page whose last chunk is freed goes back to the allocator, unless it is
 * its class's only page with room (so a class does not allocate and free a page on every other store).
 */

const PAGE_BYTES = 64 * 1024;
/** ref = page × REF_PAGE + offset. */
const REF_PAGE = 65536;
/** A 64 KiB page holds at most 2,048 chunks of the smallest class. */
const MAX_SLOTS = 4096;
const NONE = 0xffff;
const MIN_CHUNK = 32;

/** The chunk sizes: every 16 bytes up to 256, then 12.5% apart (rounded up to 16): at most ~6% waste on average. */
function buildClasses(maxChunk: number): number[] {
  const out: number[] = [];
  for (let s = MIN_CHUNK; s <= 256; s += 16) out.push(s);
  let s = 256;
  while (out[out.length - 1] < maxChunk) {
    s = Math.ceil((s * 1.125) / 16) * 16;
    out.push(Math.min(s, Math.ceil(maxChunk / 16) * 16));
  }
  return out;
}

/** Where a chunk's bytes are read from: the slab, or one chunk's own copy (an entry detached from its store). */
export interface ChunkSource {
  bufferOf(ref: number): Buffer;
  offsetOf(ref: number): number;
  sizeOf(ref: number): number;
}

/** One chunk copied out of a slab (at offset 0). */
export class DetachedChunk implements ChunkSource {
  constructor(private readonly bytes: Buffer) {}
  bufferOf(): Buffer {
    return this.bytes;
  }
  offsetOf(): number {
    return 0;
  }
  sizeOf(): number {
    return this.bytes.length;
  }
}

export class Slab implements ChunkSource {
  /** Chunk size of each class. */
  readonly classSizes: number[];
  /** Class of a length, by (length + 15) >> 4. */
  private readonly classBy16: Uint8Array;
  private readonly pages: (Buffer | null)[] = [];
  private readonly pageClass: number[] = [];
  private readonly pageSlots: number[] = [];
  private readonly pageUsed: number[] = [];
  /** Never-used slots start here (chunks below it are in use or on the free list). */
  private readonly pageBump: number[] = [];
  private readonly pageFreeHead: number[] = [];
  /** Position in its class's `partial` list, or -1 when full. */
  private readonly pagePos: number[] = [];
  private readonly freePages: number[] = [];
  /** Pages with room, by class. */
  private readonly partial: number[][];
  private pageBytes = 0;
  private chunkBytes = 0;

  constructor(readonly maxChunk: number) {
    this.classSizes = buildClasses(Math.max(maxChunk, MIN_CHUNK));
    this.classBy16 = new Uint8Array(((this.classSizes[this.classSizes.length - 1] + 15) >> 4) + 1);
    let c = 0;
    for (let i = 0; i < this.classBy16.length; i++) {
      while (this.classSizes[c] < i * 16) c++;
      this.classBy16[i] = c;
    }
    this.partial = this.classSizes.map(() => []);
  }

  /** The chunk size that holds `length` bytes. */
  chunkSize(length: number): number {
    return this.classSizes[this.classBy16[(Math.max(length, 2) + 15) >> 4]];
  }

  /** Bytes of the pages held (what the slab takes from the process, chunks in use or not). */
  get allocatedBytes(): number {
    return this.pageBytes;
  }

  /** Bytes of the chunks in use. */
  get usedBytes(): number {
    return this.chunkBytes;
  }

  /** A chunk of at least `length` bytes (length ≤ maxChunk). */
  alloc(length: number): number {
    const c = this.classBy16[(Math.max(length, 2) + 15) >> 4];
    const list = this.partial[c];
    const p = list.length > 0 ? list[list.length - 1] : this.newPage(c);
    const size = this.classSizes[c];
    let slot = this.pageFreeHead[p];
    if (slot !== NONE) {
      this.pageFreeHead[p] = (this.pages[p] as Buffer).readUInt16LE(slot * size);
    } else {
      slot = this.pageBump[p]++;
    }
    if (++this.pageUsed[p] === this.pageSlots[p]) this.unlist(p);
    this.chunkBytes += size;
    return p * REF_PAGE + slot * size;
  }

  free(ref: number): void {
    const p = ref >>> 16;
    const c = this.pageClass[p];
    const size = this.classSizes[c];
    const slot = (ref & 0xffff) / size;
    const wasFull = this.pageUsed[p] === this.pageSlots[p];
    (this.pages[p] as Buffer).writeUInt16LE(this.pageFreeHead[p], slot * size);
    this.pageFreeHead[p] = slot;
    this.chunkBytes -= size;
    const used = --this.pageUsed[p];
    if (used === 0 && !(this.partial[c].length === 1 && this.pagePos[p] === 0) && !(wasFull && this.partial[c].length === 0)) {
      this.releasePage(p);
      return;
    }
    if (wasFull) this.list(p);
  }

  /** The page holding `ref` (read with `offsetOf`). */
  bufferOf(ref: number): Buffer {
    return this.pages[ref >>> 16] as Buffer;
  }

  offsetOf(ref: number): number {
    return ref & 0xffff;
  }

  sizeOf(ref: number): number {
    return this.classSizes[this.pageClass[ref >>> 16]];
  }

  clear(): void {
    for (let p = 0; p < this.pages.length; p++) if (this.pages[p] !== null) this.releasePage(p);
  }

  private newPage(c: number): number {
    const size = this.classSizes[c];
    const bytes = Math.max(PAGE_BYTES, size);
    // Offsets stay below 65,536: a page is 64 KiB, or one chunk at 0.
    const slots = Math.min(Math.floor(bytes / size), MAX_SLOTS);
    const p = this.freePages.length > 0 ? (this.freePages.pop() as number) : this.pages.length;
    // Outside the V8 heap (allocUnsafeSlow: its own ArrayBuffer, not a slice of the shared pool), freed whole.
    this.pages[p] = Buffer.allocUnsafeSlow(slots * size);
    this.pageClass[p] = c;
    this.pageSlots[p] = slots;
    this.pageUsed[p] = 0;
    this.pageBump[p] = 0;
    this.pageFreeHead[p] = NONE;
    this.pagePos[p] = -1;
    this.pageBytes += slots * size;
    this.list(p);
    return p;
  }

  private releasePage(p: number): void {
    if (this.pagePos[p] !== -1) this.unlist(p);
    this.chunkBytes -= this.pageUsed[p] * this.classSizes[this.pageClass[p]];
    this.pageBytes -= this.pageSlots[p] * this.classSizes[this.pageClass[p]];
    this.pages[p] = null;
    this.pageUsed[p] = 0;
    this.freePages.push(p);
  }

  private list(p: number): void {
    const l = this.partial[this.pageClass[p]];
    this.pagePos[p] = l.length;
    l.push(p);
  }

  private unlist(p: number): void {
    const l = this.partial[this.pageClass[p]];
    const i = this.pagePos[p];
    const last = l.pop() as number;
    if (last !== p) {
      l[i] = last;
      this.pagePos[last] = i;
    }
    this.pagePos[p] = -1;
  }
}
