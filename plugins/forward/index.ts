/**
 * `forward`: sends queries to upstream resolvers (CoreDNS's forward plugin). See README.md.
 *
 * Failure semantics: an upstream's own answer — SERVFAIL included, once every upstream has been tried — is
 * returned as it is. When no upstream answers within the deadline, or every upstream is down, forward answers
 * SERVFAIL itself, with Extended DNS Error 22 (No Reachable Authority) saying why; it never rejects, so a
 * cache above sees a SERVFAIL response through `ctx.next()` (a failure to it: serve-stale, never replacing a
 * good entry) and the chain logs nothing per failed query. Beyond `max_concurrent` the answer is REFUSED.
 */
import { OptionError } from '../../config/errors';
import { Duration, Type, type Static } from '../../config/types';
import type { QueryContext } from '../../core/context';
import { definePlugin, type PluginApi } from '../../core/plugin';
import { DnsResponse } from '../../core/response';
import { DEFAULT_EDNS_SIZE } from '../../core/wire/constants';
import { isInZone } from '../../core/wire/names';
import { Forwarder, UpstreamGroup, type Callback } from './forward';
import { ForwardMetrics, GaugeSources } from './metrics';
import { POLICY_NAMES, createPolicy, type PolicyName } from './policy';
import { localAnswer, maybePrivate, privateZoneOf } from './private';
import { isResolvConfPath, readResolvConf } from '../pkg/resolvconf';
import { canonicalIp, ownEndpoints, parseUpstream, type UpstreamAddress } from '../pkg/endpoints';
import { Upstream } from './upstream';
import type { ForwardEndpoint, ForwardHooks } from './hooks';
import { SyncBailHook } from 'tapable';

export type { ForwardEndpoint, ForwardHooks } from './hooks';

export { EDE_NO_REACHABLE_AUTHORITY, FAILURE_EDE, TCP_FAILED_EDE } from './forward';

/** CoreDNS's bound, too. */
export const MAX_UPSTREAMS = 15;
const TYPE_DS = 43;

const UpstreamList = (description: string, defaults?: string[]) =>
  Type.Array(Type.String({ minLength: 1 }), { minItems: 1, maxItems: MAX_UPSTREAMS, description, ...(defaults ? { default: defaults } : {}) });

export const ForwardOptions = Type.Object({
  to: UpstreamList('Upstreams: IP, IP:port, [IPv6]:port, or a resolv.conf path (starting with / or .); at most 15 in all', ['/etc/resolv.conf']),
  policy: Type.Unsafe<PolicyName>({ type: 'string', enum: [...POLICY_NAMES], default: 'random', description: 'Order in which upstreams are tried' }),
  timeout: Duration(2_000, 'Time one try waits for an upstream answer before failing over'),
  deadline: Duration(5_000, 'Overall time for a query, all tries included'),
  force_tcp: Type.Boolean({ default: false, description: 'Query upstreams over TCP only' }),
  max_fails: Type.Integer({ minimum: 0, default: 2, description: 'Consecutive failed tries that mark an upstream down (0: never)' }),
  health_check: Duration(500, 'How often a down upstream is probed (`. IN NS`) until it answers (0: never)'),
  max_concurrent: Type.Integer({ minimum: 1, default: 1000, description: 'Distinct questions in flight at most, and merged copies waiting on them at most; more are answered REFUSED' }),
  client_share: Type.Integer({ minimum: 1, maximum: 100, default: 25, description: 'Percent of max_concurrent one client address may hold (its questions and merged copies) once half of max_concurrent is in use; more from it are answered REFUSED' }),
  private: Type.Optional(UpstreamList('Upstreams for RFC 6303 private reverse zones and home.arpa (typically the router); absent: answered locally NXDOMAIN')),
  edns_size: Type.Integer({ minimum: 512, maximum: 4096, default: DEFAULT_EDNS_SIZE, description: 'EDNS UDP size advertised to upstreams' }),
});

export type ForwardOptionsValue = Static<typeof ForwardOptions>;

interface RetainedGroups {
  readonly main: UpstreamGroup;
  readonly priv: UpstreamGroup | undefined;
}

