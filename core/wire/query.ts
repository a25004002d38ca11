import { EDNS_DO, Flag, HEADER_LEN, MAX_LABEL_LEN, MAX_NAME_LEN, RrType } from './constants';
import { NameError, lowerAscii, skipName, wireKeyToText } from './names';
import { u16, u32 } from './bytes';

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
  /** The query's bytes, as received. */
  readonly raw: Buffer;
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
  | { readonly kind: 'notimp'; readonly reason: string; readonly id: number; readonly flags: number; readonly questionEnd: number }
  | { readonly kind: 'refused'; readonly reason: string; readonly id: number; readonly flags: number; readonly questionEnd: number };

/** Meta query types a forwarder answers itself (RFC 6895 §3.1): never sent upstream. */
const QTYPE_IXFR = 251;
const QTYPE_AXFR = 252;
const QTYPE_MAILB = 253;
const QTYPE_MAILA = 254;

/**
 * Reads a query's header, its question and its OPT record, checking what dns-packet does not:
 * opcode (before anything else, so a header-only opcode 15 is NOTIMP), QDCOUNT, label/name lengths, a
 * compression pointer in the question (nothing precedes it that it could validly point to), truncation,
 * meta QTYPEs, duplicate OPT and option lengths overrunning the OPT data. `tcp` tells whether zone transfers
 * could be asked at all: over UDP they are refused.
 */
export function parseQuery(raw: Buffer, tcp = false): ParsedQuery | QueryProblem {
  if (raw.length < HEADER_LEN) return { kind: 'drop', reason: 'short' };
  const id = u16(raw, 0);
  const flags = u16(raw, 2);
  if (flags & Flag.QR) return { kind: 'drop', reason: 'response' };
  const opcode = (flags >> 11) & 0xf;
  const qdcount = u16(raw, 4);
  // The question is echoed only when it is one well-formed question; otherwise the reply is the header alone.
  const nameEnd = qdcount === 1 ? questionNameEnd(raw) : 'truncated';
  const echoEnd = typeof nameEnd === 'number' && nameEnd + 4 <= raw.length ? nameEnd + 4 : HEADER_LEN;
  if (opcode !== 0) return { kind: 'notimp', reason: `opcode ${opcode}`, id, flags, questionEnd: echoEnd };
  if (qdcount !== 1) return formerr(`QDCOUNT ${qdcount}`, id, flags, HEADER_LEN);
  if (typeof nameEnd !== 'number') return formerr(describe(nameEnd), id, flags, HEADER_LEN);
  if (nameEnd + 4 > raw.length) return formerr('truncated question', id, flags, HEADER_LEN);
  const questionEnd = nameEnd + 4;
  const qtype = u16(raw, nameEnd);
  const qclass = u16(raw, nameEnd + 2);
  if (qtype === RrType.OPT) return formerr('QTYPE OPT', id, flags, questionEnd);
  if (qtype === QTYPE_MAILA || qtype === QTYPE_MAILB) return { kind: 'notimp', reason: 'QTYPE MAILA/MAILB', id, flags, questionEnd };
  if (qtype === QTYPE_AXFR || qtype === QTYPE_IXFR) {
    // A forwarder serves no zone to transfer; over UDP a transfer is not even possible (RFC 5936 §4.2).
    return { kind: 'refused', reason: tcp ? 'zone transfer' : 'zone transfer over UDP', id, flags, questionEnd };
  }

  let edns: EdnsInfo | null = null;
  const records = u16(raw, 6) + u16(raw, 8);
  const additional = u16(raw, 10);
  let pos = questionEnd;
  for (let i = 0; i < records + additional; i++) {
    const end = skipName(raw, pos);
    if (typeof end !== 'number') return formerr(describe(end), id, flags, questionEnd);
    if (end + 10 > raw.length) return formerr('truncated record', id, flags, questionEnd);
    const type = u16(raw, end);
    const rdlen = u16(raw, end + 8);
    const next = end + 10 + rdlen;
    if (next > raw.length) return formerr('truncated record data', id, flags, questionEnd);
    if (i >= records && type === RrType.OPT) {
      if (edns !== null) return formerr('two OPT records', id, flags, questionEnd);
      if (end !== pos + 1) return formerr('OPT owner is not the root', id, flags, questionEnd);
      if (!optionsFit(raw, end + 10, next)) return formerr('OPT option overruns its data', id, flags, questionEnd);
      const ttl = u32(raw, end + 4);
      edns = { udpSize: u16(raw, end + 2), version: (ttl >>> 16) & 0xff, dnssecOk: (ttl & EDNS_DO) !== 0 };
    }
    pos = next;
  }
  return new Question(raw, id, flags, opcode, questionEnd, qtype, qclass, edns);
}

/**
 * A parsed query. Its `wireKey` is made on first read: a cache hit finds its entry from the bytes themselves
 * (`raw`), and the string (a copy and a case fold) would be garbage on every hit.
 */
class Question implements ParsedQuery {
  readonly kind = 'query' as const;
  private key: string | undefined = undefined;
  constructor(
    readonly raw: Buffer,
    readonly id: number,
    readonly flags: number,
    readonly opcode: number,
    readonly questionEnd: number,
    readonly qtype: number,
    readonly qclass: number,
    readonly edns: EdnsInfo | null,
  ) {}

  get wireKey(): string {
    if (this.key === undefined) this.key = lowerAscii(this.raw.toString('latin1', HEADER_LEN, this.questionEnd - 4));
    return this.key;
  }
}

/**
 * The end of the question's name, which must be plain labels: a compression pointer there can only point into
 * the header (nothing else precedes it) and would make the echoed question and the name we route on differ.
 */
function questionNameEnd(raw: Buffer): number | NameError | 'compressed' {
  let pos = HEADER_LEN;
  let total = 1;
  for (;;) {
    if (pos >= raw.length) return 'truncated';
    const len = raw[pos];
    if (len === 0) return pos + 1;
    if ((len & 0xc0) === 0xc0) return 'compressed';
    if (len > MAX_LABEL_LEN) return 'label-too-long';
    total += len + 1;
    if (total > MAX_NAME_LEN) return 'name-too-long';
    pos += len + 1;
  }
}

function optionsFit(raw: Buffer, start: number, end: number): boolean {
  let p = start;
  while (p < end) {
    if (p + 4 > end) return false;
    p += 4 + u16(raw, p + 2);
  }
  return p === end;
}

function formerr(reason: string, id: number, flags: number, questionEnd: number): QueryProblem {
  return { kind: 'formerr', reason, id, flags, questionEnd };
}

function describe(e: NameError | 'compressed'): string {
  switch (e) {
    case 'compressed': return 'compressed question name';
    case 'truncated': return 'truncated question';
    case 'label-too-long': return 'label longer than 63 bytes';
    case 'name-too-long': return 'name longer than 255 bytes';
    case 'bad-pointer': return 'compression pointer out of range';
    case 'pointer-loop': return 'compression pointer loop';
  }
}

/**
 * Converts a wire key (length-prefixed labels) to a lower-case name without the trailing dot, in presentation
 * form: a dot, a backslash or an unprintable byte inside a label is escaped (`\.`, `\\`, `\DDD`).
 */
export function wireKeyToName(wireKey: string): string {
  return wireKeyToText(wireKey);
}
