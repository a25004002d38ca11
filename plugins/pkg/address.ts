/**
 * Address helpers shared by discovery and clientnames: which client addresses may be probed, reverse names, canonical forms of IP
 * and MAC addresses.
 *
 * Discovery sends packets to the client (NetBIOS, mDNS) because it asked us a DNS question. The source address
 * of a UDP query can be forged, so a forged public address must never turn this server into a probe cannon
 * aimed at the internet: only addresses that are ours by construction are probed.
 */
import { isIPv4, isIPv6 } from 'node:net';
import * as ipaddr from 'ipaddr.js';

/** An address split from its IPv6 zone id (`fe80::1%eth0` → `fe80::1` + `eth0`). */
export interface SplitAddress {
  address: string;
  zone?: string;
}

/** Splits a link-local zone id off (`%eth0`, `%2`). Does not validate the address. */
export function splitZone(ip: string): SplitAddress {
  const percent = ip.indexOf('%');
  if (percent < 0) return { address: ip };
  const zone = ip.slice(percent + 1);
  return zone ? { address: ip.slice(0, percent), zone } : { address: ip.slice(0, percent) };
}

/**
 * Parses an address strictly: dotted-quad IPv4 (no octal, no short forms — ipaddr.js alone would read
 * `010.0.0.5` as 8.0.0.5) or IPv6 with an optional zone id, the zone dropped. An IPv4-mapped IPv6 address
 * (`::ffff:10.0.0.5`, as a dual-stack socket reports an IPv4 client) is returned as the IPv4 address it is.
 */
export function parseIp(ip: string): ipaddr.IPv4 | ipaddr.IPv6 | undefined {
  if (typeof ip !== 'string') return undefined;
  const { address } = splitZone(ip.trim());
  if (isIPv4(address)) return ipaddr.IPv4.parse(address);
  if (!isIPv6(address)) return undefined;
  try {
    const v6 = ipaddr.IPv6.parse(address);
    return v6.isIPv4MappedAddress() ? v6.toIPv4Address() : v6;
  } catch {
    return undefined;
  }
}

/**
 * The canonical text of an address, used as a map key by every method: IPv4 dotted quad, IPv6 in RFC 5952
 * compressed lower case, zone id dropped, IPv4-mapped IPv6 turned into IPv4. Undefined when not an address.
 */
export function normalizeIp(ip: string): string | undefined {
  return parseIp(ip)?.toString();
}

/**
 * Whether discovery may send probes to this client address.
 *
 * Probed: RFC 1918 private (10/8, 172.16/12, 192.168/16), loopback (127/8, ::1), link-local (169.254/16,
 * fe80::/10), IPv6 unique-local (fc00::/7), and any other unicast address for which `onLink` says true (the
 * plugin knows the local interfaces' prefixes: an IPv6 global address from SLAAC on the LAN, a public /29
 * routed to the LAN, a CGNAT-range VPN interface).
 *
 * Never probed, whatever `onLink` says: unspecified, broadcast, multicast, malformed.
 *
 * 100.64/10 (RFC 6598 shared address space) is NOT probed by default: it is the space between a customer's
 * router and the ISP's carrier-grade NAT, so an address from it is, by default, the ISP's equipment and not a
 * LAN device; overlay networks that reuse it (Tailscale) make it probeable through `onLink`. Documentation and
 * other reserved ranges are treated as public.
 */
export function isProbeable(ip: string, onLink?: (ip: string) => boolean): boolean {
  if (typeof ip === 'string' && isPrivateDottedQuad(ip)) return true;
  const addr = parseIp(ip);
  if (!addr) return false;
  const range = addr.range();
  switch (range) {
    case 'private':
    case 'loopback':
    case 'linkLocal':
    case 'uniqueLocal':
      return true;
    case 'unspecified':
    case 'broadcast':
    case 'multicast':
      return false;
    default:
      if (!onLink) return false;
      try {
        return onLink(addr.toString()) === true;
      } catch {
        return false;
      }
  }
}

/**
 * The common case without parsing objects: a strict dotted quad in 10/8, 172.16/12, 192.168/16, 127/8 or
 * 169.254/16. Every new client of a storm is checked; ipaddr.js's parse and range lookup allocated ≈ 600 bytes
 * each (a storm's allocation, not its answers, is what makes the collector run). Anything else goes the full way.
 */
function isPrivateDottedQuad(ip: string): boolean {
  if (!isIPv4(ip)) return false;
  let i = 0;
  let a = 0;
  for (; ip.charCodeAt(i) !== 46; i++) a = a * 10 + ip.charCodeAt(i) - 48;
  let b = 0;
  for (i++; ip.charCodeAt(i) !== 46; i++) b = b * 10 + ip.charCodeAt(i) - 48;
  return a === 10 || a === 127 || (a === 172 && b >= 16 && b <= 31) || (a === 192 && b === 168) || (a === 169 && b === 254);
}

/**
 * The reverse-lookup name of an address: `5.0.0.10.in-addr.arpa` or the 32 nibbles of `….ip6.arpa`, without
 * a trailing dot. A zone id is stripped; an IPv4-mapped IPv6 address gets the IPv4 name (the client is that
 * IPv4 host). Throws a TypeError when `ip` is not an address.
 */
export function reverseName(ip: string): string {
  const addr = parseIp(ip);
  if (!addr) throw new TypeError(`reverseName: not an IP address: ${JSON.stringify(ip)}`);
  if (addr.kind() === 'ipv4') return `${addr.toByteArray().reverse().join('.')}.in-addr.arpa`;
  const nibbles: string[] = [];
  const bytes = addr.toByteArray();
  for (let i = bytes.length - 1; i >= 0; i--) {
    const b = bytes[i]!;
    nibbles.push((b & 0x0f).toString(16), (b >> 4).toString(16));
  }
  return `${nibbles.join('.')}.ip6.arpa`;
}

const HEX12 = /^[0-9a-f]{12}$/;

/**
 * Canonical lower-case `aa:bb:cc:dd:ee:ff` from the spellings lease files and tools use: colon or dash
 * separated (one-digit octets allowed, as some tools print `a:b:c:d:e:f`), Cisco dotted `aabb.ccdd.eeff`, or
 * 12 bare hex digits. Undefined for anything else, including a 48-bit value of all zeros (no address).
 */
export function normalizeMac(text: string | undefined | null): string | undefined {
  if (typeof text !== 'string') return undefined;
  const t = text.trim().toLowerCase();
  let hex: string;
  if (t.includes(':') || t.includes('-')) {
    const parts = t.split(/[:-]/);
    if (parts.length !== 6 || !parts.every((p) => /^[0-9a-f]{1,2}$/.test(p))) return undefined;
    hex = parts.map((p) => p.padStart(2, '0')).join('');
  } else if (/^[0-9a-f]{4}\.[0-9a-f]{4}\.[0-9a-f]{4}$/.test(t)) {
    hex = t.replace(/\./g, '');
  } else {
    hex = t;
  }
  if (!HEX12.test(hex) || hex === '000000000000') return undefined;
  return hex.match(/../g)!.join(':');
}

/** A MAC from 6 raw bytes; undefined for all zeros or a short buffer. */
export function macFromBytes(bytes: Uint8Array, offset = 0): string | undefined {
  if (offset < 0 || bytes.length - offset < 6) return undefined;
  const parts: string[] = [];
  let any = 0;
  for (let i = 0; i < 6; i++) {
    const b = bytes[offset + i]!;
    any |= b;
    parts.push(b.toString(16).padStart(2, '0'));
  }
  return any === 0 ? undefined : parts.join(':');
}
