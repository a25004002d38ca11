/**
 * Upstream addresses as written in Corefile.yaml (`IP`, `IP:port`, `[IPv6]:port`, `dns://…`) and the endpoints a
 * server block listens on: shared by forward (its upstreams, never itself) and discovery (its reverse-DNS
 * resolvers, never this server).
 */
import * as net from 'node:net';
import { parseListen } from '../../config/listen';
import { isWildcard, localAddresses } from '../../core/listeners';

export interface UpstreamAddress {
  /** An IP literal as the socket API takes it (IPv6 link-local keeps its `%zone`). */
  readonly host: string;
  readonly port: number;
  readonly family: 4 | 6;
  /** `1.2.3.4:53` or `[2001:db8::1]:53`: the `to` label of metrics and logs. */
  readonly label: string;
}

/**
 * Parses `IP`, `IP:port`, `IPv6`, `[IPv6]:port` (optionally prefixed `dns://`). Returns an error text when the
 * value is none of those (host names are refused: resolving them would need the DNS we are).
 */
export function parseUpstream(text: string): UpstreamAddress | string {
  let s = text.trim();
  if (s.startsWith('dns://')) s = s.slice(6);
  let host: string;
  let port = 53;
  const bracket = /^\[([^\]]+)\](?::(\d{1,5}))?$/.exec(s);
  if (bracket) {
    host = bracket[1];
    if (bracket[2] !== undefined) port = Number(bracket[2]);
    if (!net.isIPv6(host.split('%')[0])) return `${text}: ${host} is not an IPv6 address`;
  } else if (net.isIPv6(s.split('%')[0])) {
    host = s;
  } else {
    const m = /^([^:]+)(?::(\d{1,5}))?$/.exec(s);
    if (!m || !net.isIPv4(m[1])) return `${text}: not an IP address, IP:port, [IPv6]:port or a resolv.conf path (starting with / or .)`;
    host = m[1];
    if (m[2] !== undefined) port = Number(m[2]);
  }
  if (port < 1 || port > 65535) return `${text}: port ${port} out of range`;
  const family: 4 | 6 = net.isIPv6(host.split('%')[0]) ? 6 : 4;
  const bare = host.split('%')[0];
  if (bare === '0.0.0.0' || bare === '::') return `${text}: a wildcard address is not an upstream`;
  const canonical = canonicalIp(host, family);
  return { host, port, family, label: family === 6 ? `[${canonical}]:${port}` : `${canonical}:${port}` };
}

/** The address as the kernel reports a datagram's source (RFC 5952 form for IPv6). */
export function canonicalIp(host: string, family: 4 | 6): string {
  const [addr, zone] = host.split('%');
  try {
    const c = new net.SocketAddress({ address: addr, family: family === 6 ? 'ipv6' : 'ipv4' }).address;
    return zone !== undefined ? `${c}%${zone}` : c;
  } catch {
    return host;
  }
}

/**
 * `IP|port` of every address the block's `listen` entries name (a wildcard: each local address of its family);
 * port 0 (a test's "any port") names nothing.
 */
export function ownEndpoints(listen: readonly string[]): Set<string> {
  const out = new Set<string>();
  for (const text of listen) {
    const spec = parseListen(text);
    if (typeof spec === 'string' || spec.port === 0) continue;
    const family: 4 | 6 = spec.host.includes(':') ? 6 : 4;
    const hosts = isWildcard(spec.host) ? localAddresses(family) : [spec.host];
    for (const h of hosts) out.add(`${canonicalIp(h, h.includes(':') ? 6 : 4)}|${spec.port}`);
  }
  return out;
}
