// clienttrack: the tracker on its own (a fake store: exact counts, order, merging, faults), then real servers
// from a Corefile string on SQLite (and on PostgreSQL when CODEXDNS_TEST_PG is set: every test in a fresh
// schema, dropped after).
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as dgram from 'node:dgram';
import * as os from 'node:os';
import * as path from 'node:path';
import { spawn } from 'node:child_process';
import * as dnsPacket from 'dns-packet';
import { startServer } from '../testing';
import { definePlugin } from '../core/plugin';
import { Type } from '../config/types';
import { createLogger, type Logger } from '../core/log';
import { ManualClock } from '../core/clock';
import { builtinCatalog } from '../server/catalog';
import { parseConfig } from '../config/load';
import { ClientStore, type ClientRow, type ClientUpdate } from '../plugins/clienttrack/store';
import { openStorage, type Storage, type StorageConfig } from '../storage/open';
import { StorageBusyError, StorageUnavailableError } from '../storage/errors';
import clienttrack, { connectHooks, Tracker, trackerOptions, type TrackerOptions, type TrackJob, type TrackStore } from '../plugins/clienttrack';
import type { ClienttrackHooks, NewClientEvent, QueueMetrics } from '../plugins/clienttrack/hooks';
import { ANNOUNCED, ClientIndex, DISCOVERING } from '../plugins/clienttrack/clientIndex';
import { answerer, catalogWith } from './helpers/catalog';

const PG_URL = process.env.CODEXDNS_TEST_PG;
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function waitFor(what: string, cond: () => boolean | Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    if (await cond()) return;
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await sleep(10);
  }
}

interface Deferred {
  promise: Promise<void>;
  resolve: () => void;
}
function deferred(): Deferred {
  let resolve!: () => void;
  const promise = new Promise<void>((r) => (resolve = r));
  return { promise, resolve };
}

function capture(): { log: Logger; lines: string[] } {
  const lines: string[] = [];
  return { log: createLogger({ level: 'debug', format: 'text' }, (l) => lines.push(l)), lines };
}

/** The identity every snapshot must satisfy. */
function assertIdentity(m: QueueMetrics, where = ''): void {
  assert.equal(m.submitted, m.processed + m.failed + m.dropped + m.queued + m.inFlight, `submitted = processed + failed + dropped + queued + in flight ${where}`);
  assert.equal(m.dropped, m.droppedHigh + m.droppedLow);
  assert.equal(m.queued, m.depth.high + m.depth.low);
  assert.ok(m.busy <= m.workers);
  assert.ok(m.queued <= m.capacity.total);
}

// ---------------------------------------------------------------------------------------------------------
// The tracker with a fake store.

class FakeStore implements TrackStore {
  batches: ClientUpdate[][] = [];
  rows: ClientRow[] = [];
  writeError: Error | null = null;
  loadError: Error | null = null;
  loadGate: Promise<void> | null = null;
  writeGate: Promise<void> | null = null;
  attempts = 0;
  async writeBatch(rows: readonly ClientUpdate[]): Promise<void> {
    this.attempts++;
    if (this.writeGate) await this.writeGate;
    if (this.writeError) throw this.writeError;
    this.batches.push(rows.map((r) => ({ ...r })));
  }
  async loadIndex(limit: number): Promise<ClientRow[]> {
    if (this.loadGate) await this.loadGate;
    if (this.loadError) throw this.loadError;
    return this.rows.slice(0, limit);
  }
  async pruneBefore(): Promise<number> {
    return 0;
  }
  /** Everything written, merged per ip. */
  written(): Map<string, { queries: number; firstSeen: number; lastSeen: number; discovering?: boolean; hostname?: string | null; lastError?: string | null; discoveredAt?: number | null }> {
    const out = new Map<string, { queries: number; firstSeen: number; lastSeen: number; discovering?: boolean; hostname?: string | null; lastError?: string | null; discoveredAt?: number | null }>();
    for (const b of this.batches) {
      for (const u of b) {
        const p = out.get(u.ip);
        if (!p) out.set(u.ip, { queries: u.queries, firstSeen: u.firstSeen, lastSeen: u.lastSeen, discovering: u.discovering, hostname: u.hostname, lastError: u.lastError, discoveredAt: u.discoveredAt });
        else {
          p.queries += u.queries;
          p.firstSeen = Math.min(p.firstSeen, u.firstSeen);
          p.lastSeen = Math.max(p.lastSeen, u.lastSeen);
          if (u.discovering !== undefined) p.discovering = u.discovering;
          if (u.hostname != null) p.hostname = u.hostname;
          if (u.lastError !== undefined) p.lastError = u.lastError;
          if (u.discoveredAt != null) p.discoveredAt = u.discoveredAt;
        }
      }
    }
    return out;
  }
  totalQueries(): number {
    let n = 0;
    for (const b of this.batches) for (const u of b) n += u.queries;
    return n;
  }
}

function row(ip: string, p: Partial<ClientRow> = {}): ClientRow {
  return { ip, hostname: null, mac: null, vendor: null, method: null, discovering: false, firstSeen: 1, lastSeen: 1, queryCount: 1, discoveredAt: null, lastError: null, ...p };
}

const BASE: TrackerOptions = {
  workers: 100,
  queue: 10_000,
  batch: 500,
  flushMs: 3_600_000,
  maxPending: 50_000,
  maxClients: 50_000,
  retentionMs: 90 * 86_400_000,
  pruneIntervalMs: 3_600_000,
  logIntervalMs: 10_000,
  indexWaitMs: 10_000,
  shutdownFlushMs: 2_000,
};

function makeTracker(
  o: Partial<TrackerOptions>,
  store: FakeStore,
  extra: { observe?: (job: TrackJob) => void; clock?: ManualClock; newClient?: (e: NewClientEvent) => void } = {},
): { t: Tracker; lines: string[]; hooks: ClienttrackHooks } {
  const { log, lines } = capture();
  const t = new Tracker({ ...BASE, ...o }, { openStore: async () => store, log, observe: extra.observe, clock: extra.clock });
  const hooks = clienttrack.declare!({ block: {} as never }) as ClienttrackHooks;
  if (extra.newClient) hooks.newClient.tap('test', extra.newClient);
  connectHooks(t, hooks);
  return { t, lines, hooks };
}

async function ready(t: Tracker): Promise<void> {
  t.start();
  await waitFor('index loaded', () => t.indexLoaded);
}

async function idle(t: Tracker): Promise<void> {
  assert.equal(await t.pool.drain(5000), true, 'pool drained');
}

