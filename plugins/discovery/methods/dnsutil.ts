/**
 * DNS helpers shared by the rdns and mdns methods: building a PTR query, recognising its reply, picking one
 * name out of several PTR records.
 */
import * as dnsPacket from 'dns-packet';
import { nextId, QUESTIONLESS_ANY_ERROR, replyMismatch } from '../../pkg/dnsReply';

export const RCODE_NOERROR = 0;
export const RCODE_SERVFAIL = 2;
export const RCODE_NXDOMAIN = 3;

/** A random 16-bit message ID from the CSPRNG (Math.random is predictable): the one forward uses too. */
export const randomId: () => number = nextId;

/**
 * A PTR/IN query for `qname` (sent in lower case: the reply's question is compared to it byte for byte, case
 * folded); `rd` sets recursion desired (yes for a resolver, no for mDNS).
 */
export function buildPtrQuery(qname: string, id: number, rd: boolean): Buffer {
  return dnsPacket.encode({
    type: 'query',
    id,
    flags: rd ? dnsPacket.RECURSION_DESIRED : 0,
    questions: [{ type: 'PTR', name: qname.toLowerCase(), class: 'IN' }],
  });
}

export interface PtrReply {
  rcode: number;
  truncated: boolean;
  /** Whether the reply repeated the question (an error reply may omit it). */
  questionEchoed: boolean;
  /** Targets of the PTR records that answer `qname` (directly or through a CNAME chain), trailing dot stripped. */
  names: string[];
}

function sameName(a: string, b: string): boolean {
  return stripDot(a).toLowerCase() === stripDot(b).toLowerCase();
}

function stripDot(name: string): string {
  return name.endsWith('.') ? name.slice(0, -1) : name;
}

/**
 * Decodes a datagram as the reply to our PTR query (`query`: the bytes sent, from buildPtrQuery): undefined when
 * it is not (not a response, another ID, another question, undecodable) — the caller ignores it and keeps
 * waiting for the real one. The header and question are checked on the wire by the same test forward uses
 * (plugins/pkg/dnsReply.ts), except that a reply without a question section is accepted with any error rcode
 * (some servers drop the question from FORMERR/SERVFAIL/REFUSED replies); a positive answer must name the question.
 */
export function matchPtrReply(msg: Buffer, query: Buffer, qname: string): PtrReply | undefined {
  if (replyMismatch(msg, query, query.length, QUESTIONLESS_ANY_ERROR) !== undefined) return undefined;
  const flags = msg.readUInt16BE(2);
  const rcode = flags & 0xf;
  let packet: dnsPacket.DecodedPacket;
  try {
    packet = dnsPacket.decode(msg);
  } catch {
    // Undecodable body: still usable as an error reply when the header says so and there is no question.
    if (rcode !== RCODE_NOERROR && msg.readUInt16BE(4) === 0) {
      return { rcode, truncated: (flags & 0x0200) !== 0, questionEchoed: false, names: [] };
    }
    return undefined;
  }
  const questions = packet.questions ?? [];
  if (questions.length === 0) {
    if (rcode === RCODE_NOERROR) return undefined;
  } else {
    const q = questions[0]!;
    if (questions.length !== 1 || q.type !== 'PTR' || (q.class !== undefined && q.class !== 'IN') || !sameName(q.name, qname)) {
      return undefined;
    }
  }
  return {
    rcode,
    truncated: (flags & 0x0200) !== 0,
    questionEchoed: questions.length > 0,
    names: ptrTargets(packet.answers ?? [], qname),
  };
}

/** PTR targets for `qname`, following CNAMEs (RFC 2317 classless reverse delegation answers with a CNAME). */
export function ptrTargets(answers: dnsPacket.Answer[], qname: string): string[] {
  let owners = new Set([stripDot(qname).toLowerCase()]);
  // Follow a CNAME chain, bounded so a loop cannot spin.
  for (let hop = 0; hop < 8; hop++) {
    let grew = false;
    for (const a of answers) {
      if (a.type === 'CNAME' && owners.has(stripDot(a.name).toLowerCase())) {
        const target = stripDot(String(a.data)).toLowerCase();
        if (!owners.has(target)) {
          owners = new Set([...owners, target]);
          grew = true;
        }
      }
    }
    if (!grew) break;
  }
  const names: string[] = [];
  for (const a of answers) {
    if (a.type !== 'PTR' || (a.class !== undefined && a.class !== 'IN')) continue;
    if (!owners.has(stripDot(a.name).toLowerCase())) continue;
    const target = cleanHostname(String(a.data));
    if (target !== undefined) names.push(target);
  }
  return names;
}

/**
 * A host name fit to store: surrounding whitespace and the trailing dot stripped, 1–253 characters, no
 * control characters. Inner spaces are kept: DHCP clients send names like `Anna's iPad` (ISC and Kea keep
 * them), and they are what a person recognises. Undefined otherwise (the root name `.`, garbage).
 */
export function cleanHostname(name: string | undefined): string | undefined {
  if (typeof name !== 'string') return undefined;
  const n = stripDot(name.trim()).trim();
  if (n.length === 0 || n.length > 253) return undefined;
  // eslint-disable-next-line no-control-regex
  if (/[\x00-\x1f\x7f]/.test(n)) return undefined;
  return n;
}

/**
 * Picks one name among several PTR records, independently of the order the server sent them in (resolvers
 * rotate RRsets): the shortest, ties broken by case-insensitive lexical order, then by exact code-point order.
 * The shortest is usually the host's own name (`laptop.lan`) rather than a longer alias or a name in a
 * generated sub-zone (`laptop.dhcp.example.lan`), and any fixed rule keeps a client from flapping between
 * names on every discovery.
 */
export function pickName(names: readonly string[]): string | undefined {
  let best: string | undefined;
  for (const n of names) {
    if (best === undefined || compareNames(n, best) < 0) best = n;
  }
  return best;
}

function compareNames(a: string, b: string): number {
  if (a.length !== b.length) return a.length - b.length;
  const la = a.toLowerCase();
  const lb = b.toLowerCase();
  if (la !== lb) return la < lb ? -1 : 1;
  return a < b ? -1 : a > b ? 1 : 0;
}
