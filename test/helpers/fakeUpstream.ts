/**
 * A real DNS server on 127.0.0.1 (UDP and TCP on one port) that tests point `forward` at and configure:
 * answers by name, a delay, SERVFAIL / REFUSED / silence, truncation over UDP (complete over TCP), forged
 * replies (wrong ID, wrong question, wrong source) sent before the real one, and a log of what it received.
 */
import * as dgram from 'node:dgram';
import * as net from 'node:net';
import * as dnsPacket from 'dns-packet';

export type FakeMode = 'answer' | 'servfail' | 'refused' | 'silent';

export interface ReceivedQuery {
  readonly transport: 'udp' | 'tcp';
  readonly raw: Buffer;
  readonly packet: dnsPacket.Packet;
  /** Source port the query came from (UDP) — each forwarded query should use a fresh one. */
  readonly port: number;
  readonly name: string;
  readonly type: string;
}

export interface Forgery {
  /** Reply first with a wrong ID (and the right question). */
  id?: boolean;
  /** Reply first with the right ID and another question. */
  question?: boolean;
  /** Reply first from another port (right ID and question). */
  source?: boolean;
}

export class FakeUpstream {
  mode: FakeMode = 'answer';
  delayMs = 0;
  /** UDP answers carry TC=1 and no records; TCP answers are complete. */
  truncate = false;
  forge: Forgery = {};
  /** Lower-case name → A addresses. Names not listed get `defaultA` (or NXDOMAIN when it is null). */
  readonly answers = new Map<string, string[]>();
  defaultA: string | null = '192.0.2.1';
  ttl = 300;
  readonly received: ReceivedQuery[] = [];
  readonly count = { udp: 0, tcp: 0 };
  /** TCP connections accepted. */
  tcpConnections = 0;
  private stopped = false;
  /** Forged replies carry this address, so a test can tell them from the real answer. */
  static readonly FORGED_A = '6.6.6.6';
  private readonly tcpSockets = new Set<net.Socket>();
  private readonly forger: dgram.Socket;

  private constructor(private readonly udp: dgram.Socket, private readonly tcp: net.Server, readonly port: number, forger: dgram.Socket) {
    this.forger = forger;
    udp.on('message', (msg, rinfo) => this.onUdp(msg, rinfo));
    tcp.on('connection', (s) => this.onTcp(s));
  }

  static async start(): Promise<FakeUpstream> {
    for (let attempt = 0; attempt < 20; attempt++) {
      const udp = dgram.createSocket('udp4');
      await new Promise<void>((r) => udp.bind(0, '127.0.0.1', () => r()));
      const port = udp.address().port;
      const tcp = net.createServer();
      const ok = await new Promise<boolean>((r) => {
        tcp.once('error', () => r(false));
        tcp.listen(port, '127.0.0.1', () => r(true));
      });
      if (!ok) {
        udp.close();
        continue;
      }
      const forger = dgram.createSocket('udp4');
      await new Promise<void>((r) => forger.bind(0, '127.0.0.1', () => r()));
      return new FakeUpstream(udp, tcp, port, forger);
    }
    throw new Error('could not bind a fake upstream');
  }

  /** `127.0.0.1:PORT`, as written in `to:`. */
  get address(): string {
    return `127.0.0.1:${this.port}`;
  }

  get total(): number {
    return this.count.udp + this.count.tcp;
  }

  reset(): void {
    this.received.length = 0;
    this.count.udp = 0;
    this.count.tcp = 0;
    this.tcpConnections = 0;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    for (const s of this.tcpSockets) s.destroy();
    await Promise.all([
      new Promise<void>((r) => this.udp.close(() => r())),
      new Promise<void>((r) => this.tcp.close(() => r())),
      new Promise<void>((r) => this.forger.close(() => r())),
    ]);
  }

  /** Closes the TCP connections forward keeps open (to test a stale reused connection). */
  dropTcpConnections(): void {
    for (const s of this.tcpSockets) s.destroy();
  }

  private record(transport: 'udp' | 'tcp', raw: Buffer, port: number): dnsPacket.Packet | null {
    let packet: dnsPacket.Packet;
    try {
      packet = dnsPacket.decode(raw);
    } catch {
      return null;
    }
    this.count[transport]++;
    const q = packet.questions?.[0];
    this.received.push({ transport, raw, packet, port, name: q?.name ?? '', type: q?.type ?? '' });
    return packet;
  }

