import * as dgram from 'node:dgram';
import * as net from 'node:net';
import * as os from 'node:os';
import { monotonicClock } from './clock';

/** One `listen:` entry, parsed. */
export interface ListenSpec {
  readonly transport: 'udp' | 'tcp';
  readonly host: string;
  readonly port: number;
  /** As written, e.g. `udp://[::]:53`. */
  readonly text: string;
}

/** Where a query came from and which local address it reached. */
export interface PeerInfo {
  readonly address: string;
  readonly port: number;
  readonly family: 4 | 6;
  readonly localAddress: string;
}

export type Reply = (bytes: Buffer) => void;

/** Why the server closed a TCP connection (beside the client closing it or shutdown). */
export type TcpCloseReason = 'evicted' | 'per_client' | 'read_timeout' | 'idle_timeout' | 'drain_timeout' | 'half_closed';

/** What a listener hands each received message to. `done` is called once the reply (if any) is sent. */
export interface MessageSink {
  onMessage(raw: Buffer, peer: PeerInfo, transport: 'udp' | 'tcp', reply: Reply, done: () => void): void;
  onTcpConnection(open: boolean): void;
  /** A connection refused at accept: the limit is reached and no idle connection could make room. */
  onTcpRefused(): void;
  onTcpClosed(reason: TcpCloseReason): void;
  /** A connection stopped (true) or resumed (false) reading because its unsent replies passed the bound. */
  onTcpPaused(paused: boolean): void;
  /** A connection stopped being read because `max_inflight` of its queries are in flight. */
  onTcpInflightFull(): void;
  onDropped(reason: string): void;
  onSendError(transport: 'udp' | 'tcp'): void;
}

export interface TcpLimits {
  /** A connection with no complete message for this long (and nothing in flight) is closed. */
  readonly idleTimeoutMs: number;
  readonly maxConnections: number;
  readonly maxInFlightPerConnection: number;
  /** A message must arrive whole within this long of its first byte (RFC 7766 §6.2.3). */
  readonly readTimeoutMs?: number;
  /** Connections one source address may hold open. */
  readonly maxPerClient?: number;
  /** Above this many unsent reply bytes a connection stops reading (and dispatching) until they drain. */
  readonly maxUnsentBytes?: number;
  /** A connection whose unsent replies do not drain below the bound within this long is closed. */
  readonly drainTimeoutMs?: number;
}

export const TCP_DEFAULTS = { readTimeoutMs: 3_000, maxPerClient: 64, maxUnsentBytes: 128 * 1024, drainTimeoutMs: 5_000 } as const;

/** A bind failure in words a NAS owner can act on. */
export class ListenError extends Error {
  readonly spec: ListenSpec;
  readonly code: string | undefined;
  constructor(spec: ListenSpec, err: NodeJS.ErrnoException) {
    super(describeBindError(spec, err));
    this.name = 'ListenError';
    this.spec = spec;
    this.code = err.code;
  }
}

export function describeBindError(spec: ListenSpec, err: NodeJS.ErrnoException, stubListener = systemdResolvedStub()): string {
  if (err.code === 'EADDRINUSE') {
    let msg = `${spec.text}: address already in use`;
    if (spec.port === 53 && stubListener) {
      msg += ' — systemd-resolved\'s stub listener holds port 53: set DNSStubListener=no in /etc/systemd/resolved.conf and run `systemctl restart systemd-resolved`';
    }
    return msg;
  }
  if (err.code === 'EACCES' && spec.port < 1024) {
    return `${spec.text}: permission denied binding a port below 1024 — run with CAP_NET_BIND_SERVICE (systemd: AmbientCapabilities=CAP_NET_BIND_SERVICE; by hand: setcap cap_net_bind_service=+ep $(which node)) or use a port above 1023`;
  }
  if (err.code === 'EADDRNOTAVAIL') return `${spec.text}: ${spec.host} is not an address of this machine`;
  return `${spec.text}: ${err.message}`;
}

function systemdResolvedStub(): boolean {
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const fs = require('node:fs') as typeof import('node:fs');
    return fs.existsSync('/run/systemd/resolve/stub-resolv.conf');
  } catch {
    return false;
  }
}

export function isWildcard(host: string): boolean {
  return host === '0.0.0.0' || host === '::';
}

