/**
 * One UDP request / reply exchange, on the shared engine (udpPool.ts) with a pool of one socket used once:
 * discovery's rdns, netbios and mdns probes.
 *
 * - A fresh socket per exchange, bound by the kernel to a random ephemeral port (Linux randomises within
 *   ip_local_port_range), so an off-path attacker must guess port and ID together.
 * - The socket is connect()ed to the target: the kernel drops datagrams from any other address or port, and an
 *   ICMP port-unreachable comes back as ECONNREFUSED instead of leaving us to wait for the timeout.
 * - A datagram from the target with the payload's ID is shown to `accept`, which returns a value for the reply it
 *   was waiting for and undefined for anything else (wrong question, garbage): those are ignored and the wait
 *   goes on until the deadline.
 */
import { isIPv4, isIPv6 } from 'node:net';
import { splitZone } from './address';
import { canonicalIp } from './endpoints';
import { UdpPool, type UdpPoolOptions, type UdpPoolSink, type UdpTryOwner } from './udpPool';

export type ExchangeResult<T> =
  | { kind: 'reply'; value: T }
  | { kind: 'timeout' }
  | { kind: 'aborted' }
  /** A socket error: `code` is the errno name (ECONNREFUSED, EHOSTUNREACH, ENETUNREACH, EACCES…). */
  | { kind: 'error'; code: string; message: string };

export interface ExchangeOptions<T> {
  /** An IP literal; an IPv6 link-local address keeps its zone id (`fe80::1%eth0`) so the packet leaves the right interface. */
  host: string;
  port: number;
  /** The request, its ID in the first two bytes (every protocol spoken here has one there: DNS, mDNS, NetBIOS). */
  payload: Uint8Array;
  timeoutMs: number;
  signal?: AbortSignal;
  /** Returns the decoded reply, or undefined to ignore the datagram and keep waiting. Must not throw (a throw counts as undefined). */
  accept(msg: Buffer): T | undefined;
}

/** The socket family for an IP literal, or undefined when `host` is not one (names are refused: no DNS here). */
export function udpFamily(host: string): 'udp4' | 'udp6' | undefined {
  const { address } = splitZone(host);
  if (isIPv4(address)) return 'udp4';
  if (isIPv6(address)) return 'udp6';
  return undefined;
}

/** One socket, one try: the socket is closed with the exchange. */
const ONE_SHOT: UdpPoolOptions = { size: 1, maxInFlight: 1, maxQueries: 1, maxAgeMs: Number.MAX_SAFE_INTEGER };

const uncounted = { inc(): void {} };
/** Probes count their outcomes themselves (discovery's metrics); the engine's strays and socket counts are not kept. */
const NO_SINK: UdpPoolSink = { stray(): void {}, opened: uncounted, retired: uncounted, idCollisions: uncounted, exhausted: uncounted };

export function udpExchange<T>(opts: ExchangeOptions<T>): Promise<ExchangeResult<T>> {
  const type = udpFamily(opts.host);
  if (!type) {
    return Promise.resolve({ kind: 'error', code: 'EINVAL', message: `not an IP address: ${opts.host}` });
  }
  if (opts.payload.length < 12) {
    return Promise.resolve({ kind: 'error', code: 'EINVAL', message: `a request of ${opts.payload.length} bytes has no header` });
  }
  if (opts.signal?.aborted) return Promise.resolve({ kind: 'aborted' });
  return new Promise<ExchangeResult<T>>((resolve) => new OneShot(opts, type === 'udp6' ? 6 : 4, resolve).start());
}

class OneShot<T> implements UdpTryOwner<'not_answer'> {
  readonly query: Buffer;
  private readonly pool: UdpPool<'not_answer'>;
  private key = -1;
  private timer: NodeJS.Timeout | undefined;
  private value: T | undefined;
  private done = false;
  private readonly onAbort = (): void => this.finish({ kind: 'aborted' });

  constructor(
    private readonly opts: ExchangeOptions<T>,
    family: 4 | 6,
    private readonly resolve: (result: ExchangeResult<T>) => void,
  ) {
    // The engine writes the ID into the datagram: a copy, so the caller's payload is never touched.
    this.query = Buffer.from(opts.payload);
    // A scoped address is checked by the connected socket alone: Node reports the zone in its own spelling.
    const peer = splitZone(opts.host).zone !== undefined ? '' : canonicalIp(opts.host, family);
    this.pool = new UdpPool<'not_answer'>(family, opts.host, peer, opts.port, ONE_SHOT, NO_SINK);
  }

  start(): void {
    this.opts.signal?.addEventListener('abort', this.onAbort, { once: true });
    this.timer = setTimeout(() => this.finish({ kind: 'timeout' }), Math.max(1, this.opts.timeoutMs));
    try {
      this.key = this.pool.send(this, this.query.readUInt16BE(0));
    } catch (err) {
      this.onUdpError(err as Error);
      return;
    }
    if (this.key === -1) this.finish({ kind: 'error', code: 'EAGAIN', message: 'no socket for the exchange' });
  }

  check(reply: Buffer): 'not_answer' | undefined {
    let value: T | undefined;
    try {
      value = this.opts.accept(reply);
    } catch {
      value = undefined;
    }
    if (value === undefined) return 'not_answer';
    this.value = value;
    return undefined;
  }

  onUdpReply(): void {
    this.finish({ kind: 'reply', value: this.value as T });
  }

  onUdpError(err: Error): void {
    const e = err as NodeJS.ErrnoException;
    this.finish({ kind: 'error', code: typeof e?.code === 'string' ? e.code : 'EUNKNOWN', message: e?.message ?? String(err) });
  }

  onUdpIgnored(): void {
    /* not the answer: keep waiting until the deadline */
  }

  private finish(result: ExchangeResult<T>): void {
    if (this.done) return;
    this.done = true;
    if (this.timer) clearTimeout(this.timer);
    this.opts.signal?.removeEventListener('abort', this.onAbort);
    this.pool.cancel(this.key, this);
    this.pool.close();
    this.resolve(result);
  }
}
