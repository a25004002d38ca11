import { AsyncSeriesBailHook, SyncBailHook, SyncHook } from 'tapable';
import { OptionError } from '../../config/errors';
import { Duration, Type } from '../../config/types';
import { definePlugin, type StorageAccess, type StorageHandle } from '../../core/plugin';
import type { PoolJobs } from '../../core/primitives/workerPool';
import type { TrackStore } from './batcher';
import { CLIENTS_MIGRATION_SET, ClientStore, clientsMigrationsDir } from './store';
import { registerMetrics } from './metrics';
import { Tracker, type TrackerOptions } from './tracker';
import type {
  ClientIdentity,
  ClientListQuery,
  ClientListResult,
  ClientRecord,
  ClienttrackHooks,
  DiscoveryUpdate,
  NewClientEvent,
  QueueMetrics,
  StaleClientsQuery,
} from './hooks';
import { chooseTrackingPool, deprecatedTrackingOptions, TRACKING_POOL, TRACKING_POOL_DEFAULTS } from './trackingPool';

export type * from './hooks';
export { ClientStore, MAX_LIST_LIMIT, clientsMigrationsDir, registerClientsMigrations, CLIENTS_MIGRATION_SET } from './store';
export type { ClientUpdate, ClientRow, ClientStoreOptions } from './store';
export { Tracker, type TrackerOptions, type TrackerDeps, type TrackJob, QueryJob, DiscoveryJob } from './tracker';
export { Batcher, type TrackStore } from './batcher';
export { chooseTrackingPool, deprecatedTrackingOptions, TRACKING_POOL, TRACKING_POOL_DEFAULTS, type TrackingPool } from './trackingPool';

const DAY = 86_400_000;

/** The tracker of each server block, for the successor a reload builds (shared by the server's clienttrack instances). */
interface Trackers {
  readonly live: Map<string, Tracker>;
  /** Who a tracker took its index from: serving again if the reload that built it fails. */
  readonly predecessor: WeakMap<Tracker, Tracker>;
}

export const options = Type.Object({
  workers: Type.Optional(Type.Integer({ minimum: 1, description: 'Deprecated: `- workerpool: { tracking: { workers: N } }` (default 100). Tracking jobs running at once' })),
  queue: Type.Optional(
    Type.Integer({ minimum: 1, description: 'Deprecated: `- workerpool: { tracking: { queue: N } }` (default 10000). Jobs waiting when every worker is busy; with `priority`, if given, it must equal high + low' }),
  ),
  priority: Type.Optional(
    Type.Object(
      {
        high: Type.Integer({ minimum: 1, default: 5000, description: 'Queue for known clients' }),
        low: Type.Integer({ minimum: 1, default: 5000, description: 'Queue for clients new or still being discovered' }),
        low_every: Type.Integer({ minimum: 1, default: 8, description: 'Anti-starvation: one low job after this many high jobs while both wait' }),
      },
      { description: 'Deprecated: `- priority: { high, low, low_every }` as a line of its own. Split the queue by priority; without it, one FIFO queue' },
    ),
  ),
  batch: Type.Integer({ minimum: 1, maximum: 10000, default: 500, description: 'Rows per write transaction; a write starts when this many are pending' }),
  flush: Duration(5000, 'Write pending rows at least this often (nothing is written when nothing happened)'),
  max_clients: Type.Integer({ minimum: 1, default: 50000, description: 'Clients in the in-memory index; the least recently seen are evicted (and counted)' }),
  max_pending: Type.Integer({ minimum: 1, default: 50000, description: 'Rows (distinct clients) buffered for writing, e.g. while the database is down; beyond it updates are dropped and counted' }),
  retention: Duration(90 * DAY, 'Delete clients not seen for this long'),
  prune_interval: Duration(3_600_000, 'How often retention runs'),
  log_interval: Duration(10_000, 'At most one `queue full` (and other repeating) warning per interval, with the count'),
  index_wait: Duration(10_000, 'How long jobs wait for the client index to load at start-up before tracking goes on without it'),
  shutdown_flush: Duration(5000, 'At shutdown, how long queued jobs and pending rows may take to be written'),
  give_up: Type.Optional(Duration(600_000, 'Rows whose writes fail with an error not known to be passing (not busy, unreachable, timed out) are retried this long, then dropped and counted')),
});

export type ClienttrackOptions = typeof options.static;