describe('clienttrack: options', () => {
  test('defaults: 100 workers, one FIFO of 10,000; priority splits it; queue must then equal high + low', () => {
    const d = trackerOptions({ workers: 100, batch: 500, flush: 5000, max_clients: 50000, max_pending: 50000, retention: 1, prune_interval: 1, log_interval: 1, index_wait: 1, shutdown_flush: 1 });
    assert.equal(d.queue, 10_000);
    assert.equal(d.priority, undefined);
    const p = trackerOptions({ workers: 1, priority: { high: 7000, low: 3000, low_every: 8 }, batch: 1, flush: 1, max_clients: 1, max_pending: 1, retention: 1, prune_interval: 1, log_interval: 1, index_wait: 1, shutdown_flush: 1 });
    assert.deepEqual(p.priority, { high: 7000, low: 3000, lowEvery: 8 });
    assert.equal(p.queue, 10_000);
    assert.throws(
      () => trackerOptions({ workers: 1, queue: 500, priority: { high: 7000, low: 3000, low_every: 8 }, batch: 1, flush: 1, max_clients: 1, max_pending: 1, retention: 1, prune_interval: 1, log_interval: 1, index_wait: 1, shutdown_flush: 1 }),
      /queue \(500\) must equal priority.high \+ priority.low \(10000\)/,
    );
  });
});

