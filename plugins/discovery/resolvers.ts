/**
 * Which resolvers the rdns method asks: `rdns.resolvers` when given; else forward's `private` upstreams (the
 * resolver that knows the LAN's names, usually the router); else the default gateway on port 53 — in a home,
 * the router that hands out the addresses and knows their names. Never a public resolver by default: a PTR
 * question for a private address means nothing to it, and would tell it our clients' addresses.
 *
 * The server never asks itself: an address:port this server listens on is refused (the question would go
 * through our own chain and the server would count itself as a client).
 */
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import { isResolvConfPath, readResolvConf } from '../pkg/resolvconf';
import { canonicalIp, parseUpstream } from '../pkg/endpoints';
import { isProbeable, normalizeIp } from '../pkg/address';
import type { RdnsResolver } from './methods/rdns';

export interface ResolverChoice {
  readonly resolvers: RdnsResolver[];
  /** Where they came from, for the start-up log line. */
  readonly source: 'rdns.resolvers' | 'forward.private' | 'gateway' | 'none';
  /** Entries left out, and why (logged as warnings). */
  readonly warnings: string[];
}

export { ownEndpoints } from '../pkg/endpoints';

/** This machine's own addresses (canonical text), loopback included. */
export function machineAddresses(): Set<string> {
  const out = new Set<string>();
  for (const addrs of Object.values(os.networkInterfaces())) {
    for (const a of addrs ?? []) {
      const n = normalizeIp(a.address);
      if (n !== undefined) out.add(n);
    }
  }
  return out;
}

