import * as fs from 'node:fs';
import { isIP } from 'node:net';
import * as path from 'node:path';
import { OptionError } from '../../config/errors';
import { Duration, Type } from '../../config/types';
import { definePlugin, type StorageHandle } from '../../core/plugin';
import type {} from '../metrics/hooks';
import { addRoutes } from './api';
import { registerMetrics } from './metrics';
import { QueryLog, type QueryLogOptions } from './querylog';
import { QuerylogStore } from './store';

export { QueryLog, maskAddress, type QueryLogOptions, type QueryLogStats } from './querylog';
export { QuerylogStore, type QueryFilter, type QueryPage, type StoredQuery, type LogRow, type AggRow } from './store';
export { Ring, type RawEntry } from './ring';

const DAY = 86_400_000;

export const options = Type.Object({
  flush: Duration(30_000, 'Write the ring to the database at least this often (sooner when `batch` entries wait); nothing is written when nothing happened'),
  batch: Type.Integer({ minimum: 1, maximum: 100_000, default: 5000, description: 'Entries per write; a write starts early when this many wait' }),
  ring: Type.Integer({ minimum: 1, maximum: 1_000_000, default: 20_000, description: 'Entries held in memory between writes; beyond it entries are dropped and counted' }),
  retention: Duration(7 * DAY, 'Delete logged queries older than this'),
  max_rows: Type.Integer({ minimum: 1, default: 1_000_000, description: 'Keep at most this many logged queries (the oldest go first)' }),
  stats_retention: Duration(30 * DAY, 'Keep the hourly counts (top domains, top clients, charts) this long'),
  max_hourly_keys: Type.Integer({ minimum: 1, default: 2000, description: 'Distinct clients, and distinct names, counted per hour; more are counted under "(other)"' }),
  sample: Type.Number({ minimum: 0, maximum: 1, default: 1, description: 'Share of queries logged (1 = all, 0.1 = one in ten at random)' }),
  exclude: Type.Array(Type.String({ minLength: 1 }), {
    default: [],
    description: 'Clients (an address or a CIDR network) and names (a name excludes its subdomains too) not to log',
  }),
  anonymize: Type.Optional(
    Type.Object(
      {
        ipv4: Type.Integer({ minimum: 0, maximum: 32, default: 24, description: 'IPv4 prefix length kept' }),
        ipv6: Type.Integer({ minimum: 0, maximum: 128, default: 48, description: 'IPv6 prefix length kept' }),
      },
      { description: 'Store the client as its network (192.168.1.0/24) instead of its address; without it, addresses are stored' },
    ),
  ),
  prune_interval: Duration(3_600_000, 'How often retention and max_rows run'),
  log_interval: Duration(10_000, 'At most one repeating warning (ring full, database down) per interval, with the count'),
  shutdown_flush: Duration(5000, 'At shutdown, how long the last batch may take to be written'),
});

export type QuerylogPluginOptions = typeof options.static;