describe('clienttrack: the tracker', () => {
  test('jobs wait for the index; the queue never holds more than `queue`, drops are exact, one warning line with the count', async () => {
    const store = new FakeStore();
    const gate = deferred();
    store.loadGate = gate.promise;
    let maxBusy = 0;
    const ref: { t?: Tracker } = {};
    const { t, lines } = makeTracker({ workers: 2, queue: 3, logIntervalMs: 60_000 }, store, { observe: () => (maxBusy = Math.max(maxBusy, ref.t!.pool.stats().busy)) });
    ref.t = t;
    t.start();
    for (let i = 0; i < 20; i++) t.track(`10.0.0.${i}`, 1000 + i, '', 1, 0);
    let m = t.metrics();
    assertIdentity(m);
    assert.equal(m.queued, 3);
    assert.equal(m.busy, 0, 'nothing runs before the index is loaded');
    assert.equal(m.dropped, 17);
    assert.equal(t.queryTotals().dropped, 17);
    const warn = lines.filter((l) => /queue full, dropping update for /.test(l));
    assert.equal(warn.length, 1, 'one line, not one per drop');
    assert.match(warn[0], /queue full, dropping update for 10\.0\.0\.3 dropped=1/);
    t.tick(); // the repeating warning is reported with its count by the timer
    gate.resolve();
    await waitFor('held jobs processed', () => t.metrics().processed === 3);
    const counts = lines.filter((l) => /queue full/.test(l)).map((l) => Number(/dropped=(\d+)/.exec(l)![1]));
    // The second report comes at the interval or on tick: either way the counts add up to the drops.
    t['queueWarning'].flush();
    const all = lines.filter((l) => /queue full/.test(l)).map((l) => Number(/dropped=(\d+)/.exec(l)![1]));
    assert.equal(all.reduce((a, b) => a + b, 0), 17, `warning counts ${JSON.stringify(counts)} → ${JSON.stringify(all)}`);

    // Ready: a burst larger than workers + queue.
    for (let i = 0; i < 100; i++) t.track(`10.0.1.${i}`, 2000 + i, '', 1, 0);
    m = t.metrics();
    assertIdentity(m);
    assert.equal(m.busy, 2);
    assert.equal(m.queued, 3);
    assert.equal(m.dropped, 17 + 95);
    await idle(t);
    m = t.metrics();
    assertIdentity(m);
    assert.equal(m.processed, 8);
    assert.ok(maxBusy <= 2, `at most 2 jobs at once (saw ${maxBusy})`);
    await t.close();
    assert.equal(store.totalQueries(), 8, 'every accepted query written');
  });

  test('priority: known clients high, new and discovering clients low; low is never starved', async () => {
    const store = new FakeStore();
    store.rows = [row('10.0.0.1'), row('10.0.0.2', { discovering: true })];
    const order: string[] = [];
    const { t } = makeTracker({ workers: 1, priority: { high: 100, low: 100, lowEvery: 4 }, queue: 200 }, store, { observe: (j) => order.push(j.ip) });
    await ready(t);
    t.pool.pause();
    for (let i = 0; i < 40; i++) t.track('10.0.0.1', 5000 + i, '', 1, 0);
    for (let i = 0; i < 5; i++) t.track('10.0.0.9', 5000 + i, '', 1, 0);
    for (let i = 0; i < 5; i++) t.track('10.0.0.2', 5000 + i, '', 1, 0);
    let m = t.metrics();
    assertIdentity(m);
    assert.deepEqual(m.depth, { high: 40, low: 10, total: 50 });
    assert.equal(m.enqueuedHigh, 40);
    assert.equal(m.enqueuedLow, 10);
    t.pool.resume();
    await idle(t);
    const lows = order.map((ip, i) => (ip === '10.0.0.1' ? -1 : i)).filter((i) => i >= 0);
    assert.deepEqual(lows, [4, 9, 14, 19, 24, 29, 34, 39, 44, 49], 'one low job after every 4 high jobs while both wait');
    m = t.metrics();
    assertIdentity(m);
    assert.equal(m.processed, 50);
    await t.close();
  });

  test('without priority: one FIFO, arrival order', async () => {
    const store = new FakeStore();
    const order: string[] = [];
    const { t } = makeTracker({ workers: 1, queue: 50 }, store, { observe: (j) => order.push(j.ip) });
    await ready(t);
    t.pool.pause();
    const sent: string[] = [];
    for (let i = 0; i < 30; i++) {
      const ip = i % 3 === 0 ? `10.9.0.${i}` : '10.9.9.9';
      sent.push(ip);
      t.track(ip, 1, '', 1, 0);
    }
    const m = t.metrics();
    assert.equal(m.priority, false);
    assert.deepEqual(m.depth, { high: 30, low: 0, total: 30 });
    t.pool.resume();
    await idle(t);
    assert.deepEqual(order, sent);
    await t.close();
  });

  test('batches merge repeated updates: one row per client, queries added, first/last seen kept', async () => {
    const store = new FakeStore();
    const { t } = makeTracker({ batch: 50 }, store);
    await ready(t);
    for (let i = 0; i < 1000; i++) t.track(`10.1.0.${i % 10}`, 10_000 + i, '', 1, 0);
    await idle(t);
    assert.equal(store.batches.length, 0, '10 rows pending: below the batch size, nothing written before the flush timer');
    assert.equal(t.metrics().writer.pending, 10);
    assert.equal(t.metrics().writer.pendingQueries, 1000);
    assert.equal(await t.batcher.flushAll(performance.now() + 5000), true);
    assert.equal(store.batches.length, 1);
    assert.equal(store.batches[0].length, 10);
    for (const u of store.batches[0]) {
      const k = Number(u.ip.split('.')[3]);
      assert.equal(u.queries, 100);
      assert.equal(u.firstSeen, 10_000 + k);
      assert.equal(u.lastSeen, 10_000 + 990 + k);
    }
    // 120 distinct clients: two full batches start on their own; the last 20 wait for the timer.
    for (let i = 0; i < 120; i++) t.track(`10.2.0.${i}`, 20_000, '', 1, 0);
    await idle(t);
    await waitFor('two full batches', () => store.batches.length === 3 && !t.batcher.isWriting);
    assert.deepEqual(store.batches.slice(1).map((b) => b.length), [50, 50]);
    assert.equal(t.metrics().writer.pending, 20);
    await t.close();
    assert.equal(store.batches.length, 4);
    assert.equal(store.totalQueries(), 1120);
    const m = t.metrics();
    assert.equal(m.writer.rowsWritten, 130);
    assert.equal(m.writer.queriesWritten, 1120);
    assert.equal(m.writer.batches, 4);
  });

  test('updates that arrive while tracking shuts down are dropped, counted and logged as such (not as a full queue)', async () => {
    const store = new FakeStore();
    const { t, lines, hooks } = makeTracker({ logIntervalMs: 60_000 }, store);
    await ready(t);
    t.track('10.3.9.1', 1, '', 1, 0);
    const closing = t.close(1000);
    hooks.applyDiscovery.call({ ip: '10.3.9.1', hostname: 'late.lan', method: 'rdns', done: true });
    await closing;
    hooks.applyDiscovery.call({ ip: '10.3.9.2', hostname: 'later.lan', method: 'rdns', done: true });
    t.track('10.3.9.3', 2, '', 1, 0);
    const m = t.metrics();
    assert.equal(m.dropped, 3);
    assert.equal(t.queryTotals().dropped, 1);
    assert.equal(store.totalQueries(), 1, 'the query before the shutdown is written');
    const shut = lines.filter((l) => /shutting down, dropping update for /.test(l));
    assert.equal(shut.map((l) => Number(/dropped=(\d+)/.exec(l)![1])).reduce((a, b) => a + b, 0), 3, shut.join('\n'));
    assert.match(shut[0], /shutting down, dropping update for 10\.3\.9\.1 dropped=1/);
    assert.equal(lines.filter((l) => /queue full/.test(l)).length, 0);
  });

  test('the flush timer writes a partial batch once per interval, and nothing when nothing happened', async () => {
    const store = new FakeStore();
    const clock = new ManualClock(1_000_000);
    const { t } = makeTracker({ batch: 500, flushMs: 5000 }, store, { clock });
    await ready(t);
    t.track('10.3.0.1', 1, '', 1, 0);
    await idle(t);
    t.tick();
    await sleep(5);
    assert.equal(store.attempts, 0, 'not yet: the flush interval has not passed');
    clock.advance(5000);
    t.tick();
    await waitFor('written', () => store.batches.length === 1);
    clock.advance(5000);
    t.tick();
    clock.advance(5000);
    t.tick();
    await sleep(5);
    assert.equal(store.attempts, 1, 'a quiet network is not written');
    await t.close(100);
  });

  test('new clients: announced once with discovering = true only when newClient is tapped; applyDiscovery completes them', async () => {
    const store = new FakeStore();
    store.rows = [row('10.4.0.1')];
    const events: NewClientEvent[] = [];
    const { t, hooks } = makeTracker({}, store, { newClient: (e) => events.push(e) });
    await ready(t);
    t.track('10.4.0.1', 100, '', 1, 0);
    t.track('10.4.0.2', 200, '', 1, 0);
    t.track('10.4.0.2', 300, '', 1, 0);
    await idle(t);
    assert.deepEqual(events, [{ ip: '10.4.0.2', seenAt: 200 }]);
    assert.deepEqual(t.client('10.4.0.2'), { seen: 300, discovering: true });
    assert.equal(t.metrics().clients.discovering, 1);
    // Known and discovering: routed low while discovering.
    hooks.applyDiscovery.call({ ip: '10.4.0.2', hostname: 'printer.lan', mac: '00:11:22:33:44:55', vendor: 'ACME', method: 'dhcp', done: true });
    await idle(t);
    assert.deepEqual(t.client('10.4.0.2'), { seen: 300, discovering: false });
    assert.equal(hooks.queueMetrics.call().clients.discovering, 0);
    hooks.applyDiscovery.call({ ip: '10.4.0.3', error: 'timeout', done: false });
    await idle(t);
    await t.batcher.flushAll(performance.now() + 5000);
    const w = store.written();
    assert.equal(w.get('10.4.0.1')!.discovering, undefined, 'a known client carries no discovering flag');
    const c2 = w.get('10.4.0.2')!;
    assert.equal(c2.queries, 2);
    assert.equal(c2.discovering, false);
    assert.equal(c2.hostname, 'printer.lan');
    assert.equal(c2.lastError, null);
    assert.ok(c2.discoveredAt! > 0);
    assert.equal(c2.lastSeen, 300, 'a discovery result does not move last_seen');
    assert.equal(w.get('10.4.0.3')!.discovering, true);
    assert.equal(w.get('10.4.0.3')!.lastError, 'timeout');
    await t.close();

    // Nobody taps newClient: new clients are never marked discovering.
    const store2 = new FakeStore();
    const { t: t2 } = makeTracker({}, store2);
    await ready(t2);
    t2.track('10.4.1.1', 1, '', 1, 0);
    await idle(t2);
    assert.deepEqual(t2.client('10.4.1.1'), { seen: 1, discovering: false });
    await t2.close();
    assert.equal(store2.written().get('10.4.1.1')!.discovering, undefined);
  });

  test('a row left discovering by a previous run is announced again on its next query (or cleared without discovery)', async () => {
    const store = new FakeStore();
    store.rows = [row('10.5.0.1', { discovering: true }), row('10.5.0.2', { discovering: true })];
    const events: NewClientEvent[] = [];
    const { t } = makeTracker({}, store, { newClient: (e) => events.push(e) });
    await ready(t);
    t.track('10.5.0.1', 10, '', 1, 0);
    t.track('10.5.0.1', 11, '', 1, 0);
    await idle(t);
    assert.deepEqual(events.map((e) => e.ip), ['10.5.0.1']);
    await t.close();
    const store2 = new FakeStore();
    store2.rows = [row('10.5.0.2', { discovering: true })];
    const { t: t2 } = makeTracker({}, store2);
    await ready(t2);
    t2.track('10.5.0.2', 10, '', 1, 0);
    await idle(t2);
    assert.equal(t2.client('10.5.0.2')!.discovering, false);
    await t2.close();
    assert.equal(store2.written().get('10.5.0.2')!.discovering, false);
  });

  test('max_clients: the least recently seen are evicted from the index and counted', async () => {
    const store = new FakeStore();
    const { t } = makeTracker({ maxClients: 3 }, store);
    await ready(t);
    // 10 s apart: a known client moves to the newest end of the LRU at most every 10 s.
    ['a', 'b', 'c', 'a', 'd', 'e'].forEach((ip, i) => t.track(ip, 1 + i * 10_000, '', 1, 0));
    await idle(t);
    const m = t.metrics();
    assert.equal(m.clients.indexed, 3);
    assert.equal(m.clients.evicted, 2);
    assert.equal(t.client('b'), undefined);
    assert.equal(t.client('c'), undefined);
    assert.ok(t.client('a'));
    await t.close();
    assert.equal(store.written().size, 5, 'evicted from memory, not from the database');
  });

  test('database busy: the batch fails, is kept and merged with newer updates, and written when the lock goes', async () => {
    const store = new FakeStore();
    const clock = new ManualClock(0);
    const { t, lines } = makeTracker({ batch: 5, flushMs: 1000 }, store, { clock });
    await ready(t);
    store.writeError = new StorageBusyError('writeBatch', 5, Object.assign(new Error('SQLITE_BUSY: database is locked'), { code: 'SQLITE_BUSY' }));
    for (let i = 0; i < 5; i++) t.track(`10.6.0.${i}`, 100 + i, '', 1, 0);
    await idle(t);
    await waitFor('failed batch', () => t.metrics().writer.failedBatches === 1 && !t.batcher.isWriting);
    let m = t.metrics();
    assert.equal(m.writer.pending, 5, 'rows kept');
    assert.equal(m.writer.storageOk, false);
    assert.ok(m.writer.retryInMs > 0, 'backing off');
    assert.ok(lines.some((l) => /storage write failed/.test(l) && /database is locked/.test(l)));
    // More queries from the same clients merge into the kept rows; the backoff holds the writer.
    for (let i = 0; i < 5; i++) t.track(`10.6.0.${i}`, 200 + i, '', 1, 0);
    await idle(t);
    assert.equal(store.attempts, 1, 'no hammering during the backoff');
    store.writeError = null;
    clock.advance(1000);
    t.tick();
    await waitFor('written', () => t.metrics().writer.batches === 1);
    m = t.metrics();
    assert.equal(m.writer.storageOk, true);
    const w = store.written();
    for (let i = 0; i < 5; i++) {
      assert.equal(w.get(`10.6.0.${i}`)!.queries, 2);
      assert.equal(w.get(`10.6.0.${i}`)!.firstSeen, 100 + i);
      assert.equal(w.get(`10.6.0.${i}`)!.lastSeen, 200 + i);
    }
    assert.ok(lines.some((l) => /storage writes recovered/.test(l)));
    await t.close(100);
  });

  test('database unreachable: rows buffered up to max_pending, the rest dropped and counted exactly', async () => {
    const store = new FakeStore();
    const clock = new ManualClock(0);
    const { t } = makeTracker({ batch: 4, flushMs: 1000, maxPending: 10 }, store, { clock });
    await ready(t);
    store.writeError = new StorageUnavailableError('writeBatch', Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:1'), { code: 'ECONNREFUSED' }));
    let sent = 0;
    for (let round = 0; round < 3; round++) {
      for (let i = 0; i < 15; i++) {
        t.track(`10.7.0.${i}`, 1000 + round, '', 1, 0);
        sent++;
      }
      await idle(t);
      await waitFor('writer idle', () => !t.batcher.isWriting);
      clock.advance(60_000);
      t.tick();
      await waitFor('writer idle', () => !t.batcher.isWriting);
    }
    let m = t.metrics();
    assert.equal(m.writer.pending, 10, 'buffer full');
    assert.ok(m.writer.droppedUpdates > 0);
    assertIdentity(m);
    store.writeError = null;
    clock.advance(60_000);
    t.tick();
    await waitFor('recovered', () => t.metrics().writer.pending === 0 && !t.batcher.isWriting);
    m = t.metrics();
    assert.equal(store.totalQueries() + m.writer.droppedQueries, sent, 'every query written or counted as dropped');
    assert.equal(m.writer.queriesWritten, store.totalQueries());
    await t.close(100);
  });

  test('index unavailable at start-up: jobs held up to index_wait, then tracked unverified and sorted when it loads', async () => {
    const store = new FakeStore();
    store.loadError = new StorageUnavailableError('loadIndex', new Error('ECONNREFUSED'));
    store.rows = [row('10.8.0.1')];
    const events: NewClientEvent[] = [];
    const clock = new ManualClock(0);
    const { t, lines } = makeTracker({ indexWaitMs: 1000 }, store, { clock, newClient: (e) => events.push(e) });
    t.start();
    t.track('10.8.0.1', 5, '', 1, 0);
    t.track('10.8.0.2', 6, '', 1, 0);
    await sleep(10);
    assert.equal(t.metrics().queued, 2, 'held');
    clock.advance(1000);
    t.tick();
    await idle(t);
    assert.ok(lines.some((l) => /client index not loaded/.test(l)));
    assert.equal(events.length, 0, 'nobody announced while new and known cannot be told apart');
    store.loadError = null;
    clock.advance(60_000);
    t.tick();
    await waitFor('loaded', () => t.indexLoaded);
    assert.deepEqual(events.map((e) => e.ip), ['10.8.0.2'], 'the one the database did not know is new');
    assert.equal(t.client('10.8.0.1')!.discovering, false);
    assert.equal(t.client('10.8.0.2')!.discovering, true);
    await t.close(500);
    const w = store.written();
    assert.equal(w.get('10.8.0.1')!.queries, 1);
    assert.equal(w.get('10.8.0.2')!.queries, 1);
    assert.equal(w.get('10.8.0.2')!.discovering, true);
  });

  test('shutdown flushes what is queued within the bound, and counts what it could not write', async () => {
    const store = new FakeStore();
    const { t, lines } = makeTracker({ batch: 100 }, store);
    await ready(t);
    for (let i = 0; i < 250; i++) t.track(`10.10.${i >> 8}.${i & 255}`, 1, '', 1, 0);
    await t.close(2000);
    assert.equal(store.totalQueries(), 250);
    assert.deepEqual(store.batches.map((b) => b.length), [100, 100, 50]);
    assert.ok(lines.some((l) => /tracking stopped/.test(l) && /queries_written=250/.test(l)));
    // After close, submits are dropped and counted.
    t.track('10.10.9.9', 1, '', 1, 0);
    assertIdentity(t.metrics());
    assert.equal(t.metrics().dropped, 1);

    const stuck = new FakeStore();
    const never = deferred();
    const { t: t2, lines: lines2 } = makeTracker({ batch: 10 }, stuck);
    await ready(t2);
    stuck.writeGate = never.promise;
    for (let i = 0; i < 30; i++) t2.track(`10.11.0.${i}`, 1, '', 1, 0);
    const t0 = Date.now();
    await t2.close(300);
    assert.ok(Date.now() - t0 < 2000, 'bounded');
    assert.ok(lines2.some((l) => /shutdown: some client updates could not be written/.test(l)));
    assert.equal(t2.metrics().writer.droppedQueries, 20, 'the rows still pending are counted (the one batch in flight is not lost yet)');
    never.resolve();
  });
});

// ---------------------------------------------------------------------------------------------------------
// Real servers.

interface Probe {
  hooks: ClienttrackHooks;
  events: NewClientEvent[];
}
const probes = new Map<string, Probe>();
/** Captures clienttrack's hooks for the test; with `discover`, taps newClient as the discovery plugin will. */
const ctprobe = definePlugin({
  name: 'ctprobe',
  options: Type.Object({ id: Type.String(), discover: Type.Boolean({ default: false }) }),
  setup(api, opts) {
    const hooks = api.hooksOf('clienttrack');
    if (!hooks) throw new Error('ctprobe needs clienttrack in the chain');
    const p: Probe = { hooks, events: [] };
    probes.set(opts.id, p);
    if (opts.discover) hooks.newClient.tap('ctprobe', (e) => void p.events.push(e));
  },
});

const catalog = catalogWith(answerer, ctprobe);

let probeSeq = 0;

interface Db {
  name: 'sqlite3' | 'pg';
  /** The `storage:` block's YAML (flow style). */
  storageYaml: string;
  storageConfig: StorageConfig;
  baseDir: string;
  cleanup(): Promise<void>;
}

function tmpDir(): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), 'codexdns-ct-'));
}

