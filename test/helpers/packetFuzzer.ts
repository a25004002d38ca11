// A deterministic DNS packet fuzzer: valid queries mutated the ways a hostile client or a broken stack would
// (bit flips, truncations, label lengths, compression pointers, bad OPT records, huge section counts, odd
// opcodes, flags and types), sent over UDP and TCP to a running server. Used by test/fuzz.test.ts (~100,000
// packets) and bench/fuzz.ts (≥ 1,000,000). Same seed, same packets.
import * as dgram from 'node:dgram';
import * as net from 'node:net';

/** mulberry32: small, fast, and the same sequence on every machine. */
export class Rng {
  private s: number;
  constructor(seed: number) {
    this.s = seed >>> 0;
  }
  next(): number {
    let t = (this.s = (this.s + 0x6d2b79f5) >>> 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  int(n: number): number {
    return Math.floor(this.next() * n);
  }
  pick<T>(a: readonly T[]): T {
    return a[this.int(a.length)];
  }
}

function name(labels: string[]): Buffer {
  const parts: Buffer[] = [];
  for (const l of labels) {
    const b = Buffer.from(l, 'latin1');
    parts.push(Buffer.from([b.length]), b);
  }
  parts.push(Buffer.from([0]));
  return Buffer.concat(parts);
}

function opt(udpSize: number, flags: number, version: number, options: Buffer = Buffer.alloc(0)): Buffer {
  const b = Buffer.alloc(11);
  b.writeUInt16BE(41, 1);
  b.writeUInt16BE(udpSize, 3);
  b.writeUInt32BE(((version & 0xff) << 16 | flags) >>> 0, 5);
  b.writeUInt16BE(options.length, 9);
  return Buffer.concat([b, options]);
}

function query(labels: string[], type: number, flags = 0x0100, edns?: Buffer): Buffer {
  const h = Buffer.alloc(12);
  h.writeUInt16BE(flags, 2);
  h.writeUInt16BE(1, 4);
  h.writeUInt16BE(edns ? 1 : 0, 10);
  const tail = Buffer.alloc(4);
  tail.writeUInt16BE(type, 0);
  tail.writeUInt16BE(1, 2);
  return Buffer.concat([h, name(labels), tail, edns ?? Buffer.alloc(0)]);
}

/** The valid queries mutations start from: the names the fuzz upstream knows, common types, EDNS variants. */
export function corpus(): Buffer[] {
  // Names under home.arpa and the private reverse zones are answered by forward itself (RFC 6303): most of the
  // load stays in the server; the rest reaches the upstream.
  const names = [
    ['www', 'example'], ['big', 'example'], ['nx', 'example'], ['a', 'b', 'c', 'd', 'example'],
    ['nas', 'home', 'arpa'], ['printer', 'home', 'arpa'], ['x'.repeat(63), 'home', 'arpa'], ['a', 'b', 'c', 'home', 'arpa'],
    ['1', '1', '168', '192', 'in-addr', 'arpa'], ['5', '0', '0', '10', 'in-addr', 'arpa'], ['home', 'arpa'], [],
  ];
  const types = [1, 28, 16, 15, 2, 6, 12, 33, 255, 65, 64];
  const ecs = Buffer.from([0, 8, 0, 7, 0, 1, 24, 0, 192, 0, 2]);
  const cookie = Buffer.from([0, 10, 0, 8, 1, 2, 3, 4, 5, 6, 7, 8]);
  const out: Buffer[] = [];
  for (const n of names) {
    for (const t of types) {
      out.push(query(n, t));
      out.push(query(n, t, 0x0100, opt(1232, 0, 0)));
      out.push(query(n, t, 0x0110, opt(4096, 0x8000, 0, Buffer.concat([ecs, cookie]))));
    }
  }
  return out;
}

/** One mutated packet from `base` (never modified). */
export function mutate(rng: Rng, base: Buffer): Buffer {
  let p: Buffer = Buffer.from(base);
  const rounds = 1 + rng.int(3);
  for (let r = 0; r < rounds; r++) {
    switch (rng.int(12)) {
      case 0: { // bit flips
        const n = 1 + rng.int(8);
        for (let i = 0; i < n && p.length; i++) p[rng.int(p.length)] ^= 1 << rng.int(8);
        break;
      }
      case 1: // truncation
        p = p.subarray(0, rng.int(p.length + 1));
        break;
      case 2: { // a label length byte in the question set to anything (0x40/0x80 label types, 0xc0 pointers)
        const offs: number[] = [];
        for (let o = 12; o < p.length && p[o] !== 0 && offs.length < 128;) {
          offs.push(o);
          if (p[o] >= 0x40) break;
          o += p[o] + 1;
        }
        if (offs.length) p[rng.pick(offs)] = rng.pick([0, 1, 62, 63, 64, 127, 128, 191, 192, 255, rng.int(256)]);
        break;
      }
      case 3: { // a compression pointer somewhere: self, backwards, forwards, into the header, a loop
        if (p.length < 14) break;
        const at = 12 + rng.int(p.length - 12);
        const target = rng.pick([0, 2, 12, at, at + 2, p.length, 0x3fff, rng.int(p.length + 16)]);
        p[at] = 0xc0 | ((target >> 8) & 0x3f);
        if (at + 1 < p.length) p[at + 1] = target & 0xff;
        break;
      }
      case 4: { // bad OPT records appended
        const kind = rng.int(7);
        let o: Buffer;
        if (kind === 0) o = opt(rng.int(65536), rng.int(65536), rng.int(256));
        else if (kind === 1) o = Buffer.concat([opt(1232, 0, 0), opt(512, 0, 0)]); // two OPTs (count fixed below)
        else if (kind === 2) { // option length overruns the OPT data
          o = opt(1232, 0, 0, Buffer.from([0, 10, 0, 200, 1, 2]));
        } else if (kind === 3) { // rdlength beyond the packet
          o = opt(1232, 0, 0);
          o.writeUInt16BE(rng.int(65536), 9);
        } else if (kind === 4) { // owner not the root
          o = Buffer.concat([name(['x']), opt(1232, 0, 0).subarray(1)]);
        } else if (kind === 5) o = opt(0, 0x8000, 0); // size 0
        else o = opt(4096, 0, 0, Buffer.alloc(rng.int(400), rng.int(256)));
        p = Buffer.concat([p, o]);
        if (p.length >= 12) p.writeUInt16BE(Math.min(0xffff, p.readUInt16BE(10) + (kind === 1 ? 2 : 1)), 10);
        break;
      }
      case 5: // huge or random section counts
        if (p.length >= 12) p.writeUInt16BE(rng.pick([0, 2, 0xff, 0xffff, rng.int(65536)]), 4 + 2 * rng.int(4));
        break;
      case 6: // opcode and flags
        if (p.length >= 4) p.writeUInt16BE((p.readUInt16BE(2) & 0x8000) | rng.int(0x8000), 2);
        break;
      case 7: { // QTYPE/QCLASS, meta types included
        let o = 12;
        while (o < p.length && p[o] !== 0 && p[o] < 0x40) o += p[o] + 1;
        if (o + 5 <= p.length) {
          p.writeUInt16BE(rng.pick([0, 41, 251, 252, 253, 254, 255, 249, 250, 65535, rng.int(65536)]), o + 1);
          if (rng.int(4) === 0) p.writeUInt16BE(rng.pick([0, 3, 4, 254, 255, rng.int(65536)]), o + 3);
        }
        break;
      }
      case 8: // random bytes appended
        p = Buffer.concat([p, Buffer.from(Array.from({ length: rng.int(64) }, () => rng.int(256)))]);
        break;
      case 9: { // a record appended to the answer/authority sections (a query should have none)
        const rr = Buffer.concat([Buffer.from([0xc0, 0x0c]), Buffer.from([0, rng.int(64), 0, 1, 0, 0, 0, 60, 0, 4, 192, 0, 2, 1])]);
        p = Buffer.concat([p, rr]);
        if (p.length >= 12) p.writeUInt16BE(Math.min(0xffff, p.readUInt16BE(6) + 1), 6);
        break;
      }
      case 10: // entirely random
        p = Buffer.from(Array.from({ length: rng.int(80) }, () => rng.int(256)));
        break;
      default: { // a long name: many labels, up to and past 255 bytes
        const labels = Array.from({ length: 1 + rng.int(130) }, () => 'a'.repeat(1 + rng.int(3)));
        p = query(labels, 1, 0x0100, rng.int(2) ? opt(1232, 0, 0) : undefined);
      }
    }
  }
  return p;
}

export interface FuzzStats {
  sent: number;
  udpSent: number;
  tcpSent: number;
  udpReplies: number;
  tcpReplies: number;
  /** Largest reply/query size ratio over UDP, and the sizes. */
  maxRatio: number;
  maxRatioQuery: number;
  maxRatioReply: number;
  largestUdpReply: number;
  elapsedMs: number;
  /** True when the time bound stopped the run before the count. */
  timedOut: boolean;
  /** UDP replies that break a rule every reply must keep (see `checkReply`), and the first few of them. */
  violations: number;
  examples: string[];
}

export interface FuzzOptions {
  readonly port: number;
  readonly count: number;
  readonly seed: number;
  /** Share of packets sent over TCP (framed, pipelined on a few connections). */
  readonly tcpShare?: number;
  /** Stop sending after this long, whatever the count. */
  readonly maxMs: number;
  /** UDP packets sent before yielding to the event loop (reads replies). */
  readonly burst?: number;
  readonly onProgress?: (s: FuzzStats) => void;
  /**
   * Flow control: how many UDP packets the server has taken in so far (its own counter). Sending waits while
   * more than `window` are unread, so the packets are parsed by the server rather than dropped by the kernel.
   */
  readonly serverUdpReceived?: () => Promise<number>;
  readonly window?: number;
}

/**
 * Sends `count` mutated packets and counts the replies. UDP packets carry a sequence number as their ID when
 * they are long enough, so a reply can be matched to the size of the packet that caused it (amplification).
 */
export async function runFuzz(o: FuzzOptions): Promise<FuzzStats> {
  const rng = new Rng(o.seed);
  const base = corpus();
  const tcpShare = o.tcpShare ?? 0.1;
  const burst = o.burst ?? 64;
  const stats: FuzzStats = { sent: 0, udpSent: 0, tcpSent: 0, udpReplies: 0, tcpReplies: 0, maxRatio: 0, maxRatioQuery: 0, maxRatioReply: 0, largestUdpReply: 0, elapsedMs: 0, timedOut: false, violations: 0, examples: [] };
  /**
   * One UDP socket per 65,536 packets: the ID is a sequence number, and a forwarded query may be answered
   * seconds later, so after a wrap a late reply on a shared socket would be checked against the wrong query.
   */
  interface Lap {
    readonly udp: dgram.Socket;
    readonly sizeById: Uint16Array;
    readonly flagsById: Uint16Array;
    readonly arById: Uint16Array;
  }
  const laps: Lap[] = [];
  const newLap = async (): Promise<Lap> => {
    const lap: Lap = { udp: dgram.createSocket('udp4'), sizeById: new Uint16Array(65536), flagsById: new Uint16Array(65536), arById: new Uint16Array(65536) };
    await new Promise<void>((r) => lap.udp.bind(0, '127.0.0.1', () => r()));
    lap.udp.on('error', () => undefined);
    lap.udp.on('message', (msg) => onReply(lap, msg));
    laps.push(lap);
    return lap;
  };
  const onReply = (lap: Lap, msg: Buffer): void => {
    const { sizeById, flagsById, arById } = lap;
    stats.udpReplies++;
    if (msg.length > stats.largestUdpReply) stats.largestUdpReply = msg.length;
    if (msg.length < 2) return;
    const id = msg.readUInt16BE(0);
    const q = sizeById[id];
    if (q >= 12) {
      const problem = checkReply(msg, flagsById[id], arById[id]);
      if (problem !== null) {
        stats.violations++;
        if (stats.examples.length < 5) stats.examples.push(`${problem}: reply ${msg.subarray(0, 64).toString('hex')}`);
      }
    }
    if (q >= 12 && msg.length / q > stats.maxRatio) {
      stats.maxRatio = msg.length / q;
      stats.maxRatioQuery = q;
      stats.maxRatioReply = msg.length;
    }
  };

  const conns: (net.Socket | null)[] = [null, null, null, null];
  const open = (i: number): net.Socket => {
    let c = conns[i];
    if (c && !c.destroyed && c.writable) return c;
    c = net.connect({ host: '127.0.0.1', port: o.port });
    c.on('error', () => undefined);
    c.on('data', (d: Buffer) => {
      // Not reframed: the stream may be misframed on purpose; the count of bytes is what matters here.
      stats.tcpReplies += d.length > 0 ? 1 : 0;
    });
    const mine = c;
    c.on('close', () => {
      if (conns[i] === mine) conns[i] = null;
    });
    conns[i] = c;
    return c;
  };

  const started = Date.now();
  let seq = 0;
  let lap = await newLap();
  const window = o.window ?? 2000;
  let lastSeen = 0;
  try {
    while (stats.sent < o.count) {
      if (Date.now() - started > o.maxMs) {
        stats.timedOut = true;
        break;
      }
      for (let b = 0; b < burst && stats.sent < o.count; b++) {
        const p = mutate(rng, rng.pick(base));
        stats.sent++;
        if (rng.next() < tcpShare) {
          const c = open(rng.int(conns.length));
          const f = Buffer.alloc(p.length + 2);
          // Now and then a length prefix that lies: the stream is misframed from there on.
          f.writeUInt16BE(rng.int(50) === 0 ? rng.int(65536) : p.length, 0);
          p.copy(f, 2);
          if (c.writableLength < 256 * 1024) c.write(f);
          stats.tcpSent++;
        } else {
          if (p.length >= 2) {
            seq = (seq + 1) & 0xffff;
            if (seq === 0) lap = await newLap();
            p.writeUInt16BE(seq, 0);
            const { sizeById, flagsById, arById } = lap;
            sizeById[seq] = p.length;
            if (p.length >= 12) {
              flagsById[seq] = p.readUInt16BE(2);
              arById[seq] = p.readUInt16BE(10);
            }
          }
          lap.udp.send(p, o.port, '127.0.0.1');
          stats.udpSent++;
        }
      }
      await new Promise((r) => setImmediate(r));
      if (o.serverUdpReceived && stats.udpSent - lastSeen > window) {
        // A packet the kernel dropped never shows up: give up waiting after a while and go on.
        const waitUntil = Date.now() + 250;
        for (;;) {
          lastSeen = await o.serverUdpReceived();
          if (stats.udpSent - lastSeen <= window / 2 || Date.now() > waitUntil) break;
          await new Promise((r) => setTimeout(r, 20));
        }
        if (stats.udpSent - lastSeen > window) lastSeen = stats.udpSent - window / 2;
      }
      if ((stats.sent & 0x3fff) < burst) {
        stats.elapsedMs = Date.now() - started;
        o.onProgress?.(stats);
      }
    }
    // Let the last replies arrive.
    await new Promise((r) => setTimeout(r, 300));
  } finally {
    stats.elapsedMs = Date.now() - started;
    for (const c of conns) c?.destroy();
    for (const l of laps) l.udp.close();
  }
  return stats;
}

/**
 * What any reply to a query must be, whatever the query: a response (QR) with the query's opcode; for an opcode
 * other than QUERY, NOTIMP with RA clear (RFC 1035 §4.1.1, RFC 6895 §2.2: RA is defined for QUERY only);
 * no bigger than 512 bytes when the query had no additional record (so no OPT: RFC 1035 §2.3.4, RFC 6891 §7).
 */
export function checkReply(reply: Buffer, queryFlags: number, queryArcount: number): string | null {
  if (reply.length < 12) return 'shorter than a header';
  const flags = reply.readUInt16BE(2);
  if ((flags & 0x8000) === 0) return 'QR clear';
  const opcode = (queryFlags >> 11) & 0xf;
  if (((flags >> 11) & 0xf) !== opcode) return `opcode ${(flags >> 11) & 0xf} for ${opcode}`;
  if (opcode !== 0 && (flags & 0x0f) !== 4) return `RCODE ${flags & 0x0f} for opcode ${opcode}`;
  if (opcode !== 0 && (flags & 0x0080) !== 0) return `RA set for opcode ${opcode}`;
  if (queryArcount === 0 && reply.length > 512) return `${reply.length} bytes without EDNS`;
  return null;
}
