/**
 * `ratelimit`: token buckets, each part on its own — `queries` (per client or client network, on the `query`
 * hook) and `discovery` (one bucket for discovery jobs, on discovery's `beforeDiscover`). See README.md.
 */
import { OptionError } from '../../config/errors';
import { CidrParseError, CidrSet } from '../pkg/cidr';
import { Type, type Static } from '../../config/types';
import type { QueryContext } from '../../core/context';
import { definePlugin } from '../../core/plugin';
import { DnsResponse } from '../../core/response';
import { Flag, Rcode } from '../../core/wire/constants';
import type {} from '../discovery/hooks';
import { DiscoveryLimiter, QueryLimiter, type LimitAction } from './limiter';
import { registerRatelimitMetrics } from './metrics';

export { DiscoveryLimiter, QueryLimiter, RATE_LIMITED, V4_PREFIX, V6_PREFIX, type Per, type LimitAction, type QueryLimiterOptions, type DiscoveryLimiterOptions } from './limiter';

/** The discovery part's defaults, also used when neither part is written (`- ratelimit`). */
export const DISCOVERY_DEFAULTS = { rate: 10, burst: 20 } as const;

export const options = Type.Object({
  queries: Type.Optional(
    Type.Object(
      {
        rate: Type.Number({ exclusiveMinimum: 0, default: 100, description: 'Queries per second allowed per client (or network)' }),
        burst: Type.Number({ minimum: 1, default: 200, description: 'Queries a client may send at once (the bucket size)' }),
        per: Type.Union([Type.Literal('client'), Type.Literal('/24'), Type.Literal('/56')], {
          default: 'client',
          description: 'client: a bucket per address; /24 or /56: a bucket per network (IPv4 /24, IPv6 /56)',
        }),
        action: Type.Union([Type.Literal('refuse'), Type.Literal('drop'), Type.Literal('slip')], {
          default: 'refuse',
          description: 'Over budget: REFUSED, no answer at all, or an empty TC=1 answer that sends the client to TCP',
        }),
        allow: Type.Array(Type.String(), { default: [], description: 'Networks (CIDR or addresses) never limited' }),
        max_clients: Type.Integer({ minimum: 1, default: 10_000, description: 'Buckets kept in memory (LRU); a forgotten client starts again with a full bucket' }),
      },
      { description: 'Limit queries per client' },
    ),
  ),
  discovery: Type.Optional(
    Type.Object(
      {
        rate: Type.Number({ exclusiveMinimum: 0, default: DISCOVERY_DEFAULTS.rate, description: 'Discovery jobs started per second' }),
        burst: Type.Number({ minimum: 1, default: DISCOVERY_DEFAULTS.burst, description: 'Discovery jobs that may start at once' }),
      },
      { description: 'Limit discovery jobs (one token per job); denied jobs are deferred, not lost' },
    ),
  ),
});

export type RatelimitOptions = Static<typeof options>;

/** An empty answer with TC=1: a real client retries over TCP (which cannot be spoofed and is not limited). */
export function slipReply(ctx: QueryContext): DnsResponse {
  const res = ctx.reply(Rcode.NOERROR);
  const wire = res.wire;
  wire.writeUInt16BE(wire.readUInt16BE(2) | Flag.TC, 2);
  return res;
}

export const ratelimit = definePlugin({
  name: 'ratelimit',
  description: 'Token-bucket rate limits: queries per client (refuse, drop or slip to TCP) and discovery jobs',
  options,
  role: (o) => (o.queries !== undefined ? 'guard' : undefined),
  // Only the discovery part needs it, and `- ratelimit: { queries: … }` alone is a query limit: not required.
  uses: ['discovery'],
  check(o) {
    if (o.queries === undefined) return;
    try {
      new CidrSet(o.queries.allow);
    } catch (err) {
      if (err instanceof CidrParseError) throw new OptionError(`queries.allow[${err.index}]`, err.message);
      throw err;
    }
  },
  setup(api, o) {
    const discoveryPart = o.discovery ?? (o.queries === undefined ? { ...DISCOVERY_DEFAULTS } : undefined);
    let queries: QueryLimiter | undefined;
    if (o.queries !== undefined) {
      const q = o.queries;
      try {
        queries = api.retain('queries', () => new QueryLimiter({ rate: q.rate, burst: q.burst, per: q.per, allow: q.allow, maxClients: q.max_clients }));
      } catch (err) {
        const index = (err as { index?: number }).index;
        throw new OptionError(index !== undefined ? `queries.allow[${index}]` : 'queries', (err as Error).message);
      }
    }
    const metrics = registerRatelimitMetrics(api.metrics, api.block.name, o.queries?.action, () => queries);
    api.hooks.shutdown.tap('ratelimit', () => metrics.release());

    if (queries !== undefined && o.queries !== undefined) {
      const limiter = queries;
      const action: LimitAction = o.queries.action;
      const limited = metrics.queriesLimited;
      api.hooks.query.tap('ratelimit', (ctx) => {
        // slip sends the client to TCP: a TCP query proves its source address and is answered.
        if (action === 'slip' && ctx.client.transport === 'tcp') return undefined;
        if (limiter.take(ctx.client.address)) return undefined;
        limited.inc();
        if (action === 'drop') return DnsResponse.drop();
        if (action === 'slip') return slipReply(ctx);
        return ctx.reply(Rcode.REFUSED);
      });
    }

    if (discoveryPart !== undefined) {
      const d = api.hooksOf('discovery');
      if (d === undefined) {
        if (o.discovery !== undefined) api.log.warn('discovery is not in this server block: its rate limit has nothing to limit');
        return;
      }
      const part = discoveryPart;
      const limiter = api.retain('discovery', () => new DiscoveryLimiter({ rate: part.rate, burst: part.burst }));
      const limited = metrics.discoveryLimited;
      d.beforeDiscover.tap('ratelimit', () => {
        const denial = limiter.beforeDiscover();
        if (denial !== undefined) limited.inc();
        return denial;
      });
      d.report.tap('ratelimit', (r) => {
        r.guards.ratelimit = { rate: limiter.rate, burst: limiter.burst, tokens: Math.round(limiter.tokens() * 100) / 100, allowed: limiter.allowed, limited: limiter.limited };
      });
    }
  },
});

export default ratelimit;