/** The machine's own addresses of one family: a wildcard UDP listener binds each of them. */
export function localAddresses(family: 4 | 6): string[] {
  const out: string[] = [];
  for (const [name, addrs] of Object.entries(os.networkInterfaces())) {
    for (const a of addrs ?? []) {
      if ((family === 4) !== (a.family === 'IPv4')) continue;
      out.push(family === 6 && a.address.toLowerCase().startsWith('fe80:') ? `${a.address}%${name}` : a.address);
    }
  }
  return out;
}

/**
 * A UDP listener. A wildcard address becomes one socket per local address (re-checked on `refresh()`), because
 * Node cannot choose a reply's source address: a reply must leave from the address the query reached.
 */
export class UdpListener {
  readonly spec: ListenSpec;
  private readonly sockets = new Map<string, dgram.Socket>();
  private boundPort = 0;
  constructor(spec: ListenSpec, private readonly sink: MessageSink) {
    this.spec = spec;
  }

  get port(): number {
    return this.boundPort;
  }

  addresses(): string[] {
    return [...this.sockets.keys()];
  }

  async start(): Promise<void> {
    if (!isWildcard(this.spec.host)) {
      await this.bindOne(this.spec.host);
      return;
    }
    const family = this.spec.host === '::' ? 6 : 4;
    const addrs = localAddresses(family);
    for (const a of addrs) await this.bindOne(a);
  }

  /** Follows address changes of a wildcard listener: binds new local addresses, closes vanished ones. */
  async refresh(onError: (err: Error) => void): Promise<void> {
    if (!isWildcard(this.spec.host)) return;
    const now = new Set(localAddresses(this.spec.host === '::' ? 6 : 4));
    for (const [addr, sock] of this.sockets) {
      if (!now.has(addr)) {
        sock.close();
        this.sockets.delete(addr);
      }
    }
    for (const a of now) {
      if (this.sockets.has(a)) continue;
      try {
        await this.bindOne(a);
      } catch (err) {
        onError(err as Error);
      }
    }
  }

  private bindOne(address: string): Promise<void> {
    const family: 4 | 6 = net.isIPv6(address.split('%')[0]) ? 6 : 4;
    // A larger receive buffer absorbs a burst while the event loop is busy (a reload, a GC pause) instead of
    // letting the kernel drop it: 208 KB is only ~100 ms at a few thousand queries/s. Linux caps it at rmem_max.
    const sock = dgram.createSocket({ type: family === 6 ? 'udp6' : 'udp4', ipv6Only: family === 6, recvBufferSize: UDP_RECV_BUFFER, lookup: literalLookup });
    const localAddress = address.split('%')[0];
    return new Promise((resolve, reject) => {
      const onError = (err: NodeJS.ErrnoException): void => {
        sock.close();
        reject(new ListenError({ ...this.spec, text: `${this.spec.transport}://${family === 6 ? `[${address}]` : address}:${this.spec.port}` }, err));
      };
      sock.once('error', onError);
      sock.bind({ address, port: this.boundPort || this.spec.port, exclusive: true }, () => {
        sock.off('error', onError);
        sock.on('error', () => undefined);
        this.boundPort = sock.address().port;
        this.sockets.set(address, sock);
        const sink = this.sink;
        // One callback per socket: a failed send (an unreachable or forged source) is counted, never thrown.
        const sent = (err: Error | null): void => {
          if (err) sink.onSendError('udp');
        };
        sock.on('message', (msg, rinfo) => {
          // Port 0 cannot be replied to (send throws): only a forged or broken source sends from it.
          if (rinfo.port === 0) return sink.onDropped('source_port_0');
          const peer: PeerInfo = { address: rinfo.address, port: rinfo.port, family: rinfo.family === 'IPv6' ? 6 : 4, localAddress };
          sink.onMessage(msg, peer, 'udp', (bytes) => {
            try {
              sock.send(bytes, rinfo.port, rinfo.address, sent);
            } catch {
              // Synchronous failures: the socket was closed by a reload meanwhile, or an address Node refuses.
              sink.onSendError('udp');
            }
          }, noop);
        });
        resolve();
      });
    });
  }

  async close(): Promise<void> {
    await Promise.all([...this.sockets.values()].map((s) => new Promise<void>((r) => s.close(() => r()))));
    this.sockets.clear();
  }
}

function noop(): void {}

/**
 * A listener's socket only ever resolves IP literals — its own address (the configuration refuses a name in
 * `listen`) and each client's source address — so the lookup answers at once. dns.lookup, the default, answers
 * an IP literal through process.nextTick, which cost one tick and one closure per reply. Node calls it as
 * `(address, family, callback)`; its typings describe dns.lookup's options object.
 */
