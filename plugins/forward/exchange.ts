/**
 * The wire side of forwarding: upstream queries built straight into a Buffer (no dns-packet on the hot path),
 * crypto-strong IDs from a pre-filled pool, the checks a reply must pass before it is believed, and the pool of
 * UDP sockets each upstream's tries go out on.
 */
import * as dgram from 'node:dgram';
import { performance } from 'node:perf_hooks';
import { EDNS_DO, Flag, HEADER_LEN, OPT_EDE, RrType } from '../../core/wire/constants';
import type { MessageLayout } from '../../core/wire/message';
import { QUESTIONLESS_REFUSALS, nextId, replyMismatch, type RejectReason } from '../pkg/dnsReply';

// ---------------------------------------------------------------------------------------------- query IDs

// IDs and the reply check are shared with discovery (plugins/pkg/dnsReply.ts). The exchange itself is not: this
// pool keeps a few long-lived sockets per upstream, finds the waiting try by socket and ID in preallocated slots
// and allocates nothing per query, where discovery opens one connected socket per probe with a promise and a timer
// around it — one engine for both would cost the forward miss path a closure and a promise per query.
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

/** What a UDP try reports to its owner (a flight or a health probe); the pool reads its query and question end. */
export interface UdpTryOwner {
  readonly query: Buffer;
  readonly qEnd: number;
  /** A reply that passed `mismatch`. */
  onUdpReply(reply: Buffer): void;
  /** A socket error (ECONNREFUSED from an ICMP port unreachable, EHOSTUNREACH, EMFILE at bind, …). */
  onUdpError(err: Error): void;
  /** A datagram that was meant for this try but was not the answer (question, not a response); it keeps waiting. */
  onUdpIgnored(reason: RejectReason | 'source'): void;
}

export interface UdpPoolOptions {
  /** Sockets per upstream (each its own kernel-chosen port). */
  readonly size: number;
  /** Tries in flight at most on the pool (the in-flight table's bound). */
  readonly maxInFlight: number;
  /** A socket is retired after sending this many queries… */
  readonly maxQueries: number;
  /** …or once it is this old (ms), whichever comes first. */
  readonly maxAgeMs: number;
}

/**
 * 64 sockets: an off-path forger who has learned every port we use (by making us ask its own server) must still
 * hit the one socket of 64 and the one ID of 65,536 the query went out with: 2^22 combinations per query, where
 * one socket would leave 2^16. More sockets add a bit per doubling but cost a descriptor each per upstream.
 */
export const UDP_POOL_SIZE = 64;
/** Ports keep changing: a socket is replaced after this many queries or this many ms. */
export const UDP_SOCKET_MAX_QUERIES = 1000;
export const UDP_SOCKET_MAX_AGE_MS = 30_000;

/** Where a pool reports what it drops and what it does to its sockets (the forward metrics; never per query but strays). */
export interface UdpPoolSink {
  /** A datagram that matched no try (wrong source, too short, unknown ID on that socket): a metric label. */
  stray(reason: RejectReason | 'source'): void;
  readonly opened: { inc(value?: number): void };
  readonly retired: { inc(value?: number): void };
  readonly idCollisions: { inc(value?: number): void };
  readonly exhausted: { inc(value?: number): void };
}

/** The same counts, kept on the pool for tests and logs. */
export interface UdpPoolStats {
  opened: number;
  retired: number;
  idCollisions: number;
  exhausted: number;
  /** Datagrams that matched no try in flight on the socket they reached (unknown ID, or a late answer). */
  unmatched: number;
}

interface PoolSocket extends dgram.Socket {
  pool: UdpPool;
  /** Its number in the in-flight keys (sid << 16 | ID): unique among the pool's open and draining sockets. */
  sid: number;
  ready: boolean;
  sends: number;
  openedAt: number;
  /** Tries in flight on it. */
  live: number;
  retiring: boolean;
  /** Keys of tries sent before the socket was connected (sent from the connect callback). */
  queued: number[] | null;
}

