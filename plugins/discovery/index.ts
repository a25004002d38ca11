/**
 * `discovery`: names (and MACs) for new clients, found in the background — reverse DNS, NetBIOS, mDNS, DHCP
 * leases, the neighbour table — on a bounded pool of its own, guarded by whoever taps `beforeDiscover`
 * (`breaker`, `ratelimit`). Results go through clienttrack's `applyDiscovery`. See README.md.
 */
import * as os from 'node:os';
import * as ipaddr from 'ipaddr.js';
import { SyncBailHook, SyncHook } from 'tapable';
import { OptionError } from '../../config/errors';
import { Duration, Type, type Static } from '../../config/types';
import { definePlugin, type PluginApi } from '../../core/plugin';
import type { ClienttrackHooks } from '../clienttrack/hooks';
import type { PoolJobs, PoolSettings } from '../../core/primitives/workerPool';
import { deprecatedPoolOptions, ignoredPoolOptions } from '../pkg/poolOptions';
import type { WorkerPools } from '../workerpool/hooks';
import { isProbeable, parseIp } from '../pkg/address';
import { DiscoveryEngine, type EngineOptions, type EngineStore } from './engine';
import { createArp } from './methods/arp';
import { createDhcp, type LeaseFileConfig, type LeaseFormat } from './methods/dhcp';
import { createMdns } from './methods/mdns';
import { createNetbios } from './methods/netbios';
import { createRdns, type RdnsResolver } from './methods/rdns';
import type { DiscoveryMethod } from './methods/types';
import { registerPrometheus } from './metrics';
import { chooseResolvers, machineAddresses, ownEndpoints, type ResolverChoice } from './resolvers';
import { METHOD_NAMES, type DiscoveryDenial, type DiscoveryHooks, type DiscoveryMetrics, type DiscoveryOutcome, type DiscoveryReport, type DiscoveryRequest, type MethodName } from './hooks';
import { vendorOf } from './vendor';

export * from './hooks';
export { DiscoveryEngine, type EngineOptions, type EngineDeps, type EngineHooks, type EngineStore } from './engine';

const HOUR = 3_600_000;
const LEASE_FORMATS = ['dnsmasq', 'isc', 'kea', 'odhcpd'] as const;

const LeaseFile = Type.Union([
  Type.String({ minLength: 1, description: 'A lease file; its format is guessed from its name (dnsmasq, dhcpd, kea …csv, odhcpd)' }),
  Type.Object({
    path: Type.String({ minLength: 1 }),
    format: Type.Optional(Type.Union(LEASE_FORMATS.map((f) => Type.Literal(f)), { description: 'dnsmasq, isc, kea or odhcpd' })),
  }),
]);

export const options = Type.Object({
  workers: Type.Optional(Type.Integer({ minimum: 1, maximum: 1000, description: 'Deprecated: `- workerpool: { discovery: { workers: N } }` (default 10). Discovery jobs running at once' })),
  queue: Type.Optional(Type.Integer({ minimum: 1, description: 'Deprecated: `- workerpool: { discovery: { queue: N } }` (default 1000). Jobs waiting for a worker; a new client that does not fit is counted as dropped and waits in the backlog' })),
  backlog: Type.Integer({ minimum: 1, default: 100_000, description: 'Clients waiting for a later attempt (queue full, deferred by a guard, retrying, refresh due); beyond it they wait in the database' }),
  methods: Type.Array(Type.Union(METHOD_NAMES.map((m) => Type.Literal(m))), {
    minItems: 1,
    uniqueItems: true,
    default: [...METHOD_NAMES],
    description: 'Methods to run, in order: dhcp, arp, rdns, netbios, mdns',
  }),
  timeout: Duration(2000, 'Time each method may take'),
  stop_on_first: Type.Boolean({ default: true, description: 'Stop at the first method that finds a name; false: run every method and merge' }),
  refresh: Duration(24 * HOUR, 'Names older than this are looked up again (for clients still seen)'),
  retry: Type.Object(
    {
      attempts: Type.Integer({ minimum: 1, maximum: 100, default: 5, description: 'Attempts of a failing discovery before giving up until the next refresh' }),
      backoff: Duration(10_000, 'Wait before the first retry; doubled each time'),
      max_backoff: Duration(30 * 60_000, 'Longest wait between retries'),
    },
    { default: {}, description: 'Retries of a discovery that failed (a resolver down, a socket error)' },
  ),
  rdns: Type.Object(
    {
      resolvers: Type.Optional(
        Type.Array(Type.String({ minLength: 1 }), {
          minItems: 1,
          maxItems: 8,
          description: 'IP, IP:port, [IPv6]:port or a resolv.conf path; default: forward\'s `private` upstreams, else the default gateway',
        }),
      ),
    },
    { default: {} },
  ),
  netbios: Type.Object({ port: Type.Integer({ minimum: 1, maximum: 65535, default: 137, description: 'UDP port of the NetBIOS name service on clients' }) }, { default: {} }),
  mdns: Type.Object({ port: Type.Integer({ minimum: 1, maximum: 65535, default: 5353, description: 'UDP port of the mDNS responder on clients (asked by unicast)' }) }, { default: {} }),
  dhcp: Type.Object(
    { leases: Type.Array(LeaseFile, { default: [], description: 'Lease files to read (watched, re-read on change)' }) },
    { default: {} },
  ),
  arp: Type.Object({ interval: Duration(60_000, 'How often the neighbour table is re-read') }, { default: {} }),
});

