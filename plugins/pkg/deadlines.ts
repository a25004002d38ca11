/**
 * Many deadlines on one Node timer: a list kept in due order, with the timer armed for its head only.
 *
 * A `setTimeout` per query allocates a Timeout, and its clearTimeout (the usual end: the answer came first) is
 * a priority-queue update; under load that was a per-query cost of forward's miss path. Deadlines added with the
 * same delay arrive in due order, so an insert is an append at the tail; a removal unlinks in place, and the
 * timer is left armed when the head goes (it fires, finds nothing due, and re-arms for the new head), so a
 * stream of answered queries touches no timer at all.
 *
 * Granularity: an entry fires when the timer finds its due time less than 1 ms ahead, i.e. within the same
 * millisecond `setTimeout` itself rounds to (libuv counts whole milliseconds), never before it by more.
 */
import { performance } from 'node:perf_hooks';

/** What a queue holds: the fields are the queue's (an intrusive list, so queuing allocates nothing). */
export interface DeadlineEntry {
  dueAt: number;
  dlPrev: DeadlineEntry | null;
  dlNext: DeadlineEntry | null;
  dlQueued: boolean;
  /** Called once when the deadline passes, after the entry has left the queue. */
  onDeadline(): void;
}

/** Below this much ahead of now an entry counts as due (the timer's own resolution). */
const SLACK_MS = 1;

export class DeadlineQueue {
  private head: DeadlineEntry | null = null;
  private tail: DeadlineEntry | null = null;
  private timer: NodeJS.Timeout | null = null;
  /** Monotonic time the armed timer is for (Infinity: none armed). */
  private armedFor = Infinity;
  private size = 0;
  private readonly fire = (): void => this.onTimer();

  /** Entries waiting (for tests). */
  get length(): number {
    return this.size;
  }

  /** Queues `e` to fire `ms` after `now` (`performance.now()`; `e` must not be queued already). */
  add(e: DeadlineEntry, ms: number, now = performance.now()): void {
    const due = now + ms;
    e.dueAt = due;
    e.dlQueued = true;
    // Walk back from the tail past later entries: with one delay for all, none.
    let after = this.tail;
    while (after !== null && after.dueAt > due) after = after.dlPrev;
    e.dlPrev = after;
    if (after === null) {
      e.dlNext = this.head;
      this.head = e;
    } else {
      e.dlNext = after.dlNext;
      after.dlNext = e;
    }
    if (e.dlNext === null) this.tail = e;
    else e.dlNext.dlPrev = e;
    this.size++;
    if (due < this.armedFor) this.arm(due);
  }

  /** Takes `e` out if it is queued (its deadline will not fire). */
  remove(e: DeadlineEntry): void {
    if (!e.dlQueued) return;
    this.unlink(e);
    if (this.head === null && this.timer !== null) {
      // Nothing left to wait for: let the process exit and the timer go.
      clearTimeout(this.timer);
      this.timer = null;
      this.armedFor = Infinity;
    }
  }

  private unlink(e: DeadlineEntry): void {
    const p = e.dlPrev;
    const n = e.dlNext;
    if (p === null) this.head = n;
    else p.dlNext = n;
    if (n === null) this.tail = p;
    else n.dlPrev = p;
    e.dlPrev = null;
    e.dlNext = null;
    e.dlQueued = false;
    this.size--;
  }

  private arm(due: number): void {
    if (this.timer !== null) clearTimeout(this.timer);
    this.armedFor = due;
    this.timer = setTimeout(this.fire, Math.max(1, Math.ceil(due - performance.now())));
  }

  private onTimer(): void {
    this.timer = null;
    this.armedFor = Infinity;
    // Entries queued by the callbacks below are due at least 1 ms from now: they wait for the next firing.
    const limit = performance.now() + SLACK_MS;
    let e = this.head;
    while (e !== null && e.dueAt < limit) {
      this.unlink(e);
      e.onDeadline();
      e = this.head;
    }
    if (this.head !== null && this.head.dueAt < this.armedFor) this.arm(this.head.dueAt);
  }
}