async function sqliteDb(): Promise<Db> {
  const dir = tmpDir();
  const file = path.join(dir, 'clients.sqlite');
  return {
    name: 'sqlite3',
    storageYaml: `{ client: sqlite3, connection: { filename: ${JSON.stringify(file)} } }`,
    storageConfig: { client: 'sqlite3', connection: { filename: file } },
    baseDir: dir,
    cleanup: async () => fs.rmSync(dir, { recursive: true, force: true }),
  };
}

let schemaSeq = 0;
async function pgDb(url = PG_URL!, connectUrl = url): Promise<Db> {
  const schema = `codexdns_ct_${process.pid}_${Date.now().toString(36)}_${schemaSeq++}`;
  const admin = await openStorage({ client: 'pg', connection: url }, { baseDir: '.' });
  await admin.writer.raw(`create schema "${schema}"`);
  await admin.close();
  const connection = { connectionString: connectUrl, options: `-c search_path=${schema}` };
  return {
    name: 'pg',
    storageYaml: `{ client: pg, connection: ${JSON.stringify(connection)} }`,
    storageConfig: { client: 'pg', connection: { connectionString: url, options: `-c search_path=${schema}` } },
    baseDir: '.',
    cleanup: async () => {
      const a = await openStorage({ client: 'pg', connection: url }, { baseDir: '.' });
      await a.writer.raw(`drop schema if exists "${schema}" cascade`);
      await a.close();
    },
  };
}

