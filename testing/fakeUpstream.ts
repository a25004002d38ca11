/**
 * A fake upstream resolver for plugin tests: a real DNS server on 127.0.0.1 (UDP and TCP on one port) that
 * answers from a map of records, can be told to be slow, to fail with an RCODE or to stay silent, and counts
 * what it is asked. Point `forward: { to: [up.address] }` at it.
 *
 * ```ts
 * import { startFakeUpstream, startServer } from 'codexdns/testing';
 * const up = await startFakeUpstream({ records: { 'www.example.org': { A: '192.0.2.10' } } });
 * const s = await startServer(`servers:\n  - listen: [udp://127.0.0.1:0]\n    plugins:\n      - forward: { to: ["${up.address}"] }\n`);
 * (await s.query('www.example.org', 'A')).answers;   // [{ name: 'www.example.org', type: 'A', data: '192.0.2.10', … }]
 * up.count('www.example.org');                        // 1
 * ```
 */
import * as dgram from 'node:dgram';
import * as net from 'node:net';
import * as dnsPacket from 'dns-packet';

export type RcodeName = 'NOERROR' | 'FORMERR' | 'SERVFAIL' | 'NXDOMAIN' | 'NOTIMP' | 'REFUSED';

const RCODES: Record<RcodeName, number> = { NOERROR: 0, FORMERR: 1, SERVFAIL: 2, NXDOMAIN: 3, NOTIMP: 4, REFUSED: 5 };

/** One record's data, as dns-packet writes it: a string for A, AAAA, CNAME, PTR, NS and TXT; an object for MX, SRV, SOA, CAA. */
export type RecordData = string | Record<string, unknown>;

/** What the fake upstream knows about one name. Several values of a type give several records. */
export interface NameRecords {
  A?: string | string[];
  AAAA?: string | string[];
  CNAME?: string;
  PTR?: string | string[];
  NS?: string | string[];
  /** Each string is one TXT record. */
  TXT?: string | string[];
  MX?: { preference: number; exchange: string } | { preference: number; exchange: string }[];
  SRV?: { priority: number; weight: number; port: number; target: string } | { priority: number; weight: number; port: number; target: string }[];
  SOA?: Record<string, unknown>;
  CAA?: Record<string, unknown> | Record<string, unknown>[];
  /** Answer this name with this RCODE (and no records). */
  rcode?: RcodeName;
  /** Answer this name late. */
  delayMs?: number;
  /** Never answer this name. */
  silent?: boolean;
  /** TTL of this name's records (default: the upstream's `ttl`). */
  ttl?: number;
}

/** Names (case-insensitive, trailing dot optional; `*.zone` is a wildcard) → their records. */
export type RecordMap = Record<string, NameRecords>;

export interface FakeUpstreamOptions {
  readonly records?: RecordMap;
  /** TTL of answers (default 300). */
  readonly ttl?: number;
  /** Delay every answer by this many ms (default 0). */
  readonly delayMs?: number;
  /** Answer every query with this RCODE and no records (default: answer from the records). */
  readonly rcode?: RcodeName;
  /** Answer nothing at all (a dead upstream). */
  readonly silent?: boolean;
  /** UDP answers carry TC=1 and no records (TCP answers stay complete). */
  readonly truncate?: boolean;
  /**
   * What a name without records gets: `NXDOMAIN` (default) or `NOERROR` (an empty answer). Negative answers
   * carry an SOA of the name's parent zone with `negativeTtl`, so a cache can keep them (RFC 2308).
   */
  readonly unknown?: 'NXDOMAIN' | 'NOERROR';
  /** TTL and MINIMUM of the SOA in negative answers (default 60). */
  readonly negativeTtl?: number;
}

/** A query the fake upstream received. */
export interface FakeQuery {
  /** Lower case, without the trailing dot. */
  readonly name: string;
  readonly type: string;
  readonly transport: 'udp' | 'tcp';
  readonly id: number;
  readonly dnssecOk: boolean;
  readonly recursionDesired: boolean;
  /** `Date.now()` when it arrived. */
  readonly at: number;
}

