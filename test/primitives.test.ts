import { describe, it } from 'node:test';
import { CidrParseError, CidrSet } from '../testing';
import assert from 'node:assert/strict';
import {
  CircuitBreaker,
  FifoQueue,
  LruMap,
  ManualClock,
  PriorityJobQueue,
  RepeatingWarning,
  TokenBucket,
  TokenBucketMap,
  WorkerPool,
  monotonicClock,
  type BreakerState,
  type WorkerPoolStats,
} from '../core/primitives/index.js';

const tick = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

interface Deferred {
  promise: Promise<void>;
  resolve: () => void;
  reject: (err: unknown) => void;
}

function deferred(): Deferred {
  let resolve!: () => void;
  let reject!: (err: unknown) => void;
  const promise = new Promise<void>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

// Deterministic PRNG (mulberry32) so a failing random mix can be replayed.
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function assertIdentity(s: WorkerPoolStats): void {
  assert.equal(s.submitted, s.processed + s.failed + s.dropped + s.queued + s.busy, JSON.stringify(s));
  assert.equal(s.dropped, s.droppedHigh + s.droppedLow);
  assert.equal(s.queued, s.queuedHigh + s.queuedLow);
}

describe('clock', () => {
  it('monotonicClock never goes backwards', () => {
    let prev = monotonicClock.now();
    for (let i = 0; i < 1000; i++) {
      const now = monotonicClock.now();
      assert.ok(now >= prev);
      prev = now;
    }
  });

  it('ManualClock moves only when advanced, never backwards', () => {
    const clock = new ManualClock(100);
    assert.equal(clock.now(), 100);
    clock.advance(50);
    assert.equal(clock.now(), 150);
    assert.throws(() => clock.advance(-1), RangeError);
  });
});

describe('FifoQueue', () => {
  it('keeps FIFO order across many wraparounds and refuses when full', () => {
    const q = new FifoQueue<number>(4);
    let nextIn = 0;
    let nextOut = 0;
    for (let round = 0; round < 50; round++) {
      while (q.push(nextIn)) nextIn++;
      assert.equal(q.size, 4);
      assert.equal(q.push(-1), false);
      // Take a varying number so head and tail land on every slot.
      const take = 1 + (round % 4);
      for (let i = 0; i < take; i++) assert.equal(q.shift(), nextOut++);
      assert.equal(q.size, 4 - take);
    }
    while (q.size > 0) assert.equal(q.shift(), nextOut++);
    assert.equal(nextOut, nextIn);
    assert.equal(q.shift(), undefined);
  });

  it('ignores priority: everything counts as high', () => {
    const q = new FifoQueue<string>(3);
    q.push('a', 'low');
    q.push('b', 'high');
    assert.equal(q.sizeHigh, 2);
    assert.equal(q.sizeLow, 0);
    assert.equal(q.capacity, 3);
    assert.equal(q.shift(), 'a');
  });

  it('capacity 0 refuses everything', () => {
    const q = new FifoQueue<number>(0);
    assert.equal(q.push(1), false);
    assert.equal(q.shift(), undefined);
  });
});

describe('PriorityJobQueue', () => {
  it('serves high before low, FIFO within a class, with separate capacities', () => {
    const q = new PriorityJobQueue<string>({ high: 2, low: 2 });
    assert.ok(q.push('l1', 'low'));
    assert.ok(q.push('l2', 'low'));
    assert.equal(q.push('l3', 'low'), false);
    assert.ok(q.push('h1', 'high'));
    assert.ok(q.push('h2'));
    assert.equal(q.push('h3', 'high'), false);
    assert.equal(q.size, 4);
    assert.equal(q.sizeHigh, 2);
    assert.equal(q.sizeLow, 2);
    assert.equal(q.capacity, 4);
    assert.deepEqual([q.shift(), q.shift(), q.shift(), q.shift(), q.shift()], ['h1', 'h2', 'l1', 'l2', undefined]);
  });

  it('anti-starvation: one low after every lowEvery (8) highs while low waits', () => {
    const q = new PriorityJobQueue<string>({ high: 200, low: 20 });
    for (let i = 0; i < 100; i++) q.push(`h${i}`, 'high');
    for (let i = 0; i < 10; i++) q.push(`l${i}`, 'low');
    const order: string[] = [];
    for (let job = q.shift(); job !== undefined; job = q.shift()) order.push(job);
    assert.equal(order.length, 110);
    const lowPositions = order.flatMap((job, i) => (job.startsWith('l') ? [i] : []));
    assert.deepEqual(lowPositions, [8, 17, 26, 35, 44, 53, 62, 71, 80, 89]);
    assert.deepEqual(order.filter((j) => j.startsWith('l')), ['l0', 'l1', 'l2', 'l3', 'l4', 'l5', 'l6', 'l7', 'l8', 'l9']);
  });

  it('a never-ending flood of high still lets every low job through at the documented ratio', () => {
    const q = new PriorityJobQueue<string>({ high: 50, low: 5, lowEvery: 3 });
    let h = 0;
    while (q.push(`h${h}`, 'high')) h++;
    for (let i = 0; i < 5; i++) q.push(`l${i}`, 'low');
    const lows: number[] = [];
    for (let n = 0; n < 40; n++) {
      const job = q.shift();
      assert.ok(job !== undefined);
      if (job.startsWith('l')) lows.push(n);
      // Refill high at once: the high ring is never empty.
      q.push(`h${h++}`, 'high');
    }
    assert.deepEqual(lows, [3, 7, 11, 15, 19]);
    assert.equal(q.sizeLow, 0);
  });

  it('highs taken while low is empty do not count towards the streak', () => {
    const q = new PriorityJobQueue<string>({ high: 50, low: 5, lowEvery: 2 });
    for (let i = 0; i < 20; i++) q.push(`h${i}`);
    for (let i = 0; i < 10; i++) q.shift();
    q.push('l0', 'low');
    assert.deepEqual([q.shift(), q.shift(), q.shift()], ['h10', 'h11', 'l0']);
  });

  it('rejects a lowEvery below 1', () => {
    assert.throws(() => new PriorityJobQueue<number>({ high: 1, low: 1, lowEvery: 0 }), RangeError);
  });
});

describe('WorkerPool', () => {
  it('never runs more than `workers` at once, never queues beyond capacity, counts drops exactly', async () => {
    const gates: Deferred[] = [];
    let active = 0;
    let maxActive = 0;
    const pool = new WorkerPool<number>({
      name: 'test',
      workers: 4,
      queue: new FifoQueue<number>(100),
      run: async () => {
        active++;
        maxActive = Math.max(maxActive, active);
        const gate = deferred();
        gates.push(gate);
        await gate.promise;
        active--;
      },
    });
    let accepted = 0;
    for (let i = 0; i < 1000; i++) {
      if (pool.submit(i)) accepted++;
      const s = pool.stats();
      assert.ok(s.queued <= 100);
      assert.ok(s.busy <= 4);
      assertIdentity(s);
    }
    assert.equal(accepted, 104);
    let s = pool.stats();
    assert.equal(s.dropped, 896);
    assert.equal(s.droppedHigh, 896);
    assert.equal(s.queued, 100);
    assert.equal(s.busy, 4);
    assert.equal(s.enqueuedHigh, 100);

    // Release jobs one by one; more submissions keep landing while the pool works.
    let released = 0;
    while (pool.stats().busy > 0 || pool.stats().queued > 0) {
      await tick();
      const gate = gates[released];
      if (gate !== undefined) {
        gate.resolve();
        released++;
      }
      assert.ok(active <= 4);
      assertIdentity(pool.stats());
    }
    s = pool.stats();
    assert.equal(maxActive, 4);
    assert.equal(s.processed, 104);
    assert.equal(s.dropped, 896);
    assert.equal(s.submitted, 1000);
    assert.equal(await pool.drain(100), true);
  });

  it('submit does not run the job inside the caller stack', async () => {
    let ran = false;
    const pool = new WorkerPool<number>({
      name: 'sync',
      workers: 1,
      queue: new FifoQueue<number>(1),
      run: () => {
        ran = true;
        return Promise.resolve();
      },
    });
    assert.equal(pool.submit(1), true);
    assert.equal(ran, false);
    assert.equal(pool.stats().busy, 1);
    assertIdentity(pool.stats());
    assert.equal(await pool.drain(100), true);
    assert.equal(ran, true);
  });

  it('a job that finishes synchronously (returns nothing) is done at once: counted, its worker freed, still off the caller stack', async () => {
    const ran: number[] = [];
    const pool = new WorkerPool<number>({
      name: 'sync-done',
      workers: 2,
      queue: new FifoQueue<number>(10),
      run: (n) => {
        ran.push(n);
      },
    });
    for (let i = 0; i < 12; i++) assert.equal(pool.submit(i), true);
    assert.equal(pool.submit(12), false, 'two running and ten waiting: full');
    assert.deepEqual(ran, [], 'not inside submit');
    assertIdentity(pool.stats());
    assert.equal(await pool.drain(100), true);
    assert.deepEqual(ran, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]);
    const s = pool.stats();
    assert.equal(s.processed, 12);
    assert.equal(s.dropped, 1);
    assert.equal(s.busy, 0);
    assertIdentity(s);
  });

  it('keeps the stats identity through a random mix of priorities, failures, throws, pauses and drops', async () => {
    const rand = prng(12345);
    const errors: unknown[] = [];
    const pool = new WorkerPool<number>({
      name: 'mix',
      workers: 3,
      queue: new PriorityJobQueue<number>({ high: 10, low: 7 }),
      onError: (err) => errors.push(err),
      run: async (job) => {
        if (job % 7 === 0) throw new Error('sync-ish throw inside async');
        for (let i = job % 3; i > 0; i--) await tick();
        if (job % 5 === 0) throw new Error('rejected');
      },
    });
    let expectSubmitted = 0;
    let expectDropped = 0;
    for (let step = 0; step < 2000; step++) {
      const r = rand();
      if (r < 0.7) {
        const job = Math.floor(rand() * 1000);
        expectSubmitted++;
        if (!pool.submit(job, rand() < 0.5 ? 'high' : 'low')) expectDropped++;
      } else if (r < 0.9) {
        await tick();
      } else if (r < 0.95) {
        pool.pause();
      } else {
        pool.resume();
      }
      const s = pool.stats();
      assertIdentity(s);
      assert.ok(s.busy <= 3);
      assert.ok(s.queuedHigh <= 10 && s.queuedLow <= 7);
    }
    pool.resume();
    assert.equal(await pool.drain(2000), true);
    const s = pool.stats();
    assertIdentity(s);
    assert.equal(s.submitted, expectSubmitted);
    assert.equal(s.dropped, expectDropped);
    assert.equal(s.busy + s.queued, 0);
    assert.equal(errors.length, s.failed);
    assert.ok(s.failed > 0 && s.processed > 0 && s.droppedHigh > 0 && s.droppedLow > 0);
  });

  it('runs queued jobs in priority order, and holds them while paused', async () => {
    const order: string[] = [];
    const pool = new WorkerPool<string>({
      name: 'prio',
      workers: 1,
      queue: new PriorityJobQueue<string>({ high: 10, low: 10, lowEvery: 2 }),
      run: async (job) => {
        order.push(job);
      },
    });
    pool.pause();
    pool.submit('l1', 'low');
    pool.submit('l2', 'low');
    for (let i = 1; i <= 5; i++) pool.submit(`h${i}`, 'high');
    await tick();
    assert.deepEqual(order, []);
    assert.equal(await pool.drain(5), false);
    const s = pool.stats();
    assert.equal(s.queuedHigh, 5);
    assert.equal(s.queuedLow, 2);
    assert.equal(s.enqueuedLow, 2);
    pool.resume();
    assert.equal(await pool.drain(500), true);
    assert.deepEqual(order, ['h1', 'h2', 'l1', 'h3', 'h4', 'l2', 'h5']);
  });

  it('close() refuses and counts new jobs but lets queued ones finish', async () => {
    let done = 0;
    const pool = new WorkerPool<number>({
      name: 'close',
      workers: 1,
      queue: new FifoQueue<number>(5),
      run: async () => {
        await tick();
        done++;
      },
    });
    for (let i = 0; i < 4; i++) pool.submit(i);
    pool.close();
    assert.equal(pool.submit(99, 'low'), false);
    const s = pool.stats();
    assert.equal(s.dropped, 1);
    assert.equal(s.droppedLow, 1);
    assertIdentity(s);
    assert.equal(await pool.drain(1000), true);
    assert.equal(done, 4);
    assertIdentity(pool.stats());
  });

  it('reports failures (rejection and synchronous throw) and survives a throwing onError', async () => {
    const seen: string[] = [];
    const pool = new WorkerPool<string>({
      name: 'errors',
      workers: 2,
      queue: new FifoQueue<string>(10),
      onError: (err, job) => {
        seen.push(`${job}:${(err as Error).message}`);
        throw new Error('reporter broke');
      },
      run: (job) => {
        if (job === 'sync') throw new Error('boom-sync');
        if (job === 'reject') return Promise.reject(new Error('boom-async'));
        return Promise.resolve();
      },
    });
    pool.submit('sync');
    pool.submit('reject');
    pool.submit('ok');
    pool.submit('ok2');
    assert.equal(await pool.drain(500), true);
    const s = pool.stats();
    assert.equal(s.failed, 2);
    assert.equal(s.processed, 2);
    assert.deepEqual(seen.sort(), ['reject:boom-async', 'sync:boom-sync']);
  });

  it('measures the processing rate over a sliding window of the clock', async () => {
    const clock = new ManualClock(0);
    const pool = new WorkerPool<number>({
      name: 'rate',
      workers: 10,
      queue: new FifoQueue<number>(100),
      clock,
      run: () => Promise.resolve(),
    });
    // 50 jobs in each of the first 5 seconds.
    for (let sec = 0; sec < 5; sec++) {
      for (let i = 0; i < 50; i++) pool.submit(i);
      assert.equal(await pool.drain(500), true);
      clock.advance(1000);
    }
    // now = 5000 ms: 250 jobs over the 5 s the pool has existed.
    assert.equal(pool.rate(10000), 50);
    // Last 2 s window covers seconds 4 and 5 (1000 ms span as 5 is just starting): 50 jobs in second 4.
    assert.equal(pool.rate(2000), 50);
    clock.advance(3000); // now = 8000: window 10 s covers seconds -1..8 => from creation, 8 s.
    assert.equal(pool.rate(10000), 250 / 8);
    clock.advance(20000);
    assert.equal(pool.rate(10000), 0);
    // A bucket reused a minute later is reset, not added to.
    clock.advance(60000 - (clock.now() % 60000));
    for (let i = 0; i < 7; i++) pool.submit(i);
    assert.equal(await pool.drain(500), true);
    assert.equal(pool.rate(1000), 7);
  });

  it('drain resolves at once when idle and times out while work is stuck', async () => {
    const gate = deferred();
    const pool = new WorkerPool<number>({ name: 'drain', workers: 1, queue: new FifoQueue<number>(1), run: () => gate.promise });
    assert.equal(await pool.drain(0), true);
    pool.submit(1);
    assert.equal(await pool.drain(5), false);
    const later = pool.drain(1000);
    gate.resolve();
    assert.equal(await later, true);
  });
});

