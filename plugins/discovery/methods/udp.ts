/**
 * One UDP request / reply exchange from a fresh socket, shared by rdns, netbios and mdns.
 *
 * - A new socket per exchange, bound to port 0: the kernel picks a random ephemeral source port (Linux
 *   randomises within ip_local_port_range), so an off-path attacker must guess port and ID together.
 * - The socket is connect()ed to the target: the kernel then drops datagrams from any other address or port,
 *   and reports an ICMP port-unreachable as ECONNREFUSED instead of leaving us to wait for the timeout.
 * - Every datagram that does get through is shown to `accept`, which returns a value for the reply it was
 *   waiting for and undefined for anything else (wrong ID, wrong question, garbage): those are ignored and the
 *   wait goes on until the deadline.
 */
import * as dgram from 'node:dgram';
import { isIPv4, isIPv6 } from 'node:net';
import * as ipaddr from 'ipaddr.js';
import { splitZone } from '../../pkg/address.js';

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
  payload: Uint8Array;
  timeoutMs: number;
  signal?: AbortSignal;
  /** Returns the decoded reply, or undefined to ignore the datagram and keep waiting. Must not throw (a throw counts as undefined). */
  accept(msg: Buffer, rinfo: dgram.RemoteInfo): T | undefined;
}

/** The socket family for an IP literal, or undefined when `host` is not one (names are refused: no DNS here). */
export function udpFamily(host: string): 'udp4' | 'udp6' | undefined {
  const { address } = splitZone(host);
  if (isIPv4(address)) return 'udp4';
  if (isIPv6(address)) return 'udp6';
  return undefined;
}

export function udpExchange<T>(opts: ExchangeOptions<T>): Promise<ExchangeResult<T>> {
  const type = udpFamily(opts.host);
  if (!type) {
    return Promise.resolve({ kind: 'error', code: 'EINVAL', message: `not an IP address: ${opts.host}` });
  }
  if (opts.signal?.aborted) return Promise.resolve({ kind: 'aborted' });

  return new Promise<ExchangeResult<T>>((resolve) => {
    let done = false;
    let socket: dgram.Socket | undefined;
    let timer: NodeJS.Timeout | undefined;

    const finish = (result: ExchangeResult<T>): void => {
      if (done) return;
      done = true;
      if (timer) clearTimeout(timer);
      opts.signal?.removeEventListener('abort', onAbort);
      if (socket) {
        const s = socket;
        s.removeAllListeners('message');
        // Late errors from a closing socket must not become unhandled 'error' events.
        s.removeAllListeners('error');
        s.on('error', () => undefined);
        try {
          s.close();
        } catch {
          /* already closed */
        }
      }
      resolve(result);
    };
    const fail = (err: unknown): void => {
      const e = err as NodeJS.ErrnoException;
      finish({ kind: 'error', code: typeof e?.code === 'string' ? e.code : 'EUNKNOWN', message: e?.message ?? String(err) });
    };
    const onAbort = (): void => finish({ kind: 'aborted' });

    opts.signal?.addEventListener('abort', onAbort, { once: true });
    timer = setTimeout(() => finish({ kind: 'timeout' }), Math.max(1, opts.timeoutMs));

    try {
      socket = dgram.createSocket({ type });
    } catch (err) {
      fail(err);
      return;
    }
    const s = socket;
    s.on('error', fail);
    s.on('message', (msg, rinfo) => {
      if (done) return;
      // The connected socket already filters by source; checked again so a platform that does not cannot
      // let a datagram from elsewhere through.
      if (rinfo.port !== opts.port || !sameHost(rinfo.address, opts.host)) return;
      let value: T | undefined;
      try {
        value = opts.accept(msg, rinfo);
      } catch {
        value = undefined;
      }
      if (value !== undefined) finish({ kind: 'reply', value });
    });
    try {
      s.bind(0, () => {
        if (done) return;
        try {
          s.connect(opts.port, opts.host, (err?: Error) => {
            if (done) return;
            if (err) {
              fail(err);
              return;
            }
            s.send(opts.payload, (sendErr) => {
              if (sendErr) fail(sendErr);
            });
          });
        } catch (err) {
          fail(err);
        }
      });
    } catch (err) {
      fail(err);
    }
  });
}

/** Same address, ignoring the zone id and the spelling of IPv6 (Node reports `fe80::1%eth0`). */
export function sameHost(a: string, b: string): boolean {
  const x = splitZone(a).address.toLowerCase();
  const y = splitZone(b).address.toLowerCase();
  if (x === y) return true;
  // Compare canonical IPv6 text only when cheap equality failed.
  if (x.includes(':') && y.includes(':')) {
    try {
      return ipaddr.IPv6.parse(x).toNormalizedString() === ipaddr.IPv6.parse(y).toNormalizedString();
    } catch {
      return false;
    }
  }
  return false;
}

/**
 * The lookups a method has in flight, so that close() can end them at once: each lookup gets its own
 * AbortController, aborted when the caller's signal aborts or when the method closes. Listeners on the
 * caller's signal are removed when the lookup ends (a long-lived signal must not collect them).
 */
export class Inflight {
  private readonly controllers = new Set<AbortController>();
  private closed = false;

  begin(signal: AbortSignal): { signal: AbortSignal; end(): void } {
    const ctl = new AbortController();
    if (this.closed || signal.aborted) {
      ctl.abort();
      return { signal: ctl.signal, end: () => undefined };
    }
    const onAbort = (): void => ctl.abort();
    signal.addEventListener('abort', onAbort, { once: true });
    this.controllers.add(ctl);
    return {
      signal: ctl.signal,
      end: (): void => {
        signal.removeEventListener('abort', onAbort);
        this.controllers.delete(ctl);
      },
    };
  }

  closeAll(): void {
    this.closed = true;
    for (const ctl of this.controllers) ctl.abort();
    this.controllers.clear();
  }
}
