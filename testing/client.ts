import * as dgram from 'node:dgram';
import * as net from 'node:net';
import * as dnsPacket from 'dns-packet';

export interface QueryOptions {
  readonly port: number;
  readonly host?: string;
  readonly tcp?: boolean;
  /** Add an OPT record with this UDP size (omit for a query without EDNS). */
  readonly edns?: number;
  readonly dnssecOk?: boolean;
  readonly checkingDisabled?: boolean;
  readonly recursionDesired?: boolean;
  readonly id?: number;
  readonly timeoutMs?: number;
  /** Send from this local address (any 127.x.y.z works on Linux): a different client. */
  readonly from?: string;
}

/** A decoded reply, with the header fields dns-packet decodes but its types omit. */
export interface Answer extends dnsPacket.Packet {
  /** The reply's bytes as received. */
  readonly raw: Buffer;
  readonly rcode: string;
  readonly flag_qr: boolean;
  readonly flag_aa: boolean;
  readonly flag_tc: boolean;
  readonly flag_rd: boolean;
  readonly flag_ra: boolean;
  readonly flag_ad: boolean;
  readonly flag_cd: boolean;
}

/** Encodes a query the way a stub resolver would. */
export function buildQuery(name: string, type: string, opts: Omit<QueryOptions, 'port'> = {}): Buffer {
  let flags = opts.recursionDesired === false ? 0 : dnsPacket.RECURSION_DESIRED;
  if (opts.checkingDisabled) flags |= dnsPacket.CHECKING_DISABLED;
  return dnsPacket.encode({
    type: 'query',
    id: opts.id ?? Math.floor(Math.random() * 65536),
    flags,
    questions: [{ name, type: type as dnsPacket.RecordType, class: 'IN' }],
    additionals: opts.edns !== undefined ? [{ type: 'OPT', name: '.', udpPayloadSize: opts.edns, flags: opts.dnssecOk ? dnsPacket.DNSSEC_OK : 0, options: [] } as unknown as dnsPacket.Answer] : [],
  });
}

/** Sends raw bytes and resolves with the reply's bytes, or null when nothing came back in time. */
export function exchangeRaw(bytes: Buffer, opts: QueryOptions): Promise<Buffer | null> {
  const host = opts.host ?? '127.0.0.1';
  const timeoutMs = opts.timeoutMs ?? 3000;
  if (opts.tcp) return exchangeTcp(bytes, host, opts.port, timeoutMs, opts.from);
  return new Promise((resolve, reject) => {
    const sock = dgram.createSocket(net.isIPv6(host) ? 'udp6' : 'udp4');
    const timer = setTimeout(() => {
      sock.close();
      resolve(null);
    }, timeoutMs);
    sock.on('error', (err) => {
      clearTimeout(timer);
      sock.close();
      reject(err);
    });
    sock.on('message', (msg) => {
      clearTimeout(timer);
      sock.close();
      resolve(msg);
    });
    sock.bind({ address: opts.from ?? (net.isIPv6(host) ? '::1' : '127.0.0.1'), port: 0 }, () => sock.send(bytes, opts.port, host));
  });
}

function exchangeTcp(bytes: Buffer, host: string, port: number, timeoutMs: number, from?: string): Promise<Buffer | null> {
  return new Promise((resolve, reject) => {
    const sock = net.connect({ host, port, localAddress: from });
    let buf = Buffer.alloc(0);
    const timer = setTimeout(() => {
      sock.destroy();
      resolve(null);
    }, timeoutMs);
    sock.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    sock.on('connect', () => {
      const frame = Buffer.alloc(bytes.length + 2);
      frame.writeUInt16BE(bytes.length, 0);
      bytes.copy(frame, 2);
      sock.write(frame);
    });
    sock.on('data', (d) => {
      buf = Buffer.concat([buf, d]);
      if (buf.length >= 2 && buf.length >= buf.readUInt16BE(0) + 2) {
        clearTimeout(timer);
        sock.destroy();
        resolve(buf.subarray(2, buf.readUInt16BE(0) + 2));
      }
    });
  });
}

/** Sends a query and decodes the reply; rejects on timeout. */
export async function query(name: string, type: string, opts: QueryOptions): Promise<Answer> {
  const raw = await exchangeRaw(buildQuery(name, type, opts), opts);
  if (raw === null) throw new Error(`no reply to ${name} ${type} within ${opts.timeoutMs ?? 3000} ms`);
  return Object.assign(dnsPacket.decode(raw), { raw }) as unknown as Answer;
}