export interface FakeUpstream {
  readonly host: string;
  readonly port: number;
  /** `127.0.0.1:PORT`, as written in forward's `to:`. */
  readonly address: string;
  /** The following fields may be changed while it runs. */
  delayMs: number;
  rcode: RcodeName | undefined;
  silent: boolean;
  truncate: boolean;
  ttl: number;
  /** Every query received, oldest first (until `reset()`). */
  readonly queries: readonly FakeQuery[];
  /** Sets (replaces) the records of one type for a name. */
  set(name: string, type: string, data: RecordData | RecordData[]): void;
  /** Sets everything about a name at once (replaces what it had). */
  setName(name: string, records: NameRecords): void;
  /** Forgets one type of a name, or the whole name. */
  remove(name: string, type?: string): void;
  /** Queries received, optionally only for one name (case-insensitive) and type. */
  count(name?: string, type?: string): number;
  /** Forgets the queries received so far. */
  reset(): void;
  /** Closes both sockets (and open TCP connections). */
  stop(): Promise<void>;
}

function norm(name: string): string {
  const n = name.toLowerCase();
  return n.endsWith('.') ? n.slice(0, -1) : n;
}

function list<T>(v: T | T[] | undefined): T[] {
  return v === undefined ? [] : Array.isArray(v) ? v : [v];
}

const CONTROL_KEYS = new Set(['rcode', 'delayMs', 'silent', 'ttl']);

class Upstream implements FakeUpstream {
  readonly host = '127.0.0.1';
  delayMs: number;
  rcode: RcodeName | undefined;
  silent: boolean;
  truncate: boolean;
  ttl: number;
  readonly queries: FakeQuery[] = [];
  private readonly names = new Map<string, NameRecords>();
  private readonly unknown: 'NXDOMAIN' | 'NOERROR';
  private readonly negativeTtl: number;
  private readonly sockets = new Set<net.Socket>();
  private readonly pending = new Set<NodeJS.Timeout>();
  private stopped = false;

  constructor(private readonly udp: dgram.Socket, private readonly tcp: net.Server, readonly port: number, opts: FakeUpstreamOptions) {
    this.delayMs = opts.delayMs ?? 0;
    this.rcode = opts.rcode;
    this.silent = opts.silent ?? false;
    this.truncate = opts.truncate ?? false;
    this.ttl = opts.ttl ?? 300;
    this.unknown = opts.unknown ?? 'NXDOMAIN';
    this.negativeTtl = opts.negativeTtl ?? 60;
    for (const [name, recs] of Object.entries(opts.records ?? {})) this.setName(name, recs);
    udp.on('message', (msg, rinfo) => this.handle(msg, 'udp', (out) => {
      if (!this.stopped) udp.send(out, rinfo.port, rinfo.address);
    }));
    tcp.on('connection', (sock) => this.onTcp(sock));
  }

  get address(): string {
    return `${this.host}:${this.port}`;
  }

  set(name: string, type: string, data: RecordData | RecordData[]): void {
    const key = norm(name);
    const recs = { ...(this.names.get(key) ?? {}) } as Record<string, unknown>;
    recs[type.toUpperCase()] = data;
    this.names.set(key, recs as NameRecords);
  }

  setName(name: string, records: NameRecords): void {
    this.names.set(norm(name), { ...records });
  }

  remove(name: string, type?: string): void {
    const key = norm(name);
    if (type === undefined) {
      this.names.delete(key);
      return;
    }
    const recs = this.names.get(key) as Record<string, unknown> | undefined;
    if (recs) delete recs[type.toUpperCase()];
  }

