// Tracking pipeline throughput (issue 3 point 4: 100,000 client updates per second into SQLite).
//
//   npx tsc -p tsconfig.json && node dist/bench/stormTracking.js
//
// Drives clienttrack's Tracker directly — the same path as the `served` hook: track() → worker pool (100
// workers, queue 10,000) → in-memory index + merge into pending rows → batches of 500, one transaction each
// through ClientStore.writeBatch — into a real SQLite file (synchronous=NORMAL, WAL), and times from the first
// update to the last row committed. No DNS here: bench/storm.ts measures the answers.
//
// Scenarios (bounded: TRACK_UPDATES, default 500,000 updates each):
//   distinct — every update a different client (rows = updates: the worst case for the writer)
//   storm    — 10,000 clients, 50 updates each, interleaved (the merge in memory absorbs repeats)
//   steady   — 1,000 clients, interleaved (a busy office: nearly every update merges)
// Updates are submitted in slices of 5,000 per event-loop turn (as many queries would be), so the queue
// (10,000) never overflows: a drop would be counted and reported.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { silentLogger } from '../core/log';
import { ClientStore, registerClientsMigrations } from '../plugins/clienttrack/store';
import { openStorage } from '../storage/open';
import { Tracker, type TrackerOptions } from '../plugins/clienttrack/tracker';

const UPDATES = Math.min(5_000_000, Math.max(1000, Number(process.env.TRACK_UPDATES ?? 500_000)));
const SLICE = 5000;

const OPTS: TrackerOptions = {
  workers: 100,
  queue: 10_000,
  batch: 500,
  flushMs: 5000,
  maxPending: 1_000_000,
  maxClients: 1_000_000,
  retentionMs: 90 * 86_400_000,
  pruneIntervalMs: 3_600_000,
  logIntervalMs: 10_000,
  indexWaitMs: 10_000,
  shutdownFlushMs: 120_000,
};

function ipOf(i: number): string {
  return `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`;
}

async function scenario(name: string, clients: number): Promise<Record<string, number | string>> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'codexdns-track-'));
  const storage = await openStorage({ client: 'sqlite3', connection: { filename: 'track.sqlite' } }, { baseDir: dir });
  try {
    registerClientsMigrations(storage);
    await storage.migrate.latest();
    const store = new ClientStore(storage);
    const t = new Tracker(OPTS, { openStore: async () => store, log: silentLogger });
    t.start();
    while (!t.indexLoaded) await new Promise((r) => setTimeout(r, 5));
    const ips = Array.from({ length: clients }, (_, i) => ipOf(i));
    const t0 = performance.now();
    const now = Date.now();
    for (let i = 0; i < UPDATES; ) {
      const end = Math.min(UPDATES, i + SLICE);
      for (; i < end; i++) t.track(ips[i % clients], now + (i >> 10), '', 1, 0);
      await new Promise<void>((r) => setImmediate(r));
    }
    const tSubmitted = performance.now();
    await t.pool.drain(60_000);
    const tProcessed = performance.now();
    await t.batcher.flushAll(performance.now() + 120_000);
    const tWritten = performance.now();
    const m = t.metrics();
    await t.close(10_000);
    const [r] = (await storage.reader('clients').count({ n: '*' }).sum({ q: 'query_count' })) as Array<{ n: number; q: number }>;
    const total = (tWritten - t0) / 1000;
    return {
      scenario: name,
      updates: UPDATES,
      clients,
      'updates/s end to end': Math.round(UPDATES / total),
      'updates/s through the pool': Math.round(UPDATES / ((tProcessed - t0) / 1000)),
      'rows/s written': Math.round(m.writer.rowsWritten / total),
      'submit+process s': Number(((tProcessed - t0) / 1000).toFixed(2)),
      'submitted s': Number(((tSubmitted - t0) / 1000).toFixed(2)),
      'total s': Number(total.toFixed(2)),
      batches: m.writer.batches,
      'avg write ms': Number(m.writer.avgWriteMs.toFixed(2)),
      'max write ms': Number(m.writer.maxWriteMs.toFixed(1)),
      dropped: m.dropped + m.writer.droppedUpdates,
      'db rows': Number(r.n),
      'db query_count': Number(r.q),
    };
  } finally {
    await storage.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

async function main(): Promise<void> {
  const rows = [
    await scenario('distinct', UPDATES),
    await scenario('storm', Math.max(1, Math.floor(UPDATES / 50))),
    await scenario('steady', 1000),
  ];
  for (const r of rows) console.log(JSON.stringify(r));
  const ok = rows.every((r) => r['db query_count'] === UPDATES && r.dropped === 0);
  if (!ok) {
    console.error('an update went missing');
    process.exit(1);
  }
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    console.error(err);
    process.exit(1);
  },
);
