/**
 * Bounded least-recently-used map. Built on Map's insertion order (delete + set moves a key to the newest end),
 * which V8 implements as an ordered hash table: every operation is O(1) with no linked list of our own to keep.
 * Iteration goes from the oldest entry to the newest.
 */
export class LruMap<K, V> implements Iterable<[K, V]> {
  readonly capacity: number;
  private readonly map = new Map<K, V>();
  private evicted = 0;
  /**
   * The key last inserted or refreshed (valid while `newestSet`): getting it again needs no move, as it already
   * sits at the newest end. Queries come in bursts from one client, so per-client maps (acl's decisions) mostly
   * hit this and skip the delete + set.
   */
  private newest: K | undefined = undefined;
  private newestValue: V | undefined = undefined;
  private newestSet = false;

  constructor(capacity: number) {
    if (!Number.isInteger(capacity) || capacity < 1) throw new RangeError(`LruMap capacity must be an integer >= 1, got ${capacity}`);
    this.capacity = capacity;
  }

  get size(): number {
    return this.map.size;
  }

  /** Entries pushed out because the map was full (a counter for metrics: growth beyond capacity is visible). */
  get evictions(): number {
    return this.evicted;
  }

  /** Reads and marks the entry as most recently used. */
  get(key: K): V | undefined {
    // The newest key again (the client that just asked): no lookup at all. A per-client map's key is a fresh
    // string per packet, so the Map would hash it every time.
    if (this.newestSet && this.newest === key) return this.newestValue;
    const value = this.map.get(key);
    // `has` only on a miss: a stored `undefined` value is still an entry and must be refreshed.
    if (value === undefined && !this.map.has(key)) return undefined;
    this.map.delete(key);
    this.map.set(key, value as V);
    this.newest = key;
    this.newestValue = value;
    this.newestSet = true;
    return value;
  }

  /** Reads without touching recency (for metrics, dumps and checks that must not keep an entry alive). */
  peek(key: K): V | undefined {
    return this.map.get(key);
  }

  has(key: K): boolean {
    return this.map.has(key);
  }

  /**
   * Inserts or replaces, making the entry the newest. Returns the entry evicted to make room, so the owner can
   * release what it holds or count it; replacing an existing key evicts nothing.
   */
  set(key: K, value: V): [K, V] | undefined {
    this.newest = key;
    this.newestValue = value;
    this.newestSet = true;
    if (this.map.has(key)) {
      this.map.delete(key);
      this.map.set(key, value);
      return undefined;
    }
    this.map.set(key, value);
    if (this.map.size <= this.capacity) return undefined;
    // A fresh iterator would walk over every slot deleted at the front of the Map (until V8 rehashes it):
    // ~10 µs per eviction at 50,000 entries. One live iterator, kept, always sits at the oldest entry instead,
    // because everything it passed was evicted and a refreshed entry is re-inserted behind it.
    let oldest = this.evictCursor?.next();
    if (oldest === undefined || oldest.done === true) {
      this.evictCursor = this.map.entries();
      oldest = this.evictCursor.next();
    }
    if (oldest.done === true) return undefined;
    const [oldKey, oldValue] = oldest.value;
    this.map.delete(oldKey);
    this.evicted++;
    return [oldKey, oldValue];
  }

  private evictCursor: IterableIterator<[K, V]> | undefined;

  delete(key: K): boolean {
    if (this.newestSet && this.newest === key) {
      this.newestSet = false;
      this.newest = undefined;
      this.newestValue = undefined;
    }
    return this.map.delete(key);
  }

  clear(): void {
    this.evictCursor = undefined;
    this.newestSet = false;
    this.newest = undefined;
    this.newestValue = undefined;
    this.map.clear();
  }

  /** The least recently used entry (the next to be evicted), without refreshing it. */
  oldest(): [K, V] | undefined {
    const first = this.map.entries().next();
    return first.done === true ? undefined : first.value;
  }

  keys(): IterableIterator<K> {
    return this.map.keys();
  }

  values(): IterableIterator<V> {
    return this.map.values();
  }

  entries(): IterableIterator<[K, V]> {
    return this.map.entries();
  }

  [Symbol.iterator](): IterableIterator<[K, V]> {
    return this.map.entries();
  }
}
