/**
 * One upstream: its address, its health (consecutive failures, down/up, probes) and its pool of reused TCP
 * connections (pipelined, matched by ID and question, idle-closed, bounded).
 */
import * as net from 'node:net';
import { performance } from 'node:perf_hooks';
import type { Logger } from '../../core/log';
import { UdpPool, type UdpPoolOptions, type UdpTryOwner } from '../pkg/udpPool';
import { UDP_POOL_SIZE, UDP_SOCKET_MAX_AGE_MS, UDP_SOCKET_MAX_QUERIES, buildProbe, mismatch, nextId, questionEndOf, type RejectReason } from './exchange';
import { canonicalIp, type UpstreamAddress } from '../pkg/endpoints';

export { canonicalIp, parseUpstream, type UpstreamAddress } from '../pkg/endpoints';
import type { ForwardMetrics } from './metrics';
import { UpstreamMetrics } from './metrics';

// ---------------------------------------------------------------------------------------------- TCP

/** Who waits on a TCP exchange: its query (ID written by the pool) and where the outcome goes. */
export interface TcpOwner {
  readonly query: Buffer;
  readonly qEnd: number;
  onTcpReply(reply: Buffer): void;
  /** The connection failed before our answer came; `reused` when it had answered earlier queries (stale reuse). */
  onTcpError(err: Error, reused: boolean): void;
  onTcpIgnored(reason: RejectReason): void;
}

/** Connections per upstream, and queries pipelined on one before another is opened. */
export const TCP_MAX_CONNECTIONS = 8;
export const TCP_PIPELINE_SOFT = 32;
/** A connection with nothing in flight for this long is closed (CoreDNS's `expire` default). */
export const TCP_IDLE_MS = 10_000;

export class TcpConnection {
  readonly pending = new Map<number, TcpOwner>();
  /** Answers received: a connection that has answered before may have been closed by the upstream since. */
  answered = 0;
  closed = false;
  private readonly sock: net.Socket;
  private buf: Buffer = Buffer.alloc(0);

  constructor(private readonly pool: TcpPool, host: string, port: number) {
    const sock = net.connect({ host, port, noDelay: true });
    this.sock = sock;
    sock.setTimeout(TCP_IDLE_MS);
    sock.on('timeout', () => {
      if (this.pending.size === 0) this.destroy(new Error('idle'));
      // Still busy (slow answers): re-arm, so the connection closes once it does fall idle.
      else sock.setTimeout(TCP_IDLE_MS);
    });
    sock.on('data', (chunk: Buffer) => this.onData(chunk));
    sock.on('error', (err) => this.destroy(err));
    sock.on('close', () => this.destroy(new Error('connection closed by upstream')));
  }

  /** Writes `owner.query` with a fresh ID unique on this connection. */
  send(owner: TcpOwner): number {
    let id = nextId();
    while (this.pending.has(id)) id = nextId();
    owner.query.writeUInt16BE(id, 0);
    this.pending.set(id, owner);
    const frame = Buffer.allocUnsafe(owner.query.length + 2);
    frame.writeUInt16BE(owner.query.length, 0);
    owner.query.copy(frame, 2);
    this.sock.write(frame);
    return id;
  }

  cancel(id: number, owner: TcpOwner): void {
    if (this.pending.get(id) === owner) this.pending.delete(id);
  }

  private onData(chunk: Buffer): void {
    this.buf = this.buf.length === 0 ? chunk : Buffer.concat([this.buf, chunk]);
    while (this.buf.length >= 2) {
      const len = this.buf.readUInt16BE(0);
      if (this.buf.length < len + 2) break;
      const msg = this.buf.subarray(2, len + 2);
      this.buf = this.buf.subarray(len + 2);
      this.onMessage(msg);
      if (this.closed) return;
    }
  }

  private onMessage(msg: Buffer): void {
    if (msg.length < 12) return;
    const owner = this.pending.get(msg.readUInt16BE(0));
    if (owner === undefined) {
      this.pool.ignored('id');
      return;
    }
    const why = mismatch(msg, owner.query, owner.qEnd);
    if (why !== undefined) {
      owner.onTcpIgnored(why);
      return;
    }
    this.pending.delete(msg.readUInt16BE(0));
    this.answered++;
    // A copy: the answer may be cached, and must not pin the whole read chunk.
    owner.onTcpReply(Buffer.from(msg));
  }

