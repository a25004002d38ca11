/**
 * A fake upstream resolver for plugin tests: a real DNS server on 127.0.0.1 (UDP and TCP on one port) that
 * answers from a map of records or a script (whole sections, TC, raw bytes), can be told to be slow, to fail
 * with an RCODE, to stay silent or to send forged replies first, and keeps every query it is asked (bytes,
 * source port, transport). Point `forward: { to: [up.address] }` at it.
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
  /** The answer script (see `FakeUpstream.answer`). */
  readonly answer?: AnswerScript;
  /** Replies forged before the real one (see `FakeUpstream.forge`). */
  readonly forge?: Forgery;
  /** Listen on TCP too (default true); false leaves the TCP port closed, so a TCP retry is refused. */
  readonly tcp?: boolean;
}

/** Record sections and flags of a scripted answer (records as dns-packet writes them). */
export interface ReplyParts {
  /** A name (NXDOMAIN) or the number (any RCODE, e.g. 9 NOTAUTH). Default NOERROR. */
  readonly rcode?: RcodeName | number;
  readonly answers?: readonly dnsPacket.Answer[];
  readonly authorities?: readonly dnsPacket.Answer[];
  readonly additionals?: readonly dnsPacket.Answer[];
  /** TC=1 (the sections are sent as given: empty them for a plain truncated answer). */
  readonly tc?: boolean;
  /** AD=1. */
  readonly ad?: boolean;
  /** AA=1 (an authoritative answer, as a router answering for its own names sends). */
  readonly aa?: boolean;
}

/** What a script answers to one query. */
export interface FakeReply extends ReplyParts {
  /** TC=1 and no answer or authority records over UDP (a complete answer over TCP, unless `tcAlways`). */
  readonly tc?: boolean;
  /** TC=1 (and no records) over TCP too. */
  readonly tcAlways?: boolean;
  /** Send it this late (default: the upstream's `delayMs`). */
  readonly delayMs?: number;
  /** Never answer this query. */
  readonly silent?: boolean;
}

/**
 * Decides the answer to each query: a `FakeReply` (an OPT record is added when the query had one and
 * `additionals` holds none), a `Buffer` sent as it is (malformed, question-less or hand-built replies), `null`
 * to stay silent, or `undefined` to answer from the records.
 */
export type AnswerScript = (q: FakeQuery) => FakeReply | Buffer | null | undefined;

/** Replies sent before the real answer, each with the A record `FORGED_A`, so a test can tell them apart. */
export interface Forgery {
  /** A wrong ID (the right question). */
  readonly id?: boolean;
  /** The right ID and another question (`forged.example`). */
  readonly question?: boolean;
  /** The right ID and question, from another port (UDP only). */
  readonly source?: boolean;
  /** Three bytes that are no DNS message. */
  readonly garbage?: boolean;
}

/** The address in forged replies. */
export const FORGED_A = '6.6.6.6';

/** A query the fake upstream received. */
export interface FakeQuery {
  /** Lower case, without the trailing dot (the root is `.`). */
  readonly name: string;
  readonly type: string;
  readonly transport: 'udp' | 'tcp';
  readonly id: number;
  /** The header's flags word (RD 0x0100, AD 0x0020, CD 0x0010, …). */
  readonly flags: number;
  /** It carried an OPT record. */
  readonly edns: boolean;
  readonly dnssecOk: boolean;
  readonly recursionDesired: boolean;
  readonly checkingDisabled: boolean;
  /** The source port (a forwarder should use a fresh one per query). */
  readonly port: number;
  /** The query's bytes, and decoded (decoded again at each read: keep what you need). */
  readonly raw: Buffer;
  readonly packet: dnsPacket.Packet;
  /** `Date.now()` when it arrived. */
  readonly at: number;
}