/** Parses a list of `IP`, `IP:port`, `[IPv6]:port` or resolv.conf paths into resolvers. Throws a message on a bad entry. */
export function parseResolverList(entries: readonly (string | RdnsResolver)[], resolvePath: (p: string) => string): { resolvers: RdnsResolver[]; warnings: string[] } {
  const resolvers: RdnsResolver[] = [];
  const warnings: string[] = [];
  const seen = new Set<string>();
  const add = (text: string): string | undefined => {
    const a = parseUpstream(text);
    if (typeof a === 'string') return a;
    const key = `${a.host}|${a.port}`;
    if (!seen.has(key)) {
      seen.add(key);
      resolvers.push({ host: a.host, port: a.port });
    }
    return undefined;
  };
  for (const entry of entries) {
    if (typeof entry !== 'string') {
      // Already resolved (forward's published upstreams).
      const key = `${entry.host}|${entry.port}`;
      if (!seen.has(key)) {
        seen.add(key);
        resolvers.push({ host: entry.host, port: entry.port });
      }
      continue;
    }
    if (isResolvConfPath(entry)) {
      const file = resolvePath(entry);
      let servers: string[];
      try {
        const r = readResolvConf(file);
        if (r.warning) warnings.push(r.warning);
        servers = r.servers;
      } catch (err) {
        throw new Error(`cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
      }
      for (const s of servers) {
        const problem = add(s);
        if (problem !== undefined) warnings.push(`${file}: skipping nameserver ${s}: ${problem}`);
      }
      continue;
    }
    const problem = add(entry);
    if (problem !== undefined) throw new Error(problem);
  }
  return { resolvers, warnings };
}

/** The IPv4 and IPv6 default gateways from /proc/net/route and /proc/net/ipv6_route (empty when unreadable). */
export function defaultGateways(routeFile = '/proc/net/route', route6File = '/proc/net/ipv6_route'): string[] {
  const out: string[] = [];
  try {
    for (const line of fs.readFileSync(routeFile, 'utf8').split('\n').slice(1)) {
      const f = line.trim().split(/\s+/);
      if (f.length < 8 || f[1] !== '00000000' || f[7] !== '00000000') continue;
      const flags = parseInt(f[3], 16);
      if ((flags & 0x1) === 0 || (flags & 0x2) === 0) continue; // RTF_UP, RTF_GATEWAY
      const hex = f[2];
      if (!/^[0-9A-Fa-f]{8}$/.test(hex)) continue;
      // Little-endian: 010200C0 is 192.0.2.1.
      const ip = [6, 4, 2, 0].map((i) => parseInt(hex.slice(i, i + 2), 16)).join('.');
      if (ip !== '0.0.0.0' && !out.includes(ip)) out.push(ip);
    }
  } catch {
    // no IPv4 routing table (not Linux, or hidden): no gateway
  }
  try {
    for (const line of fs.readFileSync(route6File, 'utf8').split('\n')) {
      const f = line.trim().split(/\s+/);
      if (f.length < 10 || !/^0{32}$/.test(f[0]) || f[1] !== '00') continue;
      const hop = f[4];
      if (/^0{32}$/.test(hop) || !/^[0-9a-f]{32}$/i.test(hop)) continue;
      const flags = parseInt(f[8], 16);
      if ((flags & 0x1) === 0) continue; // RTF_UP
      const groups = hop.match(/.{4}/g)!.join(':');
      let ip = normalizeIp(groups) ?? groups;
      // A link-local next hop needs its interface.
      if (ip.startsWith('fe80:')) ip = `${ip}%${f[9]}`;
      if (!out.includes(ip)) out.push(ip);
    }
  } catch {
    // no IPv6 routing table
  }
  return out;
}

/**
 * Chooses the rdns resolvers (see the module comment). `own` is this block's listen endpoints; `machine` the
 * machine's addresses (a gateway that is this machine would be us).
 */
export function chooseResolvers(input: {
  configured: readonly string[] | undefined;
  /** forward's `private` upstreams: as forward publishes them (resolved), or as written. */
  forwardPrivate: readonly (string | RdnsResolver)[] | undefined;
  resolvePath: (p: string) => string;
  own: Set<string>;
  machine: Set<string>;
  gateways?: () => string[];
}): ResolverChoice {
  const warnings: string[] = [];
  const notOwn = (list: RdnsResolver[]): RdnsResolver[] =>
    list.filter((r) => {
      const key = `${canonicalIp(r.host, r.host.includes(':') ? 6 : 4)}|${r.port}`;
      if (input.own.has(key)) {
        warnings.push(`rdns: skipping resolver ${r.host}:${r.port}: it is this server (it would count itself as a client)`);
        return false;
      }
      return true;
    });
  if (input.configured !== undefined && input.configured.length > 0) {
    const parsed = parseResolverList(input.configured, input.resolvePath);
    warnings.push(...parsed.warnings);
    for (const r of parsed.resolvers) {
      if (!isProbeable(r.host)) warnings.push(`rdns: resolver ${r.host} is a public address: it cannot know local names, and learns the address of every new client`);
    }
    return { resolvers: notOwn(parsed.resolvers), source: 'rdns.resolvers', warnings };
  }
  if (input.forwardPrivate !== undefined && input.forwardPrivate.length > 0) {
    try {
      const parsed = parseResolverList(input.forwardPrivate, input.resolvePath);
      warnings.push(...parsed.warnings);
      const list = notOwn(parsed.resolvers);
      if (list.length > 0) return { resolvers: list, source: 'forward.private', warnings };
    } catch (err) {
      warnings.push(`rdns: forward's private upstreams unusable: ${(err as Error).message}`);
    }
  }
  const gateways = (input.gateways ?? defaultGateways)();
  const resolvers: RdnsResolver[] = [];
  for (const g of gateways) {
    const bare = g.split('%')[0];
    if (!net.isIP(bare)) continue;
    if (!isProbeable(g)) {
      warnings.push(`rdns: the default gateway ${g} is not a private or link-local address: not used (never a public resolver)`);
      continue;
    }
    if (input.machine.has(normalizeIp(g) ?? g)) {
      warnings.push(`rdns: the default gateway ${g} is this machine: not used (the server would ask itself)`);
      continue;
    }
    resolvers.push({ host: g, port: 53 });
  }
  const list = notOwn(resolvers);
  return { resolvers: list, source: list.length > 0 ? 'gateway' : 'none', warnings };
}