  count(name?: string, type?: string): number {
    if (name === undefined && type === undefined) return this.queries.length;
    const n = name === undefined ? undefined : norm(name);
    const t = type?.toUpperCase();
    let c = 0;
    for (const q of this.queries) if ((n === undefined || q.name === n) && (t === undefined || q.type === t)) c++;
    return c;
  }

  reset(): void {
    this.queries.length = 0;
  }

  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    for (const t of this.pending) clearTimeout(t);
    this.pending.clear();
    for (const s of this.sockets) s.destroy();
    await Promise.all([
      new Promise<void>((r) => this.udp.close(() => r())),
      new Promise<void>((r) => this.tcp.close(() => r())),
    ]);
  }

  private onTcp(sock: net.Socket): void {
    this.sockets.add(sock);
    sock.on('close', () => this.sockets.delete(sock));
    sock.on('error', () => undefined);
    let buf: Buffer = Buffer.alloc(0);
    sock.on('data', (d: Buffer) => {
      buf = buf.length === 0 ? d : Buffer.concat([buf, d]);
      while (buf.length >= 2 && buf.length >= buf.readUInt16BE(0) + 2) {
        const len = buf.readUInt16BE(0);
        const msg = Buffer.from(buf.subarray(2, 2 + len));
        buf = buf.subarray(2 + len);
        this.handle(msg, 'tcp', (out) => {
          if (sock.destroyed || this.stopped) return;
          const frame = Buffer.allocUnsafe(out.length + 2);
          frame.writeUInt16BE(out.length, 0);
          out.copy(frame, 2);
          sock.write(frame);
        });
      }
    });
  }

  /** Exact name, else the closest `*.parent` wildcard. */
  private lookup(name: string): NameRecords | undefined {
    const exact = this.names.get(name);
    if (exact) return exact;
    let rest = name;
    for (;;) {
      const dot = rest.indexOf('.');
      if (dot === -1) return this.names.get('*');
      rest = rest.slice(dot + 1);
      const wild = this.names.get(`*.${rest}`);
      if (wild) return wild;
    }
  }

  private handle(msg: Buffer, transport: 'udp' | 'tcp', send: (out: Buffer) => void): void {
    if (this.stopped) return;
    let packet: dnsPacket.Packet;
    try {
      packet = dnsPacket.decode(msg);
    } catch {
      return;
    }
    const question = packet.questions?.[0];
    if (packet.type === 'response' || !question) return;
    const opt = (packet.additionals ?? []).find((r) => r.type === 'OPT') as { flags?: number } | undefined;
    const name = norm(question.name);
    this.queries.push({
      name,
      type: question.type,
      transport,
      id: packet.id ?? 0,
      dnssecOk: opt !== undefined && ((opt.flags ?? 0) & dnsPacket.DNSSEC_OK) !== 0,
      recursionDesired: ((packet.flags ?? 0) & dnsPacket.RECURSION_DESIRED) !== 0,
      at: Date.now(),
    });
    const entry = this.lookup(name);
    if (this.silent || entry?.silent) return;
    const out = this.answer(msg, packet, question, name, entry, transport === 'udp' && this.truncate, opt !== undefined);
    const delay = entry?.delayMs ?? this.delayMs;
    if (delay > 0) {
      const t = setTimeout(() => {
        this.pending.delete(t);
        send(out);
      }, delay);
      this.pending.add(t);
    } else {
      send(out);
    }
  }

  private answer(raw: Buffer, packet: dnsPacket.Packet, question: dnsPacket.Question, name: string, entry: NameRecords | undefined, truncated: boolean, edns: boolean): Buffer {
    let rcode = 0;
    const answers: dnsPacket.Answer[] = [];
    const authorities: dnsPacket.Answer[] = [];
    const forced = this.rcode ?? entry?.rcode;
    if (forced !== undefined) {
      rcode = RCODES[forced];
    } else if (entry === undefined) {
      rcode = this.unknown === 'NXDOMAIN' ? RCODES.NXDOMAIN : 0;
      authorities.push(this.soaFor(name));
    } else {
      // Follow CNAMEs inside the map, as a recursive resolver would (bounded).
      let current = entry;
      let owner = question.name;
      for (let hops = 0; hops < 8; hops++) {
        const found = this.recordsOf(current, question.type, owner);
        if (found.length > 0 || question.type === 'CNAME' || current.CNAME === undefined) {
          answers.push(...found);
          break;
        }
        answers.push(...this.recordsOf(current, 'CNAME', owner));
        owner = current.CNAME;
        const next = this.lookup(norm(owner));
        if (next === undefined) break;
        current = next;
      }
      if (answers.length === 0) authorities.push(this.soaFor(name));
    }
    const flags = dnsPacket.RECURSION_AVAILABLE | ((packet.flags ?? 0) & (dnsPacket.RECURSION_DESIRED | dnsPacket.CHECKING_DISABLED)) | (truncated ? dnsPacket.TRUNCATED_RESPONSE : 0) | rcode;
    const out = dnsPacket.encode({
      type: 'response',
      id: packet.id,
      flags,
      questions: [question],
      answers: truncated ? [] : answers,
      authorities: truncated ? [] : authorities,
      additionals: edns ? [{ type: 'OPT', name: '.', udpPayloadSize: 1232, flags: 0, options: [] } as unknown as dnsPacket.Answer] : [],
    });
    // Echo the question exactly as asked (its letter case), as real servers do.
    const qEnd = questionEnd(raw);
    if (qEnd > 12 && qEnd <= out.length) raw.copy(out, 12, 12, qEnd);
    return out;
  }

  private recordsOf(entry: NameRecords, type: string, owner: string): dnsPacket.Answer[] {
    if (CONTROL_KEYS.has(type)) return [];
    const data = (entry as Record<string, RecordData | RecordData[] | undefined>)[type];
    const ttl = entry.ttl ?? this.ttl;
    return list(data).map((d) => ({ name: owner, type, class: 'IN', ttl, data: type === 'TXT' && typeof d === 'string' ? [d] : d }) as unknown as dnsPacket.Answer);
  }

  private soaFor(name: string): dnsPacket.Answer {
    const dot = name.indexOf('.');
    const zone = dot === -1 ? '.' : name.slice(dot + 1);
    return {
      name: zone,
      type: 'SOA',
      class: 'IN',
      ttl: this.negativeTtl,
      data: { mname: `ns.fake.invalid`, rname: 'hostmaster.fake.invalid', serial: 1, refresh: 3600, retry: 600, expire: 86400, minimum: this.negativeTtl },
    } as dnsPacket.Answer;
  }
}