const literalLookup = ((address: string, family: number, callback: (err: null, address: string, family: number) => void): void =>
  callback(null, address, family)) as unknown as NonNullable<dgram.SocketOptions['lookup']>;

const UDP_RECV_BUFFER = 4 * 1024 * 1024;

/**
 * A TCP connection's receive buffer: chunks are kept as they arrive and copied once into each complete message,
 * so a message sent a byte per segment costs O(length), not the O(length²) of concatenating on every chunk.
 */
export class Reassembly {
  private chunks: Buffer[] = [];
  private head = 0;
  /** Offset into chunks[head] already consumed. */
  private offset = 0;
  length = 0;

  push(chunk: Buffer): void {
    this.chunks.push(chunk);
    this.length += chunk.length;
  }

  /** True when a whole message (length prefix and body) is buffered. */
  hasMessage(): boolean {
    const len = this.peekLength();
    return len >= 0 && this.length >= len + 2;
  }

  /** The 16-bit length prefix at the front, or -1 when fewer than two bytes are buffered. */
  peekLength(): number {
    if (this.length < 2) return -1;
    const first = this.chunks[this.head];
    if (first.length - this.offset >= 2) return first.readUInt16BE(this.offset);
    return (first[this.offset] << 8) | this.chunks[this.head + 1][0];
  }

  /** Removes `skip` bytes, then returns the next `n` bytes as a buffer of their own. */
  take(skip: number, n: number): Buffer {
    this.discard(skip);
    const out = Buffer.allocUnsafe(n);
    let filled = 0;
    while (filled < n) {
      const c = this.chunks[this.head];
      const k = Math.min(c.length - this.offset, n - filled);
      c.copy(out, filled, this.offset, this.offset + k);
      filled += k;
      this.advance(k);
    }
    return out;
  }

  private discard(n: number): void {
    while (n > 0) {
      const k = Math.min(this.chunks[this.head].length - this.offset, n);
      n -= k;
      this.advance(k);
    }
  }

  private advance(k: number): void {
    this.offset += k;
    this.length -= k;
    if (this.offset === this.chunks[this.head].length) {
      this.chunks[this.head] = EMPTY;
      this.head++;
      this.offset = 0;
      if (this.head === this.chunks.length) {
        this.chunks = [];
        this.head = 0;
      } else if (this.head >= 1024) {
        this.chunks = this.chunks.slice(this.head);
        this.head = 0;
      }
    }
  }
}

const EMPTY = Buffer.alloc(0);

/** One accepted connection's state. Times are monotonic milliseconds. */
class TcpConn {
  inFlight = 0;
  /** Shutting down (the listener closes): finish what is in flight, read nothing more. */
  closing = false;
  /** The client shut its write side: answer what it sent, then end. */
  readEnded = false;
  /** Reading is paused because too many replies are unsent; since when (0: not blocked). */
  blockedSince = 0;
  paused = false;
  /** When the first byte of the message being received arrived (0: no partial message). */
  messageStartedAt = 0;
  /** The last complete message (or the accept): what the idle timeout and eviction go by. */
  lastMessageAt: number;
  readonly buf = new Reassembly();
  constructor(readonly sock: net.Socket, readonly peer: PeerInfo, now: number) {
    this.lastMessageAt = now;
  }

  get idle(): boolean {
    return this.inFlight === 0 && this.blockedSince === 0;
  }
}

/**
 * A TCP listener (RFC 7766): 2-byte length framing, many queries per connection, pipelined queries answered as
 * each completes. Nothing a client does can make it buffer without bound or hold others out: in-flight queries
 * per connection are capped; a connection whose unsent replies pass a bound stops being read (and dispatched)
 * until they drain, and is closed when they do not drain in time; a message must arrive whole within a deadline
 * from its first byte; the idle timeout is refreshed only by complete messages; connections are capped per
 * source address; and at the connection limit the connection idle the longest is closed to admit a new one.
 */
export class TcpListener {
  readonly spec: ListenSpec;
  private server: net.Server | null = null;
  private readonly conns = new Map<net.Socket, TcpConn>();
  private readonly perClient = new Map<string, number>();
  private sweepTimer: NodeJS.Timeout | null = null;
  private closing = false;
  constructor(spec: ListenSpec, private readonly sink: MessageSink, private limits: TcpLimits) {
    this.spec = spec;
  }

  get port(): number {
    const a = this.server?.address();
    return a && typeof a === 'object' ? a.port : 0;
  }

  get connections(): number {
    return this.conns.size;
  }

