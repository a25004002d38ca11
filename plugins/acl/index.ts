import * as os from 'node:os';
import * as ipaddr from 'ipaddr.js';
import { OptionError } from '../../config/errors';
import { CidrParseError, CidrSet } from '../pkg/cidr';
import { Type } from '../../config/types';
import { definePlugin } from '../../core/plugin';
import { LruMap } from '../../core/primitives/lru';
import { DnsResponse } from '../../core/response';
import { Rcode } from '../../core/wire/constants';

/** Loopback and the private ranges: a home server answers its own network and nobody else. */
export const PRIVATE_NETWORKS = ['127.0.0.0/8', '10.0.0.0/8', '172.16.0.0/12', '192.168.0.0/16', '169.254.0.0/16', '100.64.0.0/10', '::1/128', 'fc00::/7', 'fe80::/10'];

/** In `allow`: the subnets of this machine's interfaces that are private, and loopback (followed as addresses change). */
export const LOCAL = 'local';

const options = Type.Object({
  allow: Type.Array(Type.String(), { default: PRIVATE_NETWORKS, description: 'Client networks (CIDR or single addresses) that get answers; `local`: the private subnets of this machine\'s interfaces and loopback' }),
  deny: Type.Array(Type.String(), { default: [], description: 'Networks refused even when inside `allow` (checked first)' }),
  action: Type.Union([Type.Literal('refuse'), Type.Literal('drop')], { default: 'refuse', description: 'REFUSED (like CoreDNS acl) or no answer at all' }),
  cache_size: Type.Integer({ minimum: 16, default: 10000, description: 'Decisions remembered per client address' }),
  local_refresh: Type.Optional(Type.Integer({ minimum: 1000, default: 30000, description: 'With `local` in allow: how often (ms) the interfaces are read again' })),
});

/** Where the interfaces come from (a test replaces `read` to stand for a machine on another network). */
export const localInterfaces = { read: (): NodeJS.Dict<os.NetworkInterfaceInfo[]> => os.networkInterfaces() };

const PRIVATE_RANGES = new Set(['private', 'uniqueLocal', 'linkLocal', 'loopback', 'carrierGradeNat']);

/**
 * Loopback and the on-link subnets of the local interfaces whose addresses are private: the networks a home
 * server answers when nobody said otherwise. A public subnet on an interface (a VPS, a modem in bridge mode)
 * is not included: an open resolver on the internet is what this default prevents.
 */
export function localNetworks(ifaces: NodeJS.Dict<os.NetworkInterfaceInfo[]> = localInterfaces.read()): string[] {
  // Loopback as the interfaces declare it (127.0.0.0/8 on Linux), with the two loopback addresses as a floor.
  const out = new Set<string>(['127.0.0.1/32', '::1/128', 'fe80::/10']);
  for (const list of Object.values(ifaces)) {
    for (const a of list ?? []) {
      if (!a.cidr) continue;
      try {
        const addr = ipaddr.parse(a.address.split('%')[0]);
        if (!PRIVATE_RANGES.has(addr.range())) continue;
        const [net, bits] = ipaddr.parseCIDR(a.cidr);
        const base = net.kind() === 'ipv4' ? ipaddr.IPv4.networkAddressFromCIDR(a.cidr) : ipaddr.IPv6.networkAddressFromCIDR(a.cidr);
        out.add(`${base.toString()}/${bits}`);
      } catch {
        // an address Node reports but ipaddr cannot parse: not a client network
      }
    }
  }
  return [...out].sort();
}

/** The networks of a list, `local` left out (the caller adds the interfaces' networks); errors name the entry. */
function parseList(list: readonly string[], option: string, into = new CidrSet()): CidrSet {
  list.forEach((text, i) => {
    if (text === LOCAL) return;
    try {
      into.add(text, i);
    } catch (err) {
      if (err instanceof CidrParseError) throw new OptionError(`${option}[${i}]`, err.message);
      throw err;
    }
  });
  return into;
}

/** Answers only clients inside `allow` (and not in `deny`); others get REFUSED (or nothing), and are marked so tracking ignores them. */
export default definePlugin({
  name: 'acl',
  role: 'guard',
  description: 'Refuses queries from clients outside the allowed networks',
  options,
  check(opts) {
    parseList(opts.allow, 'allow');
    parseList(opts.deny, 'deny');
  },
  setup(api, opts) {
    const deny = parseList(opts.deny, 'deny');
    const decisions = new LruMap<string, boolean>(opts.cache_size);
    let allow = parseList(opts.allow, 'allow');
    if (opts.allow.includes(LOCAL)) {
      // Interfaces change (DHCP, a VPN coming up): read them again, and forget decisions made on the old list.
      let local = localNetworks();
      allow = parseList(local, 'allow', parseList(opts.allow, 'allow'));
      api.log.info('acl: local networks', { block: api.block.name, networks: local.join(',') });
      api.timers.setInterval(() => {
        const now = localNetworks();
        if (now.join(',') === local.join(',')) return;
        local = now;
        allow = parseList(local, 'allow', parseList(opts.allow, 'allow'));
        decisions.clear();
        api.log.info('acl: local networks changed', { block: api.block.name, networks: local.join(',') });
      }, opts.local_refresh ?? 30_000);
    }
    const refused = api.metrics.counter({ name: 'refused_total', help: 'Queries refused by the ACL', labelNames: ['server'] as const }).labels(api.block.name);
    const block = api.block.name;
    // One source per server block, so a second block's ACL does not hide the first's.
    const cached = api.metrics.mirrorGauge({
      source: block,
      name: 'decisions_cached',
      help: 'Client addresses whose allow/refuse decision is remembered (at most cache_size; the least recently seen is forgotten).',
      labelNames: ['server'] as const,
      reset: true,
      levels: () => [{ labels: { server: block }, value: decisions.size }],
    });
    api.hooks.shutdown.tap('acl', () => cached.release());
    const decide = (address: string): boolean => !deny.has(address) && allow.has(address);
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
