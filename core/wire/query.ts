import { EDNS_DO, Flag, HEADER_LEN, RrType } from './constants';
import { NameError, lowerAscii, skipName } from './names';

/** EDNS(0) information taken from a query's OPT record. */
export interface EdnsInfo {
  /** Advertised UDP payload size, as sent (not yet clamped). */
  readonly udpSize: number;
  readonly version: number;
  readonly dnssecOk: boolean;
}

/** A query that passed the header and question checks. Offsets refer to `raw`. */
export interface ParsedQuery {
  readonly kind: 'query';
  readonly id: number;
  readonly flags: number;
  readonly opcode: number;
  /** Offset just past QTYPE/QCLASS: the question is raw[12, questionEnd). */
  readonly questionEnd: number;
  readonly qtype: number;
  readonly qclass: number;
  /** Lower-cased question name as latin1 wire bytes (length-prefixed labels): cheap and exact as a map key. */
  readonly wireKey: string;
  readonly edns: EdnsInfo | null;
}

/** Outcomes that are not a usable query. */
export type QueryProblem =
  | { readonly kind: 'drop'; readonly reason: 'short' | 'response' }
  | { readonly kind: 'formerr'; readonly reason: string; readonly id: number; readonly flags: number; readonly questionEnd: number }
  | { readonly kind: 'notimp'; readonly id: number; readonly flags: number; readonly questionEnd: number };

/**
 * Reads a query's header, its question and its OPT record, checking what dns-packet does not:
 * label/name lengths, pointer loops, truncation, QDCOUNT, duplicate OPT and option lengths overrunning the OPT data.
 */
export function parseQuery(raw: Buffer): ParsedQuery | QueryProblem {
  if (raw.length < HEADER_LEN) return { kind: 'drop', reason: 'short' };
  const id = raw.readUInt16BE(0);
  const flags = raw.readUInt16BE(2);
  if (flags & Flag.QR) return { kind: 'drop', reason: 'response' };
  const opcode = (flags >> 11) & 0xf;
  const qdcount = raw.readUInt16BE(4);
  if (qdcount !== 1) return formerr(`QDCOUNT ${qdcount}`, id, flags, HEADER_LEN);
  const nameEnd = skipName(raw, HEADER_LEN);
  if (typeof nameEnd !== 'number') return formerr(describe(nameEnd), id, flags, HEADER_LEN);
  // A compressed question name cannot point anywhere valid (nothing precedes it) and would break echoing.
  if (raw[nameEnd - 1] !== 0) return formerr('compressed question name', id, flags, HEADER_LEN);
  if (nameEnd + 4 > raw.length) return formerr('truncated question', id, flags, HEADER_LEN);
  const questionEnd = nameEnd + 4;
  if (opcode !== 0) return { kind: 'notimp', id, flags, questionEnd };
  const qtype = raw.readUInt16BE(nameEnd);
  const qclass = raw.readUInt16BE(nameEnd + 2);

  let edns: EdnsInfo | null = null;
  const records = raw.readUInt16BE(6) + raw.readUInt16BE(8);
  const additional = raw.readUInt16BE(10);
  let pos = questionEnd;
  for (let i = 0; i < records + additional; i++) {
    const end = skipName(raw, pos);
    if (typeof end !== 'number') return formerr(describe(end), id, flags, questionEnd);
    if (end + 10 > raw.length) return formerr('truncated record', id, flags, questionEnd);
    const type = raw.readUInt16BE(end);
    const rdlen = raw.readUInt16BE(end + 8);
    const next = end + 10 + rdlen;
    if (next > raw.length) return formerr('truncated record data', id, flags, questionEnd);
    if (i >= records && type === RrType.OPT) {
      if (edns !== null) return formerr('two OPT records', id, flags, questionEnd);
      if (end !== pos + 1) return formerr('OPT owner is not the root', id, flags, questionEnd);
      if (!optionsFit(raw, end + 10, next)) return formerr('OPT option overruns its data', id, flags, questionEnd);
      const ttl = raw.readUInt32BE(end + 4);
      edns = { udpSize: raw.readUInt16BE(end + 2), version: (ttl >>> 16) & 0xff, dnssecOk: (ttl & EDNS_DO) !== 0 };
    }
    pos = next;
  }
  return { kind: 'query', id, flags, opcode, questionEnd, qtype, qclass, wireKey: lowerAscii(raw.toString('latin1', HEADER_LEN, nameEnd)), edns };
}

function optionsFit(raw: Buffer, start: number, end: number): boolean {
  let p = start;
  while (p < end) {
    if (p + 4 > end) return false;
    p += 4 + raw.readUInt16BE(p + 2);
  }
  return p === end;
}

function formerr(reason: string, id: number, flags: number, questionEnd: number): QueryProblem {
  return { kind: 'formerr', reason, id, flags, questionEnd };
}

function describe(e: NameError): string {
  switch (e) {
    case 'truncated': return 'truncated question';
    case 'label-too-long': return 'label longer than 63 bytes';
    case 'name-too-long': return 'name longer than 255 bytes';
    case 'bad-pointer': return 'compression pointer out of range';
    case 'pointer-loop': return 'compression pointer loop';
  }
}

/** Converts a wire key (length-prefixed labels) to a dotted lower-case name without the trailing dot. */
export function wireKeyToName(wireKey: string): string {
  let out = '';
  let pos = 0;
  while (pos < wireKey.length) {
    const len = wireKey.charCodeAt(pos);
    if (len === 0) break;
    if (out.length) out += '.';
    out += wireKey.slice(pos + 1, pos + 1 + len);
    pos += len + 1;
  }
  return out;
}