function corefile(db: Db, opts: { clienttrack?: string; acl?: string; probe?: string; discover?: boolean; log?: string } = {}): { text: string; probe: string } {
  const probe = opts.probe ?? `p${probeSeq++}`;
  const text = `
servers:
  - listen: [udp://127.0.0.1:0, tcp://127.0.0.1:0]
    plugins:
      - acl: { allow: ${opts.acl ?? '[127.0.0.0/8]'} }
      - clienttrack: ${opts.clienttrack ?? '{ flush: 100ms }'}
      - ctprobe: { id: ${probe}, discover: ${opts.discover ? 'true' : 'false'} }
      - answerer: {}
storage: ${db.storageYaml}
${opts.log ?? ''}
`;
  return { text, probe };
}

async function withStore<T>(db: Db, fn: (store: ClientStore, s: Storage) => Promise<T>): Promise<T> {
  const s = await openStorage(db.storageConfig, { baseDir: db.baseDir });
  try {
    return await fn(new ClientStore(s), s);
  } finally {
    await s.close();
  }
}

async function sumQueries(db: Db): Promise<{ rows: number; queries: number }> {
  return withStore(db, async (_store, s) => {
    const [r] = (await s.reader('clients').count({ n: '*' }).sum({ q: 'query_count' })) as Array<{ n: number | string; q: number | string | null }>;
    return { rows: Number(r.n), queries: Number(r.q ?? 0) };
  });
}

function metricsOf(probe: string): QueueMetrics {
  return probes.get(probe)!.hooks.queueMetrics.call();
}

async function settle(probe: string, expectQueries: number): Promise<void> {
  await waitFor(`${expectQueries} queries written`, () => {
    const m = metricsOf(probe);
    return m.writer.queriesWritten + m.writer.pendingQueries >= expectQueries && m.writer.pending === 0 && m.queued === 0 && m.busy === 0;
  });
}

function serverTests(makeDb: () => Promise<Db>): void {
  test('queries from many 127.x.y.z addresses become rows with exact counts; ACL-denied clients are not tracked', async () => {
    const db = await makeDb();
    const { text, probe } = corefile(db, { acl: '[127.0.0.0/9]' });
    const s = await startServer(text, { catalog });
    try {
      const clients: string[] = [];
      for (let i = 0; i < 60; i++) clients.push(`127.${1 + (i % 3)}.${i}.${1 + (i % 200)}`);
      let sent = 0;
      for (let round = 0; round < 3; round++) {
        await Promise.all(
          clients.map(async (from, i) => {
            if (round > 0 && i % 2 === 1) return; // odd clients: one query only
            const a = await s.query(`c${i}-r${round}.example`, 'A', { from });
            assert.equal(a.rcode, 'NOERROR');
            sent++;
          }),
        );
      }
      const denied = await s.query('no.example', 'A', { from: '127.200.0.1' });
      assert.equal(denied.rcode, 'REFUSED');
      await settle(probe, sent);
      const m = metricsOf(probe);
      assertIdentity(m);
      assert.equal(m.dropped, 0);
      assert.equal(m.submitted, sent, 'the denied query never reached tracking');
      await s.stop();
      await withStore(db, async (store) => {
        assert.equal(await store.count(), 60);
        for (let i = 0; i < 60; i++) {
          const r = await store.get(clients[i]);
          assert.ok(r, clients[i]);
          assert.equal(r.queryCount, i % 2 === 1 ? 1 : 3);
          assert.equal(r.discovering, false, 'no discovery in the chain: never discovering');
          assert.ok(r.lastSeen >= r.firstSeen);
        }
        assert.equal(await store.get('127.200.0.1'), undefined);
      });
    } finally {
      await s.stop();
      await db.cleanup();
    }
  });

  test('persistence across a restart: a known client is not new; newClient and applyDiscovery go through tracking', async () => {
    const db = await makeDb();
    const first = corefile(db, { discover: true });
    let s = await startServer(first.text, { catalog });
    try {
      await s.query('a.example', 'A', { from: '127.0.3.1' });
      await s.query('b.example', 'A', { from: '127.0.3.1' });
      await waitFor('announced', () => probes.get(first.probe)!.events.length === 1);
      assert.equal(probes.get(first.probe)!.events[0].ip, '127.0.3.1');
      await settle(first.probe, 2);
      await withStore(db, async (store) => {
        const r = await store.get('127.0.3.1');
        assert.equal(r?.discovering, true, 'written with discovering = true because newClient is tapped');
        assert.equal(r?.queryCount, 2);
      });
      probes.get(first.probe)!.hooks.applyDiscovery.call({ ip: '127.0.3.1', hostname: 'laptop.lan', mac: '02:00:00:00:00:01', method: 'rdns', done: true });
      await waitFor('discovery written', () => metricsOf(first.probe).writer.rowsWritten >= 2 && metricsOf(first.probe).writer.pending === 0);
      await s.stop();

      const second = corefile(db, { discover: true });
      s = await startServer(second.text, { catalog });
      await s.query('c.example', 'A', { from: '127.0.3.1' });
      await s.query('d.example', 'A', { from: '127.0.3.2' });
      await waitFor('announced', () => probes.get(second.probe)!.events.length >= 1);
      await settle(second.probe, 2);
      assert.deepEqual(probes.get(second.probe)!.events.map((e) => e.ip), ['127.0.3.2'], 'the client from the first run is known');
      assert.equal(metricsOf(second.probe).clients.indexLoaded, true);
      await s.stop();
      await withStore(db, async (store) => {
        const r = await store.get('127.0.3.1');
        assert.equal(r?.queryCount, 3);
        assert.equal(r?.hostname, 'laptop.lan');
        assert.equal(r?.method, 'rdns');
        assert.equal(r?.discovering, false);
        assert.ok(r?.discoveredAt);
        assert.equal((await store.get('127.0.3.2'))?.discovering, true);
      });
    } finally {
      await s.stop();
      await db.cleanup();
    }
  });

  test('a reload with the same options keeps the queue and the index (no client looks new again)', async () => {
    const db = await makeDb();
    const c = corefile(db, { discover: true });
    const s = await startServer(c.text, { catalog });
    try {
      await s.query('a.example', 'A', { from: '127.0.4.1' });
      await waitFor('announced', () => probes.get(c.probe)!.events.length === 1);
      const again = corefile(db, { discover: true, probe: c.probe });
      const before = probes.get(c.probe)!;
      assert.deepEqual(await s.reload(again.text + '\n# edited\n'), { ok: true });
      const after = probes.get(c.probe)!;
      assert.notEqual(after, before, 'a new chain, a new probe');
      await s.query('b.example', 'A', { from: '127.0.4.1' });
      await s.query('b.example', 'A', { from: '127.0.4.2' });
      await waitFor('announced', () => after.events.length === 1);
      assert.deepEqual(after.events.map((e) => e.ip), ['127.0.4.2']);
      await settle(c.probe, 3);
      assert.equal(metricsOf(c.probe).submitted, 3, 'same tracker: its totals continue');
    } finally {
      await s.stop();
      await db.cleanup();
    }
  });
}

