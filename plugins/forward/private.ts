/**
 * The locally served zones of RFC 6303 (private and special-use reverse zones, with RFC 7793's 100.64/10) and
 * `home.arpa` (RFC 8375). Queries for them must not leak to public upstreams: unless a `private` upstream is
 * set (typically the router, which knows the LAN's names), they are answered here as unbound does for its
 * local zones — NXDOMAIN below the zone, NODATA (or the SOA/NS) at its apex — always with the zone's SOA in the
 * authority section so the answer is negatively cacheable (RFC 2308).
 */
import { CLASS_IN, Flag, HEADER_LEN, Rcode, RrType } from '../../core/wire/constants';
import { encodeName, nextLabelDot } from '../../core/wire/names';

function range(from: number, to: number): number[] {
  const out: number[] = [];
  for (let i = from; i <= to; i++) out.push(i);
  return out;
}

const ZEROS = Array(31).fill('0').join('.');

/** Every locally served zone, lower case, without the trailing dot. */
export const PRIVATE_ZONES: readonly string[] = [
  // RFC 6303 §4.1–4.4 (RFC 1918, RFC 5735 special-use) and RFC 7793 (RFC 6598 shared address space).
  '10.in-addr.arpa',
  ...range(16, 31).map((n) => `${n}.172.in-addr.arpa`),
  '168.192.in-addr.arpa',
  ...range(64, 127).map((n) => `${n}.100.in-addr.arpa`),
  '0.in-addr.arpa',
  '127.in-addr.arpa',
  '254.169.in-addr.arpa',
  '2.0.192.in-addr.arpa',
  '100.51.198.in-addr.arpa',
  '113.0.203.in-addr.arpa',
  '255.255.255.255.in-addr.arpa',
  // RFC 6303 §4.5–4.6: ::/128, ::1/128, fd00::/8, fe80::/10, 2001:db8::/32.
  `0.${ZEROS}.ip6.arpa`,
  `1.${ZEROS}.ip6.arpa`,
  'd.f.ip6.arpa',
  '8.e.f.ip6.arpa',
  '9.e.f.ip6.arpa',
  'a.e.f.ip6.arpa',
  'b.e.f.ip6.arpa',
  '8.b.d.0.1.0.0.2.ip6.arpa',
  // RFC 8375.
  'home.arpa',
];

const ZONE_SET = new Set(PRIVATE_ZONES);

/** A wire key (length-prefixed labels, zero label included) ends with this when the name is under `arpa`. */
const ARPA_SUFFIX = '\x04arpa\x00';

/** Cheap test on the hot path: only names under `arpa` can be private. */
export function maybePrivate(wireKey: string): boolean {
  return wireKey.endsWith(ARPA_SUFFIX);
}

/** The locally served zone a name (lower case, no trailing dot, escaped as `ctx.qname` is) lies in, or undefined. */
export function privateZoneOf(name: string): string | undefined {
  let pos = 0;
  for (;;) {
    const suffix = pos === 0 ? name : name.slice(pos);
    if (ZONE_SET.has(suffix)) return suffix;
    const dot = nextLabelDot(name, pos);
    if (dot === -1) return undefined;
    pos = dot + 1;
  }
}

/** RFC 6303 §3: SOA MNAME = the zone, RNAME = nobody.invalid, serial 1, 3600 / 1200 / 604800, MINIMUM 10800. */
export const LOCAL_TTL = 10800;

interface ZoneRecords {
  readonly soa: Buffer;
  readonly ns: Buffer;
}
const records = new Map<string, ZoneRecords>();

function rr(owner: Buffer, type: number, rdata: Buffer): Buffer {
  const out = Buffer.allocUnsafe(owner.length + 10 + rdata.length);
  owner.copy(out, 0);
  let p = owner.length;
  out.writeUInt16BE(type, p);
  out.writeUInt16BE(CLASS_IN, p + 2);
  out.writeUInt32BE(LOCAL_TTL, p + 4);
  out.writeUInt16BE(rdata.length, p + 8);
  p += 10;
  rdata.copy(out, p);
  return out;
}

function recordsOf(zone: string): ZoneRecords {
  let r = records.get(zone);
  if (r === undefined) {
    const owner = encodeName(zone);
    const rname = encodeName('nobody.invalid');
    const tail = Buffer.allocUnsafe(20);
    tail.writeUInt32BE(1, 0);
    tail.writeUInt32BE(3600, 4);
    tail.writeUInt32BE(1200, 8);
    tail.writeUInt32BE(604800, 12);
    tail.writeUInt32BE(LOCAL_TTL, 16);
    r = { soa: rr(owner, RrType.SOA, Buffer.concat([owner, rname, tail])), ns: rr(owner, RrType.NS, owner) };
    records.set(zone, r);
  }
  return r;
}

/**
 * The local answer for `name` in `zone`: the client's header and question bytes, then NXDOMAIN + SOA below the
 * apex; at the apex the SOA or NS asked for, or NODATA + SOA.
 */
export function localAnswer(raw: Buffer, id: number, qflags: number, questionEnd: number, name: string, zone: string, qtype: number): Buffer {
  const z = recordsOf(zone);
  const apex = name === zone;
  let rcode: number = Rcode.NXDOMAIN;
  let answer: Buffer | null = null;
  if (apex) {
    rcode = Rcode.NOERROR;
    if (qtype === RrType.SOA) answer = z.soa;
    else if (qtype === RrType.NS) answer = z.ns;
  }
  const authority = answer === null ? z.soa : null;
  const body = (answer?.length ?? 0) + (authority?.length ?? 0);
  const out = Buffer.allocUnsafe(questionEnd + body);
  out.writeUInt16BE(id, 0);
  out.writeUInt16BE(Flag.QR | Flag.AA | Flag.RA | (qflags & (Flag.RD | Flag.CD)) | rcode, 2);
  out.writeUInt16BE(1, 4);
  out.writeUInt16BE(answer === null ? 0 : 1, 6);
  out.writeUInt16BE(authority === null ? 0 : 1, 8);
  out.writeUInt16BE(0, 10);
  raw.copy(out, HEADER_LEN, HEADER_LEN, questionEnd);
  let p = questionEnd;
  if (answer !== null) p += answer.copy(out, p);
  if (authority !== null) authority.copy(out, p);
  return out;
}
