/** Free loopback ports for the peers, and the wait until a peer answers. */
import dgram from 'node:dgram';
import net from 'node:net';
import { encodeQuery } from '../common';
import type { Managed } from './processes';
import { READY_MS } from './settings';


const usedPorts = new Set<number>();

function tryUdp(port: number): Promise<number | null> {
  return new Promise((resolve) => {
    const s = dgram.createSocket('udp4');
    s.once('error', () => {
      s.close();
      resolve(null);
    });
    s.bind(port, '127.0.0.1', () => {
      const p = s.address().port;
      s.close(() => resolve(p));
    });
  });
}

function tryTcp(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const srv = net.createServer();
    srv.once('error', () => resolve(false));
    srv.listen(port, '127.0.0.1', () => srv.close(() => resolve(true)));
  });
}

/** A high port free on 127.0.0.1 for both UDP and TCP. */
export async function freePort(): Promise<number> {
  for (let i = 0; i < 50; i++) {
    const p = await tryUdp(0);
    if (p === null || p < 1024 || usedPorts.has(p)) continue;
    if (await tryTcp(p)) {
      usedPorts.add(p);
      return p;
    }
  }
  throw new Error('no free port on 127.0.0.1');
}

/** What the wait needs of a process it watches: a peer (`Managed`) or a bench's own child. */
export type ReadyWatch = Pick<Managed, 'exited' | 'output'> & { exitNote?: string };

/** Send a query until a NOERROR answer with at least one record comes back (bounded). */
export async function waitReady(port: number, m: ReadyWatch | null, timeoutMs = READY_MS): Promise<void> {
  const sock = dgram.createSocket('udp4');
  let lastNote = 'no reply';
  try {
    await new Promise<void>((resolve) => sock.bind(0, '127.0.0.1', () => resolve()));
    const ok = await new Promise<boolean>((resolve) => {
      let id = 1;
      const deadline = Date.now() + timeoutMs;
      const timer = setInterval(() => {
        if (Date.now() > deadline || (m !== null && m.exited)) {
          clearInterval(timer);
          resolve(false);
          return;
        }
        id = (id + 1) & 0xffff;
        sock.send(encodeQuery(id, `ready-${id}.bench.test`), port, '127.0.0.1');
      }, 100);
      sock.on('message', (msg) => {
        if (msg.length < 12 || msg.readUInt16BE(0) !== id) return;
        const rcode = msg[3]! & 0x0f;
        const ancount = msg.readUInt16BE(6);
        if (rcode === 0 && ancount > 0) {
          clearInterval(timer);
          resolve(true);
        } else {
          lastNote = `rcode ${rcode}, ${ancount} answers`;
        }
      });
    });
    if (!ok) {
      const why = m !== null && m.exited ? `exited${m.exitNote ? ` (${m.exitNote})` : ''}` : `no good answer within ${timeoutMs} ms (${lastNote})`;
      throw new Error(`127.0.0.1:${port} not ready: ${why}${m !== null && m.output ? `\n--- output ---\n${m.output.trim()}` : ''}`);
    }
  } finally {
    sock.close();
  }
}
