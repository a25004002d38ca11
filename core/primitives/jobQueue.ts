export type JobPriority = 'high' | 'low';

/**
 * A bounded waiting room for jobs. `push` never blocks and never grows past `capacity`: a full queue refuses
 * the job (returns false) so the caller can count the drop — unbounded buffers are how the original server fell
 * over under a storm of new clients.
 */
export interface JobQueue<J> {
  push(job: J, priority?: JobPriority): boolean;
  shift(): J | undefined;
  readonly size: number;
  readonly sizeHigh: number;
  readonly sizeLow: number;
  readonly capacity: number;
}

function checkCapacity(what: string, n: number): void {
  if (!Number.isInteger(n) || n < 0) throw new RangeError(`${what} must be an integer >= 0, got ${n}`);
}

/**
 * Fixed-capacity FIFO on a ring buffer: push and shift are O(1) (Array#shift is O(n), which at 10,000 queued
 * jobs would make every dequeue copy the whole queue). The priority argument is ignored: every job counts as
 * high, so sizeHigh === size and sizeLow === 0.
 */
export class FifoQueue<J> implements JobQueue<J> {
  readonly capacity: number;
  private readonly slots: Array<J | undefined>;
  private head = 0;
  private count = 0;

  constructor(capacity: number) {
    checkCapacity('FifoQueue capacity', capacity);
    this.capacity = capacity;
    this.slots = new Array<J | undefined>(capacity);
  }

  get size(): number {
    return this.count;
  }

  get sizeHigh(): number {
    return this.count;
  }

  get sizeLow(): number {
    return 0;
  }

  push(job: J, _priority?: JobPriority): boolean {
    if (this.count >= this.capacity) return false;
    let tail = this.head + this.count;
    if (tail >= this.capacity) tail -= this.capacity;
    this.slots[tail] = job;
    this.count++;
    return true;
  }

  shift(): J | undefined {
    if (this.count === 0) return undefined;
    const job = this.slots[this.head];
    // Clear the slot so a finished job's closure and payload can be collected while the ring lives on.
    this.slots[this.head] = undefined;
    this.head++;
    if (this.head === this.capacity) this.head = 0;
    this.count--;
    return job;
  }
}

export interface PriorityJobQueueOptions {
  /** Capacity of the high-priority ring (known clients). */
  high: number;
  /** Capacity of the low-priority ring (clients still being discovered). */
  low: number;
  /** Anti-starvation ratio: one low job is served after this many consecutive high jobs. Default 8. */
  lowEvery?: number;
}

/**
 * Two bounded rings: high (known clients) is served before low (new clients), so a storm of new clients never
 * delays updates of the known ones — each class also has its own capacity, so a flood of one class cannot fill
 * the other's room.
 *
 * Anti-starvation rule: strict priority would let a sustained flood of high jobs starve low forever. So while
 * low is non-empty, after `lowEvery` consecutive high shifts the next shift takes one low job (high:low =
 * lowEvery:1 under contention). High shifts made while low is empty do not count towards the streak, so a low
 * job arriving into a busy queue waits at most `lowEvery` shifts once it reaches the head of its ring.
 */
export class PriorityJobQueue<J> implements JobQueue<J> {
  readonly lowEvery: number;
  private readonly high: FifoQueue<J>;
  private readonly low: FifoQueue<J>;
  private highStreak = 0;

  constructor(opts: PriorityJobQueueOptions) {
    const lowEvery = opts.lowEvery ?? 8;
    if (!Number.isInteger(lowEvery) || lowEvery < 1) throw new RangeError(`PriorityJobQueue lowEvery must be an integer >= 1, got ${lowEvery}`);
    this.high = new FifoQueue<J>(opts.high);
    this.low = new FifoQueue<J>(opts.low);
    this.lowEvery = lowEvery;
  }

  get size(): number {
    return this.high.size + this.low.size;
  }

  get sizeHigh(): number {
    return this.high.size;
  }

  get sizeLow(): number {
    return this.low.size;
  }

  get capacity(): number {
    return this.high.capacity + this.low.capacity;
  }

  get capacityHigh(): number {
    return this.high.capacity;
  }

  get capacityLow(): number {
    return this.low.capacity;
  }

  push(job: J, priority: JobPriority = 'high'): boolean {
    return priority === 'low' ? this.low.push(job) : this.high.push(job);
  }

  shift(): J | undefined {
    if (this.high.size > 0) {
      if (this.low.size === 0) {
        this.highStreak = 0;
        return this.high.shift();
      }
      if (this.highStreak < this.lowEvery) {
        this.highStreak++;
        return this.high.shift();
      }
    }
    if (this.low.size > 0) {
      this.highStreak = 0;
      return this.low.shift();
    }
    return undefined;
  }
}