describe('clienttrack: server on SQLite', () => {
  serverTests(sqliteDb);

  test('a reload that changes the options: the new tracker takes over the index, the old one flushes its rows', async () => {
    const db = await sqliteDb();
    const c = corefile(db, { discover: true, clienttrack: '{ flush: 1h }' });
    const s = await startServer(c.text, { catalog });
    try {
      await s.query('a.example', 'A', { from: '127.0.13.1' });
      await s.query('a.example', 'A', { from: '127.0.13.1' });
      await waitFor('announced', () => probes.get(c.probe)!.events.length === 1);
      await waitFor('processed', () => metricsOf(c.probe).processed === 2);
      assert.equal(metricsOf(c.probe).writer.rowsWritten, 0, 'nothing written yet (flush: 1h)');
      const changed = corefile(db, { discover: true, clienttrack: '{ flush: 100ms }', probe: c.probe });
      assert.deepEqual(await s.reload(changed.text), { ok: true });
      const after = probes.get(c.probe)!;
      await s.query('b.example', 'A', { from: '127.0.13.1' });
      await s.query('b.example', 'A', { from: '127.0.13.2' });
      await waitFor('announced', () => after.events.length === 1);
      assert.deepEqual(after.events.map((e) => e.ip), ['127.0.13.2'], '127.0.13.1 is still known');
      await settle(c.probe, 2);
      await s.stop();
      await withStore(db, async (store) => {
        assert.equal((await store.get('127.0.13.1'))?.queryCount, 3, 'the old tracker flushed its 2, the new one wrote 1');
        assert.equal((await store.get('127.0.13.2'))?.queryCount, 1);
      });
    } finally {
      await s.stop();
      await db.cleanup();
    }
  });

  test('the queue metrics hook and the Prometheus metrics agree; the identity holds', async () => {
    const db = await sqliteDb();
    const { text, probe } = corefile(db, { clienttrack: '{ flush: 100ms, priority: { high: 100, low: 50 } }' });
    const s = await startServer(text, { catalog });
    try {
      for (let i = 0; i < 20; i++) await s.query(`m${i}.example`, 'A', { from: `127.0.5.${1 + (i % 4)}` });
      await settle(probe, 20);
      const m = metricsOf(probe);
      assertIdentity(m);
      assert.equal(m.priority, true);
      assert.deepEqual(m.capacity, { high: 100, low: 50, total: 150 });
      const text2 = await s.server.metrics.registry.metrics();
      const val = (re: RegExp): number => Number(re.exec(text2)?.[1] ?? NaN);
      assert.equal(val(/^codexdns_tracking_processed_total (\d+)/m), m.processed);
      assert.equal(val(/^codexdns_tracking_submitted_total (\d+)/m), 20);
      assert.equal(val(/^codexdns_tracking_dropped_total\{priority="low"\} (\d+)/m), 0);
      assert.equal(val(/^codexdns_tracking_queue_depth\{priority="high"\} (\d+)/m), 0);
      assert.equal(val(/^codexdns_tracking_clients (\d+)/m), 4);
      assert.equal(val(/^codexdns_tracking_evicted_total (\d+)/m), 0);
      assert.ok(val(/^codexdns_tracking_batch_size_count (\d+)/m) >= 1);
      assert.ok(val(/^codexdns_tracking_write_duration_seconds_count (\d+)/m) >= 1);
      assert.match(text2, /^codexdns_tracking_workers_busy \d+/m);
      assert.match(text2, /^codexdns_tracking_enqueued_total\{priority="high"\} \d+/m);
      // A second scrape does not count twice.
      const again = await s.server.metrics.registry.metrics();
      assert.equal(Number(/^codexdns_tracking_processed_total (\d+)/m.exec(again)?.[1]), m.processed);
    } finally {
      await s.stop();
      await db.cleanup();
    }
  });

  test('database locked by another connection (BEGIN EXCLUSIVE): answers stay fast, the batch fails and is counted, then written', async () => {
    const db = await sqliteDb();
    const { text, probe } = corefile(db, { clienttrack: '{ flush: 100ms }' });
    const s = await startServer(text, { catalog });
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const sqlite3 = require('sqlite3') as typeof import('sqlite3');
    let locker: import('sqlite3').Database | null = null;
    try {
      await s.query('warm.example', 'A', { from: '127.0.6.1' });
      await settle(probe, 1);
      const file = (db.storageConfig.connection as { filename: string }).filename;
      locker = await new Promise<import('sqlite3').Database>((resolve, reject) => {
        const d = new sqlite3.Database(file, (err) => (err ? reject(err) : resolve(d)));
      });
      await new Promise<void>((resolve, reject) => locker!.exec('BEGIN EXCLUSIVE; INSERT INTO clients (ip, first_seen, last_seen, query_count) VALUES (\'lock\', 1, 1, 0);', (err) => (err ? reject(err) : resolve())));
      const t0 = Date.now();
      let sent = 1;
      const latencies: number[] = [];
      while (metricsOf(probe).writer.failedBatches === 0) {
        if (Date.now() - t0 > 60_000) throw new Error('no batch failed while locked');
        const q0 = performance.now();
        const a = await s.query(`l${sent}.example`, 'A', { from: `127.0.6.${1 + (sent % 5)}` });
        latencies.push(performance.now() - q0);
        assert.equal(a.rcode, 'NOERROR');
        sent++;
        await sleep(20);
      }
      latencies.sort((a, b) => a - b);
      assert.ok(latencies[Math.floor(latencies.length * 0.99)] < 200, `answers not slowed by the lock: p99 ${latencies[Math.floor(latencies.length * 0.99)]} ms`);
      const m = metricsOf(probe);
      assert.ok(m.writer.failedBatches >= 1);
      assert.equal(m.writer.storageOk, false);
      assert.ok(s.logs.some((l) => /storage write failed/.test(l)));
      await new Promise<void>((resolve, reject) => locker!.exec('ROLLBACK', (err) => (err ? reject(err) : resolve())));
      await new Promise<void>((resolve) => locker!.close(() => resolve()));
      locker = null;
      await waitFor('recovered', () => metricsOf(probe).writer.storageOk && metricsOf(probe).writer.pending === 0, 60_000);
      await settle(probe, sent);
      assert.equal(metricsOf(probe).writer.droppedQueries, 0);
      await s.stop();
      const sum = await sumQueries(db);
      assert.equal(sum.queries, sent, 'every query counted once the lock went');
      assert.equal(sum.rows, 5);
    } finally {
      if (locker) await new Promise<void>((resolve) => locker!.close(() => resolve()));
      await s.stop();
      await db.cleanup();
    }
  });

  test('kill -9 of a tracking server mid-write: the database opens and holds every committed batch', async () => {
    const db = await sqliteDb();
    const dir = db.baseDir;
    const file = (db.storageConfig.connection as { filename: string }).filename;
    // A custom plugin file that answers, so the child is the real CLI with nothing test-only in it.
    const plugin = path.join(dir, 'answer.js');
    fs.writeFileSync(
      plugin,
      `const { DnsResponse } = require(${JSON.stringify(path.resolve(__dirname, '../core/response'))});
module.exports = { name: 'answer', options: { type: 'object', properties: {} }, setup(api) {
  api.hooks.query.tap('answer', (ctx) => { const q = ctx.message.questions[0];
    return DnsResponse.fromPacket({ type: 'response', id: 0, flags: 0, questions: [q], answers: [{ name: q.name, type: 'A', ttl: 60, data: '192.0.2.1' }] }); });
} };\n`,
    );
    const port = await freePort();
    fs.writeFileSync(
      path.join(dir, 'Corefile.yaml'),
      `servers:
  - listen: [udp://127.0.0.1:${port}]
    plugins:
      - clienttrack: { flush: 20ms, batch: 50 }
      - use: ./answer.js
storage: { client: sqlite3, connection: { filename: ${JSON.stringify(file)} } }
log: { level: debug }
reload: { watch: false }
`,
    );
    const child = spawn(process.execPath, [path.resolve(__dirname, '../cli/codexdns.js'), '--conf', path.join(dir, 'Corefile.yaml')], { stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    const exited = new Promise<NodeJS.Signals | null>((resolve) => child.on('exit', (_c, sig) => resolve(sig)));
    try {
      await waitFor('child listening', () => /codexdns started/.test(err), 15_000);
      const socks = await Promise.all(
        Array.from({ length: 200 }, (_, i) => new Promise<dgram.Socket>((resolve) => {
          const sk = dgram.createSocket('udp4');
          sk.on('error', () => undefined);
          sk.bind({ address: `127.0.7.${1 + i}`, port: 0 }, () => resolve(sk));
        })),
      );
      let sent = 0;
      const until = Date.now() + 20_000;
      // Keep a steady stream going until enough batches have committed, then kill in the middle of it.
      while ((err.match(/batch written/g) ?? []).length < 30) {
        if (Date.now() > until) throw new Error(`too few batches: ${err.slice(-2000)}`);
        for (const sk of socks) {
          sk.send(dnsPacket.encode({ type: 'query', id: sent & 0xffff, flags: dnsPacket.RECURSION_DESIRED, questions: [{ name: `k${sent}.example`, type: 'A', class: 'IN' }] }), port, '127.0.0.1');
          sent++;
        }
        await sleep(20);
      }
      child.kill('SIGKILL');
      assert.equal(await exited, 'SIGKILL');
      for (const sk of socks) sk.close();
      const committed = [...err.matchAll(/batch written .*queries_written=(\d+)/g)].map((m) => Number(m[1]));
      const lastCommitted = Math.max(...committed);
      const s = await openStorage(db.storageConfig, { baseDir: dir });
      try {
        const [ic] = (await s.writer.raw('PRAGMA integrity_check')) as Array<{ integrity_check: string }>;
        assert.equal(ic.integrity_check, 'ok');
      } finally {
        await s.close();
      }
      const sum = await sumQueries(db);
      assert.ok(sum.queries >= lastCommitted, `every committed batch is there: ${sum.queries} >= ${lastCommitted}`);
      assert.ok(sum.queries <= sent, `nothing invented: ${sum.queries} <= ${sent}`);
      assert.ok(sum.rows <= 200);
    } finally {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      await db.cleanup();
    }
  });

  test('README examples are valid Corefiles', async () => {
    const readme = fs.readFileSync(path.resolve(__dirname, '../../plugins/clienttrack/README.md'), 'utf8');
    const blocks = [...readme.matchAll(/```yaml\n([\s\S]*?)```/g)].map((m) => m[1]);
    assert.ok(blocks.length >= 3);
    for (const b of blocks) {
      assert.match(b, /^servers:/m);
      await parseConfig(b, path.join(os.tmpdir(), 'Corefile.yaml'), builtinCatalog);
    }
  });
});

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const p = (srv.address() as net.AddressInfo).port;
      srv.close(() => resolve(p));
    });
  });
}