  setLimits(limits: TcpLimits): void {
    this.limits = limits;
    if (this.server !== null) this.startSweep();
  }

  start(): Promise<void> {
    // allowHalfOpen: a client may send its queries and shut its write side; it still gets its answers.
    const server = net.createServer({ noDelay: true, allowHalfOpen: true }, (sock) => this.accept(sock));
    this.server = server;
    return new Promise((resolve, reject) => {
      const onError = (err: NodeJS.ErrnoException): void => reject(new ListenError(this.spec, err));
      server.once('error', onError);
      server.listen({ host: this.spec.host, port: this.spec.port, exclusive: true, ipv6Only: this.spec.host === '::' }, () => {
        server.off('error', onError);
        server.on('error', () => undefined);
        this.startSweep();
        resolve();
      });
    });
  }

  private opt<K extends keyof typeof TCP_DEFAULTS>(k: K): number {
    return this.limits[k] ?? TCP_DEFAULTS[k];
  }

  /**
   * Deadlines are checked by one sweep per listener rather than a timer per connection and message: a
   * connection costs no timer churn, and a deadline is late by at most a quarter of the shortest one.
   */
  private startSweep(): void {
    if (this.sweepTimer !== null) clearInterval(this.sweepTimer);
    const shortest = Math.min(this.limits.idleTimeoutMs, this.opt('readTimeoutMs'), this.opt('drainTimeoutMs'));
    const every = Math.max(25, Math.min(1000, Math.floor(shortest / 4)));
    this.sweepTimer = setInterval(() => this.sweep(), every);
    this.sweepTimer.unref();
  }

  private sweep(): void {
    const now = monotonicClock.now();
    const idleMs = this.limits.idleTimeoutMs;
    const readMs = this.opt('readTimeoutMs');
    const drainMs = this.opt('drainTimeoutMs');
    for (const c of this.conns.values()) {
      if (c.sock.destroyed) continue;
      if (c.blockedSince !== 0) {
        if (now - c.blockedSince >= drainMs) this.drop(c, 'drain_timeout');
        continue;
      }
      // A complete message waiting for an in-flight slot is our delay, not the client's.
      if (c.messageStartedAt !== 0 && now - c.messageStartedAt >= readMs && !c.buf.hasMessage()) this.drop(c, 'read_timeout');
      else if (c.inFlight === 0 && c.messageStartedAt === 0 && now - c.lastMessageAt >= idleMs) this.drop(c, 'idle_timeout');
    }
  }

  private drop(c: TcpConn, reason: TcpCloseReason): void {
    this.sink.onTcpClosed(reason);
    c.sock.destroy();
  }

  /** At the limit, the connection with no work that completed a message longest ago makes room. */
  private evictIdlest(): boolean {
    let victim: TcpConn | undefined;
    for (const c of this.conns.values()) {
      if (c.sock.destroyed || !c.idle) continue;
      if (victim === undefined || c.lastMessageAt < victim.lastMessageAt) victim = c;
    }
    if (victim === undefined) return false;
    this.drop(victim, 'evicted');
    // 'close' is emitted later: forget it now so the new connection fits.
    this.forget(victim);
    return true;
  }

  private forget(c: TcpConn): void {
    if (!this.conns.delete(c.sock)) return;
    const n = (this.perClient.get(c.peer.address) ?? 1) - 1;
    if (n <= 0) this.perClient.delete(c.peer.address);
    else this.perClient.set(c.peer.address, n);
    this.sink.onTcpConnection(false);
  }

