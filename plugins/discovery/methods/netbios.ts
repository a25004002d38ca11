/**
 * netbios: the client's NetBIOS name and MAC from a node status request (NBSTAT, RFC 1002 §4.2.17/18), the
 * query `nmblookup -A <ip>` sends.
 *
 * The request goes unicast to ip:137 from an ephemeral port (never a broadcast). Most devices do not run a
 * NetBIOS name service and stay silent, so no reply within the timeout is a `negative` outcome, and so is an
 * ICMP port-unreachable (ECONNREFUSED) or host-unreachable: the device answered, or is not there. Only a
 * socket that cannot be used (EACCES, ENETUNREACH, EADDRNOTAVAIL…) is a `failure`. NetBIOS over TCP/IP is
 * IPv4 only, so IPv6 clients are `negative` without a packet.
 *
 * Reply parsing never throws: a truncated or garbage reply yields what could be read, or nothing.
 */
import { macFromBytes } from '../../pkg/address.js';
import { createProbe } from './probe.js';
import { found, NEGATIVE, type DiscoveryMethod } from './types.js';

export const NBSTAT_TYPE = 0x21;
const CLASS_IN = 0x01;
const GROUP_FLAG = 0x8000;

export interface NetbiosOptions {
  /** Destination port of the probe (137; tests use responders on other ports). */
  port?: number;
  timeoutMs: number;
  /**
   * Addresses that may be probed (defence in depth: the plugin checks first). Default: isProbeable without
   * an on-link test, i.e. private, loopback, link-local and unique-local addresses only.
   */
  allow?: (ip: string) => boolean;
}

/** A name from a node status reply. */
export interface NetbiosName {
  /** The 15-character name with its padding spaces (and NULs) trimmed. */
  name: string;
  /** The 16th byte: 0x00 workstation, 0x20 file server, 0x1d master browser, … */
  suffix: number;
  /** NAME_FLAGS: bit 0x8000 = group name, the rest owner type and state bits. */
  flags: number;
  group: boolean;
}

export interface NbstatReply {
  id: number;
  /** The reply's RCODE: non-zero is a negative name-service response. */
  rcode: number;
  names: NetbiosName[];
  /** The unit ID as a MAC; undefined when absent, truncated or all zeros (Samba sends zeros). */
  mac?: string;
  /** The first unique (non-group) name with suffix 0x00: the machine's name. */
  hostname?: string;
}

/**
 * First-level encoding (RFC 1001 §14.1) of a NetBIOS name: the name padded to 15 bytes (with spaces, or with
 * NULs for the wildcard `*`), a suffix byte, then each of the 16 bytes split into two nibbles, each added
 * to 'A'. `*` + 15 NULs encodes to `CKAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA`.
 */
export function encodeNetbiosName(name: string, suffix = 0x00): string {
  const raw = Buffer.alloc(16, name === '*' ? 0x00 : 0x20);
  Buffer.from(name.toUpperCase(), 'latin1').copy(raw, 0, 0, 15);
  raw[15] = suffix & 0xff;
  let out = '';
  for (const b of raw) out += String.fromCharCode(0x41 + (b >> 4), 0x41 + (b & 0x0f));
  return out;
}

/** The inverse of encodeNetbiosName: the 16 raw bytes, or undefined when `encoded` is not 32 chars of A–P. */
export function decodeNetbiosName(encoded: string): Buffer | undefined {
  if (encoded.length !== 32) return undefined;
  const out = Buffer.alloc(16);
  for (let i = 0; i < 16; i++) {
    const hi = encoded.charCodeAt(2 * i) - 0x41;
    const lo = encoded.charCodeAt(2 * i + 1) - 0x41;
    if (hi < 0 || hi > 15 || lo < 0 || lo > 15) return undefined;
    out[i] = (hi << 4) | lo;
  }
  return out;
}

function writeEncodedName(buf: Buffer, offset: number, encoded: string): number {
  buf[offset] = 0x20;
  buf.write(encoded, offset + 1, 'ascii');
  buf[offset + 33] = 0x00;
  return offset + 34;
}

/** The 50-byte NBSTAT request for `*`: header (one question, no flags), the encoded name, type 0x21, class IN. */
export function buildNbstatRequest(id: number): Buffer {
  const buf = Buffer.alloc(12 + 34 + 4);
  buf.writeUInt16BE(id & 0xffff, 0);
  buf.writeUInt16BE(0x0000, 2); // query, opcode 0, no RD, no broadcast
  buf.writeUInt16BE(1, 4); // QDCOUNT
  let off = writeEncodedName(buf, 12, encodeNetbiosName('*', 0x00));
  buf.writeUInt16BE(NBSTAT_TYPE, off);
  buf.writeUInt16BE(CLASS_IN, off + 2);
  off += 4;
  return buf;
}

/** Skips a (possibly compressed) name; returns the offset after it, or -1 past the end. */
function skipName(buf: Buffer, offset: number): number {
  let off = offset;
  for (let guard = 0; guard < 128; guard++) {
    if (off >= buf.length) return -1;
    const len = buf[off]!;
    if (len === 0) return off + 1;
    if ((len & 0xc0) === 0xc0) return off + 2 <= buf.length ? off + 2 : -1;
    if ((len & 0xc0) !== 0) return -1;
    off += 1 + len;
  }
  return -1;
}

function cleanNetbiosName(raw: Buffer): string | undefined {
  // Trim the padding (spaces, and NULs some stacks use), then refuse control characters.
  const text = raw.toString('latin1').replace(/[\x20\x00]+$/, '');
  // eslint-disable-next-line no-control-regex
  if (text.length === 0 || /[\x00-\x1f\x7f]/.test(text)) return undefined;
  return text;
}