/** A TCP proxy to PostgreSQL that can be cut (refusing and resetting connections) and restored. */
class CuttableProxy {
  private server: net.Server | null = null;
  private readonly sockets = new Set<net.Socket>();
  constructor(readonly port: number, private readonly target: { host: string; port: number }) {}
  async up(): Promise<void> {
    const srv = net.createServer((client) => {
      const upstream = net.connect(this.target.port, this.target.host);
      this.sockets.add(client);
      this.sockets.add(upstream);
      const done = (): void => {
        client.destroy();
        upstream.destroy();
        this.sockets.delete(client);
        this.sockets.delete(upstream);
      };
      client.on('error', done).on('close', done);
      upstream.on('error', done).on('close', done);
      client.pipe(upstream).pipe(client);
    });
    await new Promise<void>((resolve, reject) => {
      srv.once('error', reject);
      srv.listen(this.port, '127.0.0.1', () => resolve());
    });
    this.server = srv;
  }
  async down(): Promise<void> {
    const srv = this.server;
    this.server = null;
    for (const s of this.sockets) s.destroy();
    this.sockets.clear();
    if (srv) await new Promise<void>((resolve) => srv.close(() => resolve()));
  }
}

describe('clienttrack: server on PostgreSQL', { skip: PG_URL ? false : 'set CODEXDNS_TEST_PG=postgres://postgres@127.0.0.1:5432/test to run' }, () => {
  serverTests(() => pgDb());

  test('PostgreSQL unreachable: answers go on, updates are buffered (and counted beyond the bound), and it recovers by itself', async () => {
    const target = new URL(PG_URL!);
    const port = await freePort();
    const proxy = new CuttableProxy(port, { host: target.hostname, port: Number(target.port || 5432) });
    await proxy.up();
    const via = new URL(PG_URL!);
    via.hostname = '127.0.0.1';
    via.port = String(port);
    const db = await pgDb(PG_URL!, via.toString());
    const { text, probe } = corefile(db, { clienttrack: '{ flush: 100ms, max_pending: 20 }' });
    const s = await startServer(text, { catalog });
    try {
      await s.query('warm.example', 'A', { from: '127.0.8.1' });
      await settle(probe, 1);
      await proxy.down();
      let sent = 1;
      const t0 = Date.now();
      // 30 distinct clients while the database is away: 20 fit in the buffer, the rest are dropped and counted.
      for (let i = 0; i < 30; i++) {
        const a = await s.query(`o${i}.example`, 'A', { from: `127.0.9.${1 + i}`, timeoutMs: 1000 });
        assert.equal(a.rcode, 'NOERROR', 'still answering');
        sent++;
      }
      assert.ok(Date.now() - t0 < 5000, 'answers not held by the outage');
      await waitFor('a failed write', () => metricsOf(probe).writer.failedBatches >= 1, 30_000);
      let m = metricsOf(probe);
      assert.equal(m.writer.storageOk, false);
      assert.ok(m.writer.pending <= 20);
      assertIdentity(m);
      await proxy.up();
      await waitFor('recovered', () => metricsOf(probe).writer.storageOk && metricsOf(probe).writer.pending === 0, 60_000);
      m = metricsOf(probe);
      const sum = await sumQueries(db);
      assert.equal(sum.queries + m.writer.droppedQueries, sent, `written ${sum.queries} + dropped ${m.writer.droppedQueries} = sent ${sent}`);
      assert.ok(sum.rows >= 21);
      assert.ok(s.logs.some((l) => /storage writes recovered/.test(l)));
    } finally {
      await s.stop();
      await proxy.down();
      await db.cleanup();
    }
  });

  test('two codexdns servers sharing one PostgreSQL database both track into it', async () => {
    const db = await pgDb();
    const a = corefile(db);
    const b = corefile(db);
    const [sa, sb] = await Promise.all([startServer(a.text, { catalog }), startServer(b.text, { catalog })]);
    try {
      let sentA = 0;
      let sentB = 0;
      const jobs: Promise<unknown>[] = [];
      for (let i = 0; i < 40; i++) {
        // 127.0.10.* only through A, 127.0.11.* only through B, 127.0.12.* through both.
        jobs.push(sa.query(`x${i}.example`, 'A', { from: `127.0.10.${1 + (i % 10)}` }).then(() => sentA++));
        jobs.push(sb.query(`y${i}.example`, 'A', { from: `127.0.11.${1 + (i % 10)}` }).then(() => sentB++));
        jobs.push(sa.query(`z${i}.example`, 'A', { from: `127.0.12.${1 + (i % 5)}` }).then(() => sentA++));
        jobs.push(sb.query(`w${i}.example`, 'A', { from: `127.0.12.${1 + (i % 5)}` }).then(() => sentB++));
      }
      await Promise.all(jobs);
      await Promise.all([settle(a.probe, sentA), settle(b.probe, sentB)]);
      await Promise.all([sa.stop(), sb.stop()]);
      await withStore(db, async (store) => {
        assert.equal(await store.count(), 25);
        for (let i = 1; i <= 5; i++) assert.equal((await store.get(`127.0.12.${i}`))?.queryCount, 16, 'both servers counted into one row');
        assert.equal((await store.get('127.0.10.1'))?.queryCount, 4);
        assert.equal((await store.get('127.0.11.1'))?.queryCount, 4);
      });
      const sum = await sumQueries(db);
      assert.equal(sum.queries, sentA + sentB);
    } finally {
      await sa.stop();
      await sb.stop();
      await db.cleanup();
    }
  });
});

