import * as dnsPacket from 'dns-packet';
import type { DnsResponse } from '../response';
import { EDNS_DO, Flag, HEADER_LEN, OPT_EDE, RrType } from './constants';
import type { ParsedQuery } from './query';
import { layoutOf } from './message';
import { readName } from './names';
// eslint-disable-next-line @typescript-eslint/no-require-imports
const { toString: typeToString } = require('dns-packet/types') as { toString(type: number): string };

/** What the writer needs to know about the client for this reply. */
export interface ClientLimits {
  readonly tcp: boolean;
  /** Our own advertised EDNS UDP size. */
  readonly ourUdpSize: number;
}

const OPCODE_RD_CD = 0x7800 | Flag.RD | Flag.CD;

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
  const opt = q.edns !== null ? optRecord(limits.ourUdpSize, rcode >> 4, q.edns.dnssecOk, res.ede) : null;
  const optLen = opt === null ? 0 : opt.length;
  const total = q.questionEnd + (bodyEnd - layout.questionEnd) + optLen;
  const limit = limits.tcp ? 65535 : udpLimit(q, limits.ourUdpSize);
  const truncate = total > limit;
  const respFlags = wire.readUInt16BE(2);
  let flags = Flag.QR | (q.flags & OPCODE_RD_CD) | Flag.RA | (respFlags & Flag.AD) | (rcode & 0x0f);
  if (res.authoritative) flags |= Flag.AA;
  if (truncate || (respFlags & Flag.TC) !== 0) flags |= Flag.TC;

  const size = truncate ? q.questionEnd + optLen : total;
  const out = Buffer.allocUnsafe(size);
  out.writeUInt16BE(q.id, 0);
  out.writeUInt16BE(flags, 2);
  out.writeUInt16BE(1, 4);
  raw.copy(out, HEADER_LEN, HEADER_LEN, q.questionEnd);
  let pos = q.questionEnd;
  if (truncate) {
    out.writeUInt32BE(0, 6);
    out.writeUInt16BE(opt === null ? 0 : 1, 10);
  } else {
    out.writeUInt16BE(layout.answerCount, 6);
    out.writeUInt16BE(layout.authorityCount, 8);
    const additional = wire.readUInt16BE(10) - (layout.optStart === -1 ? 0 : 1) + (opt === null ? 0 : 1);
    out.writeUInt16BE(additional, 10);
    pos += wire.copy(out, pos, layout.questionEnd, bodyEnd);
  }
  if (opt !== null) opt.copy(out, pos);
  return out;
}

/** Our OPT record: root owner, type 41, class = UDP size, TTL = ext-RCODE | version 0 | DO, options. */
export function optRecord(udpSize: number, extRcode: number, dnssecOk: boolean, ede?: { code: number; text?: string }): Buffer {
  const text = ede?.text ? Buffer.from(ede.text, 'utf8') : undefined;
  const rdlen = ede ? 6 + (text ? text.length : 0) : 0;
  const out = Buffer.allocUnsafe(11 + rdlen);
  out[0] = 0;
  out.writeUInt16BE(RrType.OPT, 1);
  out.writeUInt16BE(udpSize, 3);
  out.writeUInt32BE(((extRcode & 0xff) << 24 | (dnssecOk ? EDNS_DO : 0)) >>> 0, 5);
  out.writeUInt16BE(rdlen, 9);
  if (ede) {
    out.writeUInt16BE(OPT_EDE, 11);
    out.writeUInt16BE(2 + (text ? text.length : 0), 13);
    out.writeUInt16BE(ede.code, 15);
    if (text) text.copy(out, 17);
  }
  return out;
}

/**
 * A reply carrying only the header and the client's question: errors the server produces itself
 * (FORMERR, NOTIMP, REFUSED, SERVFAIL, BADVERS). `udpSize` 0 means no OPT (FORMERR for a bad OPT must not carry one).
 */
export function errorReply(raw: Buffer, id: number, qflags: number, questionEnd: number, rcode: number, udpSize: number, dnssecOk: boolean, ede?: { code: number; text?: string }): Buffer {
  const opt = udpSize > 0 ? optRecord(udpSize, rcode >> 4, dnssecOk, ede) : null;
  const out = Buffer.allocUnsafe(questionEnd + (opt === null ? 0 : opt.length));
  out.writeUInt16BE(id, 0);
  out.writeUInt16BE(Flag.QR | (qflags & OPCODE_RD_CD) | Flag.RA | (rcode & 0x0f), 2);
  out.writeUInt16BE(questionEnd > HEADER_LEN ? 1 : 0, 4);
  out.writeUInt32BE(0, 6);
  out.writeUInt16BE(opt === null ? 0 : 1, 10);
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
