/**
 * The one UDP exchange engine: sockets to one peer, each bound by the kernel to a random port and connect()ed to
 * the peer, a random ID per try, and replies found by (socket, ID) in a fixed-size table. forward keeps a pool of
 * them per upstream (no allocation per query on its miss path); discovery's probes (rdns, netbios, mdns) run a
 * pool of one socket for one try (`udpExchange`). What a reply must also satisfy — the question for DNS, the
 * transaction for NetBIOS — is the try's own `check`.
 */
import * as dgram from 'node:dgram';
import { performance } from 'node:perf_hooks';
import { nextId } from './dnsReply';
import { put16 } from '../../core/wire/bytes';
import { ProbeTable } from './probeTable';

/** DNS, mDNS and NetBIOS name service messages all start with a 12-byte header whose first two bytes are the ID. */
const HEADER_LEN = 12;

/** Why a datagram matched no try: wrong source, shorter than a header, or no try with its ID on that socket. */
export type StrayReason = 'source' | 'short' | 'id';

/** What a UDP try reports to its owner (forward's flight or health probe, a one-shot exchange); the pool sends its `query`. */
export interface UdpTryOwner<R extends string = string> {
  /** The datagram to send; the pool writes the try's ID into its first two bytes. */
  readonly query: Buffer;
  /**
   * Why `reply` — from the peer, on this try's socket, with its ID — is not this try's answer, or undefined when
   * it is (for DNS: `replyMismatch`, the question and the QR bit; another protocol reads its own format).
   */
  check(reply: Buffer): R | undefined;
  /** A reply that passed `check`: the try is over. */
  onUdpReply(reply: Buffer): void;
  /** A socket error (ECONNREFUSED from an ICMP port unreachable, EHOSTUNREACH, a failed connect, …): the try is over. */
  onUdpError(err: Error): void;
  /** A datagram that was meant for this try but was not the answer (`check`'s reason); it keeps waiting. */
  onUdpIgnored(reason: R): void;
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

/** Where a pool reports what it drops and what it does to its sockets (forward's metrics; never per query but strays). */
export interface UdpPoolSink {
  /** A datagram that matched no try (wrong source, too short, unknown ID on that socket): a metric label. */
  stray(reason: StrayReason): void;
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
  pool: UdpPool<string>;
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

/** Tries of another ID after a collision on the same socket before the query is counted as exhausted. */
const ID_TRIES = 8;

/**
 * The UDP sockets to one peer: `size` sockets, each bound by the kernel to a random port and connect()ed to
 * the peer (so ICMP errors come back and the kernel drops datagrams from other sources). Each try goes out on
 * a randomly chosen socket — a random permutation of the pool, redrawn every `size` tries, so consecutive queries
 * never share a port — with a random ID unique on that socket. Sockets are opened on first use, and retired
 * (closed once their last try is over) after `maxQueries` tries or `maxAgeMs`, so ports keep changing.
 *
 * Tries in flight are found by (socket, ID) in a fixed-size table (`probeTable.ts`: open addressing, linear
 * probing, deletion by backward shift): no per-query allocation. A datagram is taken only when it arrived on the socket its query
 * left from, from the peer's address and port, with the ID of that query, and its owner's `check` passes.
 */
export class UdpPool<R extends string = string> {
  readonly stats: UdpPoolStats = { opened: 0, retired: 0, idCollisions: 0, exhausted: 0, unmatched: 0 };
  /** Sockets in use, by pool position (null: not open yet, or retired and not yet replaced). */
  private readonly active: (PoolSocket | null)[];
  /** Every open socket (active or draining) by sid. */
  private readonly bySid: (PoolSocket | null)[];
  private readonly freeSids: number[] = [];
  private readonly order: Uint8Array | Uint16Array;
  private orderPos: number;
  /** Tries in flight by (sid << 16) | ID. */
  private readonly tries: ProbeTable<UdpTryOwner<R>>;
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
    this.tries = new ProbeTable<UdpTryOwner<R>>(opts.maxInFlight);
  }

  /** Tries in flight. */
  get inFlight(): number {
    return this.tries.size;
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
   * Sends `owner.query` (its ID written here: a random one, or `fixedId` for a caller that chose its own) on a
   * random socket. Returns the try's key for `cancel`, or -1 when the table is full or the ID is taken (counted:
   * the caller treats it as its own shortage, like EMFILE).
   */
  send(owner: UdpTryOwner<R>, fixedId = -1): number {
    if (this.closed || this.tries.size >= this.opts.maxInFlight) {
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
    let id = fixedId < 0 ? nextId() : fixedId & 0xffff;
    let key = (sock.sid << 16) | id;
    let tries = fixedId < 0 ? 0 : ID_TRIES - 1;
    while (this.tries.first(key) !== -1) {
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
    this.tries.add(key, owner);
    sock.live++;
    sock.sends++;
    put16(owner.query, 0, id);
    if (sock.ready) sock.send(owner.query);
    else if (sock.queued === null) sock.queued = [key];
    else sock.queued.push(key);
    return key;
  }

  /** Ends a try: no more events reach its owner (a no-op when it already ended). */
  cancel(key: number, owner: UdpTryOwner<R>): void {
    if (key < 0) return;
    const slot = this.tries.slotOf(key, owner);
    if (slot === -1) return;
    this.tries.removeAt(slot);
    this.release(this.bySid[key >>> 16]);
  }

  close(): void {
    this.closed = true;
    for (let s = 0; s < this.bySid.length; s++) {
      const sock = this.bySid[s];
      if (sock !== null) this.closeSocket(sock);
    }
    this.active.fill(null);
    this.tries.clear();
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
    try {
      // Node calls back a failed connect (no route, a zone that names no interface) with the error and no `this`.
      sock.connect(this.port, this.host, (err?: Error) => (err ? this.failSocket(sock, err) : this.connected(sock)));
    } catch (err) {
      // A bad port or address throws here rather than failing in the callback: the socket never counts as open.
      this.freeSids.push(sid);
      sock.close();
      throw err;
    }
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
    const failed: UdpTryOwner<R>[] = [];
    const tries = this.tries;
    for (let slot = 0; slot < tries.capacity; ) {
      const owner = tries.at(slot);
      if (owner !== null && tries.keyAt(slot) >>> 16 === sidBits) {
        failed.push(owner);
        // The backward shift may move another key into this slot: look at it again.
        tries.removeAt(slot);
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
      const slot = this.tries.first(key);
      if (slot !== -1) sock.send((this.tries.at(slot) as UdpTryOwner<R>).query);
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
    const slot = this.tries.first((sock.sid << 16) | (msg[0] << 8) | msg[1]);
    if (slot === -1) {
      this.stats.unmatched++;
      this.sink.stray('id');
      return;
    }
    const owner = this.tries.at(slot) as UdpTryOwner<R>;
    const why = owner.check(msg);
    if (why !== undefined) {
      owner.onUdpIgnored(why);
      return;
    }
    this.tries.removeAt(slot);
    this.release(sock);
    owner.onUdpReply(msg);
  }
}

function onPoolMessage(this: PoolSocket, msg: Buffer, rinfo: dgram.RemoteInfo): void {
  this.pool.received(this, msg, rinfo);
}

function onPoolError(this: PoolSocket, err: Error): void {
  this.pool.failSocket(this, err);
}