  get load(): number {
    return this.pending.size;
  }

  destroy(err: Error): void {
    if (this.closed) return;
    this.closed = true;
    this.pool.remove(this);
    this.sock.destroy();
    const waiting = [...this.pending.values()];
    this.pending.clear();
    const reused = this.answered > 0;
    for (const o of waiting) o.onTcpError(err, reused);
  }
}

/** The reused TCP connections to one upstream. */
export class TcpPool {
  private readonly conns: TcpConnection[] = [];

  constructor(private readonly host: string, private readonly port: number, private readonly onIgnored: (reason: string) => void) {}

  /**
   * Sends on the least-loaded connection, opening another while under the bound when all are busy (or when
   * `freshConnection` asks for one: the retry after a reused connection turned out stale). Returns the
   * connection and the ID written into the query.
   */
  send(owner: TcpOwner, freshConnection = false): { conn: TcpConnection; id: number } {
    let best: TcpConnection | undefined;
    for (const c of this.conns) if (best === undefined || c.load < best.load) best = c;
    if (this.conns.length < TCP_MAX_CONNECTIONS && (best === undefined || freshConnection || best.load >= TCP_PIPELINE_SOFT)) {
      best = new TcpConnection(this, this.host, this.port);
      this.conns.push(best);
    }
    const conn = best as TcpConnection;
    return { conn, id: conn.send(owner) };
  }

  get size(): number {
    return this.conns.length;
  }

  remove(c: TcpConnection): void {
    const i = this.conns.indexOf(c);
    if (i !== -1) this.conns.splice(i, 1);
  }

  ignored(reason: string): void {
    this.onIgnored(reason);
  }

  close(): void {
    for (const c of [...this.conns]) c.destroy(new Error('shutting down'));
  }
}

// ---------------------------------------------------------------------------------------------- upstream

export interface HealthOptions {
  readonly maxFails: number;
  readonly timeoutMs: number;
  readonly forceTcp: boolean;
  readonly ednsSize: number;
}

/** One upstream server and its health. */
export class Upstream implements UpstreamAddress {
  readonly host: string;
  readonly port: number;
  readonly family: 4 | 6;
  readonly label: string;
  /** The source address its datagrams arrive from ('' for a scoped address: the connected socket checks it). */
  readonly peerAddress: string;
  readonly tcp: TcpPool;
  /** The UDP sockets its tries go out on. */
  readonly udp: UdpPool<RejectReason>;
  readonly m: UpstreamMetrics;
  private readonly unregisterPool: () => void;
  /**
   * Consecutive failures that count against the upstream: failed health probes and transport errors (CoreDNS's
   * rule). A try that merely timed out is not one: the authority behind a good upstream may be slow or lame for
   * that one name. It triggers a probe instead. Reset by any answer.
   */
  fails = 0;
  down = false;
  /** Monotonic ms when it was last marked down (the wait before a recovery trial counts from it). */
  downAt = -Infinity;
  /** The health probe in flight, if any (at most one). */
  probing: Probe | null = null;
  /**
   * TCP to this upstream failed after it truncated over UDP, at this monotonic time: its TCP ability, tracked
   * apart from its UDP health (a firewall that drops port 53/TCP does not make the UDP answers worse).
   */
  tcpFailedAt = -Infinity;

  constructor(addr: UpstreamAddress, metrics: ForwardMetrics, private readonly log: Logger, pool: Partial<UdpPoolOptions> = {}) {
    this.host = addr.host;
    this.port = addr.port;
    this.family = addr.family;
    this.label = addr.label;
    this.peerAddress = addr.host.includes('%') ? '' : canonicalIp(addr.host, addr.family);
    this.tcp = new TcpPool(addr.host, addr.port, (reason) => metrics.ignored(reason));
    this.m = new UpstreamMetrics(metrics, addr.label);
    this.m.setUp(true);
    this.udp = new UdpPool(addr.family, addr.host, this.peerAddress, addr.port, {
      size: pool.size ?? UDP_POOL_SIZE,
      maxInFlight: pool.maxInFlight ?? 1024,
      maxQueries: pool.maxQueries ?? UDP_SOCKET_MAX_QUERIES,
      maxAgeMs: pool.maxAgeMs ?? UDP_SOCKET_MAX_AGE_MS,
    }, this.m.poolSink);
    this.unregisterPool = metrics.sources.registerPool(addr.label, this.udp);
  }

