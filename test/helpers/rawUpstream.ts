/**
 * A scripted loopback upstream for wire-level cases the test kit's fake upstream cannot produce (authority and
 * additional sections, EDE options, question-less error replies, truncation with a closed TCP port): a real
 * UDP socket (and, unless `tcp: false`, a TCP listener on the same port) on 127.0.0.1 whose answer to each
 * query is whatever `answer` returns (null: stay silent).
 */
import * as dgram from 'node:dgram';
import * as net from 'node:net';
import * as dnsPacket from 'dns-packet';

export interface RawQuery {
  readonly raw: Buffer;
  readonly packet: dnsPacket.Packet;
  readonly name: string;
  readonly type: string;
  readonly flags: number;
  readonly transport: 'udp' | 'tcp';
  readonly hasOpt: boolean;
}

export type RawAnswer = (q: RawQuery) => Buffer | null;

export interface RawUpstream {
  readonly address: string;
  readonly port: number;
  readonly received: RawQuery[];
  count(name?: string): number;
  stop(): Promise<void>;
}

export async function startRawUpstream(answer: RawAnswer, opts: { tcp?: boolean } = {}): Promise<RawUpstream> {
  const udp = dgram.createSocket('udp4');
  await new Promise<void>((r) => udp.bind(0, '127.0.0.1', () => r()));
  const port = udp.address().port;
  const received: RawQuery[] = [];
  const parse = (raw: Buffer, transport: 'udp' | 'tcp'): RawQuery | null => {
    try {
      const packet = dnsPacket.decode(raw);
      const q = packet.questions?.[0];
      if (!q) return null;
      const hasOpt = (packet.additionals ?? []).some((r) => r.type === 'OPT');
      return { raw, packet, name: q.name.toLowerCase(), type: q.type, flags: raw.readUInt16BE(2), transport, hasOpt };
    } catch {
      return null;
    }
  };
  udp.on('message', (msg, rinfo) => {
    const q = parse(msg, 'udp');
    if (q === null) return;
    received.push(q);
    const out = answer(q);
    if (out !== null) udp.send(out, rinfo.port, rinfo.address);
  });
  let tcp: net.Server | null = null;
  const socks = new Set<net.Socket>();
  if (opts.tcp !== false) {
    tcp = net.createServer((sock) => {
      socks.add(sock);
      sock.on('close', () => socks.delete(sock));
      sock.on('error', () => undefined);
      let buf = Buffer.alloc(0);
      sock.on('data', (d: Buffer) => {
        buf = Buffer.concat([buf, d]);
        while (buf.length >= 2 && buf.length >= buf.readUInt16BE(0) + 2) {
          const msg = Buffer.from(buf.subarray(2, 2 + buf.readUInt16BE(0)));
          buf = buf.subarray(2 + msg.length);
          const q = parse(msg, 'tcp');
          if (q === null) continue;
          received.push(q);
          const out = answer(q);
          if (out === null) continue;
          const frame = Buffer.alloc(out.length + 2);
          frame.writeUInt16BE(out.length, 0);
          out.copy(frame, 2);
          sock.write(frame);
        }
      });
    });
    await new Promise<void>((r, j) => {
      (tcp as net.Server).once('error', j);
      (tcp as net.Server).listen(port, '127.0.0.1', () => r());
    });
  }
  return {
    address: `127.0.0.1:${port}`,
    port,
    received,
    count: (name?: string) => (name === undefined ? received.length : received.filter((q) => q.name === name).length),
    async stop() {
      for (const s of socks) s.destroy();
      await new Promise<void>((r) => udp.close(() => r()));
      if (tcp !== null) await new Promise<void>((r) => (tcp as net.Server).close(() => r()));
    },
  };
}

/** Encodes a response to `q` (its ID and question), with the given sections. */
export function respond(q: RawQuery, parts: Partial<dnsPacket.Packet> & { rcode?: number; tc?: boolean; ad?: boolean }): Buffer {
  const flags = dnsPacket.RECURSION_AVAILABLE | dnsPacket.RECURSION_DESIRED | (parts.tc ? dnsPacket.TRUNCATED_RESPONSE : 0) | (parts.ad ? dnsPacket.AUTHENTIC_DATA : 0) | (parts.rcode ?? 0);
  return dnsPacket.encode({
    type: 'response',
    id: q.packet.id,
    flags,
    questions: q.packet.questions,
    answers: parts.answers ?? [],
    authorities: parts.authorities ?? [],
    additionals: parts.additionals ?? [],
  });
}