const EMPTY = -1;
/** Tries of another ID after a collision on the same socket before the query is counted as exhausted. */
const ID_TRIES = 8;

/**
 * The UDP sockets to one upstream: `size` sockets, each bound by the kernel to a random port and connect()ed to
 * the upstream (so ICMP errors come back and the kernel drops datagrams from other sources). Each try goes out on
 * a randomly chosen socket — a random permutation of the pool, redrawn every `size` tries, so consecutive queries
 * never share a port — with a random ID unique on that socket. Sockets are opened on first use, and retired
 * (closed once their last try is over) after `maxQueries` tries or `maxAgeMs`, so ports keep changing.
 *
 * Tries in flight are found by (socket, ID) in a fixed-size open-addressing table (linear probing, deletion by
 * backward shift): no per-query allocation. A datagram is taken only when it arrived on the socket its query
 * left from, from the upstream's address and port, with the ID and question of that query.
 */
export class UdpPool {
  readonly stats: UdpPoolStats = { opened: 0, retired: 0, idCollisions: 0, exhausted: 0, unmatched: 0 };
  /** Sockets in use, by pool position (null: not open yet, or retired and not yet replaced). */
  private readonly active: (PoolSocket | null)[];
  /** Every open socket (active or draining) by sid. */
  private readonly bySid: (PoolSocket | null)[];
  private readonly freeSids: number[] = [];
  private readonly order: Uint8Array | Uint16Array;
  private orderPos: number;
  private readonly keys: Int32Array;
  private readonly owners: (UdpTryOwner | null)[];
  private readonly mask: number;
  private readonly shift: number;
  private count = 0;
  private closed = false;

  constructor(
    private readonly family: 4 | 6,
    private readonly host: string,
    /** The source expected in replies ('' when only the connected socket can tell: a scoped IPv6 address). */
    private readonly peerAddress: string,
    private readonly port: number,
    readonly opts: UdpPoolOptions,
    private readonly sink: UdpPoolSink,
  ) {
    const size = Math.max(1, Math.min(opts.size, 256));
    this.active = new Array<PoolSocket | null>(size).fill(null);
    // Room for every active socket and as many draining ones.
    this.bySid = new Array<PoolSocket | null>(2 * size).fill(null);
    for (let i = 2 * size - 1; i >= 0; i--) this.freeSids.push(i);
    this.order = size <= 256 ? new Uint8Array(size) : new Uint16Array(size);
    for (let i = 0; i < size; i++) this.order[i] = i;
    this.orderPos = size;
    let cap = 16;
    while (cap < 2 * opts.maxInFlight) cap *= 2;
    this.keys = new Int32Array(cap).fill(EMPTY);
    this.owners = new Array<UdpTryOwner | null>(cap).fill(null);
    this.mask = cap - 1;
    this.shift = 32 - Math.log2(cap);
  }

  /** Tries in flight. */
  get inFlight(): number {
    return this.count;
  }

  /** Sockets open (active and draining). */
  get sockets(): number {
    return this.bySid.length - this.freeSids.length;
  }

  /** The in-flight table's bound. */
  get capacity(): number {
    return this.opts.maxInFlight;
  }

  /**
   * Sends `owner.query` (its ID written here) on a random socket. Returns the try's key for `cancel`, or -1 when
   * the table is full (counted: the caller treats it as its own shortage, like EMFILE).
   */
  send(owner: UdpTryOwner): number {
    if (this.closed || this.count >= this.opts.maxInFlight) {
      this.stats.exhausted++;
      this.sink.exhausted.inc();
      return -1;
    }
    const sock = this.pick();
    if (sock === null) {
      this.stats.exhausted++;
      this.sink.exhausted.inc();
      return -1;
    }
    let id = nextId();
    let key = (sock.sid << 16) | id;
    let tries = 0;
    while (this.slotOf(key) !== -1) {
      this.stats.idCollisions++;
      this.sink.idCollisions.inc();
      if (++tries >= ID_TRIES) {
        this.stats.exhausted++;
      this.sink.exhausted.inc();
        return -1;
      }
      id = nextId();
      key = (sock.sid << 16) | id;
    }
    this.insert(key, owner);
    sock.live++;
    sock.sends++;
    owner.query.writeUInt16BE(id, 0);
    if (sock.ready) sock.send(owner.query);
    else if (sock.queued === null) sock.queued = [key];
    else sock.queued.push(key);
    return key;
  }

