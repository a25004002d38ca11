/**
 * The wire side of forwarding: upstream queries built straight into a Buffer (no dns-packet on the hot path),
 * crypto-strong IDs from a pre-filled pool, the checks a reply must pass before it is believed, and one UDP try
 * from its own freshly bound socket.
 */
import * as crypto from 'node:crypto';
import * as dgram from 'node:dgram';
import { EDNS_DO, Flag, HEADER_LEN, OPT_EDE, RrType } from '../../core/wire/constants';
import type { MessageLayout } from '../../core/wire/message';

// ---------------------------------------------------------------------------------------------- query IDs

const ID_POOL_BYTES = 16384;
let idPool: Buffer = crypto.randomBytes(ID_POOL_BYTES);
let idPos = 0;

/** A random 16-bit query ID from a pool filled by crypto.randomBytes (one syscall per 8,192 IDs). */
export function nextId(): number {
  if (idPos >= ID_POOL_BYTES) {
    idPool = crypto.randomBytes(ID_POOL_BYTES);
    idPos = 0;
  }
  const id = (idPool[idPos] << 8) | idPool[idPos + 1];
  idPos += 2;
  return id;
}

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
  out.writeUInt16BE(0, 0);
  out.writeUInt16BE(Flag.RD | (checkingDisabled ? Flag.CD : 0) | (authenticData ? Flag.AD : 0), 2);
  out.writeUInt16BE(1, 4);
  out.writeUInt32BE(0, 6);
  out.writeUInt16BE(1, 10);
  out.write(wireKey, HEADER_LEN, nameLen, 'latin1');
  out.writeUInt16BE(qtype, qEnd - 4);
  out.writeUInt16BE(qclass, qEnd - 2);
  out[qEnd] = 0;
  out.writeUInt16BE(RrType.OPT, qEnd + 1);
  out.writeUInt16BE(ednsSize, qEnd + 3);
  out.writeUInt32BE(dnssecOk ? EDNS_DO : 0, qEnd + 5);
  out.writeUInt16BE(0, qEnd + 9);
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

/** Why a datagram or TCP message was not taken as the answer (a metric label). */
export type RejectReason = 'short' | 'not_response' | 'id' | 'question';

/** RCODEs a server may send with no question section (RFC 1035 leaves it to the server; many do). */
const QUESTIONLESS_RCODES = (1 << 1) | (1 << 4) | (1 << 5); // FORMERR, NOTIMP, REFUSED

/**
 * Checks that `reply` answers `query` (whose ID is already written): QR=1, opcode QUERY, the same ID and the
 * same question (name compared case-insensitively — an upstream may echo 0x20 case — type and class exactly).
 * FORMERR, NOTIMP and REFUSED with no question at all are accepted on the ID (and the source, checked by the
 * caller): a server that could not parse our query cannot echo it.
 * Returns undefined when it does, or why not.
 */
export function mismatch(reply: Buffer, query: Buffer, qEnd: number): RejectReason | undefined {
  if (reply.length < HEADER_LEN) return 'short';
  if (reply[0] !== query[0] || reply[1] !== query[1]) return 'id';
  const flags = reply.readUInt16BE(2);
  if ((flags & Flag.QR) === 0 || (flags & 0x7800) !== 0) return 'not_response';
  if (reply[4] === 0 && reply[5] === 0 && (QUESTIONLESS_RCODES & (1 << (flags & 0x0f))) !== 0) return undefined;
  if (reply.length < qEnd) return 'short';
  if (reply[4] !== 0 || reply[5] !== 1) return 'question';
  const nameEnd = qEnd - 4;
  for (let i = HEADER_LEN; i < nameEnd; i++) {
    let c = reply[i];
    if (c >= 65 && c <= 90) c += 32;
    // Our own name bytes are lower-case already; length bytes (≤ 63) are never folded.
    if (c !== query[i]) return 'question';
  }
  for (let i = nameEnd; i < qEnd; i++) if (reply[i] !== query[i]) return 'question';
  return undefined;
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

// ---------------------------------------------------------------------------------------------- one UDP try

/** What a UDP try reports to its owner (a flight or a health probe). */
export interface UdpTryOwner {
  /** A reply that passed `mismatch`. */
  onUdpReply(reply: Buffer): void;
  /** A socket error (ECONNREFUSED from an ICMP port unreachable, EHOSTUNREACH, …). */
  onUdpError(err: Error): void;
  /** A datagram that was not the answer; the try keeps waiting. */
  onUdpIgnored(reason: RejectReason | 'source'): void;
}

interface TrySocket extends dgram.Socket {
  owner: UdpTryOwner | null;
  query: Buffer;
  qEnd: number;
  peerAddress: string;
  peerPort: number;
}

/**
 * Sends `query` from a new socket bound to a random source port (port 0: the kernel picks it), connect()ed to
 * the upstream so ICMP errors come back as socket errors and the kernel drops datagrams from other sources.
 * Every datagram is still checked (source, ID, question); the socket is closed by `closeTry`.
 * Listeners are shared functions reading their state from the socket: no closure per query. `peerAddress` is
 * the source expected in replies ('' when only the connected socket can tell: a scoped IPv6 address).
 */
export function startUdpTry(owner: UdpTryOwner, family: 4 | 6, host: string, peerAddress: string, port: number, query: Buffer, qEnd: number): dgram.Socket {
  const sock = dgram.createSocket(family === 6 ? 'udp6' : 'udp4') as TrySocket;
  sock.owner = owner;
  sock.query = query;
  sock.qEnd = qEnd;
  sock.peerAddress = peerAddress;
  sock.peerPort = port;
  sock.on('message', onTryMessage);
  sock.on('error', onTryError);
  sock.connect(port, host, onTryConnect);
  return sock;
}

/** Ends a try: no more events reach the owner, and the socket (and its port) is released. */
export function closeTry(sock: dgram.Socket): void {
  const s = sock as TrySocket;
  if (s.owner === null) return;
  s.owner = null;
  try {
    s.close();
  } catch {
    /* already closed */
  }
}

function onTryConnect(this: TrySocket): void {
  if (this.owner === null) return;
  this.send(this.query);
}

function onTryMessage(this: TrySocket, msg: Buffer, rinfo: dgram.RemoteInfo): void {
  const owner = this.owner;
  if (owner === null) return;
  if (rinfo.port !== this.peerPort || (this.peerAddress !== '' && rinfo.address !== this.peerAddress)) {
    owner.onUdpIgnored('source');
    return;
  }
  const why = mismatch(msg, this.query, this.qEnd);
  if (why !== undefined) {
    owner.onUdpIgnored(why);
    return;
  }
  owner.onUdpReply(msg);
}

function onTryError(this: TrySocket, err: Error): void {
  const owner = this.owner;
  if (owner === null) return;
  owner.onUdpError(err);
}