function questionEnd(raw: Buffer): number {
  let p = 12;
  while (p < raw.length && raw[p] !== 0) {
    if ((raw[p] & 0xc0) !== 0) return -1;
    p += raw[p] + 1;
  }
  return p + 1 + 4;
}

/** Starts a fake upstream on 127.0.0.1, UDP and TCP on the same free port. */
export async function startFakeUpstream(opts: FakeUpstreamOptions = {}): Promise<FakeUpstream> {
  for (let attempt = 0; attempt < 20; attempt++) {
    const udp = dgram.createSocket('udp4');
    await new Promise<void>((resolve, reject) => {
      udp.once('error', reject);
      udp.bind(0, '127.0.0.1', () => {
        udp.off('error', reject);
        resolve();
      });
    });
    const port = udp.address().port;
    const tcp = net.createServer();
    const ok = await new Promise<boolean>((resolve) => {
      tcp.once('error', () => resolve(false));
      tcp.listen(port, '127.0.0.1', () => resolve(true));
    });
    if (!ok) {
      await new Promise<void>((r) => udp.close(() => r()));
      continue;
    }
    udp.on('error', () => undefined);
    return new Upstream(udp, tcp, port, opts);
  }
  throw new Error('startFakeUpstream: could not bind UDP and TCP on one port of 127.0.0.1');
}