  /** A failure that counts (transport error, failed probe). Returns true when this marks the upstream down. */
  failed(maxFails: number, why: string): boolean {
    this.fails++;
    if (maxFails > 0 && !this.down && this.fails >= maxFails) {
      this.down = true;
      this.downAt = performance.now();
      this.m.setUp(false);
      this.log.warn('upstream marked down', { to: this.label, consecutive_failures: this.fails, last_error: why });
      return true;
    }
    return false;
  }

  /** Any answer (even SERVFAIL) proves the upstream is reachable. */
  answered(): void {
    this.fails = 0;
    if (this.down) {
      this.down = false;
      this.m.setUp(true);
      this.log.info('upstream is back up', { to: this.label });
    }
  }

  /** Whether health probes should go on (every `health_check`): it is down, or its last probe failed. */
  get suspect(): boolean {
    return this.down || this.fails > 0;
  }

  /**
   * Probes the upstream as CoreDNS does: `. IN NS` with RD=1; any reply that matches (whatever its RCODE) means
   * it is up; no reply within `timeout` counts as a failure toward `max_fails`. At most one probe at a time.
   */
  probe(opts: HealthOptions): void {
    if (this.probing !== null) return;
    this.probing = new Probe(this, opts);
    this.probing.start();
  }

  close(): void {
    this.probing?.cancel();
    this.tcp.close();
    this.udp.close();
    this.unregisterPool();
  }
}

class Probe implements UdpTryOwner<RejectReason>, TcpOwner {
  readonly query: Buffer;
  readonly qEnd: number;
  private udpKey = -1;
  private tcp: { conn: TcpConnection; id: number } | null = null;
  private timer: NodeJS.Timeout | null = null;
  private done = false;

  constructor(private readonly up: Upstream, private readonly opts: HealthOptions) {
    this.query = buildProbe(opts.ednsSize);
    this.qEnd = questionEndOf(this.query);
  }

  start(): void {
    this.timer = setTimeout(() => this.finish(false), this.opts.timeoutMs);
    this.timer.unref();
    this.up.m.requests.inc();
    if (this.opts.forceTcp) {
      this.tcp = this.up.tcp.send(this);
    } else {
      this.udpKey = this.up.udp.send(this);
      // A full pool is our own shortage: no verdict on the upstream.
      if (this.udpKey === -1) this.finish(null);
    }
  }

  /** Stops the probe without a verdict (shutdown). */
  cancel(): void {
    this.finish(null);
  }

  private finish(ok: boolean | null): void {
    if (this.done) return;
    this.done = true;
    if (this.timer !== null) clearTimeout(this.timer);
    this.up.udp.cancel(this.udpKey, this);
    this.udpKey = -1;
    if (this.tcp !== null) this.tcp.conn.cancel(this.tcp.id, this);
    this.up.probing = null;
    if (ok === true) this.up.answered();
    else if (ok === false) {
      this.up.m.healthcheckFailures.inc();
      this.up.failed(this.opts.maxFails, 'health probe got no answer');
    }
  }

  onUdpReply(): void {
    // A truncated answer is still an answer: the upstream is alive.
    this.finish(true);
  }
  onUdpError(): void {
    this.finish(false);
  }
  check(reply: Buffer): RejectReason | undefined {
    return mismatch(reply, this.query, this.qEnd);
  }
  onUdpIgnored(): void {
    /* keep waiting */
  }
  onTcpReply(): void {
    this.finish(true);
  }
  onTcpError(): void {
    this.finish(false);
  }
  onTcpIgnored(): void {
    /* keep waiting */
  }
}