  private accept(sock: net.Socket): void {
    sock.on('error', () => undefined);
    if (this.closing) {
      this.sink.onTcpRefused();
      sock.destroy();
      return;
    }
    const address = sock.remoteAddress ?? '';
    if ((this.perClient.get(address) ?? 0) >= this.opt('maxPerClient')) {
      this.sink.onTcpClosed('per_client');
      sock.destroy();
      return;
    }
    if (this.conns.size >= this.limits.maxConnections && !this.evictIdlest()) {
      this.sink.onTcpRefused();
      sock.destroy();
      return;
    }
    const now = monotonicClock.now();
    const peer: PeerInfo = {
      address,
      port: sock.remotePort ?? 0,
      family: sock.remoteFamily === 'IPv6' ? 6 : 4,
      localAddress: sock.localAddress ?? '',
    };
    const c = new TcpConn(sock, peer, now);
    this.conns.set(sock, c);
    this.perClient.set(address, (this.perClient.get(address) ?? 0) + 1);
    this.sink.onTcpConnection(true);
    const limits = this.limits;
    const maxUnsent = this.opt('maxUnsentBytes');
    const sink = this.sink;

    const setPaused = (paused: boolean): void => {
      if (paused === c.paused) return;
      c.paused = paused;
      if (paused) sock.pause();
      else {
        // The rest of a partial message could not arrive while we were not reading: its deadline starts again.
        if (c.messageStartedAt !== 0) c.messageStartedAt = monotonicClock.now();
        sock.resume();
      }
    };
    const finishIfDone = (): boolean => {
      if (c.inFlight !== 0) return false;
      if (c.closing) {
        sock.destroy();
        return true;
      }
      if (c.readEnded && c.blockedSince === 0 && !c.buf.hasMessage()) {
        // The client will send nothing more and has every answer: end our side once they are flushed.
        sink.onTcpClosed('half_closed');
        sock.end();
        return true;
      }
      return false;
    };
    const written = (err: Error | null | undefined): void => {
      if (err) sink.onSendError('tcp');
    };
    const reply: Reply = (bytes) => {
      if (sock.destroyed || !sock.writable) return;
      const frame = Buffer.allocUnsafe(bytes.length + 2);
      frame.writeUInt16BE(bytes.length, 0);
      bytes.copy(frame, 2);
      sock.write(frame, written);
      if (sock.writableLength > maxUnsent && c.blockedSince === 0) {
        c.blockedSince = monotonicClock.now();
        sink.onTcpPaused(true);
        setPaused(true);
      }
    };
    const done = (): void => {
      c.inFlight--;
      if (finishIfDone()) return;
      pump();
    };
    /**
     * Dispatches every complete buffered message the limits allow, then decides whether to keep reading. A
     * cache hit completes synchronously and calls `done` from inside `onMessage`: the loop, not recursion, takes
     * the next message (40,000 pipelined hits would otherwise overflow the stack).
     */
    let pumping = false;
    const pump = (): void => {
      if (pumping) return;
      pumping = true;
      try {
        drainBuffered();
      } finally {
        pumping = false;
      }
      if (sock.destroyed) return;
      if (c.readEnded) {
        finishIfDone();
        return;
      }
      const full = c.inFlight >= limits.maxInFlightPerConnection;
      if (full && !c.paused && c.blockedSince === 0 && !c.closing) sink.onTcpInflightFull();
      setPaused(c.closing || c.blockedSince !== 0 || full);
    };
    const drainBuffered = (): void => {
      while (!c.closing && c.blockedSince === 0 && c.inFlight < limits.maxInFlightPerConnection) {
        const len = c.buf.peekLength();
        if (len < 0 || c.buf.length < len + 2) break;
        const msg = c.buf.take(2, len);
        const t = monotonicClock.now();
        c.lastMessageAt = t;
        // What is left is the start of the next message: its deadline runs from now.
        c.messageStartedAt = c.buf.length > 0 ? t : 0;
        c.inFlight++;
        sink.onMessage(msg, peer, 'tcp', reply, done);
        if (sock.destroyed) return;
      }
    };
    sock.on('drain', () => {
      if (c.blockedSince === 0) return;
      c.blockedSince = 0;
      sink.onTcpPaused(false);
      if (!finishIfDone()) pump();
    });
    sock.on('close', () => {
      if (c.blockedSince !== 0) {
        c.blockedSince = 0;
        sink.onTcpPaused(false);
      }
      this.forget(c);
    });
    sock.on('end', () => {
      c.readEnded = true;
      if (!finishIfDone()) pump();
    });
    sock.on('data', (chunk: Buffer) => {
      if (c.buf.length === 0 && c.messageStartedAt === 0) c.messageStartedAt = monotonicClock.now();
      c.buf.push(chunk);
      pump();
    });
  }

  /** Stops accepting; open connections finish their in-flight queries until `graceMs`, then close. */
  async close(graceMs = 0): Promise<void> {
    const server = this.server;
    this.server = null;
    if (!server) return;
    this.closing = true;
    if (this.sweepTimer !== null) clearInterval(this.sweepTimer);
    this.sweepTimer = null;
    const closed = new Promise<void>((r) => server.close(() => r()));
    for (const c of this.conns.values()) {
      c.closing = true;
      if (c.inFlight === 0) c.sock.destroy();
      else c.sock.pause();
    }
    const timer = setTimeout(() => {
      for (const c of this.conns.values()) c.sock.destroy();
    }, graceMs);
    await closed;
    clearTimeout(timer);
  }
}