/** Turns the validated options into the tracker's; throws OptionError for combinations the schema cannot express. */
export function trackerOptions(o: ClienttrackOptions): TrackerOptions {
  const priority = o.priority ? { high: o.priority.high, low: o.priority.low, lowEvery: o.priority.low_every } : undefined;
  if (priority && o.queue !== undefined && o.queue !== priority.high + priority.low) {
    throw new OptionError('queue', `queue (${o.queue}) must equal priority.high + priority.low (${priority.high + priority.low}), or be left out`);
  }
  if (o.flush <= 0) throw new OptionError('flush', 'flush must be longer than 0');
  if (o.retention <= 0) throw new OptionError('retention', 'retention must be longer than 0');
  if (o.prune_interval <= 0) throw new OptionError('prune_interval', 'prune_interval must be longer than 0');
  return {
    workers: o.workers ?? TRACKING_POOL_DEFAULTS.workers,
    queue: priority ? priority.high + priority.low : o.queue ?? TRACKING_POOL_DEFAULTS.queue,
    priority,
    batch: o.batch,
    flushMs: o.flush,
    maxPending: o.max_pending,
    maxClients: o.max_clients,
    retentionMs: o.retention,
    pruneIntervalMs: o.prune_interval,
    logIntervalMs: o.log_interval,
    indexWaitMs: o.index_wait,
    shutdownFlushMs: o.shutdown_flush,
    giveUpMs: o.give_up ?? 600_000,
  };
}

/** The reads of the `clients` table that clienttrack serves to other plugins. */
export type ClientReads = Pick<ClientStore, 'list' | 'get' | 'discovering' | 'stale'>;

/**
 * Points the tracker at this chain's hooks: it announces on `newClient`, and serves `applyDiscovery`, `queueMetrics` and
 * `loadIdentities`; `reads` (when given) serves `listClients`, `getClient`, `discoveringClients` and `staleClients`.
 * `identified` and `forgotten` are pinned when the chain starts serving (see setup).
 */
export function connectHooks(tracker: Tracker, hooks: ClienttrackHooks, reads?: () => Promise<ClientReads>): void {
  tracker.setNewClientHook(hooks.newClient);
  hooks.applyDiscovery.tap('clienttrack', (update) => tracker.applyDiscovery(update));
  hooks.queueMetrics.tap('clienttrack', () => tracker.metrics());
  hooks.loadIdentities.tapPromise('clienttrack', (limit) => tracker.loadIdentities(limit));
  if (reads === undefined) return;
  hooks.listClients.tapPromise('clienttrack', async (q) => (await reads()).list(q));
  hooks.getClient.tapPromise('clienttrack', async (ip) => (await (await reads()).get(ip)) ?? null);
  hooks.discoveringClients.tapPromise('clienttrack', async (limit) => (await reads()).discovering(limit));
  hooks.staleClients.tapPromise('clienttrack', async (q) => (await reads()).stale(q.discoveredBefore, q.seenSince, q.limit));
}

/**
 * Opens the database with the `clients` table migrated (clienttrack's own migration set), migrating once per
 * storage handle (a SQLite file replaced under us is reopened and migrated by the storage itself). A failed
 * migration is tried again at the next call.
 */
export function migratedOpener(storage: StorageAccess): () => Promise<StorageHandle> {
  let done: { for: StorageHandle; ready: Promise<void> } | null = null;
  return async () => {
    const s = await storage.open();
    if (done === null || done.for !== s) {
      const ready = storage.migrate(clientsMigrationsDir(), CLIENTS_MIGRATION_SET);
      done = { for: s, ready };
      ready.catch(() => {
        if (done?.ready === ready) done = null;
      });
    }
    await done.ready;
    return s;
  };
}

/**
 * Client tracking off the answer path: every served query (from a client the ACL let in) becomes a job on a
 * bounded worker pool; workers keep an in-memory index of clients and merge updates into rows that are written
 * in batches. See README.md.
 */
