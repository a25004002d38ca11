import * as dnsPacket from 'dns-packet';
import type { DnsResponse } from '../response';
import { EDNS_DO, Flag, HEADER_LEN, OPT_EDE, RrType } from './constants';
import type { MessageLayout } from './message';
import type { ParsedQuery } from './query';
import { layoutOf } from './message';
import { readName, skipName } from './names';
import { put16, put32, u16 } from './bytes';
// eslint-disable-next-line @typescript-eslint/no-require-imports
const { toString: typeToString } = require('dns-packet/types') as { toString(type: number): string };

/** What the writer needs to know about the client for this reply. */
export interface ClientLimits {
  readonly tcp: boolean;
  /** Our own advertised EDNS UDP size. */
  readonly ourUdpSize: number;
}

const OPCODE_RD_CD = 0x7800 | Flag.RD | Flag.CD;
const TYPE_RRSIG = 46;

/** The most a client may receive over UDP: its advertised size (at least 512), capped by ours; 512 without EDNS. */
export function udpLimit(q: ParsedQuery, ourUdpSize: number): number {
  if (q.edns === null) return 512;
  return Math.min(Math.max(q.edns.udpSize, 512), ourUdpSize);
}

/**
 * Produces the bytes sent to one client from a response, working on wire format:
 * the client's ID and question bytes (its letter case), QR/RD/RA/CD flags, AA only from an authority,
 * the response's own OPT replaced by ours (size, DO, extended RCODE, EDE), and truncation to the client's size.
 */
export function writeForClient(res: DnsResponse, q: ParsedQuery, raw: Buffer, limits: ClientLimits): Buffer {
  let wire = res.wire;
  let layout = res.layout;
  const questionLen = q.questionEnd - HEADER_LEN;
  if (layout === null || layout.questionEnd - HEADER_LEN !== questionLen || (layout.optStart !== -1 && layout.optEnd !== wire.length)) {
    // Rare: a plugin answered another question or the OPT sits mid-section. Re-encode once to a regular shape.
    wire = reshape(res, raw);
    layout = layoutOf(wire);
    if (layout === null) return errorReply(raw, q.id, q.flags, q.questionEnd, 2, q.edns !== null ? limits.ourUdpSize : 0, false);
  }
  const rcode = res.rcode;
  const bodyEnd = layout.optStart === -1 ? wire.length : layout.optStart;
  const extRcode = rcode >> 4;
  const optLen = replyOptLength(q, res.ede);
  const total = q.questionEnd + (bodyEnd - layout.questionEnd) + optLen;
  const limit = limits.tcp ? 65535 : udpLimit(q, limits.ourUdpSize);
  const respFlags = u16(wire, 2);
  let flags = Flag.QR | (q.flags & OPCODE_RD_CD) | Flag.RA | (respFlags & Flag.AD) | (rcode & 0x0f);
  if (res.authoritative) flags |= Flag.AA;
  if ((respFlags & Flag.TC) !== 0) flags |= Flag.TC;

  let an = layout.answerCount;
  let ns = layout.authorityCount;
  let ar = u16(wire, 10) - (layout.optStart === -1 ? 0 : 1);
  let cut = bodyEnd;
  if (total > limit) {
    const fit = fitRrsets(wire, layout, bodyEnd, limit - q.questionEnd - optLen, (rcode & 0x0f) === 3 || layout.answerCount === 0, q.edns !== null && q.edns.dnssecOk);
    if (fit === null) {
      // An answer RRset (or a negative answer's SOA) does not fit: the client must ask over TCP.
      flags |= Flag.TC;
      an = ns = ar = 0;
      cut = layout.questionEnd;
    } else {
      // Only optional RRsets were left out (RFC 2181 §9): no TC, the client has what it asked for.
      ({ an, ns, ar, end: cut } = fit);
    }
  }

  const size = q.questionEnd + (cut - layout.questionEnd) + optLen;
  // A response with room of its own (a cache hit's fresh copy) becomes the reply where it lies, when nothing was
  // cut and it was not reshaped (its question is then as long as the client's): the records are already in place
  // and only the header, the question's letter case and the OPT are written. A reshaped response's records sit
  // in the new `wire`, not in its own buffer. Otherwise the records are copied into a new buffer.
  const inPlace = cut === bodyEnd && wire === res.wire ? res.replyBuffer(size) : null;
  const out = inPlace ?? Buffer.allocUnsafe(size);
  put16(out, 0, q.id);
  put16(out, 2, flags);
  put16(out, 4, 1);
  copyQuestion(raw, out, q.questionEnd);
  put16(out, 6, an);
  put16(out, 8, ns);
  put16(out, 10, ar + (optLen === 0 ? 0 : 1));
  const pos = inPlace !== null ? bodyEnd : q.questionEnd + wire.copy(out, q.questionEnd, layout.questionEnd, cut);
  if (optLen !== 0) writeOpt(out, pos, limits.ourUdpSize, extRcode, (q.edns as NonNullable<ParsedQuery['edns']>).dnssecOk, res.ede);
  if (inPlace !== null) res.wroteReply(out);
  return out;
}

