/**
 * `filter`: block lists from files and URLs, allow lists and exceptions, groups of clients by address, network,
 * MAC or discovered name, CNAME cloaking, pause and "why". See README.md.
 */
import * as fs from 'node:fs';
import { AsyncSeriesBailHook, SyncBailHook, SyncHook } from 'tapable';
import { OptionError } from '../../config/errors';
import { Duration, Type, type Static } from '../../config/types';
import type { QueryContext } from '../../core/context';
import { definePlugin, type PluginApi } from '../../core/plugin';
import type { DnsResponse } from '../../core/response';
import { readName, skipName } from '../../core/wire/names';
import { CidrParseError } from '../pkg/cidr';
import type {} from '../clienttrack/hooks';
import type {} from '../metrics/hooks';
import { BlockedAnswer } from './answers';
import { ClientGroups } from './clientGroups';
import { Verdict, type FilterEngine, type GroupLists } from './filterEngine';
import { FilterState } from './filterState';
import { addFilterRoutes, filterStatus, filterWhy } from './api';
import type { FilterHooks } from './hooks';
import { registerFilterMetrics } from './metrics';
import { Source, type FetchLimits, type SourceKind, type SourceLocation } from './sources';

export { FilterState } from './filterState';
export type { FilterHooks, FilterStatus, FilterWhyResult, FilterBlockedEvent } from './hooks';

const Lists = (what: string) => Type.Array(Type.String({ minLength: 1 }), { default: [], description: what });

const GroupOptions = Type.Object({
  name: Type.String({ pattern: '^[A-Za-z0-9_-]{1,40}$', description: 'The group\'s name (metrics label, API); not "default"' }),
  clients: Type.Array(Type.String({ minLength: 1 }), { description: 'Members: addresses, CIDR networks, MAC addresses (aa:bb:cc:dd:ee:ff) or discovered host names' }),
  block: Lists('Block lists of this group: URLs, files, or names'),
  allow: Lists('Allow lists of this group: names, URLs or files'),
  default_lists: Type.Boolean({ default: true, description: 'Also apply the top-level block and allow lists' }),
});

export const options = Type.Object({
  block: Lists('Block lists for everyone (the default group): http(s) URLs, files (relative to Corefile.yaml), or names'),
  allow: Lists('Names, URLs or files that are never blocked; they win over every block list'),
  groups: Type.Array(GroupOptions, { default: [], description: 'Groups of clients with lists of their own; the first group a client matches applies, else the default group' }),
  answer: Type.Union([Type.Literal('null'), Type.Literal('nxdomain'), Type.Literal('nodata'), Type.Literal('address')], {
    default: 'null',
    description: 'null: 0.0.0.0 for A, :: for AAAA, NODATA for other types; nxdomain; nodata; address: the `address` list',
  }),
  address: Type.Array(Type.String(), { default: [], description: 'The addresses a blocked A/AAAA query gets with answer: address (IPv4 and/or IPv6)' }),
  ttl: Type.Integer({ minimum: 0, default: 60, description: 'TTL of blocked answers\' records' }),
  cname: Type.Boolean({ default: true, description: 'Check the CNAME chain of answers (CNAME cloaking): a listed target blocks the answer' }),
  cache_dir: Type.String({ default: './data/filter', description: 'Where the last good copy of each URL list is kept (relative to Corefile.yaml)' }),
  refresh: Duration(86_400_000, 'How often URL lists are downloaded again (conditional requests: an unchanged list costs a 304)'),
  jitter: Duration(3_600_000, 'A random delay up to this much is added to each refresh, so many servers do not ask at once'),
  retry: Duration(300_000, 'After a failed download, try again this soon'),
  file_check: Duration(30_000, 'How often list files are checked for changes (size and modification time)'),
  timeout: Duration(30_000, 'Longest a download may take, from connecting to the last byte'),
  max_size: Type.Integer({ minimum: 1024, default: 64 * 1024 * 1024, description: 'Largest list download in bytes; reading stops there and the previous copy stays' }),
  ca_file: Type.Optional(Type.String({ minLength: 1, description: 'PEM file of the CA certificates trusted for https lists (instead of the system\'s), for this plugin\'s downloads only' })),
  max_patterns: Type.Integer({ minimum: 0, default: 1000, description: 'Regular expressions and wildcards kept per source (each one is tried per query); more are counted as unsupported' }),
  max_identities: Type.Integer({ minimum: 1, default: 10_000, description: 'Client identities (MAC, name) kept in memory for groups' }),
  max_clients: Type.Integer({ minimum: 1, default: 10_000, description: 'Client addresses whose group decision is cached' }),
  top_names: Type.Integer({ minimum: 1, default: 1000, description: 'Blocked names counted for the top list' }),
});