  /** Ends a try: no more events reach its owner (a no-op when it already ended). */
  cancel(key: number, owner: UdpTryOwner): void {
    if (key < 0) return;
    const slot = this.slotOf(key);
    if (slot === -1 || this.owners[slot] !== owner) return;
    this.removeSlot(slot);
    this.release(this.bySid[key >>> 16]);
  }

  close(): void {
    this.closed = true;
    for (let s = 0; s < this.bySid.length; s++) {
      const sock = this.bySid[s];
      if (sock !== null) this.closeSocket(sock);
    }
    this.active.fill(null);
    this.keys.fill(EMPTY);
    this.owners.fill(null);
    this.count = 0;
  }

  // ------------------------------------------------------------------------------------------- sockets

  private pick(): PoolSocket | null {
    const size = this.active.length;
    if (this.orderPos >= size) {
      // Fisher–Yates with the crypto-filled ID pool.
      const order = this.order;
      for (let i = size - 1; i > 0; i--) {
        const j = nextId() % (i + 1);
        const t = order[i];
        order[i] = order[j];
        order[j] = t;
      }
      this.orderPos = 0;
    }
    const pos = this.order[this.orderPos++];
    let sock = this.active[pos];
    if (sock !== null && (sock.sends >= this.opts.maxQueries || performance.now() - sock.openedAt >= this.opts.maxAgeMs)) {
      this.retire(pos, sock);
      sock = null;
    }
    if (sock === null) {
      sock = this.open();
      this.active[pos] = sock;
    }
    return sock;
  }

  private open(): PoolSocket | null {
    const sid = this.freeSids.pop();
    if (sid === undefined) return null;
    const sock = dgram.createSocket(this.family === 6 ? 'udp6' : 'udp4') as PoolSocket;
    sock.pool = this;
    sock.sid = sid;
    sock.ready = false;
    sock.sends = 0;
    sock.openedAt = performance.now();
    sock.live = 0;
    sock.retiring = false;
    sock.queued = null;
    sock.on('message', onPoolMessage);
    sock.on('error', onPoolError);
    sock.connect(this.port, this.host, onPoolConnect);
    // In-flight tries hold their own timers; an idle pool must not keep the process alive.
    sock.unref();
    this.bySid[sid] = sock;
    this.stats.opened++;
    this.sink.opened.inc();
    return sock;
  }

  private retire(pos: number, sock: PoolSocket): void {
    this.active[pos] = null;
    sock.retiring = true;
    this.stats.retired++;
    this.sink.retired.inc();
    if (sock.live === 0) this.closeSocket(sock);
  }

  private release(sock: PoolSocket | null): void {
    if (sock === null) return;
    sock.live--;
    if (sock.retiring && sock.live <= 0) this.closeSocket(sock);
  }

  private closeSocket(sock: PoolSocket): void {
    if (this.bySid[sock.sid] !== sock) return;
    this.bySid[sock.sid] = null;
    this.freeSids.push(sock.sid);
    sock.ready = false;
    try {
      sock.close();
    } catch {
      /* already closed */
    }
  }