/** Which queries `count` counts. */
export interface QueryFilter {
  readonly name?: string;
  readonly type?: string;
  readonly transport?: 'udp' | 'tcp';
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
  /** The answer script (`undefined`: answer from the records). */
  answer: AnswerScript | undefined;
  /** Replies forged before each real answer (`{}`: none). */
  forge: Forgery;
  /** Every query received, oldest first (until `reset()`). */
  readonly queries: readonly FakeQuery[];
  /** TCP connections accepted (until `reset()`). */
  readonly tcpConnections: number;
  /** Sets (replaces) the records of one type for a name. */
  set(name: string, type: string, data: RecordData | RecordData[]): void;
  /** Sets everything about a name at once (replaces what it had). */
  setName(name: string, records: NameRecords): void;
  /** Forgets one type of a name, or the whole name. */
  remove(name: string, type?: string): void;
  /** Queries received, optionally only for one name (case-insensitive) and type, or those a filter picks. */
  count(name?: string | QueryFilter, type?: string): number;
  /** Forgets the queries received so far (and the TCP connection count). */
  reset(): void;
  /** Closes the TCP connections open now (as an upstream closing idle connections does). */
  dropTcpConnections(): void;
  /** Sends bytes from the upstream's UDP socket to a port of 127.0.0.1: a reply sent by hand (late, to another socket). */
  sendUdp(bytes: Buffer, port: number): void;
  /** Closes both sockets (and open TCP connections). */
  stop(): Promise<void>;
}