describe('TokenBucket', () => {
  it('starts full, allows the burst, then refills at the rate', () => {
    const clock = new ManualClock();
    const b = new TokenBucket(10, 20, clock);
    for (let i = 0; i < 20; i++) assert.equal(b.take(), true, `burst token ${i}`);
    assert.equal(b.take(), false);
    assert.equal(b.msUntil(), 100);
    clock.advance(99);
    assert.equal(b.take(), false);
    clock.advance(1);
    assert.equal(b.take(), true);
    assert.equal(b.take(), false);
    // 1 s at 10/s = 10 tokens, exactly.
    clock.advance(1000);
    let granted = 0;
    while (b.take()) granted++;
    assert.equal(granted, 10);
    // Refill never exceeds the burst.
    clock.advance(3_600_000);
    assert.equal(b.tokens(), 20);
  });

  it('handles fractional refills without losing a token to rounding', () => {
    const clock = new ManualClock();
    const b = new TokenBucket(3, 1, clock);
    assert.equal(b.take(), true);
    for (let i = 0; i < 3; i++) clock.advance(1000 / 9);
    assert.equal(b.take(), true);
  });

  it('take(n) is all or nothing; msUntil is Infinity when impossible', () => {
    const clock = new ManualClock();
    const b = new TokenBucket(1, 5, clock);
    assert.equal(b.take(3), true);
    assert.equal(b.take(3), false);
    assert.equal(b.tokens(), 2);
    assert.equal(b.msUntil(3), 1000);
    assert.equal(b.msUntil(6), Infinity);
    assert.equal(new TokenBucket(0, 1, clock).msUntil(2), Infinity);
  });
});

