/** plugins/pkg/deadlines: many deadlines on one timer fire in due order, not early, and removed ones never. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { performance } from 'node:perf_hooks';
import { DeadlineQueue, type DeadlineEntry } from '../plugins/pkg/deadlines';

function entry(name: string, fired: Array<{ name: string; at: number }>): DeadlineEntry {
  return {
    dueAt: 0,
    dlPrev: null,
    dlNext: null,
    dlQueued: false,
    onDeadline: () => fired.push({ name, at: performance.now() }),
  };
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

test('deadlines fire in due order whatever the insertion order, none more than 1 ms early', async () => {
  const q = new DeadlineQueue();
  const fired: Array<{ name: string; at: number }> = [];
  const start = performance.now();
  const delays: Record<string, number> = { a: 60, b: 20, c: 40, d: 20, e: 5 };
  for (const [name, ms] of Object.entries(delays)) q.add(entry(name, fired), ms);
  assert.equal(q.length, 5);
  await sleep(120);
  assert.deepEqual(fired.map((f) => f.name), ['e', 'b', 'd', 'c', 'a']);
  for (const f of fired) assert.ok(f.at - start >= delays[f.name] - 1, `${f.name} fired at ${f.at - start} ms, due at ${delays[f.name]}`);
  assert.equal(q.length, 0);
});

test('a removed deadline never fires; removing the head keeps the others on time; an empty queue holds no timer', async () => {
  const q = new DeadlineQueue();
  const fired: Array<{ name: string; at: number }> = [];
  const a = entry('a', fired);
  const b = entry('b', fired);
  const c = entry('c', fired);
  q.add(a, 10);
  q.add(b, 30);
  q.add(c, 50);
  q.remove(a);
  q.remove(a);
  await sleep(40);
  assert.deepEqual(fired.map((f) => f.name), ['b']);
  q.remove(c);
  assert.equal(q.length, 0);
  await sleep(30);
  assert.deepEqual(fired.map((f) => f.name), ['b']);
  // Nothing queued: no timer keeps the event loop alive.
  assert.equal(process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length, 0);
});

test('an entry re-queued from its own callback waits for its new deadline', async () => {
  const q = new DeadlineQueue();
  const times: number[] = [];
  const start = performance.now();
  const e: DeadlineEntry = {
    dueAt: 0,
    dlPrev: null,
    dlNext: null,
    dlQueued: false,
    onDeadline: () => {
      times.push(performance.now() - start);
      if (times.length < 3) q.add(e, 1);
    },
  };
  q.add(e, 1);
  await sleep(50);
  assert.equal(times.length, 3);
  for (let i = 1; i < times.length; i++) assert.ok(times[i] - times[i - 1] >= 0.9, `re-queued entry fired ${times[i] - times[i - 1]} ms after the last`);
});
