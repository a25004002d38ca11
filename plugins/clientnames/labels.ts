/**
 * Turning what discovery found into DNS names, and addresses into reverse names and back. Pure functions: the
 * table calls them when an identity arrives, never per query.
 */
import { domainToASCII } from 'node:url';
import * as ipaddr from 'ipaddr.js';
import { parseIp } from '../pkg/address';

export const MAX_LABEL = 63;

const LDH = /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/;

/** Whether `label` is a valid host label (RFC 1123: letters, digits, inner hyphens, 1–63 octets), lower case. */
export function isHostLabel(label: string): boolean {
  return LDH.test(label);
}

/**
 * A discovered hostname as one host label, or undefined when nothing usable is left.
 * - `laptop.local` (mDNS) → `laptop`; a dotted name (`pc.lan` from the router's reverse DNS, `nas.fritz.box`)
 *   keeps its first label: the router's domain is not ours to repeat inside our zone.
 * - Apostrophes vanish (`Anna's iPhone` → `annas-iphone`); every other character that is not a letter or a
 *   digit (spaces, underscores, commas) becomes one hyphen; hyphens at either end go.
 * - Letters outside ASCII are kept and the label is written in punycode (`Küche` → `xn--kche-0ra`), the form a
 *   browser shows as Unicode again; characters IDNA refuses are stripped.
 * - Longer than 63 octets: cut at 63 (then trailing hyphens removed).
 */
export function hostLabel(hostname: string): string | undefined {
  let name = hostname.normalize('NFC').trim().replace(/\.+$/, '');
  if (/\.local$/i.test(name)) name = name.slice(0, -'.local'.length);
  const dot = name.indexOf('.');
  if (dot === 0) return undefined;
  if (dot > 0) name = name.slice(0, dot);
  name = name
    .toLowerCase()
    .replace(/['\u2019`]/g, '')
    // Not a letter or digit of any script: one hyphen.
    .replace(/[^\p{L}\p{N}\p{M}]+/gu, '-')
    .replace(/^-+|-+$/g, '');
  if (name === '') return undefined;
  let label = name;
  if (/[^\x00-\x7f]/.test(name)) {
    label = domainToASCII(name);
    if (label === '' || label.includes('.')) {
      // IDNA refused it (or mapped a character to a dot): keep the ASCII we have.
      label = name.replace(/[^a-z0-9-]+/g, '').replace(/-{2,}/g, '-').replace(/^-+|-+$/g, '');
    }
  }
  if (label.length > MAX_LABEL) label = label.slice(0, MAX_LABEL).replace(/-+$/, '');
  return isHostLabel(label) || /^xn--[a-z0-9-]+$/.test(label) ? label : undefined;
}

/** `Home.Arpa.` → `home.arpa` (lower case, no trailing dot); undefined when it is not a valid domain name. */
export function zoneName(text: string): string | undefined {
  const z = text.trim().toLowerCase().replace(/\.$/, '');
  if (z === '' || z.length > 253) return undefined;
  for (const l of z.split('.')) if (!/^[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?$/.test(l)) return undefined;
  return z;
}

/**
 * The address in the form the table keys on: discovery's canonical text (IPv4-mapped IPv6 as IPv4, IPv6
 * compressed, no zone id, strict dotted quads), so the table and clienttrack's identities agree; or undefined.
 */
export function canonicalIp(text: string): { ip: string; family: 4 | 6 } | undefined {
  const a = parseIp(text);
  return a === undefined ? undefined : { ip: a.toString(), family: a.kind() === 'ipv4' ? 4 : 6 };
}

/** The reverse name of an address: discovery's, which its rdns and mdns methods ask (re-exported for the package). */
export { reverseName } from '../pkg/address';

/** The address a full reverse name stands for (`10.1.168.192.in-addr.arpa` → `192.168.1.10`), or undefined. */
export function addressOfReverse(name: string): string | undefined {
  if (name.endsWith('.in-addr.arpa')) {
    const parts = name.slice(0, -'.in-addr.arpa'.length).split('.');
    if (parts.length !== 4 || !parts.every((p) => /^(0|[1-9]\d{0,2})$/.test(p) && Number(p) <= 255)) return undefined;
    return parts.reverse().join('.');
  }
  if (name.endsWith('.ip6.arpa')) {
    const nibbles = name.slice(0, -'.ip6.arpa'.length).split('.');
    if (nibbles.length !== 32 || !nibbles.every((n) => /^[0-9a-f]$/.test(n))) return undefined;
    const hex = nibbles.reverse().join('');
    const groups: string[] = [];
    for (let i = 0; i < 32; i += 4) groups.push(hex.slice(i, i + 4));
    return ipaddr.parse(groups.join(':')).toString();
  }
  return undefined;
}

/**
 * The reverse zones of private and local addresses (RFC 6303 §4.1–4.4 and §4.5–4.6): RFC 1918, IPv4
 * link-local, IPv6 unique-local (fc00::/7) and link-local (fe80::/10). A public reverse zone belongs to whoever
 * holds the addresses; loopback (127.in-addr.arpa) is left to the system unless written in `reverse_zones`.
 */
export const PRIVATE_REVERSE_ZONES: readonly string[] = [
  '10.in-addr.arpa',
  ...Array.from({ length: 16 }, (_, i) => `${16 + i}.172.in-addr.arpa`),
  '168.192.in-addr.arpa',
  '254.169.in-addr.arpa',
  'c.f.ip6.arpa',
  'd.f.ip6.arpa',
  '8.e.f.ip6.arpa',
  '9.e.f.ip6.arpa',
  'a.e.f.ip6.arpa',
  'b.e.f.ip6.arpa',
];

/** The zone of `zones` that `name` is inside of (or equal to), or undefined. Names and zones without trailing dots. */
export function zoneOf(name: string, zones: readonly string[]): string | undefined {
  for (const z of zones) {
    if (name === z || (name.length > z.length && name.endsWith(z) && name.charCodeAt(name.length - z.length - 1) === 46)) return z;
  }
  return undefined;
}
