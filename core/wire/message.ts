import { HEADER_LEN, RrType } from './constants';
import { skipName } from './names';
import { u16, u32 } from './bytes';

/** Where things are inside an encoded DNS message; computed once per message by walking its records. */
export interface MessageLayout {
  readonly questionEnd: number;
  readonly answerCount: number;
  readonly authorityCount: number;
  /** Offsets of the TTL field of every record except OPT. */
  readonly ttlOffsets: number[];
  /** Offset of the OPT record and its end, or -1 when there is none. */
  readonly optStart: number;
  readonly optEnd: number;
  /** The TTL field of the OPT record (extended RCODE, version, DO). */
  readonly optTtl: number;
  /** Lowest TTL among answer and authority records (the cacheable lifetime), or -1 when there are none. */
  readonly minTtl: number;
  /** MINIMUM field and TTL of the first SOA in the authority section (for negative caching), or -1. */
  readonly soaNegativeTtl: number;
}

/** Walks an encoded message; returns null when it is malformed. */
export function layoutOf(buf: Buffer): MessageLayout | null {
  if (buf.length < HEADER_LEN) return null;
  const qd = u16(buf, 4);
  const an = u16(buf, 6);
  const ns = u16(buf, 8);
  const ar = u16(buf, 10);
  let pos = HEADER_LEN;
  for (let i = 0; i < qd; i++) {
    const end = skipName(buf, pos);
    if (typeof end !== 'number' || end + 4 > buf.length) return null;
    pos = end + 4;
  }
  const questionEnd = pos;
  const ttlOffsets: number[] = [];
  let optStart = -1;
  let optEnd = -1;
  let optTtl = 0;
  let minTtl = -1;
  let soaNegativeTtl = -1;
  const total = an + ns + ar;
  for (let i = 0; i < total; i++) {
    const start = pos;
    const end = skipName(buf, pos);
    if (typeof end !== 'number' || end + 10 > buf.length) return null;
    const type = u16(buf, end);
    const ttl = u32(buf, end + 4);
    const rdlen = u16(buf, end + 8);
    const next = end + 10 + rdlen;
    if (next > buf.length) return null;
    if (type === RrType.OPT && i >= an + ns) {
      optStart = start;
      optEnd = next;
      optTtl = ttl;
    } else {
      ttlOffsets.push(end + 4);
      if (i < an + ns && (minTtl === -1 || ttl < minTtl)) minTtl = ttl;
      if (type === RrType.SOA && i >= an && i < an + ns && soaNegativeTtl === -1) {
        soaNegativeTtl = soaMinimum(buf, end + 10, next, ttl);
      }
    }
    pos = next;
  }
  return { questionEnd, answerCount: an, authorityCount: ns, ttlOffsets, optStart, optEnd, optTtl, minTtl, soaNegativeTtl };
}

/** RFC 2308 §5: a negative answer lives for min(SOA TTL, SOA MINIMUM). */
function soaMinimum(buf: Buffer, rdata: number, end: number, ttl: number): number {
  const mname = skipName(buf, rdata);
  if (typeof mname !== 'number') return -1;
  const rname = skipName(buf, mname);
  if (typeof rname !== 'number' || rname + 20 > end) return -1;
  return Math.min(ttl, u32(buf, rname + 16));
}

/** Returns the message without its OPT record (ARCOUNT adjusted), or the same buffer when it has none at the end. */
export function stripOpt(buf: Buffer, layout: MessageLayout): Buffer | null {
  if (layout.optStart === -1) return buf;
  // Removing a record in the middle would shift what later compression pointers refer to.
  if (layout.optEnd !== buf.length) return null;
  const out = Buffer.allocUnsafe(layout.optStart);
  buf.copy(out, 0, 0, layout.optStart);
  out.writeUInt16BE(u16(buf, 10) - 1, 10);
  return out;
}