export type DiscoveryOptions = Static<typeof options>;

/** The lease format from a file name: `*.csv` Kea, `dhcpd*.leases` ISC, `*odhcpd*` odhcpd, `dnsmasq*`/`*.leases` dnsmasq. */
export function guessLeaseFormat(path: string): LeaseFormat | undefined {
  const base = path.split('/').pop()!.toLowerCase();
  if (base.endsWith('.csv') || base.includes('kea')) return 'kea';
  if (base.includes('dhcpd') && !base.includes('odhcpd')) return 'isc';
  if (base.includes('odhcpd')) return 'odhcpd';
  if (base.includes('dnsmasq') || base.endsWith('.leases')) return 'dnsmasq';
  return undefined;
}

/** This plugin's pool, by its name on the workerpool line. */
export const DISCOVERY_POOL = 'discovery';
/** The pool's bounds when neither the workerpool line nor the deprecated options give them. */
export const DISCOVERY_POOL_DEFAULTS: PoolSettings = { workers: 10, queue: 1000 };

/**
 * The discovery pool's bounds: the workerpool line's `discovery` wins, then this plugin's deprecated
 * `workers`/`queue`, then the defaults. `warnings` name the old options the workerpool line overrides.
 */
export function discoveryPool(o: Pick<DiscoveryOptions, 'workers' | 'queue'>, pools: WorkerPools | undefined): { settings: PoolSettings; warnings: string[] } {
  const fallback: PoolSettings = { workers: o.workers ?? DISCOVERY_POOL_DEFAULTS.workers, queue: o.queue ?? DISCOVERY_POOL_DEFAULTS.queue };
  const resolved = pools?.settings(DISCOVERY_POOL, fallback);
  const settings: PoolSettings = resolved !== undefined ? { workers: resolved.workers, queue: resolved.queue } : fallback;
  return { settings, warnings: ignoredPoolOptions('discovery', DISCOVERY_POOL, o, resolved?.configured) };
}

export function engineOptions(o: DiscoveryOptions, methods: MethodName[], pool: PoolSettings = discoveryPool(o, undefined).settings): EngineOptions {
  if (o.timeout <= 0) throw new OptionError('timeout', 'must be longer than 0');
  if (o.refresh <= 0) throw new OptionError('refresh', 'must be longer than 0');
  if (o.retry.backoff <= 0) throw new OptionError('retry.backoff', 'must be longer than 0');
  if (o.retry.max_backoff < o.retry.backoff) throw new OptionError('retry.max_backoff', 'must be at least retry.backoff');
  return {
    workers: pool.workers,
    queue: pool.queue,
    backlog: o.backlog,
    methods,
    timeoutMs: o.timeout,
    stopOnFirst: o.stop_on_first,
    refreshMs: o.refresh,
    retry: { attempts: o.retry.attempts, backoffMs: o.retry.backoff, maxBackoffMs: o.retry.max_backoff },
  };
}

// ------------------------------------------------------------------------------------------------ on-link

type Net = [ipaddr.IPv4 | ipaddr.IPv6, number];
let onLinkNets: Net[] = [];
let onLinkReadAt = -Infinity;

/** Whether an address lies in one of this machine's interface networks (re-read at most once a minute). */
export function onLink(ip: string): boolean {
  const now = performance.now();
  if (now - onLinkReadAt > 60_000) {
    onLinkReadAt = now;
    const nets: Net[] = [];
    for (const addrs of Object.values(os.networkInterfaces())) {
      for (const a of addrs ?? []) {
        if (a.internal || a.cidr === null) continue;
        try {
          const [addr, bits] = ipaddr.parseCIDR(a.cidr.split('%')[0].replace(/%[^/]*/, ''));
          // A default route's /0 would make everything on-link.
          if (bits > 0) nets.push([addr, bits]);
        } catch {
          // an interface address ipaddr.js cannot read
        }
      }
    }
    onLinkNets = nets;
  }
  const addr = parseIp(ip);
  if (addr === undefined) return false;
  for (const [net, bits] of onLinkNets) {
    if (net.kind() === addr.kind() && addr.match([net, bits] as never)) return true;
  }
  return false;
}