/**
 * Parses a node status response. Undefined when the datagram is not one (too short for a header, not a
 * response, not NBSTAT, or another ID when `expectedId` is given). Truncated name tables and missing
 * statistics are tolerated: whatever complete entries are there are returned.
 */
export function parseNbstatResponse(buf: Buffer, expectedId?: number): NbstatReply | undefined {
  try {
    if (buf.length < 12) return undefined;
    const id = buf.readUInt16BE(0);
    if (expectedId !== undefined && id !== expectedId) return undefined;
    const flags = buf.readUInt16BE(2);
    if ((flags & 0x8000) === 0) return undefined;
    const rcode = flags & 0x0f;
    const qdcount = buf.readUInt16BE(4);
    const ancount = buf.readUInt16BE(6);
    const reply: NbstatReply = { id, rcode, names: [] };
    if (rcode !== 0 || ancount === 0) return reply;
    let off = 12;
    for (let q = 0; q < qdcount; q++) {
      off = skipName(buf, off);
      if (off < 0 || off + 4 > buf.length) return reply;
      off += 4;
    }
    off = skipName(buf, off);
    if (off < 0 || off + 10 > buf.length) return reply;
    const type = buf.readUInt16BE(off);
    if (type !== NBSTAT_TYPE) return undefined;
    const rdlength = buf.readUInt16BE(off + 8);
    off += 10;
    const end = Math.min(buf.length, off + rdlength);
    if (off >= end) return reply;
    const count = buf[off]!;
    off += 1;
    let i = 0;
    for (; i < count && off + 18 <= end; i++, off += 18) {
      const nameFlags = buf.readUInt16BE(off + 16);
      const name = cleanNetbiosName(buf.subarray(off, off + 15));
      const entry: NetbiosName = { name: name ?? '', suffix: buf[off + 15]!, flags: nameFlags, group: (nameFlags & GROUP_FLAG) !== 0 };
      reply.names.push(entry);
      if (reply.hostname === undefined && !entry.group && entry.suffix === 0x00 && name !== undefined) reply.hostname = name;
    }
    if (i === count) {
      const mac = off + 6 <= end ? macFromBytes(buf, off) : undefined;
      if (mac !== undefined) reply.mac = mac;
    }
    return reply;
  } catch {
    return undefined;
  }
}

export interface NbstatResponderName {
  name: string;
  suffix?: number;
  group?: boolean;
  /** Extra NAME_FLAGS bits; default 0x0400 (ACT: active). */
  flags?: number;
}

/**
 * A node status response as a NetBIOS stack sends it (for tests and fixtures): the encoded `*` name, the
 * name table, then the 46-byte statistics block that starts with the 6-byte unit ID (`mac`, or zeros).
 */
export function buildNbstatResponse(id: number, names: NbstatResponderName[], mac?: string | null): Buffer {
  const stats = Buffer.alloc(46);
  if (mac) {
    const bytes = mac.split(/[:-]/).map((h) => parseInt(h, 16));
    for (let i = 0; i < 6; i++) stats[i] = bytes[i] ?? 0;
  }
  const table = Buffer.alloc(1 + names.length * 18);
  table[0] = names.length;
  names.forEach((n, i) => {
    const at = 1 + i * 18;
    const raw = Buffer.alloc(15, 0x20);
    Buffer.from(n.name, 'latin1').copy(raw, 0, 0, 15);
    raw.copy(table, at);
    table[at + 15] = (n.suffix ?? 0x00) & 0xff;
    table.writeUInt16BE(((n.group ? GROUP_FLAG : 0) | (n.flags ?? 0x0400)) & 0xffff, at + 16);
  });
  const rdata = Buffer.concat([table, stats]);
  const header = Buffer.alloc(12);
  header.writeUInt16BE(id & 0xffff, 0);
  header.writeUInt16BE(0x8400, 2); // response, AA
  header.writeUInt16BE(0, 4);
  header.writeUInt16BE(1, 6);
  const rr = Buffer.alloc(34 + 10);
  let off = writeEncodedName(rr, 0, encodeNetbiosName('*', 0x00));
  rr.writeUInt16BE(NBSTAT_TYPE, off);
  rr.writeUInt16BE(CLASS_IN, off + 2);
  rr.writeUInt32BE(0, off + 4);
  rr.writeUInt16BE(rdata.length, off + 8);
  off += 10;
  return Buffer.concat([header, rr, rdata]);
}

/**
 * Whether a datagram is an NBSTAT request (for test responders): returns its ID, or undefined.
 */
export function parseNbstatRequest(buf: Buffer): number | undefined {
  if (buf.length < 50) return undefined;
  if ((buf.readUInt16BE(2) & 0x8000) !== 0 || buf.readUInt16BE(4) !== 1) return undefined;
  if (buf[12] !== 0x20) return undefined;
  const off = skipName(buf, 12);
  if (off < 0 || off + 4 > buf.length || buf.readUInt16BE(off) !== NBSTAT_TYPE) return undefined;
  return buf.readUInt16BE(0);
}

export { PROBE_NEGATIVE_ERRORS, probeErrorOutcome, probeOutcome } from './probe.js';

export function createNetbios(options: NetbiosOptions): DiscoveryMethod {
  return createProbe<NbstatReply>({
    name: 'netbios',
    port: options.port ?? 137,
    timeoutMs: options.timeoutMs,
    allow: options.allow,
    ipv4Only: true,
    request: (id) => ({ payload: buildNbstatRequest(id), accept: (msg) => parseNbstatResponse(msg, id) }),
    onReply: ({ hostname, mac }) => {
      if (hostname === undefined && mac === undefined) return NEGATIVE;
      return found({ ...(hostname !== undefined ? { hostname } : {}), ...(mac !== undefined ? { mac } : {}), source: 'netbios' });
    },
  });
}