before(() => undefined);
after(() => undefined);

describe('client index', () => {
  test('keeps times and flags per client in LRU order, evicts the oldest beyond capacity, and reuses its slots', () => {
    const n = 3000; // more than the first typed arrays hold: they grow
    const idx = new ClientIndex(n);
    for (let i = 0; i < n; i++) assert.equal(idx.add(`10.${i >> 8}.${i & 255}.1`, 1_000_000 + i, i % 2 === 0 ? DISCOVERING : 0), -1);
    assert.equal(idx.size, n);
    const s7 = idx.slot('10.0.7.1');
    assert.equal(idx.seen(s7), 1_000_007);
    assert.equal(idx.flags(s7), 0);
    idx.setSeen(s7, 2_000_000);
    idx.setFlags(s7, DISCOVERING | ANNOUNCED);
    // Refreshed: the oldest is now 10.0.0.1, then 10.0.1.1 ...; 10.0.7.1 is the newest.
    idx.refresh('10.0.7.1', 2_000_000);
    assert.equal(idx.touched(s7), 2_000_000);
    assert.equal(idx.add('10.99.0.1', 3_000_000, 0), DISCOVERING, '10.0.0.1 (discovering) pushed out');
    assert.equal(idx.add('10.99.0.2', 3_000_001, ANNOUNCED), 0, '10.0.1.1 pushed out');
    assert.equal(idx.slot('10.0.0.1'), -1);
    assert.equal(idx.size, n);
    const order = [...idx].map(([ip]) => ip);
    assert.deepEqual(order.slice(0, 2), ['10.0.2.1', '10.0.3.1']);
    assert.deepEqual(order.slice(-3), ['10.0.7.1', '10.99.0.1', '10.99.0.2']);
    assert.equal(idx.seen(idx.slot('10.0.7.1')), 2_000_000);
    assert.equal(idx.flags(idx.slot('10.0.7.1')), DISCOVERING | ANNOUNCED);
    assert.equal(idx.flags(idx.slot('10.99.0.2')), ANNOUNCED);
    // Every client's own values survived the growth and the slot reuse.
    for (let i = 2; i < n; i++) {
      if (i === 7) continue;
      const s = idx.slot(`10.${i >> 8}.${i & 255}.1`);
      assert.equal(idx.seen(s), 1_000_000 + i);
      assert.equal(idx.flags(s), i % 2 === 0 ? DISCOVERING : 0);
    }
    assert.ok(idx.delete('10.99.0.1'));
    assert.ok(!idx.delete('10.99.0.1'));
    assert.equal(idx.size, n - 1);
    // Re-adding a client replaces it as the newest and keeps nothing of it.
    assert.equal(idx.add('10.0.7.1', 5, 0), -1);
    assert.equal(idx.flags(idx.slot('10.0.7.1')), 0);
    assert.equal(idx.seen(idx.slot('10.0.7.1')), 5);
    assert.equal(idx.size, n - 1);
    const slots = new Set([...idx].map(([, s]) => s));
    assert.equal(slots.size, n - 1, 'no two clients share a slot');
    assert.ok(Math.max(...slots) <= n, 'slots stay within capacity + 1');
  });
});