describe('TokenBucketMap', () => {
  it('keeps one bucket per key and evicts the least recently used beyond maxKeys', () => {
    const clock = new ManualClock();
    const m = new TokenBucketMap({ rate: 1, burst: 2, maxKeys: 3, clock });
    assert.equal(m.take('a'), true);
    assert.equal(m.take('a'), true);
    assert.equal(m.take('a'), false);
    m.take('b');
    m.take('c');
    assert.equal(m.size, 3);
    assert.equal(m.evictions, 0);
    m.take('a'); // refreshes a: b is now the oldest
    m.take('d');
    assert.equal(m.size, 3);
    assert.equal(m.evictions, 1);
    // a kept its (empty) bucket; b was forgotten and comes back full, evicting c.
    assert.equal(m.take('a'), false);
    assert.equal(m.take('b'), true);
    assert.equal(m.evictions, 2);
    clock.advance(1000);
    assert.equal(m.take('a'), true);
  });
});

describe('CircuitBreaker', () => {
  it('closed -> open after 5 failures, denies while open, one half-open trial, success closes', () => {
    const clock = new ManualClock();
    const changes: Array<[BreakerState, BreakerState]> = [];
    const br = new CircuitBreaker({ failures: 5, resetMs: 30000, clock, onChange: (from, to) => changes.push([from, to]) });
    assert.equal(br.state, 'closed');
    for (let i = 0; i < 4; i++) {
      assert.equal(br.allow(), true);
      br.failure();
    }
    assert.equal(br.state, 'closed');
    assert.equal(br.consecutiveFailures, 4);
    br.success(); // a success resets the streak
    assert.equal(br.consecutiveFailures, 0);
    for (let i = 0; i < 5; i++) br.failure();
    assert.equal(br.state, 'open');
    assert.deepEqual(changes, [['closed', 'open']]);

    for (let i = 0; i < 10; i++) assert.equal(br.allow(), false);
    clock.advance(29999);
    assert.equal(br.allow(), false);
    assert.equal(br.msUntilTrial(), 1);
    clock.advance(1);
    assert.equal(br.allow(), true);
    assert.equal(br.state, 'half-open');
    for (let i = 0; i < 10; i++) assert.equal(br.allow(), false, 'only one trial');
    br.success();
    assert.equal(br.state, 'closed');
    assert.equal(br.allow(), true);
    assert.deepEqual(changes, [['closed', 'open'], ['open', 'half-open'], ['half-open', 'closed']]);
    assert.equal(br.transitions, 3);
  });

  it('a failed trial reopens and restarts the timer; late reports while open are ignored', () => {
    const clock = new ManualClock();
    const changes: string[] = [];
    const br = new CircuitBreaker({ failures: 5, resetMs: 1000, clock, onChange: (f, t) => changes.push(`${f}>${t}`) });
    for (let i = 0; i < 5; i++) br.failure();
    clock.advance(1000);
    assert.equal(br.allow(), true);
    clock.advance(500);
    br.failure();
    assert.equal(br.state, 'open');
    // Timer restarted at the trial's failure, not at the original opening.
    clock.advance(999);
    assert.equal(br.allow(), false);
    br.success(); // a straggler from before: does not close
    br.failure(); // nor extend the open period
    assert.equal(br.state, 'open');
    clock.advance(1);
    assert.equal(br.allow(), true);
    assert.deepEqual(changes, ['closed>open', 'open>half-open', 'half-open>open', 'open>half-open']);
  });

  it('cancel() frees the trial slot; a trial lost for resetMs is replaced', () => {
    const clock = new ManualClock();
    const br = new CircuitBreaker({ failures: 1, resetMs: 100, clock });
    br.failure();
    clock.advance(100);
    assert.equal(br.allow(), true);
    assert.equal(br.allow(), false);
    br.cancel();
    assert.equal(br.allow(), true);
    assert.equal(br.allow(), false);
    clock.advance(99);
    assert.equal(br.allow(), false);
    clock.advance(1);
    assert.equal(br.allow(), true);
    assert.equal(br.allow(), false);
    assert.equal(br.state, 'half-open');
  });

  it('a throwing onChange does not break the state machine', () => {
    const br = new CircuitBreaker({ failures: 1, resetMs: 0, clock: new ManualClock(), onChange: () => { throw new Error('x'); } });
    br.failure();
    assert.equal(br.state, 'open');
    assert.equal(br.allow(), true);
    assert.equal(br.state, 'half-open');
  });
});