function norm(name: string): string {
  const n = name.toLowerCase();
  return n.endsWith('.') && n.length > 1 ? n.slice(0, -1) : n === '' ? '.' : n;
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
  answer: AnswerScript | undefined;
  forge: Forgery;
  readonly queries: FakeQuery[] = [];
  tcpConnections = 0;
  private forger: dgram.Socket | undefined;
  private readonly names = new Map<string, NameRecords>();
  private readonly unknown: 'NXDOMAIN' | 'NOERROR';
  private readonly negativeTtl: number;
  private readonly sockets = new Set<net.Socket>();
  private readonly pending = new Set<NodeJS.Timeout>();
  private stopped = false;

  constructor(private readonly udp: dgram.Socket, private readonly tcp: net.Server | undefined, readonly port: number, opts: FakeUpstreamOptions) {
    this.answer = opts.answer;
    this.forge = opts.forge ?? {};
    this.delayMs = opts.delayMs ?? 0;
    this.rcode = opts.rcode;
    this.silent = opts.silent ?? false;
    this.truncate = opts.truncate ?? false;
    this.ttl = opts.ttl ?? 300;
    this.unknown = opts.unknown ?? 'NXDOMAIN';
    this.negativeTtl = opts.negativeTtl ?? 60;
    for (const [name, recs] of Object.entries(opts.records ?? {})) this.setName(name, recs);
    udp.on('message', (msg, rinfo) => this.handle(msg, 'udp', rinfo.port, (out) => {
      if (!this.stopped) udp.send(out, rinfo.port, rinfo.address);
    }, (out) => {
      // Another socket, so the reply comes from another port.
      if (this.stopped) return;
      this.forger ??= dgram.createSocket('udp4').on('error', () => undefined);
      this.forger.send(out, rinfo.port, rinfo.address);
    }));
    tcp?.on('connection', (sock) => this.onTcp(sock));
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

  count(name?: string | QueryFilter, type?: string): number {
    const f: QueryFilter = typeof name === 'object' ? name : { name, type };
    if (f.name === undefined && f.type === undefined && f.transport === undefined) return this.queries.length;
    const n = f.name === undefined ? undefined : norm(f.name);
    const t = f.type?.toUpperCase();
    let c = 0;
    for (const q of this.queries) if ((n === undefined || q.name === n) && (t === undefined || q.type === t) && (f.transport === undefined || q.transport === f.transport)) c++;
    return c;
  }

  reset(): void {
    this.queries.length = 0;
    this.tcpConnections = 0;
  }

  dropTcpConnections(): void {
    for (const s of this.sockets) s.destroy();
  }

  sendUdp(bytes: Buffer, port: number): void {
    if (!this.stopped) this.udp.send(bytes, port, this.host);
  }

  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    for (const t of this.pending) clearTimeout(t);
    this.pending.clear();
    for (const s of this.sockets) s.destroy();
    const tcp = this.tcp;
    const forger = this.forger;
    await Promise.all([
      new Promise<void>((r) => this.udp.close(() => r())),
      tcp === undefined ? undefined : new Promise<void>((r) => tcp.close(() => r())),
      forger === undefined ? undefined : new Promise<void>((r) => forger.close(() => r())),
    ]);
  }

  private onTcp(sock: net.Socket): void {
    this.sockets.add(sock);
    this.tcpConnections++;
    sock.on('close', () => this.sockets.delete(sock));
    sock.on('error', () => undefined);
    let buf: Buffer = Buffer.alloc(0);
    sock.on('data', (d: Buffer) => {
      buf = buf.length === 0 ? d : Buffer.concat([buf, d]);
      while (buf.length >= 2 && buf.length >= buf.readUInt16BE(0) + 2) {
        const len = buf.readUInt16BE(0);
        const msg = Buffer.from(buf.subarray(2, 2 + len));
        buf = buf.subarray(2 + len);
        this.handle(msg, 'tcp', sock.remotePort ?? 0, (out) => {
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

  private handle(msg: Buffer, transport: 'udp' | 'tcp', port: number, send: (out: Buffer) => void, sendFromOtherPort?: (out: Buffer) => void): void {
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
    const flags = msg.readUInt16BE(2);
    // The decoded packet is made again when asked for: a long fuzz run keeps only the bytes of each query.
    const q = {
      name,
      type: question.type,
      transport,
      id: packet.id ?? 0,
      flags,
      edns: opt !== undefined,
      dnssecOk: opt !== undefined && ((opt.flags ?? 0) & dnsPacket.DNSSEC_OK) !== 0,
      recursionDesired: (flags & dnsPacket.RECURSION_DESIRED) !== 0,
      checkingDisabled: (flags & dnsPacket.CHECKING_DISABLED) !== 0,
      port,
      raw: msg,
      get packet(): dnsPacket.Packet {
        return dnsPacket.decode(msg);
      },
      at: Date.now(),
    } satisfies FakeQuery;
    this.queries.push(q);
    if (this.silent) return;
    const scripted = this.answer?.(q);
    if (scripted === null) return;
    let out: Buffer;
    let delay = this.delayMs;
    if (Buffer.isBuffer(scripted)) {
      out = scripted;
    } else if (scripted !== undefined) {
      if (scripted.silent) return;
      out = this.scriptedReply(q, question, scripted);
      delay = scripted.delayMs ?? delay;
    } else {
      const entry = this.lookup(name);
      if (entry?.silent) return;
      out = this.answerFromRecords(msg, packet, question, name, entry, transport === 'udp' && this.truncate, opt !== undefined, q.dnssecOk);
      delay = entry?.delayMs ?? delay;
    }
    this.sendForgeries(q, question, send, sendFromOtherPort);
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

  private sendForgeries(q: FakeQuery, question: dnsPacket.Question, send: (out: Buffer) => void, sendFromOtherPort: ((out: Buffer) => void) | undefined): void {
    const forged = (id: number, name: string): Buffer =>
      buildReply({ id, question: { ...question, name } }, { answers: [{ name, type: 'A', class: 'IN', ttl: this.ttl, data: FORGED_A }] });
    if (this.forge.source && sendFromOtherPort) sendFromOtherPort(forged(q.id, question.name));
    if (this.forge.id) send(forged((q.id + 1) & 0xffff, question.name));
    if (this.forge.question) send(forged(q.id, 'forged.example'));
    if (this.forge.garbage) send(Buffer.from([1, 2, 3]));
  }

  private scriptedReply(q: FakeQuery, question: dnsPacket.Question, r: FakeReply): Buffer {
    const truncated = r.tc === true && (q.transport === 'udp' || r.tcAlways === true);
    const additionals = [...(r.additionals ?? [])];
    if (q.edns && !additionals.some((x) => x.type === 'OPT')) additionals.push(optRecord(q.dnssecOk));
    return buildReply(
      { id: q.id, question, flags: q.flags },
      { ...r, tc: truncated, answers: truncated ? [] : r.answers, authorities: truncated ? [] : r.authorities, additionals },
    );
  }

  private answerFromRecords(raw: Buffer, packet: dnsPacket.Packet, question: dnsPacket.Question, name: string, entry: NameRecords | undefined, truncated: boolean, edns: boolean, dnssecOk: boolean): Buffer {
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
      additionals: edns ? [optRecord(dnssecOk)] : [],
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
    const zone = dot === -1 || name === '.' ? '.' : name.slice(dot + 1);
    return {
      name: zone,
      type: 'SOA',
      class: 'IN',
      ttl: this.negativeTtl,
      data: { mname: `ns.fake.invalid`, rname: 'hostmaster.fake.invalid', serial: 1, refresh: 3600, retry: 600, expire: 86400, minimum: this.negativeTtl },
    } as dnsPacket.Answer;
  }
}

/** The OPT record of our answers: 1232 bytes, DO echoed (RFC 3225). */
function optRecord(dnssecOk: boolean): dnsPacket.Answer {
  return { type: 'OPT', name: '.', udpPayloadSize: 1232, flags: dnssecOk ? dnsPacket.DNSSEC_OK : 0, options: [] } as unknown as dnsPacket.Answer;
}

const RCODE_VALUES: Readonly<Record<string, number>> = RCODES;

/**
 * A response to `q` (its ID and question) with these sections: for scripts that return bytes, or tests that
 * need a reply without the fake upstream. RA and RD are set, CD is echoed from `q.flags`; no OPT is added.
 */
export function buildReply(q: { readonly id?: number; readonly question?: dnsPacket.Question; readonly packet?: dnsPacket.Packet; readonly flags?: number }, parts: ReplyParts = {}): Buffer {
  const rcode = typeof parts.rcode === 'number' ? parts.rcode : RCODE_VALUES[parts.rcode ?? 'NOERROR'];
  const flags =
    dnsPacket.RECURSION_AVAILABLE | dnsPacket.RECURSION_DESIRED | ((q.flags ?? 0) & dnsPacket.CHECKING_DISABLED) | (parts.tc ? dnsPacket.TRUNCATED_RESPONSE : 0) | (parts.ad ? dnsPacket.AUTHENTIC_DATA : 0) | (parts.aa ? dnsPacket.AUTHORITATIVE_ANSWER : 0) | (rcode & 0xf);
  const question = q.question ?? q.packet?.questions?.[0];
  return dnsPacket.encode({
    type: 'response',
    id: q.id ?? q.packet?.id ?? 0,
    flags,
    questions: question === undefined ? [] : [question],
    answers: [...(parts.answers ?? [])],
    authorities: [...(parts.authorities ?? [])],
    additionals: [...(parts.additionals ?? [])],
  });
}

/** An A record, for scripted answers. */
export function recordA(name: string, ttl: number, address: string): dnsPacket.Answer {
  return { name, type: 'A', class: 'IN', ttl, data: address };
}

/** An SOA for negative answers (RFC 2308: the negative TTL is the smaller of `ttl` and `minimum`). */
export function recordSoa(zone: string, ttl: number, minimum: number): dnsPacket.Answer {
  return {
    name: zone,
    type: 'SOA',
    class: 'IN',
    ttl,
    data: { mname: `ns.${zone}`, rname: `hostmaster.${zone}`, serial: 1, refresh: 3600, retry: 600, expire: 86400, minimum },
  } as dnsPacket.Answer;
}

function questionEnd(raw: Buffer): number {
  let p = 12;
  while (p < raw.length && raw[p] !== 0) {
    if ((raw[p] & 0xc0) !== 0) return -1;
    p += raw[p] + 1;
  }
  return p + 1 + 4;
}

/** Starts a fake upstream on 127.0.0.1, UDP and TCP on the same free port (UDP only with `tcp: false`). */
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
    udp.on('error', () => undefined);
    if (opts.tcp === false) return new Upstream(udp, undefined, port, opts);
    const tcp = net.createServer();
    const ok = await new Promise<boolean>((resolve) => {
      tcp.once('error', () => resolve(false));
      tcp.listen(port, '127.0.0.1', () => resolve(true));
    });
    if (!ok) {
      await new Promise<void>((r) => udp.close(() => r()));
      continue;
    }
    return new Upstream(udp, tcp, port, opts);
  }
  throw new Error('startFakeUpstream: could not bind UDP and TCP on one port of 127.0.0.1');
}
