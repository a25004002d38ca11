/**
 * A set of networks (CIDR or single addresses, IPv4 and IPv6) that answers "is this address inside?". Shared by
 * the plugins that decide by client network (acl, ratelimit's allow list, filter groups); exported by the package
 * for custom plugins. An IPv4-mapped IPv6 address matches the IPv4 networks, whichever form the socket reports.
 */
import * as ipaddr from 'ipaddr.js';

type Cidr = [ipaddr.IPv4 | ipaddr.IPv6, number];

/** Thrown for an entry that is neither a network nor an address; `index` says which one. */
export class CidrParseError extends Error {
  constructor(readonly index: number, readonly text: string) {
    super(`${text} is not a CIDR network or an address`);
    this.name = 'CidrParseError';
  }
}

/** True when the text looks like an address or a network (so it is not a MAC or a host name). */
export function isAddressOrCidr(text: string): boolean {
  const slash = text.indexOf('/');
  const addr = slash === -1 ? text : text.slice(0, slash);
  return ipaddr.isValid(addr);
}

export class CidrSet {
  private readonly v4: Cidr[] = [];
  private readonly v6: Cidr[] = [];

  constructor(list: readonly string[] = []) {
    list.forEach((text, i) => this.add(text, i));
  }

  get size(): number {
    return this.v4.length + this.v6.length;
  }

  add(text: string, index = 0): void {
    let c: Cidr;
    try {
      if (text.includes('/')) c = ipaddr.parseCIDR(text);
      else {
        const a = ipaddr.parse(text);
        c = [a, a.kind() === 'ipv4' ? 32 : 128];
      }
    } catch {
      throw new CidrParseError(index, text);
    }
    // An IPv4-mapped IPv6 network is kept as IPv4: the socket may report either form.
    if (c[0].kind() === 'ipv6' && (c[0] as ipaddr.IPv6).isIPv4MappedAddress() && c[1] >= 96) c = [(c[0] as ipaddr.IPv6).toIPv4Address(), c[1] - 96];
    (c[0].kind() === 'ipv4' ? this.v4 : this.v6).push(c);
  }

  /** False for text that is not an address (never throws: the answer path calls it). */
  has(address: string): boolean {
    if (this.v4.length === 0 && this.v6.length === 0) return false;
    let a: ipaddr.IPv4 | ipaddr.IPv6;
    try {
      // A link-local address may carry its interface (`fe80::1%eth0`): the zone is not part of the address.
      a = ipaddr.process(address.includes('%') ? address.slice(0, address.indexOf('%')) : address);
    } catch {
      return false;
    }
    const list = a.kind() === 'ipv4' ? this.v4 : this.v6;
    for (const c of list) if (a.match(c)) return true;
    return false;
  }
}
