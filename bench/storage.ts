// Micro benchmark of the tracking writes: ClientStore.writeBatch rows/s on SQLite (and PostgreSQL when
// CODEXDNS_BENCH_PG or CODEXDNS_TEST_PG holds a connection string).
//
//   npx tsc -p tsconfig.json && node dist/bench/storage.js [batches=200] [batchSize=500]
//
// Scenarios, each a bounded loop of `batches` batches of `batchSize` distinct clients:
//   insert  — every client new (first sight of a network)
//   update  — every client already stored (the steady state: counters and last_seen move)
//   mixed   — updates, 10% of them carrying discovery results (hostname/mac/discovering/last_error),
//             which splits a batch into several statement shapes
//   knex    — the same updates through knex's insert().onConflict('ip').merge() (the baseline figure)

import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { performance } from 'node:perf_hooks';

import { openStorage, type Storage, type StorageConfig } from '../storage';
import { ClientStore, registerClientsMigrations, type ClientUpdate } from '../plugins/clienttrack/store';

const batches = Number(process.argv[2] ?? 200);
const batchSize = Number(process.argv[3] ?? 500);

function ipOf(i: number): string {
  return `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`;
}

function makeBatch(b: number, now: number, discovery: boolean): ClientUpdate[] {
  const out: ClientUpdate[] = [];
  for (let i = 0; i < batchSize; i++) {
    const n = b * batchSize + i;
    const u: ClientUpdate = { ip: ipOf(n), lastSeen: now + b, firstSeen: now + b - 5, queries: 1 + (n % 7) };
    if (discovery && n % 10 === 0) {
      u.hostname = `host-${n}.lan`;
      u.mac = `02:00:00:${((n >> 16) & 255).toString(16)}:${((n >> 8) & 255).toString(16)}:${(n & 255).toString(16)}`;
      u.discovering = false;
      u.discoveredAt = now;
      u.lastError = n % 20 === 0 ? null : 'timeout';
    }
    out.push(u);
  }
  return out;
}

// Besides rows/s: CPU µs per row (the whole process: JS thread + libuv threads running SQLite; for pg the
// server's CPU is not counted) and the event-loop busy time per batch (what a batch write takes away from
// the DNS answer path, which shares this thread).
async function timeIt(label: string, db: string, fn: (b: number) => Promise<void>): Promise<void> {
  const elu0 = performance.eventLoopUtilization();
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  for (let b = 0; b < batches; b++) await fn(b);
  const s = (performance.now() - t0) / 1000;
  const cpu = process.cpuUsage(cpu0);
  const elu = performance.eventLoopUtilization(elu0);
  const rows = batches * batchSize;
  console.log(
    `${db.padEnd(7)} ${label.padEnd(7)} ${rows} rows in ${s.toFixed(3)} s = ${Math.round(rows / s)
      .toLocaleString('en-US')
      .padStart(8)} rows/s, ${((cpu.user + cpu.system) / rows).toFixed(1)} CPU µs/row, ` +
      `event loop busy ${(elu.active / batches).toFixed(2)} ms/batch`,
  );
}

async function run(db: string, storage: Storage): Promise<void> {
  registerClientsMigrations(storage);
  await storage.migrate.latest();
  await storage.writer('clients').del();
  const store = new ClientStore(storage);
  const now = Date.now();
  // Pre-build the batches: measure the store, not the generator.
  const plain = Array.from({ length: batches }, (_, b) => makeBatch(b, now, false));
  const mixed = Array.from({ length: batches }, (_, b) => makeBatch(b, now + 1000, true));
  await timeIt('insert', db, (b) => store.writeBatch(plain[b]!));
  await timeIt('update', db, (b) => store.writeBatch(plain[b]!));
  await timeIt('mixed', db, (b) => store.writeBatch(mixed[b]!));

  const w = storage.writer;
  const max = storage.client === 'pg' ? 'greatest' : 'max';
  await timeIt('knex', db, async (b) => {
    const rows = plain[b]!.map((u) => ({
      ip: u.ip,
      first_seen: u.firstSeen,
      last_seen: u.lastSeen,
      query_count: u.queries,
      hostname: null,
    }));
    await w.transaction(async (trx) => {
      await trx('clients')
        .insert(rows)
        .onConflict('ip')
        .merge({
          query_count: trx.raw('clients.query_count + excluded.query_count'),
          last_seen: trx.raw(`${max}(clients.last_seen, excluded.last_seen)`),
          hostname: trx.raw('coalesce(excluded.hostname, clients.hostname)'),
        });
    });
  });
  const [{ n }] = (await storage.reader('clients').count({ n: '*' })) as Array<{ n: number | string }>;
  if (Number(n) !== batches * batchSize) throw new Error(`expected ${batches * batchSize} rows, found ${n}`);
}

async function main(): Promise<void> {
  console.log(`storage bench: ${batches} batches x ${batchSize} rows, node ${process.version}, ${os.cpus().length} CPU`);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'codexdns-bench-'));
  try {
    const sqlite = await openStorage(
      { client: 'sqlite3', connection: { filename: 'bench.sqlite' } },
      { baseDir: dir },
    );
    try {
      await run('sqlite', sqlite);
    } finally {
      await sqlite.close();
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }

  const pgUrl = process.env.CODEXDNS_BENCH_PG ?? process.env.CODEXDNS_TEST_PG;
  if (!pgUrl) {
    console.log('pg      skipped (set CODEXDNS_BENCH_PG or CODEXDNS_TEST_PG to a postgres:// URL)');
    return;
  }
  const schema = `codexdns_bench_${process.pid}`;
  const admin = await openStorage({ client: 'pg', connection: pgUrl }, { baseDir: dir });
  await admin.writer.raw(`create schema if not exists "${schema}"`);
  const cfg: StorageConfig = { client: 'pg', connection: pgUrl, searchPath: [schema] };
  const pg = await openStorage(cfg, { baseDir: dir });
  try {
    await run('pg', pg);
  } finally {
    await pg.close();
    await admin.writer.raw(`drop schema if exists "${schema}" cascade`);
    await admin.close();
  }
}

main().catch((err) => {
  console.error(err);
  process.exitCode = 1;
});