/**
 * The client's question (its letter case) into the reply. Most questions are a few dozen bytes, where a loop
 * beats Buffer.copy, which makes a view of the source for any copy that does not start at 0.
 */
function copyQuestion(raw: Buffer, out: Buffer, questionEnd: number): void {
  if (questionEnd - HEADER_LEN > 32) {
    raw.copy(out, HEADER_LEN, HEADER_LEN, questionEnd);
    return;
  }
  for (let i = HEADER_LEN; i < questionEnd; i++) out[i] = raw[i];
}

/** What fits of a message cut at an RRset boundary: record counts per section and where the kept bytes end. */
interface Fit {
  an: number;
  ns: number;
  ar: number;
  end: number;
}

/**
 * The longest prefix of whole RRsets (RFC 2181 §9) of `wire`'s records that fits in `budget` bytes, or null when
 * a required RRset does not fit. Required: every answer RRset, and in a negative answer (NXDOMAIN, NODATA) the
 * SOA — with every other authority RRset too (NSEC/NSEC3 proofs, signatures) for a client that set DO.
 * Optional, so dropped first from the end: additional records, then the authority of a positive answer. A
 * prefix keeps every compression pointer valid (they only point backwards). An RRSIG travels with the RRset it
 * covers. Only called for an answer too big for the client, so the walk costs nothing on the common path.
 */
function fitRrsets(wire: Buffer, layout: MessageLayout, bodyEnd: number, budget: number, negative: boolean, dnssecOk: boolean): Fit | null {
  const an = layout.answerCount;
  const ns = layout.authorityCount;
  const start = layout.questionEnd;
  if (budget < 0) return null;
  let pos = start;
  let i = 0;
  /** Everything before the RRset being read. */
  let kept: Fit = { an: 0, ns: 0, ar: 0, end: start };
  let groupOwner = '';
  let groupType = -1;
  let groupSection = -1;
  /** Set once an RRset did not fit: from then on only whether a required one follows matters. */
  let cut: Fit | null = null;
  while (pos < bodyEnd) {
    // One RRset: consecutive records of one section with the same owner and type (plus the RRSIGs covering it).
    const section = i < an ? 0 : i < an + ns ? 1 : 2;
    const nameEnd = skipName(wire, pos);
    if (typeof nameEnd !== 'number') return null;
    const type = wire.readUInt16BE(nameEnd);
    const owner = readName(wire, pos);
    const covered = type === TYPE_RRSIG && nameEnd + 12 <= bodyEnd ? wire.readUInt16BE(nameEnd + 10) : -1;
    if (!(section === groupSection && owner === groupOwner && (type === groupType || covered === groupType))) {
      if (cut === null) kept = { an: Math.min(i, an), ns: Math.max(0, Math.min(i, an + ns) - an), ar: Math.max(0, i - an - ns), end: pos };
      groupOwner = owner;
      groupType = type === TYPE_RRSIG ? covered : type;
      groupSection = section;
    }
    const required = section === 0 || (section === 1 && negative && (dnssecOk || groupType === RrType.SOA));
    const next = nameEnd + 10 + wire.readUInt16BE(nameEnd + 8);
    if (cut === null && next - start > budget) cut = kept;
    if (cut !== null && required) return null;
    pos = next;
    i++;
  }
  return cut ?? { an, ns, ar: i - an - ns, end: pos };
}