  private onUdp(msg: Buffer, rinfo: dgram.RemoteInfo): void {
    const packet = this.record('udp', msg, rinfo.port);
    if (packet === null || this.mode === 'silent') return;
    const send = (bytes: Buffer): void => {
      if (!this.stopped) this.udp.send(bytes, rinfo.port, rinfo.address);
    };
    if (this.forge.source && !this.stopped) this.forger.send(this.reply(msg, packet, false, true), rinfo.port, rinfo.address);
    if (this.forge.id) {
      const bad = this.reply(msg, packet, false, true);
      bad.writeUInt16BE((bad.readUInt16BE(0) + 1) & 0xffff, 0);
      send(bad);
    }
    if (this.forge.question) send(this.reply(msg, packet, false, true, 'forged.example'));
    this.later(() => send(this.reply(msg, packet, this.truncate, false)));
  }

  private onTcp(sock: net.Socket): void {
    this.tcpSockets.add(sock);
    this.tcpConnections++;
    sock.on('close', () => this.tcpSockets.delete(sock));
    sock.on('error', () => undefined);
    let buf = Buffer.alloc(0);
    sock.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      while (buf.length >= 2 && buf.length >= buf.readUInt16BE(0) + 2) {
        const msg = Buffer.from(buf.subarray(2, buf.readUInt16BE(0) + 2));
        buf = buf.subarray(msg.length + 2);
        const packet = this.record('tcp', msg, sock.remotePort ?? 0);
        if (packet === null || this.mode === 'silent') continue;
        const send = (bytes: Buffer): void => {
          if (sock.destroyed) return;
          const frame = Buffer.alloc(bytes.length + 2);
          frame.writeUInt16BE(bytes.length, 0);
          bytes.copy(frame, 2);
          sock.write(frame);
        };
        if (this.forge.id) {
          const bad = this.reply(msg, packet, false, true);
          bad.writeUInt16BE((bad.readUInt16BE(0) + 1) & 0xffff, 0);
          send(bad);
        }
        if (this.forge.question) send(this.reply(msg, packet, false, true, 'forged.example'));
        this.later(() => send(this.reply(msg, packet, false, false)));
      }
    });
  }

  private later(fn: () => void): void {
    if (this.delayMs > 0) setTimeout(fn, this.delayMs);
    else fn();
  }

  /**
   * The answer to `packet`, built as a real server writes it: the ID and the question bytes echoed exactly
   * (letter case kept), answer owners compressed to a pointer at the question (so a client sees its own case
   * there too), and an OPT record when the query had one.
   */
  private reply(raw: Buffer, packet: dnsPacket.Packet, truncated: boolean, forged: boolean, otherName?: string): Buffer {
    const q = packet.questions?.[0] ?? { name: '', type: 'A' as const, class: 'IN' as const };
    let rcode = 0;
    let addrs: string[] = [];
    if (this.mode === 'servfail') rcode = 2;
    else if (this.mode === 'refused') rcode = 5;
    else {
      const found = this.answers.get(q.name.toLowerCase()) ?? (this.defaultA === null ? null : [this.defaultA]);
      if (found === null) rcode = 3;
      else if (q.type === 'A') addrs = found.map((a) => (forged ? FakeUpstream.FORGED_A : a));
    }
    if (truncated) addrs = [];
    const question = otherName
      ? dnsPacket.encode({ type: 'query', id: 0, questions: [{ ...q, name: otherName }] }).subarray(12)
      : raw.subarray(12, 12 + questionLength(raw));
    const edns = (packet.additionals ?? []).some((r) => r.type === 'OPT');
    const header = Buffer.alloc(12);
    header.writeUInt16BE(packet.id ?? 0, 0);
    header.writeUInt16BE(0x8000 | 0x0080 | ((packet.flags ?? 0) & 0x0100) | (truncated ? 0x0200 : 0) | rcode, 2);
    header.writeUInt16BE(1, 4);
    header.writeUInt16BE(addrs.length, 6);
    header.writeUInt16BE(edns ? 1 : 0, 10);
    const records = addrs.map((a) => {
      const rr = Buffer.alloc(16);
      rr.writeUInt16BE(0xc00c, 0);
      rr.writeUInt16BE(1, 2);
      rr.writeUInt16BE(1, 4);
      rr.writeUInt32BE(this.ttl, 6);
      rr.writeUInt16BE(4, 10);
      a.split('.').forEach((octet, i) => (rr[12 + i] = Number(octet)));
      return rr;
    });
    const opt = Buffer.from([0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0, 0, 0]);
    return Buffer.concat([header, question, ...records, ...(edns ? [opt] : [])]);
  }
}

function questionLength(raw: Buffer): number {
  let p = 12;
  while (p < raw.length && raw[p] !== 0) p += raw[p] + 1;
  return p + 1 + 4 - 12;
}