describe('LruMap', () => {
  it('evicts the least recently used; get refreshes, peek does not; iterates oldest to newest', () => {
    const m = new LruMap<string, number>(3);
    assert.equal(m.set('a', 1), undefined);
    m.set('b', 2);
    m.set('c', 3);
    assert.equal(m.get('a'), 1); // order now b, c, a
    assert.equal(m.peek('b'), 2); // b stays oldest
    assert.deepEqual(m.set('d', 4), ['b', 2]);
    assert.deepEqual([...m], [['c', 3], ['a', 1], ['d', 4]]);
    assert.equal(m.set('c', 30), undefined); // replace refreshes, evicts nothing
    assert.deepEqual([...m.keys()], ['a', 'd', 'c']);
    assert.deepEqual(m.set('e', 5), ['a', 1]);
    assert.equal(m.evictions, 2);
    assert.equal(m.size, 3);
    assert.equal(m.capacity, 3);
    assert.equal(m.delete('d'), true);
    assert.equal(m.delete('d'), false);
    assert.equal(m.get('zz'), undefined);
    assert.deepEqual(m.oldest(), ['c', 30]);
  });

  it('refreshes entries whose value is undefined', () => {
    const m = new LruMap<string, number | undefined>(2);
    m.set('u', undefined);
    m.set('x', 1);
    m.get('u');
    assert.deepEqual(m.set('y', 2), ['x', 1]);
    assert.equal(m.has('u'), true);
  });

  it('a get of the newest entry (no move needed) keeps the order exact, also after that entry is deleted or re-added', () => {
    const m = new LruMap<string, number>(3);
    m.set('a', 1);
    m.set('b', 2);
    m.set('c', 3);
    assert.equal(m.get('c'), 3);
    assert.equal(m.get('c'), 3);
    assert.deepEqual([...m.keys()], ['a', 'b', 'c']);
    assert.equal(m.get('a'), 1); // a is newest now
    assert.equal(m.get('b'), 2);
    assert.deepEqual([...m.keys()], ['c', 'a', 'b']);
    m.delete('b');
    m.set('b', 20); // back as the newest
    assert.equal(m.get('a'), 1);
    assert.deepEqual([...m.keys()], ['c', 'b', 'a']);
    m.delete('a');
    m.set('d', 4);
    assert.equal(m.get('c'), 3);
    assert.deepEqual([...m.keys()], ['b', 'd', 'c']);
    assert.deepEqual(m.set('e', 5), ['b', 20]);
    m.clear();
    m.set('x', 1);
    m.set('y', 2);
    assert.equal(m.get('x'), 1);
    assert.deepEqual([...m.keys()], ['y', 'x']);
  });

  it('the newest entry read again without a lookup gives its current value, for a key equal by content', () => {
    const m = new LruMap<string, number | undefined>(2);
    const key = (): string => ['192.0.2', '7'].join('.'); // a fresh string each time, as a packet's source is
    m.set(key(), 1);
    assert.equal(m.get(key()), 1);
    m.set(key(), 2);
    assert.equal(m.get(key()), 2);
    assert.equal(m.delete(key()), true);
    assert.equal(m.get(key()), undefined);
    assert.equal(m.has(key()), false);
    m.set(key(), undefined);
    assert.equal(m.get(key()), undefined);
    assert.equal(m.has(key()), true);
    m.set('other', 3);
    m.set('third', 4); // evicts the oldest: 192.0.2.7
    assert.equal(m.get(key()), undefined);
    assert.equal(m.get('third'), 4);
    m.clear();
    assert.equal(m.get('third'), undefined);
  });
});