  /** A socket that failed: every try on it gets the error; a socket that never connected is dropped. */
  failSocket(sock: PoolSocket, err: Error): void {
    if (this.bySid[sock.sid] !== sock) return;
    if (!sock.ready) {
      const pos = this.active.indexOf(sock);
      if (pos !== -1) this.active[pos] = null;
      sock.retiring = true;
    }
    const sidBits = sock.sid;
    const failed: UdpTryOwner[] = [];
    for (let slot = 0; slot <= this.mask; ) {
      const k = this.keys[slot];
      if (k !== EMPTY && k >>> 16 === sidBits) {
        failed.push(this.owners[slot] as UdpTryOwner);
        // The backward shift may move another key into this slot: look at it again.
        this.removeSlot(slot);
        sock.live--;
        continue;
      }
      slot++;
    }
    if (sock.retiring && sock.live <= 0) this.closeSocket(sock);
    for (const o of failed) o.onUdpError(err);
  }

  connected(sock: PoolSocket): void {
    if (this.bySid[sock.sid] !== sock) return;
    sock.ready = true;
    const q = sock.queued;
    sock.queued = null;
    if (q === null) return;
    for (const key of q) {
      const slot = this.slotOf(key);
      if (slot !== -1) sock.send((this.owners[slot] as UdpTryOwner).query);
    }
  }

  received(sock: PoolSocket, msg: Buffer, rinfo: dgram.RemoteInfo): void {
    if (this.bySid[sock.sid] !== sock) return;
    if (rinfo.port !== this.port || (this.peerAddress !== '' && rinfo.address !== this.peerAddress)) {
      this.sink.stray('source');
      return;
    }
    if (msg.length < HEADER_LEN) {
      this.sink.stray('short');
      return;
    }
    const slot = this.slotOf((sock.sid << 16) | (msg[0] << 8) | msg[1]);
    if (slot === -1) {
      this.stats.unmatched++;
      this.sink.stray('id');
      return;
    }
    const owner = this.owners[slot] as UdpTryOwner;
    const why = replyMismatch(msg, owner.query, owner.qEnd, QUESTIONLESS_REFUSALS);
    if (why !== undefined) {
      owner.onUdpIgnored(why);
      return;
    }
    this.removeSlot(slot);
    this.release(sock);
    owner.onUdpReply(msg);
  }

  // ------------------------------------------------------------------------------------------- the table

  private home(key: number): number {
    return Math.imul(key, 0x9e3779b1) >>> this.shift;
  }

  private slotOf(key: number): number {
    const keys = this.keys;
    const mask = this.mask;
    for (let i = this.home(key); ; i = (i + 1) & mask) {
      const k = keys[i];
      if (k === key) return i;
      if (k === EMPTY) return -1;
    }
  }

  private insert(key: number, owner: UdpTryOwner): void {
    const keys = this.keys;
    const mask = this.mask;
    let i = this.home(key);
    while (keys[i] !== EMPTY) i = (i + 1) & mask;
    keys[i] = key;
    this.owners[i] = owner;
    this.count++;
  }

  /** Linear-probing deletion by backward shift: no tombstones, so the table never needs rebuilding. */
  private removeSlot(slot: number): void {
    const keys = this.keys;
    const owners = this.owners;
    const mask = this.mask;
    let hole = slot;
    let i = slot;
    for (;;) {
      i = (i + 1) & mask;
      const k = keys[i];
      if (k === EMPTY) break;
      const h = this.home(k);
      // Move k into the hole when its home is not cyclically within (hole, i].
      if (hole <= i ? h <= hole || h > i : h <= hole && h > i) {
        keys[hole] = k;
        owners[hole] = owners[i];
        hole = i;
      }
    }
    keys[hole] = EMPTY;
    owners[hole] = null;
    this.count--;
  }
}

function onPoolConnect(this: PoolSocket): void {
  this.pool.connected(this);
}

function onPoolMessage(this: PoolSocket, msg: Buffer, rinfo: dgram.RemoteInfo): void {
  this.pool.received(this, msg, rinfo);
}

function onPoolError(this: PoolSocket, err: Error): void {
  this.pool.failSocket(this, err);
}
