const FIRST_CAPACITY = 256;

/**
 * Clients announced (or restored from the database) that wait for their first attempt, in arrival order.
 *
 * Why not the engine's Entry for each: in a storm nearly the whole backlog is such clients (tens of thousands,
 * waiting at the limiter's pace), and an object with a boxed due time per client is work for every mark-compact
 * of the heap the answer path shares. Here a waiting client costs its address string (shared with clienttrack's
 * index) and a slot in one Map; its due time, sequence number and reason sit in typed arrays. A client gets an
 * Entry when it leaves for the job queue.
 */
export class FreshQueue {
  private ips: Array<string | undefined> = new Array<string | undefined>(FIRST_CAPACITY);
  private dueAt = new Float64Array(FIRST_CAPACITY);
  private seqs = new Float64Array(FIRST_CAPACITY);
  private restoredFlags = new Uint8Array(FIRST_CAPACITY);
  private head = 0;
  private count = 0;
  /** ip → its absolute position (pushes before it), for lookups by address. */
  private readonly positions = new Map<string, number>();
  private pushed = 0;

  get size(): number {
    return this.count;
  }

  has(ip: string): boolean {
    return this.positions.has(ip);
  }

  push(ip: string, dueAt: number, seq: number, restored: boolean): void {
    if (this.count === this.ips.length) this.grow();
    const i = (this.head + this.count) & (this.ips.length - 1);
    this.ips[i] = ip;
    this.dueAt[i] = dueAt;
    this.seqs[i] = seq;
    this.restoredFlags[i] = restored ? 1 : 0;
    this.count++;
    this.positions.set(ip, this.pushed++);
  }

  /** The oldest client's due time and sequence number (undefined when empty). */
  headDue(): number | undefined {
    return this.count === 0 ? undefined : this.dueAt[this.head];
  }

  headSeq(): number {
    return this.seqs[this.head];
  }

  headRestored(): boolean {
    return this.restoredFlags[this.head] === 1;
  }

  /** Takes the oldest client out. */
  shift(): string | undefined {
    if (this.count === 0) return undefined;
    const ip = this.ips[this.head] as string;
    this.ips[this.head] = undefined;
    this.head = (this.head + 1) & (this.ips.length - 1);
    this.count--;
    this.positions.delete(ip);
    return ip;
  }

  /** Due time and reason of a waiting client. */
  get(ip: string): { dueAt: number; restored: boolean } | undefined {
    const p = this.positions.get(ip);
    if (p === undefined) return undefined;
    const i = (this.head + (p - (this.pushed - this.count))) & (this.ips.length - 1);
    return { dueAt: this.dueAt[i], restored: this.restoredFlags[i] === 1 };
  }

  /** Doubles the ring (its size stays a power of two), oldest client first. */
  private grow(): void {
    const n = this.ips.length * 2;
    const ips = new Array<string | undefined>(n);
    const dueAt = new Float64Array(n);
    const seqs = new Float64Array(n);
    const restored = new Uint8Array(n);
    for (let k = 0; k < this.count; k++) {
      const i = (this.head + k) & (this.ips.length - 1);
      ips[k] = this.ips[i];
      dueAt[k] = this.dueAt[i];
      seqs[k] = this.seqs[i];
      restored[k] = this.restoredFlags[i];
    }
    this.ips = ips;
    this.dueAt = dueAt;
    this.seqs = seqs;
    this.restoredFlags = restored;
    this.head = 0;
  }
}