describe('RepeatingWarning', () => {
  it('emits the first hit at once, then at most once per interval with the count', () => {
    const clock = new ManualClock();
    const emitted: number[] = [];
    const w = new RepeatingWarning({ intervalMs: 1000, clock, emit: (n) => emitted.push(n) });
    w.hit();
    assert.deepEqual(emitted, [1]);
    for (let i = 0; i < 99; i++) {
      clock.advance(5);
      w.hit();
    }
    assert.deepEqual(emitted, [1]);
    assert.equal(w.pending, 99);
    clock.advance(505); // 1000 ms after the first emission
    w.hit();
    assert.deepEqual(emitted, [1, 100]);
    clock.advance(10);
    w.hit();
    w.hit();
    w.flush();
    assert.deepEqual(emitted, [1, 100, 2]);
    w.flush(); // nothing pending: no line
    assert.deepEqual(emitted, [1, 100, 2]);
    assert.equal(w.hits, 103);
    // The flush counts as an emission: the next hit inside the interval waits.
    clock.advance(10);
    w.hit();
    assert.deepEqual(emitted, [1, 100, 2]);
    clock.advance(1000);
    w.hit();
    assert.deepEqual(emitted, [1, 100, 2, 2]);
  });
});

describe('CidrSet (the client matcher of acl, ratelimit and filter)', () => {
  it('networks and addresses of both families; IPv4-mapped IPv6 matches IPv4; zones ignored; junk is no match', () => {
    const set = new CidrSet(['10.0.0.0/8', '192.168.1.7', 'fd00::/8', '::ffff:172.16.0.0/108']);
    assert.equal(set.has('10.1.2.3'), true);
    assert.equal(set.has('::ffff:10.1.2.3'), true, 'an IPv4-mapped address is its IPv4 address');
    assert.equal(set.has('192.168.1.7'), true);
    assert.equal(set.has('192.168.1.8'), false);
    assert.equal(set.has('fd12::1'), true);
    assert.equal(set.has('fe80::1%eth0'), false);
    assert.equal(new CidrSet(['fe80::/10']).has('fe80::1%eth0'), true, 'the zone is not part of the address');
    assert.equal(set.has('172.16.5.5'), true, 'a mapped network is kept as IPv4');
    assert.equal(set.has('banana'), false);
    assert.throws(() => new CidrSet(['10.0.0.0/8', '10.0.0.0/33']), (e: unknown) => e instanceof CidrParseError && e.index === 1);
  });
});