export type FilterOptions = Static<typeof options>;

const DEFAULT_GROUP = 'default';
const TYPE_CNAME = 5;

/** A list entry: a URL, a file, or (when neither) a rule written inline. */
export function classifyEntry(entry: string, resolve: (p: string) => string): SourceLocation | null {
  if (/^https?:\/\//i.test(entry)) return { type: 'url', url: entry };
  if (/^[a-z]+:\/\//i.test(entry)) return null;
  // `/…/` is a regular expression (adblock style), not a path.
  if (entry.length > 2 && entry.startsWith('/') && entry.endsWith('/')) return { type: 'inline', lines: [entry] };
  if (entry.includes('/') || entry.includes('\\')) return { type: 'file', path: resolve(entry) };
  if (/\.(txt|list|hosts|conf)$/i.test(entry) || fs.existsSync(resolve(entry))) return { type: 'file', path: resolve(entry) };
  return { type: 'inline', lines: [entry] };
}

export interface BuiltConfig {
  sources: Source[];
  lists: GroupLists[];
  groups: ClientGroups;
  limits: FetchLimits;
}

/** Turns the options into sources (one per distinct list, shared by the groups naming it) and groups. */
export function buildConfig(o: FilterOptions, resolve: (p: string) => string): BuiltConfig {
  const cacheDir = resolve(o.cache_dir);
  const byKey = new Map<string, Source>();
  const sources: Source[] = [];
  const sourcesOf = (entries: readonly string[], kind: SourceKind, option: string, group: string): Source[] => {
    const out: Source[] = [];
    const inline: string[] = [];
    entries.forEach((entry, i) => {
      const loc = classifyEntry(entry, resolve);
      if (loc === null) throw new OptionError(`${option}[${i}]`, `${entry}: only http:// and https:// URLs, files and names are supported`);
      if (loc.type === 'inline') {
        inline.push(entry);
        return;
      }
      const key = `${kind}|${loc.type === 'url' ? loc.url : loc.path}`;
      let s = byKey.get(key);
      if (s === undefined) {
        s = new Source(entry, kind, loc, cacheDir);
        byKey.set(key, s);
        sources.push(s);
      }
      out.push(s);
    });
    if (inline.length > 0) {
      const s = new Source(`${option} (${group})`, kind, { type: 'inline', lines: inline }, cacheDir);
      sources.push(s);
      out.push(s);
    }
    return out;
  };
  const seen = new Set<string>();
  const defBlock = sourcesOf(o.block, 'block', 'block', DEFAULT_GROUP);
  const defAllow = sourcesOf(o.allow, 'allow', 'allow', DEFAULT_GROUP);
  const lists: GroupLists[] = o.groups.map((g, i) => {
    if (g.name === DEFAULT_GROUP) throw new OptionError(`groups[${i}].name`, `"${DEFAULT_GROUP}" is the group of everyone else; choose another name`);
    if (seen.has(g.name)) throw new OptionError(`groups[${i}].name`, `group ${g.name} is defined twice`);
    seen.add(g.name);
    const block = sourcesOf(g.block, 'block', `groups[${i}].block`, g.name);
    const allow = sourcesOf(g.allow, 'allow', `groups[${i}].allow`, g.name);
    return { name: g.name, block: g.default_lists ? [...block, ...defBlock] : block, allow: g.default_lists ? [...allow, ...defAllow] : allow };
  });
  lists.push({ name: DEFAULT_GROUP, block: defBlock, allow: defAllow });
  let groups: ClientGroups;
  const at = o.groups.findIndex((g) => {
    try {
      new ClientGroups([g.clients], 1, 1);
      return false;
    } catch {
      return true;
    }
  });
  try {
    groups = new ClientGroups(o.groups.map((g) => g.clients), o.max_identities, o.max_clients);
  } catch (err) {
    if (err instanceof CidrParseError) throw new OptionError(`groups[${at}].clients[${err.index}]`, `${err.text} is not an address, a CIDR network, a MAC address or a host name`);
    throw err;
  }
  if (o.answer === 'address' && o.address.length === 0) throw new OptionError('address', 'answer: address needs at least one address');
  o.address.forEach((a, i) => {
    if (!/^[0-9.]+$|:/.test(a)) throw new OptionError(`address[${i}]`, `${a} is not an IPv4 or IPv6 address`);
  });
  let ca: Buffer | undefined;
  if (o.ca_file !== undefined) {
    try {
      ca = fs.readFileSync(resolve(o.ca_file));
    } catch (err) {
      throw new OptionError('ca_file', `cannot read ${resolve(o.ca_file)}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
    }
  }
  for (const s of sources) {
    if (s.location.type === 'file' && !fs.existsSync(s.location.path)) {
      const opt = o.block.includes(s.id) ? `block[${o.block.indexOf(s.id)}]` : o.allow.includes(s.id) ? `allow[${o.allow.indexOf(s.id)}]` : 'groups';
      throw new OptionError(opt, `cannot read ${s.location.path}: no such file`);
    }
  }
  return { sources, lists, groups, limits: { timeoutMs: o.timeout, maxBytes: o.max_size, ca, maxPatterns: o.max_patterns } };
}

/** Loads every source from disk (or downloads it when there is no copy yet), one at a time. */
export async function loadAll(state: FilterState, limits: FetchLimits, log?: PluginApi['log']): Promise<void> {
  for (const s of state.sources) {
    const ok = await state.serialize(() => s.loadLocal(limits));
    if (!ok && s.location.type === 'url') {
      try {
        await state.serialize(() => s.refresh(limits));
      } catch (err) {
        log?.warn('cannot download a list and there is no copy on disk yet', { source: s.id, error: (err as Error).message });
      }
    } else if (!ok) log?.warn('cannot load a list', { source: s.id, error: s.error });
    if (s.location.type === 'file' && ok) state.stamps.set(s, await s.fileStamp().catch(() => ''));
    if (s.tables.badLines > 0) log?.warn('lines that are not list entries were skipped', { source: s.id, bad: s.tables.badLines, first: s.tables.badSamples.join(' | ') });
  }
  state.engine.recompile();
}

export const filter = definePlugin({
  name: 'filter',
  description: 'Block lists (files, URLs) and allow lists per group of clients, CNAME cloaking, pause, why',
  // A guard: listed after `cache`, a name cached before it was listed would still be served from the cache.
  role: 'guard',
  // Groups by MAC or discovered name follow clienttrack's identities; the API routes go on metrics' server.
  uses: ['metrics', 'clienttrack'],
  options,
  declare: (): FilterHooks => ({
    blocked: new SyncHook(['event']),
    status: new SyncBailHook([]),
    why: new AsyncSeriesBailHook(['request']),
  }),
  async setup(api, o) {
    const built = buildConfig(o, (p) => api.resolvePath(p));
    const state = api.retain('state', () => new FilterState(built.sources, built.lists, built.groups, o.top_names));
    const limits = built.limits;
    const metrics = registerFilterMetrics(api.metrics, api.block.name, () => state);
    api.hooks.shutdown.tap('filter', () => metrics.release());
    if (!state.loaded) {
      const started = performance.now();
      await loadAll(state, limits, api.log);
      state.loaded = true;
      api.log.info('filter lists loaded', { sources: state.sources.length, names: state.engine.names, bytes: state.engine.byteLength, ms: Math.round(performance.now() - started) });
    }
    const engine = state.engine;
    const groups = state.groups;
    const answer = new BlockedAnswer(o.answer, o.address, o.ttl);
    const own = api.own;
    const counters = state.counters;
    const names = state.groupNames;

    const blockedAnswer = (ctx: QueryContext, g: number, stage: 'query' | 'cname', target?: string): DnsResponse => {
      counters[g].blocked++;
      if (stage === 'cname') counters[g].blockedCname++;
      state.top.add(ctx.qname);
      state.countBlockedClient(ctx.client.address, o.max_clients);
      if (own.blocked.isUsed()) own.blocked.call({ name: ctx.qname, client: ctx.client.address, group: names[g], stage, ...(target !== undefined ? { target } : {}) });
      return answer.reply(ctx);
    };

    // Without groups every client is in the default group: no per-query address lookup.
    const single = o.groups.length === 0;
    const groupOf = (ip: string): number => (single ? 0 : groups.groupOf(ip));
    api.hooks.query.tap('filter', (ctx) => {
      const g = groupOf(ctx.client.address);
      counters[g].queries++;
      if (state.paused(g)) return undefined;
      const v = engine.verdictWire(g, ctx.query.wireKey, ctx);
      if (v === Verdict.None) return undefined;
      if (v === Verdict.Allowed) {
        counters[g].allowed++;
        return undefined;
      }
      return blockedAnswer(ctx, g, 'query');
    });

    if (o.cname) {
      api.hooks.response.tap('filter', (res, ctx) => {
        if (res.dropped || res.ede?.code === 15) return res;
        const wire = res.wire;
        if (wire.length < 12 || wire.readUInt16BE(6) === 0) return res;
        const g = groupOf(ctx.client.address);
        if (state.paused(g)) return res;
        const target = listedCname(wire, res, engine, g);
        return target === undefined ? res : blockedAnswer(ctx, g, 'cname', target);
      });
    }

    own.status.tap('filter', () => filterStatus(state));
    own.why.tapPromise('filter', (req) => filterWhy(state, req));
    const m = api.hooksOf('metrics');
    if (m !== undefined) {
      addFilterRoutes(m, state);
      m.apiClient.tap('filter', (c) => ({ ...c, filterGroup: names[groupOf(c.ip)], filterBlocked: state.blockedByClient.get(c.ip) ?? 0 }));
    }
    const ct = api.hooksOf('clienttrack');
    if (ct !== undefined) {
      ct.identified.tap('filter', (id) => groups.identify(id));
      ct.forgotten.tap('filter', (ips) => groups.forget(ips));
    }

    // Refreshes: each URL on its own schedule (with jitter), files when their stamp changes.
    const lastLogged = new Map<Source, string>();
    const refreshOne = async (s: Source): Promise<boolean> => {
      try {
        const result = await state.serialize(() => s.refresh(limits));
        metrics.refreshes.labels(api.block.name, s.id, result).inc();
        engine.recompile();
        if (lastLogged.has(s)) api.log.info('list source recovered', { source: s.id });
        lastLogged.delete(s);
        if (result === 'updated') api.log.info('list refreshed', { source: s.id, names: s.tables.names, bad: s.tables.badLines, unsupported: s.tables.unsupported, ...(s.tables.badLines > 0 ? { first: s.tables.badSamples.join(' | ') } : {}) });
        return true;
      } catch (err) {
        metrics.refreshes.labels(api.block.name, s.id, 'failed').inc();
        const msg = (err as Error).message;
        // Logged once per distinct failure; the counter and the API show every one.
        if (lastLogged.get(s) !== msg) api.log.warn('cannot refresh a list; keeping the previous copy', { source: s.id, error: msg });
        lastLogged.set(s, msg);
        return false;
      }
    };
    const schedule = (s: Source, ms: number): void => {
      api.timers.setTimeout(() => {
        void refreshOne(s).then((ok) => schedule(s, ok ? o.refresh + Math.random() * o.jitter : o.retry));
      }, Math.max(0, Math.min(ms, 2_147_000_000)));
    };
    api.hooks.startup.tap('filter', () => {
      for (const s of state.sources) {
        if (s.location.type !== 'url') continue;
        const age = s.lastRefresh === null ? Infinity : Date.now() - s.lastRefresh;
        const due = !s.ok || age >= o.refresh ? Math.random() * Math.min(o.jitter, 10_000) : o.refresh - age + Math.random() * o.jitter;
        schedule(s, s.ok || s.lastRefresh !== null ? due : o.retry);
      }
      const files = state.sources.filter((s) => s.location.type === 'file');
      if (files.length > 0) {
        api.timers.setInterval(() => {
          for (const s of files) {
            void s.fileStamp().then((stamp) => {
              if (stamp === state.stamps.get(s)) return;
              state.stamps.set(s, stamp);
              return refreshOne(s);
            }, () => undefined);
          }
        }, o.file_check);
      }
      if (ct !== undefined) {
        ct.loadIdentities.promise(o.max_identities).then(
          (ids) => {
            for (const id of ids ?? []) groups.identify(id);
          },
          (err: unknown) => api.log.warn('cannot load stored client identities; groups by MAC or name apply as discovery reports them', { error: err instanceof Error ? err.message : String(err) }),
        );
      }
    });
  },
});

/** The first CNAME target in the answer section that group `g` blocks (allocates only for CNAME records). */
function listedCname(wire: Buffer, res: DnsResponse, engine: FilterEngine, g: number): string | undefined {
  const layout = res.layout;
  if (layout === null) return undefined;
  let pos = layout.questionEnd;
  for (let i = 0; i < layout.answerCount; i++) {
    const end = skipName(wire, pos);
    if (typeof end !== 'number' || end + 10 > wire.length) return undefined;
    const type = wire.readUInt16BE(end);
    const rdlen = wire.readUInt16BE(end + 8);
    if (type === TYPE_CNAME) {
      const target = readName(wire, end + 10);
      if (engine.verdict(g, target) === Verdict.Blocked) return target;
    }
    pos = end + 10 + rdlen;
  }
  return undefined;
}

export default filter;
