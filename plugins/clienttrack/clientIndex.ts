import { LruMap } from '../../core/primitives/lru';

/** Flags the index keeps for a client (bits of `flags(slot)`). */
export const DISCOVERING = 1;
/** Seen before the index loaded from the database: new or known is decided when it loads. */
export const UNVERIFIED = 2;
/** `newClient` was called for it in this process (a row still `discovering` from before a restart was not). */
export const ANNOUNCED = 4;

const FIRST_SLOTS = 1024;

/**
 * What tracking remembers of each client, bounded to `capacity` clients in least-recently-used order.
 *
 * Why not one object per client: a storm leaves tens of thousands of clients in the index for as long as they
 * stay, and every object (and every boxed timestamp in it) is work for each mark-compact of the V8 heap, which
 * the answer path shares. Here a client costs its address string and one slot number in the LRU map; its times
 * and flags live in typed arrays, outside the collected heap.
 */
export class ClientIndex implements Iterable<[string, number]> {
  readonly capacity: number;
  private readonly lru: LruMap<string, number>;
  /** Wall ms of the latest query. */
  private seenAt: Float64Array;
  /** Wall ms when the client was last moved to the newest end of the LRU. */
  private touchedAt: Float64Array;
  private flagBits: Uint8Array;
  /** Slots not in use, as a stack (`freeTop` of them). */
  private freeSlots: Int32Array;
  private freeTop = 0;
  /** Slots handed out so far (slots below it are in use or on the free stack). */
  private used = 0;

  constructor(capacity: number) {
    this.capacity = capacity;
    this.lru = new LruMap<string, number>(capacity);
    // One slot beyond capacity: a new client takes its slot before the oldest gives its own back.
    const n = Math.min(capacity + 1, FIRST_SLOTS);
    this.seenAt = new Float64Array(n);
    this.touchedAt = new Float64Array(n);
    this.flagBits = new Uint8Array(n);
    this.freeSlots = new Int32Array(n);
  }

  get size(): number {
    return this.lru.size;
  }

  /** The client's slot, or -1; does not touch recency. */
  slot(ip: string): number {
    return this.lru.peek(ip) ?? -1;
  }

  has(ip: string): boolean {
    return this.lru.has(ip);
  }

  /**
   * Adds a client as the newest (or replaces one, keeping nothing of it). Returns the flags of the client pushed
   * out to make room, or -1 when none was.
   */
  add(ip: string, seen: number, flags: number): number {
    const old = this.lru.peek(ip);
    if (old !== undefined) {
      this.lru.delete(ip);
      this.release(old);
    }
    const s = this.allocate();
    this.seenAt[s] = seen;
    this.touchedAt[s] = seen;
    this.flagBits[s] = flags;
    const out = this.lru.set(ip, s);
    if (out === undefined) return -1;
    const evictedFlags = this.flagBits[out[1]];
    this.release(out[1]);
    return evictedFlags;
  }

  /** Moves the client to the newest end of the LRU. */
  refresh(ip: string, at: number): void {
    const s = this.lru.get(ip);
    if (s !== undefined) this.touchedAt[s] = at;
  }

  delete(ip: string): boolean {
    const s = this.lru.peek(ip);
    if (s === undefined) return false;
    this.lru.delete(ip);
    this.release(s);
    return true;
  }

  seen(slot: number): number {
    return this.seenAt[slot];
  }

  setSeen(slot: number, at: number): void {
    this.seenAt[slot] = at;
  }

  touched(slot: number): number {
    return this.touchedAt[slot];
  }

  flags(slot: number): number {
    return this.flagBits[slot];
  }

  setFlags(slot: number, flags: number): void {
    this.flagBits[slot] = flags;
  }

  /** [ip, slot] from the least recently used client to the newest. */
  [Symbol.iterator](): IterableIterator<[string, number]> {
    return this.lru.entries();
  }

  private allocate(): number {
    if (this.freeTop > 0) return this.freeSlots[--this.freeTop];
    if (this.used === this.seenAt.length) this.grow();
    return this.used++;
  }

  private release(slot: number): void {
    this.flagBits[slot] = 0;
    this.freeSlots[this.freeTop++] = slot;
  }

  private grow(): void {
    const n = Math.min(this.capacity + 1, this.seenAt.length * 2);
    this.seenAt = grown(this.seenAt, n);
    this.touchedAt = grown(this.touchedAt, n);
    this.flagBits = grown(this.flagBits, n);
    this.freeSlots = grown(this.freeSlots, n);
  }
}

/** A longer copy of a typed array. */
function grown<A extends Float64Array | Uint8Array | Int32Array>(a: A, n: number): A {
  const b = new (a.constructor as new (length: number) => A)(n);
  b.set(a);
  return b;
}
