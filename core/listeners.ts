import * as dgram from 'node:dgram';
import * as net from 'node:net';
import * as os from 'node:os';

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

/** What a listener hands each received message to. `done` is called once the reply (if any) is sent. */
export interface MessageSink {
  onMessage(raw: Buffer, peer: PeerInfo, transport: 'udp' | 'tcp', reply: Reply, done: () => void): void;
  onTcpConnection(open: boolean): void;
  onTcpRefused(): void;
}

export interface TcpLimits {
  readonly idleTimeoutMs: number;
  readonly maxConnections: number;
  readonly maxInFlightPerConnection: number;
}

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
    const sock = dgram.createSocket({ type: family === 6 ? 'udp6' : 'udp4', ipv6Only: family === 6, recvBufferSize: UDP_RECV_BUFFER });
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
        sock.on('message', (msg, rinfo) => {
          const peer: PeerInfo = { address: rinfo.address, port: rinfo.port, family: rinfo.family === 'IPv6' ? 6 : 4, localAddress };
          this.sink.onMessage(msg, peer, 'udp', (bytes) => sock.send(bytes, rinfo.port, rinfo.address), noop);
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

const UDP_RECV_BUFFER = 4 * 1024 * 1024;

/**
 * A TCP listener: 2-byte length framing, many queries per connection, pipelined queries answered as each
 * completes, bounded connections and in-flight queries per connection, and an idle timeout.
 */
export class TcpListener {
  readonly spec: ListenSpec;
  private server: net.Server | null = null;
  private readonly conns = new Map<net.Socket, { inFlight: number; closing: boolean }>();
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
  }

  start(): Promise<void> {
    const server = net.createServer({ noDelay: true }, (sock) => this.accept(sock));
    this.server = server;
    return new Promise((resolve, reject) => {
      const onError = (err: NodeJS.ErrnoException): void => reject(new ListenError(this.spec, err));
      server.once('error', onError);
      server.listen({ host: this.spec.host, port: this.spec.port, exclusive: true, ipv6Only: this.spec.host === '::' }, () => {
        server.off('error', onError);
        server.on('error', () => undefined);
        resolve();
      });
    });
  }

  private accept(sock: net.Socket): void {
    if (this.closing || this.conns.size >= this.limits.maxConnections) {
      this.sink.onTcpRefused();
      sock.destroy();
      return;
    }
    const state = { inFlight: 0, closing: false };
    this.conns.set(sock, state);
    this.sink.onTcpConnection(true);
    const peer: PeerInfo = {
      address: sock.remoteAddress ?? '',
      port: sock.remotePort ?? 0,
      family: sock.remoteFamily === 'IPv6' ? 6 : 4,
      localAddress: sock.localAddress ?? '',
    };
    let pending: Buffer = Buffer.alloc(0);
    let paused = false;
    const limits = this.limits;
    sock.setTimeout(limits.idleTimeoutMs, () => {
      if (state.inFlight === 0) sock.destroy();
    });
    sock.on('error', () => undefined);
    sock.on('close', () => {
      this.conns.delete(sock);
      this.sink.onTcpConnection(false);
    });
    const reply: Reply = (bytes) => {
      if (sock.destroyed) return;
      const frame = Buffer.allocUnsafe(bytes.length + 2);
      frame.writeUInt16BE(bytes.length, 0);
      bytes.copy(frame, 2);
      sock.write(frame);
    };
    const done = (): void => {
      state.inFlight--;
      if (state.closing) {
        if (state.inFlight === 0) sock.destroy();
        return;
      }
      if (paused && state.inFlight < limits.maxInFlightPerConnection) {
        paused = false;
        sock.resume();
        drain();
      }
    };
    const drain = (): void => {
      while (pending.length >= 2) {
        const len = pending.readUInt16BE(0);
        if (pending.length < len + 2) break;
        if (state.closing) return;
        if (state.inFlight >= limits.maxInFlightPerConnection) {
          paused = true;
          sock.pause();
          return;
        }
        const msg = Buffer.from(pending.subarray(2, len + 2));
        pending = pending.subarray(len + 2);
        state.inFlight++;
        this.sink.onMessage(msg, peer, 'tcp', reply, done);
      }
    };
    sock.on('data', (chunk: Buffer) => {
      pending = pending.length === 0 ? chunk : Buffer.concat([pending, chunk]);
      drain();
    });
  }

  /** Stops accepting; open connections finish their in-flight queries until `graceMs`, then close. */
  async close(graceMs = 0): Promise<void> {
    const server = this.server;
    this.server = null;
    if (!server) return;
    this.closing = true;
    const closed = new Promise<void>((r) => server.close(() => r()));
    for (const [s, st] of this.conns) {
      st.closing = true;
      if (st.inFlight === 0) s.destroy();
    }
    const timer = setTimeout(() => {
      for (const s of this.conns.keys()) s.destroy();
    }, graceMs);
    await closed;
    clearTimeout(timer);
  }
}