export default definePlugin({
  name: 'clienttrack',
  description: 'Tracks clients (first/last seen, query count) in the database, off the answer path',
  options,
  // Its pool and queue come from these when listed; without them, a plain pool with the same bounds.
  uses: ['workerpool', 'priority'],
  deprecated: (o) => deprecatedTrackingOptions(o),
  declare(): ClienttrackHooks {
    return {
      newClient: new SyncHook<[NewClientEvent]>(['client']),
      applyDiscovery: new SyncHook<[DiscoveryUpdate]>(['update']),
      queueMetrics: new SyncBailHook<[], QueueMetrics>([]),
      identified: new SyncHook<[ClientIdentity]>(['client']),
      forgotten: new SyncHook<[readonly string[]]>(['ips']),
      loadIdentities: new AsyncSeriesBailHook<[number], ClientIdentity[]>(['limit']),
      listClients: new AsyncSeriesBailHook<[ClientListQuery], ClientListResult>(['query']),
      getClient: new AsyncSeriesBailHook<[string], ClientRecord | null>(['ip']),
      discoveringClients: new AsyncSeriesBailHook<[number], string[]>(['limit']),
      staleClients: new AsyncSeriesBailHook<[StaleClientsQuery], string[]>(['query']),
    };
  },
  setup(api, opts) {
    const old = trackerOptions(opts);
    // Without a workerpool (or priority) line the tracker builds a plain pool (or split queue) from the same
    // bounds: removing the line changes nothing else.
    const pools = api.hooksOf('workerpool')?.pools;
    const queues = api.hooksOf('priority')?.queues;
    const pool = chooseTrackingPool(opts, pools, queues);
    for (const w of pool.warnings) api.log.warn(w);
    const topts: TrackerOptions = { ...old, workers: pool.workers, queue: pool.queue, priority: pool.priority };
    let store: ClientStore | null = null;
    let reader: { store: ClientStore; for: StorageHandle } | null = null;
    const storage = api.storage;
    const log = api.log;
    const openMigrated = migratedOpener(storage);
    const openStore = async (): Promise<TrackStore> => {
      if (store !== null) return store;
      const s = await openMigrated();
      store ??= new ClientStore(s, { log });
      return store;
    };
    // Other plugins' reads (an API page, discovery's scans) fail fast rather than queue behind busy retries.
    const openReads = async (): Promise<ClientReads> => {
      const s = await openMigrated();
      if (reader === null || reader.for !== s) reader = { store: new ClientStore(s, { log, retry: { attempts: 2, minDelayMs: 10, maxDelayMs: 50 } }), for: s };
      return reader.store;
    };
    const key = api.block.name;
    const { live, predecessor } = api.shared<Trackers>('trackers', () => ({ live: new Map(), predecessor: new WeakMap() }));
    const tracker = api.retain(
      // The pool's bounds are in the key: a changed workerpool or priority line (not this plugin's options)
      // builds a new tracker, which takes over the index as on any other change.
      `tracker|${pool.key}`,
      () => {
        const t = new Tracker(topts, {
          openStore,
          log,
          ...(pools !== undefined ? { pool: <J>(jobs: PoolJobs<J>) => pools.create(TRACKING_POOL, pool, jobs) } : {}),
          ...(queues !== undefined ? { queue: <J>() => queues.create<J>() } : {}),
        });
        // Options changed on reload: start from the previous tracker's index instead of the database, which
        // does not have the rows the previous tracker still holds.
        const prev = live.get(key);
        if (prev !== undefined && !prev.isClosed) {
          t.adoptIndex(prev);
          predecessor.set(t, prev);
        }
        live.set(key, t);
        return t;
      },
      (t) => {
        if (live.get(key) === t) {
          // A reload that failed after this tracker was built: the previous one is still serving.
          const prev = predecessor.get(t);
          if (prev !== undefined && !prev.isClosed) live.set(key, prev);
          else live.delete(key);
        }
        return t.close();
      },
    );
    pools?.attach(TRACKING_POOL, tracker.pool);
    connectHooks(tracker, api.own, openReads);
    tracker.batcher.onBatch = registerMetrics(api.metrics, () => tracker);
    // Loading the index opens the database (knex alone takes ≈ 100 ms to load on a small box): after the
    // listeners are up, so the first answer never waits for it.
    api.hooks.startup.tap('clienttrack', () => {
      // Identities go to the chain that serves: pinned at the swap, so a reload that fails after this setup
      // leaves them with the chain still serving.
      tracker.setIdentityHooks(api.own.identified, api.own.forgotten);
      tracker.start();
    });

    api.hooks.served.tap('clienttrack', (ctx, res) => {
      // Only clients the ACL let in: a forged source address must not grow the table.
      if (ctx.denied !== undefined) return;
      tracker.track(ctx.client.address, Date.now(), ctx.query.wireKey, ctx.query.qtype, res.dropped ? -1 : res.wire[3] & 0x0f);
    });

    const tickMs = Math.max(10, Math.min(topts.flushMs, 1000));
    api.timers.setInterval(() => tracker.tick(), tickMs);
  },
});
