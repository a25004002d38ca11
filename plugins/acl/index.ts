import * as ipaddr from 'ipaddr.js';
import { OptionError } from '../../config/errors';
import { Type } from '../../config/types';
import { definePlugin } from '../../core/plugin';
import { LruMap } from '../../core/primitives/lru';
import { DnsResponse } from '../../core/response';
import { Rcode } from '../../core/wire/constants';

/** Loopback and the private ranges: a home server answers its own network and nobody else. */
export const PRIVATE_NETWORKS = ['127.0.0.0/8', '10.0.0.0/8', '172.16.0.0/12', '192.168.0.0/16', '169.254.0.0/16', '100.64.0.0/10', '::1/128', 'fc00::/7', 'fe80::/10'];

const options = Type.Object({
  allow: Type.Array(Type.String(), { default: PRIVATE_NETWORKS, description: 'Client networks (CIDR or single addresses) that get answers' }),
  deny: Type.Array(Type.String(), { default: [], description: 'Networks refused even when inside `allow` (checked first)' }),
  action: Type.Union([Type.Literal('refuse'), Type.Literal('drop')], { default: 'refuse', description: 'REFUSED (like CoreDNS acl) or no answer at all' }),
  cache_size: Type.Integer({ minimum: 16, default: 10000, description: 'Decisions remembered per client address' }),
});

type Cidr = [ipaddr.IPv4 | ipaddr.IPv6, number];

function parseList(list: readonly string[], option: string): Cidr[] {
  return list.map((text, i) => {
    try {
      if (text.includes('/')) return ipaddr.parseCIDR(text);
      const addr = ipaddr.parse(text);
      return [addr, addr.kind() === 'ipv4' ? 32 : 128] as Cidr;
    } catch {
      throw new OptionError(`${option}[${i}]`, `${text} is not a CIDR network or an address`);
    }
  });
}

function matches(addr: ipaddr.IPv4 | ipaddr.IPv6, list: readonly Cidr[]): boolean {
  for (const [net, bits] of list) {
    if (addr.kind() === net.kind() && addr.match([net, bits] as never)) return true;
  }
  return false;
}

/** Answers only clients inside `allow` (and not in `deny`); others get REFUSED (or nothing), and are marked so tracking ignores them. */
export default definePlugin({
  name: 'acl',
  role: 'guard',
  description: 'Refuses queries from clients outside the allowed networks',
  options,
  setup(api, opts) {
    const allow = parseList(opts.allow, 'allow');
    const deny = parseList(opts.deny, 'deny');
    const decisions = new LruMap<string, boolean>(opts.cache_size);
    const refused = api.metrics.counter({ name: 'refused_total', help: 'Queries refused by the ACL', labelNames: ['server'] as const }).labels(api.block.name);
    const decide = (address: string): boolean => {
      let addr: ipaddr.IPv4 | ipaddr.IPv6;
      try {
        addr = ipaddr.process(address.split('%')[0]);
      } catch {
        return false;
      }
      return !matches(addr, deny) && matches(addr, allow);
    };
    api.hooks.query.tap('acl', (ctx) => {
      let ok = decisions.get(ctx.client.address);
      if (ok === undefined) {
        ok = decide(ctx.client.address);
        decisions.set(ctx.client.address, ok);
      }
      if (ok) return undefined;
      ctx.denied = 'acl';
      refused.inc();
      return opts.action === 'drop' ? DnsResponse.drop() : ctx.reply(Rcode.REFUSED);
    });
  },
});