export function probeable(ip: string): boolean {
  return isProbeable(ip, onLink);
}

// ------------------------------------------------------------------------------------------------ metrics API

const live = new Map<string, () => DiscoveryMetrics>();

/**
 * The discovery numbers of a server block (`block0` … ; default: the first block that runs discovery), for the
 * HTTP API and the dashboard; undefined when no block runs discovery.
 */
export function getDiscoveryMetrics(block?: string): DiscoveryMetrics | undefined {
  const read = block !== undefined ? live.get(block) : live.values().next().value;
  return read?.();
}

// ------------------------------------------------------------------------------------------------ the plugin

interface Built {
  methods: Map<MethodName, DiscoveryMethod>;
  active: MethodName[];
}

/**
 * What a retained engine reads from the chain that serves (the engine outlives a chain when discovery's options are
 * unchanged): clienttrack's hooks for its database reads, and this chain's rdns resolvers.
 */
interface ChainLink {
  track: ClienttrackHooks;
  resolvers: () => readonly RdnsResolver[];
}

function buildMethods(api: PluginApi<DiscoveryHooks>, o: DiscoveryOptions, link: ChainLink, leases: LeaseFileConfig[]): Built {
  const methods = new Map<MethodName, DiscoveryMethod>();
  const active: MethodName[] = [];
  for (const name of o.methods) {
    switch (name) {
      case 'rdns':
        // The resolvers are chosen per chain, at its start-up (they may come from forward, set up after us).
        methods.set(name, createRdns({ resolvers: () => link.resolvers(), timeoutMs: (n) => Math.max(200, Math.floor(o.timeout / n)) }));
        break;
      case 'netbios':
        methods.set(name, createNetbios({ port: o.netbios.port, timeoutMs: o.timeout, allow: probeable }));
        break;
      case 'mdns':
        methods.set(name, createMdns({ port: o.mdns.port, timeoutMs: o.timeout, allow: probeable }));
        break;
      case 'dhcp':
        if (leases.length === 0) {
          api.log.info('dhcp is off: no lease file given (dhcp: { leases: [...] })');
          continue;
        }
        methods.set(name, createDhcp({ leases }));
        break;
      case 'arp':
        methods.set(name, createArp({ refreshMs: o.arp.interval }));
        break;
    }
    active.push(name);
  }
  return { methods, active };
}

function leaseFiles(api: PluginApi<DiscoveryHooks>, o: DiscoveryOptions): LeaseFileConfig[] {
  return o.dhcp.leases.map((entry, i) => {
    const path = api.resolvePath(typeof entry === 'string' ? entry : entry.path);
    const format = (typeof entry === 'string' ? undefined : entry.format) ?? guessLeaseFormat(path);
    if (format === undefined) throw new OptionError(`dhcp.leases[${i}]`, `cannot tell the format of ${path} from its name: write { path: …, format: dnsmasq | isc | kea | odhcpd }`);
    return { path, format };
  });
}

/**
 * The engine's reads of the `clients` table, through clienttrack's hooks (the table is clienttrack's). The engine
 * outlives a chain when discovery's options are unchanged; `link.track` is the serving chain's clienttrack.
 */
function storeOf(link: ChainLink): EngineStore {
  return {
    discovering: (limit) => link.track.discoveringClients.promise(limit),
    stale: (discoveredBefore, seenSince, limit) => link.track.staleClients.promise({ discoveredBefore, seenSince, limit }),
  };
}

