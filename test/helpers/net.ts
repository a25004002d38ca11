// Small helpers many tests share: waiting (waitFor, sleep), and UDP sockets on 127.x addresses
// (responders the tests start themselves: NetBIOS, mDNS, PTR).
import * as dgram from 'node:dgram';
import * as dnsPacket from 'dns-packet';
import { reverseName } from '../../plugins/pkg/address';

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Polls `cond` every 20 ms; throws `timed out waiting for <what>` after `timeoutMs`. */
export async function waitFor(what: string, cond: () => boolean | Promise<boolean>, timeoutMs = 15_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    if (await cond()) return;
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

/** An octet for a 127.x.y.z test address (never 0, 1 or 255). */
export function randomOctet(): number {
  return 2 + Math.floor(Math.random() * 250);
}

export function closeSocket(s: dgram.Socket | undefined): Promise<void> {
  return new Promise((resolve) => {
    if (!s) return resolve();
    try {
      s.close(() => resolve());
    } catch {
      resolve();
    }
  });
}

/** Binds a UDP socket on `address:port`, or on `address:0` when that port cannot be had. */
export async function bindUdp(address: string, preferredPort: number): Promise<{ socket: dgram.Socket; port: number }> {
  for (const port of preferredPort === 0 ? [0] : [preferredPort, 0]) {
    const socket = dgram.createSocket('udp4');
    try {
      await new Promise<void>((resolve, reject) => {
        socket.once('error', reject);
        socket.bind(port, address, () => {
          socket.off('error', reject);
          resolve();
        });
      });
      socket.on('error', () => undefined);
      return { socket, port: socket.address().port };
    } catch {
      await closeSocket(socket);
    }
  }
  throw new Error(`cannot bind ${address}`);
}

/**
 * A unicast mDNS responder on `ip` (port 5353, or another free port): answers the reverse name of `ip` with a PTR
 * to `hostname`, to queries from ports other than 5353 (RFC 6762 §6.7's one-shot queries), as a device would.
 */
export async function startMdnsResponder(ip: string, hostname: string): Promise<{ socket: dgram.Socket; port: number }> {
  const bound = await bindUdp(ip, 5353);
  const ptrName = reverseName(ip);
  bound.socket.on('message', (msg, rinfo) => {
    let q: dnsPacket.DecodedPacket;
    try {
      q = dnsPacket.decode(msg);
    } catch {
      return;
    }
    const name = q.questions?.[0]?.name ?? '';
    if (rinfo.port === 5353 || name !== ptrName) return;
    bound.socket.send(
      dnsPacket.encode({ type: 'response', id: q.id, flags: dnsPacket.AUTHORITATIVE_ANSWER, questions: q.questions, answers: [{ type: 'PTR', name, class: 'IN', ttl: 120, data: hostname }] }),
      rinfo.port,
      rinfo.address,
    );
  });
  return bound;
}