export const forward = definePlugin({
  name: 'forward',
  description: 'Forwards queries to upstream resolvers: failover, health checks, merged identical queries, forgery-resistant exchanges',
  options: ForwardOptions,
  role: 'answers',
  declare(): ForwardHooks {
    return { privateUpstreams: new SyncBailHook<[], readonly ForwardEndpoint[] | undefined>([]), maxConcurrent: new SyncBailHook<[], number>([]) };
  },
  check(options, context) {
    if (options.timeout <= 0) throw new OptionError('timeout', 'must be above 0');
    if (options.deadline <= 0) throw new OptionError('deadline', 'must be above 0');
    checkEntries('to', options.to, context.resolvePath);
    if (options.private !== undefined) checkEntries('private', options.private, context.resolvePath);
  },
  setup(api, options) {
    const own = ownEndpoints(api.block.listen);
    const to = resolveUpstreams(api, 'to', options.to, own);
    const priv = options.private !== undefined ? resolveUpstreams(api, 'private', options.private, own) : undefined;
    api.own.maxConcurrent.tap('forward', () => options.max_concurrent);
    if (priv !== undefined) {
      const published: readonly ForwardEndpoint[] = Object.freeze(priv.map((a) => Object.freeze({ host: a.host, port: a.port })));
      api.own.privateUpstreams.tap('forward', () => published);
    }

    const metrics = new ForwardMetrics(api.metrics, api.shared('gauge sources', () => new GaugeSources()));
    const labels = `${to.map((u) => u.label).join(',')}|${priv?.map((u) => u.label).join(',') ?? '-'}|${options.max_concurrent}`;
    // Every distinct question in flight may be at one upstream at once, plus its health probe.
    const pool = { maxInFlight: options.max_concurrent + 1 };
    // Health and TCP connections survive a reload with unchanged options (and unchanged resolv.conf contents).
    const groups = api.retain<RetainedGroups>(
      `upstreams:${labels}`,
      () => ({
        main: new UpstreamGroup(to.map((a) => new Upstream(a, metrics, api.log, pool)), createPolicy(options.policy)),
        priv: priv && new UpstreamGroup(priv.map((a) => new Upstream(a, metrics, api.log, pool)), createPolicy(options.policy)),
      }),
      (g) => {
        g.main.close();
        g.priv?.close();
      },
    );
    const fwd = new Forwarder(api.block.name, {
      timeoutMs: options.timeout,
      deadlineMs: options.deadline,
      forceTcp: options.force_tcp,
      maxFails: options.max_fails,
      healthCheckMs: options.health_check,
      maxConcurrent: options.max_concurrent,
      clientShare: options.client_share,
      ednsSize: options.edns_size,
    }, metrics, api.log);
    const unregister = metrics.sources.registerInFlight(fwd);
    const all = groups.priv ? [groups.main, groups.priv] : [groups.main];
    if (options.health_check > 0 && options.max_fails > 0) {
      api.timers.setInterval(() => fwd.healthTick(all), options.health_check);
    }

    const main = groups.main;
    const privGroup = groups.priv;
    api.hooks.query.tapAsync('forward', (ctx: QueryContext, cb: Callback) => {
      const q = ctx.query;
      if (maybePrivate(q.wireKey)) {
        const name = ctx.qname;
        const zone = privateZoneOf(name);
        // A DS at a zone's apex belongs to the public parent; a block serving that private zone itself forwards it.
        if (zone !== undefined && !(q.qtype === TYPE_DS && name === zone) && !isInZone(ctx.zone, zone)) {
          if (privGroup !== undefined) return fwd.forward(ctx, privGroup, cb);
          metrics.localAnswers.inc();
          const res = DnsResponse.fromWire(localAnswer(ctx.raw, q.id, q.flags, q.questionEnd, name, zone, q.qtype));
          res.authoritative = true;
          return cb(null, res);
        }
      }
      fwd.forward(ctx, main, cb);
    });

    api.hooks.shutdown.tapPromise('forward', async () => {
      fwd.close();
      unregister();
    });
  },
});

export default forward;

/** Each `to`/`private` entry is an address or a readable resolv.conf: what start-up would refuse, said at its entry. */
function checkEntries(option: 'to' | 'private', entries: readonly string[], resolvePath: (p: string) => string): void {
  entries.forEach((entry, i) => {
    if (isResolvConfPath(entry)) {
      const file = resolvePath(entry);
      try {
        readResolvConf(file);
      } catch (err) {
        throw new OptionError(`${option}[${i}]`, `cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
      }
      return;
    }
    const a = parseUpstream(entry);
    if (typeof a === 'string') throw new OptionError(`${option}[${i}]`, a);
  });
}

function isOwn(own: Set<string>, a: UpstreamAddress): boolean {
  return own.has(`${canonicalIp(a.host, a.family)}|${a.port}`);
}

/**
 * Expands `to`/`private`: addresses are checked (a bad one, or one of our own listen addresses, is an error);
 * a resolv.conf is read (the 127.0.0.53 rule applies) and entries that are unusable or our own are skipped
 * with a warning — the system's file may well name this very server.
 */
function resolveUpstreams(api: PluginApi, option: 'to' | 'private', entries: readonly string[], own: Set<string>): UpstreamAddress[] {
  const out: UpstreamAddress[] = [];
  const seen = new Set<string>();
  const add = (a: UpstreamAddress): void => {
    if (seen.has(a.label)) return;
    seen.add(a.label);
    out.push(a);
  };
  for (const entry of entries) {
    if (isResolvConfPath(entry)) {
      const file = api.resolvePath(entry);
      let result;
      try {
        result = readResolvConf(file);
      } catch (err) {
        throw new OptionError(option, `cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
      }
      if (result.warning) api.log.warn(result.warning);
      let used = 0;
      for (const ns of result.servers) {
        const a = parseUpstream(ns);
        if (typeof a === 'string') {
          api.log.warn(`${result.file}: skipping nameserver ${ns}`, { reason: a });
          continue;
        }
        if (isOwn(own, a)) {
          api.log.warn(`${result.file}: skipping nameserver ${a.label}: it is this server (a forwarding loop)`);
          continue;
        }
        add(a);
        used++;
      }
      if (used === 0) throw new OptionError(option, `${result.file} names no usable nameserver`);
      continue;
    }
    const a = parseUpstream(entry);
    if (typeof a === 'string') throw new OptionError(option, a);
    if (isOwn(own, a)) throw new OptionError(option, `${entry} is one of this server's own listen addresses: forwarding there would loop`);
    add(a);
  }
  if (out.length > MAX_UPSTREAMS) throw new OptionError(option, `${out.length} upstreams: at most ${MAX_UPSTREAMS}`);
  return out;
}
