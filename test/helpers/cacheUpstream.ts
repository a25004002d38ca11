import * as dgram from 'node:dgram';
import * as net from 'node:net';
import * as dnsPacket from 'dns-packet';

/** What the fake upstream answers to one question. */
export interface Scripted {
  readonly rcode?: 'NOERROR' | 'NXDOMAIN' | 'SERVFAIL' | 'REFUSED';
  readonly answers?: dnsPacket.Answer[];
  readonly authorities?: dnsPacket.Answer[];
  readonly additionals?: dnsPacket.Answer[];
  /** Set TC=1 (over UDP only, unless `tcAlways`). */
  readonly tc?: boolean;
  readonly tcAlways?: boolean;
  /** Never answer. */
  readonly silent?: boolean;
  readonly delayMs?: number;
}

export interface SeenQuery {
  readonly name: string;
  readonly type: string;
  readonly transport: 'udp' | 'tcp';
  readonly dnssecOk: boolean;
  readonly checkingDisabled: boolean;
}

export type Script = (name: string, type: string, q: SeenQuery) => Scripted;

/** An SOA for negative answers: TTL `ttl`, MINIMUM `minimum`. */
export function soa(zone: string, ttl: number, minimum: number): dnsPacket.Answer {
  return {
    name: zone,
    type: 'SOA',
    ttl,
    data: { mname: `ns.${zone}`, rname: `hostmaster.${zone}`, serial: 1, refresh: 3600, retry: 600, expire: 86400, minimum },
  } as dnsPacket.Answer;
}

export function a(name: string, ttl: number, address: string): dnsPacket.Answer {
  return { name, type: 'A', ttl, data: address };
}

/**
 * A scriptable authoritative-looking DNS server on 127.0.0.1 (UDP and TCP on one port) that counts what it is
 * asked. It echoes an OPT record when the query has one, so the cache sees (and must strip) upstream OPTs.
 */
export class CacheUpstream {
  readonly seen: SeenQuery[] = [];
  script: Script;
  /** Answer nothing at all while true (a dead upstream). */
  silent = false;
  private readonly sockets = new Set<net.Socket>();
  private constructor(
    private readonly udp: dgram.Socket,
    private readonly tcp: net.Server,
    readonly port: number,
    script: Script,
  ) {
    this.script = script;
  }

  static async start(script: Script): Promise<CacheUpstream> {
    const udp = dgram.createSocket('udp4');
    await new Promise<void>((resolve) => udp.bind(0, '127.0.0.1', resolve));
    const port = udp.address().port;
    const tcp = net.createServer();
    await new Promise<void>((resolve, reject) => {
      tcp.once('error', reject);
      tcp.listen(port, '127.0.0.1', () => resolve());
    });
    const up = new CacheUpstream(udp, tcp, port, script);
    udp.on('message', (msg, rinfo) => {
      up.answer(msg, 'udp', (out) => udp.send(out, rinfo.port, rinfo.address));
    });
    tcp.on('connection', (sock) => {
      up.sockets.add(sock);
      sock.on('close', () => up.sockets.delete(sock));
      let buf = Buffer.alloc(0);
      sock.on('error', () => undefined);
      sock.on('data', (d) => {
        buf = Buffer.concat([buf, d]);
        while (buf.length >= 2 && buf.length >= buf.readUInt16BE(0) + 2) {
          const msg = buf.subarray(2, buf.readUInt16BE(0) + 2);
          buf = buf.subarray(buf.readUInt16BE(0) + 2);
          up.answer(msg, 'tcp', (out) => {
            const frame = Buffer.alloc(out.length + 2);
            frame.writeUInt16BE(out.length, 0);
            out.copy(frame, 2);
            if (!sock.destroyed) sock.write(frame);
          });
        }
      });
    });
    return up;
  }

  /** Queries seen for a name (case-insensitive) and optionally a type. */
  count(name: string, type?: string): number {
    const n = name.toLowerCase();
    return this.seen.filter((q) => q.name === n && (type === undefined || q.type === type)).length;
  }

  private answer(msg: Buffer, transport: 'udp' | 'tcp', send: (b: Buffer) => void): void {
    let q: dnsPacket.Packet;
    try {
      q = dnsPacket.decode(msg);
    } catch {
      return;
    }
    const question = q.questions?.[0];
    if (!question) return;
    const opt = (q.additionals ?? []).find((r) => r.type === 'OPT') as unknown as { udpPayloadSize: number; flags?: number } | undefined;
    const seen: SeenQuery = {
      name: question.name.toLowerCase(),
      type: question.type,
      transport,
      dnssecOk: opt !== undefined && ((opt.flags ?? 0) & dnsPacket.DNSSEC_OK) !== 0,
      checkingDisabled: ((q.flags ?? 0) & dnsPacket.CHECKING_DISABLED) !== 0,
    };
    this.seen.push(seen);
    if (this.silent) return;
    const s = this.script(seen.name, seen.type, seen);
    if (s.silent) return;
    const rcodes = { NOERROR: 0, NXDOMAIN: 3, SERVFAIL: 2, REFUSED: 5 } as const;
    const tc = s.tc === true && (transport === 'udp' || s.tcAlways === true);
    const flags = dnsPacket.RECURSION_DESIRED | dnsPacket.RECURSION_AVAILABLE | (tc ? dnsPacket.TRUNCATED_RESPONSE : 0) | (q.flags ?? 0) & dnsPacket.CHECKING_DISABLED | rcodes[s.rcode ?? 'NOERROR'];
    const additionals = [...(s.additionals ?? [])];
    if (opt !== undefined) additionals.push({ type: 'OPT', name: '.', udpPayloadSize: 4096, flags: seen.dnssecOk ? dnsPacket.DNSSEC_OK : 0, options: [] } as unknown as dnsPacket.Answer);
    const out = dnsPacket.encode({
      type: 'response',
      id: q.id,
      flags,
      questions: [question],
      answers: tc ? [] : s.answers ?? [],
      authorities: tc ? [] : s.authorities ?? [],
      additionals,
    });
    if (s.delayMs) setTimeout(() => send(out), s.delayMs);
    else send(out);
  }

  async close(): Promise<void> {
    this.udp.close();
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((resolve) => this.tcp.close(() => resolve()));
  }
}