export const discovery = definePlugin({
  name: 'discovery',
  description: 'Finds names and MACs of new clients in the background (rdns, netbios, mdns, dhcp leases, arp), bounded and guarded',
  options,
  // Without clienttrack there are no new clients to discover (a warning, not an error: the server still answers).
  uses: ['clienttrack', 'workerpool'],
  deprecated: (o) => deprecatedPoolOptions(DISCOVERY_POOL, o),
  declare(): DiscoveryHooks {
    return {
      beforeDiscover: new SyncBailHook<[DiscoveryRequest], DiscoveryDenial | undefined>(['request']),
      attemptDenied: new SyncHook<[DiscoveryRequest, DiscoveryDenial]>(['request', 'denial']),
      discovered: new SyncHook<[DiscoveryOutcome]>(['outcome']),
      report: new SyncHook<[DiscoveryReport]>(['report']),
      snapshot: new SyncBailHook<[], DiscoveryMetrics>([]),
    };
  },
  setup(api, o) {
    const leases = leaseFiles(api, o);
    const wantsRdns = o.methods.includes('rdns');
    const forward = api.hooksOf('forward');
    const choose = (): ResolverChoice => {
      try {
        return chooseResolvers({
          configured: o.rdns.resolvers,
          forwardPrivate: forward?.privateUpstreams.call(),
          resolvePath: (p) => api.resolvePath(p),
          own: ownEndpoints(api.block.listen),
          machine: machineAddresses(),
        });
      } catch (err) {
        throw new OptionError('rdns.resolvers', (err as Error).message);
      }
    };
    // Configured resolvers are checked now, so a bad entry stops start-up at its line. Otherwise the choice
    // waits for forward's `private` upstreams, published in forward's setup (usually after ours): made at this
    // chain's start-up, or at the first lookup if one comes sooner.
    if (o.rdns.resolvers !== undefined && o.rdns.resolvers.length > 0) choose();
    let choice: ResolverChoice | undefined;
    const resolvers = (): readonly RdnsResolver[] => {
      if (choice === undefined) {
        choice = choose();
        if (wantsRdns) {
          for (const w of choice.warnings) api.log.warn(w);
          if (choice.resolvers.length === 0) api.log.warn('rdns is off: no resolver (no rdns.resolvers, no forward `private` upstream, no usable default gateway)');
          else api.log.info('rdns resolvers', { resolvers: choice.resolvers.map((r) => `${r.host}:${r.port}`).join(','), from: choice.source });
        }
      }
      return choice.resolvers;
    };

    // Without a workerpool line the engine builds a plain pool with the same bounds (nothing else changes).
    const pools = api.hooksOf('workerpool')?.pools;
    const pool = discoveryPool(o, pools);
    for (const w of pool.warnings) api.log.warn(w);

    const track = api.hooksOf('clienttrack');
    if (track === undefined) {
      api.log.warn('clienttrack is not in this server block: there are no new clients to discover');
      return;
    }
    const link = api.retain<ChainLink>('engine|link', () => ({ track, resolvers }));
    const engine = api.retain(
      // The pool's bounds are in the key: a changed workerpool line (not this plugin's options) builds a new engine.
      `engine|${pool.settings.workers}/${pool.settings.queue}`,
      () => {
        const built = buildMethods(api, o, link, leases);
        const eopts = engineOptions(o, built.active, pool.settings);
        if (built.active.length === 0) api.log.warn('no discovery method is usable: clients will be marked discovered with nothing found', { methods: o.methods.join(',') });
        return new DiscoveryEngine(eopts, {
          methods: built.methods,
          log: api.log,
          probeable,
          vendorOf,
          store: storeOf(link),
          ...(pools !== undefined ? { pool: <J>(jobs: PoolJobs<J>) => pools.create(DISCOVERY_POOL, pool.settings, jobs) } : {}),
        });
      },
      (e) => e.close(),
    );
    pools?.attach(DISCOVERY_POOL, engine.pool);
    api.hooks.startup.tap('discovery', () => {
      // At the swap, not in setup: a reload that fails after this setup leaves the engine reading the chain
      // that still serves.
      link.track = track;
      link.resolvers = resolvers;
      if (wantsRdns) resolvers();
    });
    const own = api.own;
    engine.connect({ own, apply: (u) => track.applyDiscovery.call(u) });
    // The same metric objects after a reload (the registry is shared); the gauges now read this engine.
    engine.stats.prom = registerPrometheus(api.metrics, () => (engine.isClosed ? undefined : engine.gauges()));

    track.newClient.tap('discovery', (ev) => engine.announce(ev.ip));
    const snapshot = (): DiscoveryMetrics => engine.metrics((r) => own.report.call(r));
    own.snapshot.tap('discovery', snapshot);
    live.set(api.block.name, snapshot);
    api.hooks.shutdown.tap('discovery', (info) => {
      if (live.get(api.block.name) === snapshot) live.delete(api.block.name);
      // Stopping for good: stop before clienttrack flushes, so no result arrives after its queue has closed
      // (lookups in flight are aborted; their clients stay `discovering` and are taken up at the next start).
      if (info.reason === 'shutdown') engine.close();
    });
  },
});

export default discovery;
