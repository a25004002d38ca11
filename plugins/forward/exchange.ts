/**
 * The wire side of forwarding: upstream queries built straight into a Buffer (no dns-packet on the hot path),
 * the checks a reply must pass before it is believed, and the size and lifetime of the socket pool each
 * upstream's tries go out on (the pool itself is the shared engine, plugins/pkg/udpPool.ts).
 */
import { EDNS_DO, Flag, HEADER_LEN, OPT_EDE, RrType } from '../../core/wire/constants';
import type { MessageLayout } from '../../core/wire/message';
import { QUESTIONLESS_REFUSALS, nextId, replyMismatch, type RejectReason } from '../pkg/dnsReply';
import { put16, put32 } from '../../core/wire/bytes';

// ---------------------------------------------------------------------------------------------- query IDs

// IDs, the reply check and the socket engine are shared with discovery (plugins/pkg/dnsReply.ts, udpPool.ts).
export { nextId, type RejectReason } from '../pkg/dnsReply';

// ---------------------------------------------------------------------------------------------- queries

const OPT_LEN = 11;

/**
 * An upstream query for a question: header with RD=1 and the client's CD and AD (RFC 6840 §5.7: AD in a query
 * asks for the AD bit in the answer), the question as a lower-cased wire
 * name (`wireKey`, the zero label included) plus the type and class bytes, and an OPT with our size and the
 * client's DO. The ID (bytes 0–1) is written per try.
 */
export function buildQuery(wireKey: string, qtype: number, qclass: number, checkingDisabled: boolean, dnssecOk: boolean, ednsSize: number, authenticData = false): Buffer {
  const nameLen = wireKey.length;
  const qEnd = HEADER_LEN + nameLen + 4;
  const out = Buffer.allocUnsafe(qEnd + OPT_LEN);
  put16(out, 0, 0);
  put16(out, 2, Flag.RD | (checkingDisabled ? Flag.CD : 0) | (authenticData ? Flag.AD : 0));
  put16(out, 4, 1);
  put32(out, 6, 0);
  put16(out, 10, 1);
  out.write(wireKey, HEADER_LEN, nameLen, 'latin1');
  put16(out, qEnd - 4, qtype);
  put16(out, qEnd - 2, qclass);
  out[qEnd] = 0;
  put16(out, qEnd + 1, RrType.OPT);
  put16(out, qEnd + 3, ednsSize);
  put32(out, qEnd + 5, dnssecOk ? EDNS_DO : 0);
  put16(out, qEnd + 9, 0);
  return out;
}

/** Offset just past the question of a query made by `buildQuery` (it always ends with our 11-byte OPT). */
export function questionEndOf(query: Buffer): number {
  return query.length - OPT_LEN;
}

/** The health probe CoreDNS sends: `. IN NS` with RD=1. */
export function buildProbe(ednsSize: number): Buffer {
  return buildQuery('\x00', RrType.NS, 1, false, false, ednsSize);
}

// ---------------------------------------------------------------------------------------------- replies

/**
 * Checks that `reply` answers `query` (whose ID is already written): QR=1, opcode QUERY, the same ID and the
 * same question (name compared case-insensitively — an upstream may echo 0x20 case — type and class exactly).
 * FORMERR, NOTIMP and REFUSED with no question at all are accepted on the ID (and the source, checked by the
 * caller): a server that could not parse our query cannot echo it.
 * Returns undefined when it does, or why not.
 */
export function mismatch(reply: Buffer, query: Buffer, qEnd: number): RejectReason | undefined {
  return replyMismatch(reply, query, qEnd, QUESTIONLESS_REFUSALS);
}

/**
 * The first Extended DNS Error option (RFC 8914) of a reply's OPT record, so the client sees the upstream's
 * reason (Blocked, DNSSEC Bogus, …) though the server writes its own OPT; undefined when there is none.
 */
export function edeOf(reply: Buffer, layout: MessageLayout): { code: number; text?: string } | undefined {
  if (layout.optStart === -1) return undefined;
  // The OPT owner is the root (one byte), then type, class, TTL, RDLENGTH.
  let p = layout.optStart + 11;
  const end = layout.optEnd;
  while (p + 4 <= end) {
    const code = reply.readUInt16BE(p);
    const len = reply.readUInt16BE(p + 2);
    const dataEnd = p + 4 + len;
    if (dataEnd > end) return undefined;
    if (code === OPT_EDE && len >= 2) {
      const info = reply.readUInt16BE(p + 4);
      // Text is UTF-8 and optional; a trailing NUL some servers add is not part of it.
      let textEnd = dataEnd;
      while (textEnd > p + 6 && reply[textEnd - 1] === 0) textEnd--;
      return textEnd > p + 6 ? { code: info, text: reply.toString('utf8', p + 6, textEnd) } : { code: info };
    }
    p = dataEnd;
  }
  return undefined;
}

export function isTruncated(reply: Buffer): boolean {
  return (reply[2] & 0x02) !== 0;
}

// ---------------------------------------------------------------------------------------------- the UDP pool

/**
 * 64 sockets: an off-path forger who has learned every port we use (by making us ask its own server) must still
 * hit the one socket of 64 and the one ID of 65,536 the query went out with: 2^22 combinations per query, where
 * one socket would leave 2^16. More sockets add a bit per doubling but cost a descriptor each per upstream.
 */
export const UDP_POOL_SIZE = 64;
/** Ports keep changing: a socket is replaced after this many queries or this many ms. */
export const UDP_SOCKET_MAX_QUERIES = 1000;
export const UDP_SOCKET_MAX_AGE_MS = 30_000;