/** Splits `exclude` into networks and names; throws OptionError naming the entry that is neither. */
export function queryLogOptions(o: QuerylogPluginOptions): QueryLogOptions {
  if (o.flush <= 0) throw new OptionError('flush', 'flush must be longer than 0');
  if (o.retention <= 0) throw new OptionError('retention', 'retention must be longer than 0');
  if (o.stats_retention <= 0) throw new OptionError('stats_retention', 'stats_retention must be longer than 0');
  if (o.prune_interval <= 0) throw new OptionError('prune_interval', 'prune_interval must be longer than 0');
  if (o.batch > o.ring) throw new OptionError('batch', `batch (${o.batch}) must not exceed ring (${o.ring})`);
  const clients: string[] = [];
  const names: string[] = [];
  for (const e of o.exclude) {
    const [addr, bits, extra] = e.split('/');
    const fam = isIP(addr);
    if (fam !== 0) {
      if (extra !== undefined || (bits !== undefined && !(/^\d+$/.test(bits) && Number(bits) <= (fam === 4 ? 32 : 128)))) {
        throw new OptionError('exclude', `exclude entry ${e}: not an address or a network (ADDRESS/BITS)`);
      }
      clients.push(e);
    } else if (/^[A-Za-z0-9_*-]+(\.[A-Za-z0-9_-]+)*\.?$/.test(e) && !e.includes('/')) {
      names.push(e.toLowerCase().replace(/^\*\./, ''));
    } else {
      throw new OptionError('exclude', `exclude entry ${e}: neither an address, a network nor a domain name`);
    }
  }
  return {
    ring: o.ring,
    batch: o.batch,
    flushMs: o.flush,
    retentionMs: o.retention,
    maxRows: o.max_rows,
    statsRetentionMs: o.stats_retention,
    maxHourlyKeys: o.max_hourly_keys,
    sample: o.sample,
    excludeClients: clients,
    excludeNames: names,
    anonymize: o.anonymize ? { ipv4: o.anonymize.ipv4, ipv6: o.anonymize.ipv6 } : null,
    pruneIntervalMs: o.prune_interval,
    logIntervalMs: o.log_interval,
  };
}

/** The plugin's migrations: next to this file in the sources, beside `dist/` once compiled. */
export function migrationsDir(): string {
  const candidates = [path.join(__dirname, 'migrations'), path.resolve(__dirname, '..', '..', '..', 'plugins', 'querylog', 'migrations')];
  for (const c of candidates) if (fs.existsSync(c)) return c;
  throw new Error(`the querylog migrations are missing (looked in ${candidates.join(', ')})`);
}

/**
 * Every served query into a bounded ring (O(1) in `served`), written in batches with hourly counts; a JSON API
 * on the metrics listener. See README.md.
 */
export default definePlugin({
  name: 'querylog',
  description: 'Logs every query (client, name, type, rcode, who answered, time taken) in batches, with hourly counts and an API',
  options,
  uses: ['metrics'],
  setup(api, opts) {
    const qopts = queryLogOptions(opts);
    let opening: Promise<QuerylogStore> | null = null;
    let storeFor: StorageHandle | null = null;
    const storage = api.storage;
    const openStore = async (): Promise<QuerylogStore> => {
      const s = await storage.open();
      if (opening !== null && storeFor === s) return opening;
      storeFor = s;
      opening = (async () => {
        await storage.migrate(migrationsDir(), 'querylog');
        const fresh = new QuerylogStore(s.writer, s.reader, s.client === 'pg');
        // Today's counts per client (the device list) start from what earlier runs stored; read before this
        // store writes anything, so no batch is counted twice.
        const since = ql.dayStart;
        try {
          ql.seedToday(await fresh.top('c', since, ql.opts.maxHourlyKeys * 4), since);
        } catch {
          // The counts start from zero; the log itself is unaffected.
        }
        return fresh;
      })();
      opening.catch(() => {
        opening = null;
        storeFor = null;
      });
      return opening;
    };
    const ql = api.retain(
      'log',
      () => new QueryLog(qopts, openStore, api.log),
      (q) => q.close(opts.shutdown_flush),
    );
    ql.onBatch = registerMetrics(api.metrics, () => ql);
    // Open (and migrate) after the listeners are up, so the first answer never waits for it and today's counts
    // are seeded before the first batch.
    api.hooks.startup.tap('querylog', () => void openStore().catch(() => undefined));
    api.hooks.served.tap('querylog', (ctx, res) => ql.record(ctx, res));
    api.timers.setInterval(() => ql.tick(), Math.max(10, Math.min(qopts.flushMs, 1000)));
    const metrics = api.hooksOf('metrics');
    metrics?.routes.tap('querylog', (t) => addRoutes(t, () => ql, openStore));
    metrics?.apiClient.tap('querylog', (c) => {
      const n = ql.queriesToday(c.ip);
      return { ...c, queriesToday: n ?? 0 };
    });
  },
});