/** Our OPT record: root owner, type 41, class = UDP size, TTL = ext-RCODE | version 0 | DO, options. */
export function optRecord(udpSize: number, extRcode: number, dnssecOk: boolean, ede?: { code: number; text?: string }): Buffer {
  const out = Buffer.allocUnsafe(optLength(ede));
  writeOpt(out, 0, udpSize, extRcode, dnssecOk, ede);
  return out;
}

/** Bytes of the OPT record a reply to `q` carries: ours with this EDE when the client sent EDNS, else none. */
export function replyOptLength(q: ParsedQuery, ede?: { code: number; text?: string }): number {
  return q.edns !== null ? optLength(ede) : 0;
}

/** Bytes of our OPT record with this EDE (or none). */
export function optLength(ede?: { code: number; text?: string }): number {
  return 11 + (ede ? 6 + (ede.text ? Buffer.byteLength(ede.text, 'utf8') : 0) : 0);
}

/** Writes our OPT record at `pos` (room for `optLength(ede)` bytes), without a buffer of its own. */
export function writeOpt(out: Buffer, pos: number, udpSize: number, extRcode: number, dnssecOk: boolean, ede?: { code: number; text?: string }): void {
  const textLen = ede?.text ? Buffer.byteLength(ede.text, 'utf8') : 0;
  const rdlen = ede ? 6 + textLen : 0;
  out[pos] = 0;
  put16(out, pos + 1, RrType.OPT);
  put16(out, pos + 3, udpSize);
  put32(out, pos + 5, ((extRcode & 0xff) << 24 | (dnssecOk ? EDNS_DO : 0)) >>> 0);
  put16(out, pos + 9, rdlen);
  if (ede) {
    put16(out, pos + 11, OPT_EDE);
    put16(out, pos + 13, 2 + textLen);
    put16(out, pos + 15, ede.code);
    if (textLen > 0) out.write(ede.text as string, pos + 17, 'utf8');
  }
}

/**
 * A reply carrying only the header and the client's question: errors the server produces itself
 * (FORMERR, NOTIMP, REFUSED, SERVFAIL, BADVERS). `udpSize` 0 means no OPT (FORMERR for a bad OPT must not carry one).
 */
export function errorReply(raw: Buffer, id: number, qflags: number, questionEnd: number, rcode: number, udpSize: number, dnssecOk: boolean, ede?: { code: number; text?: string }): Buffer {
  const opt = udpSize > 0 ? optRecord(udpSize, rcode >> 4, dnssecOk, ede) : null;
  const out = Buffer.allocUnsafe(questionEnd + (opt === null ? 0 : opt.length));
  put16(out, 0, id);
  put16(out, 2, Flag.QR | (qflags & OPCODE_RD_CD) | Flag.RA | (rcode & 0x0f));
  put16(out, 4, questionEnd > HEADER_LEN ? 1 : 0);
  put32(out, 6, 0);
  put16(out, 10, opt === null ? 0 : 1);
  raw.copy(out, HEADER_LEN, HEADER_LEN, questionEnd);
  if (opt !== null) opt.copy(out, questionEnd);
  return out;
}

function reshape(res: DnsResponse, raw: Buffer): Buffer {
  const packet = res.packet;
  const nameEnd = raw.indexOf(0, HEADER_LEN) + 1;
  const question = {
    name: readName(raw, HEADER_LEN),
    type: typeToString(raw.readUInt16BE(nameEnd)) as dnsPacket.RecordType,
    class: 'IN' as const,
  };
  const additionals = (packet.additionals ?? []).filter((r) => r.type !== 'OPT');
  return dnsPacket.encode({ ...packet, questions: [question], additionals });
}
