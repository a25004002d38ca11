/**
 * What every plugin that sends its own DNS question over UDP needs to believe an answer: an unguessable query ID
 * and the check that a datagram answers the query it sent (ID, QR and opcode, the same question). forward (its
 * pooled upstream sockets) and discovery (rdns and mdns, one connected socket per probe) both use it, over the
 * same socket engine (udpPool.ts, udpExchange.ts).
 */
import * as crypto from 'node:crypto';

const HEADER_LEN = 12;
const QR = 0x8000;
const OPCODE_MASK = 0x7800;

const ID_POOL_BYTES = 16384;
let idPool: Buffer = crypto.randomBytes(ID_POOL_BYTES);
let idPos = 0;

/**
 * A random 16-bit query ID from the CSPRNG (Math.random is predictable), taken from a pool filled by
 * crypto.randomBytes: one syscall per 8,192 IDs, no allocation per ID.
 */
export function nextId(): number {
  if (idPos >= ID_POOL_BYTES) {
    idPool = crypto.randomBytes(ID_POOL_BYTES);
    idPos = 0;
  }
  const id = (idPool[idPos] << 8) | idPool[idPos + 1];
  idPos += 2;
  return id;
}

export type RejectReason = 'short' | 'not_response' | 'id' | 'question';

/** RCODE bits (1 << rcode) of replies a server may send without a question: FORMERR, NOTIMP, REFUSED. */
export const QUESTIONLESS_REFUSALS = (1 << 1) | (1 << 4) | (1 << 5);
/** Every error RCODE: a reply that is not NOERROR may come without the question. */
export const QUESTIONLESS_ANY_ERROR = 0xfffe;

/**
 * Checks that `reply` answers `query` (the query's wire bytes, ID written; its question ends at `qEnd`; its
 * name in lower case): QR=1, opcode QUERY, the same ID and one question equal to ours — the name compared
 * case-insensitively (a server may echo 0x20 case), type and class exactly. A reply with no question at all is
 * accepted on the ID when its RCODE is in `questionless` (bits `1 << rcode`): a server that could not parse the
 * query cannot echo it. The source address and port are the caller's to check (its socket knows them).
 * Returns undefined when it answers, or why not. Allocates nothing.
 */
export function replyMismatch(reply: Buffer, query: Uint8Array, qEnd: number, questionless = QUESTIONLESS_REFUSALS): RejectReason | undefined {
  if (reply.length < HEADER_LEN) return 'short';
  if (reply[0] !== query[0] || reply[1] !== query[1]) return 'id';
  const flags = (reply[2] << 8) | reply[3];
  if ((flags & QR) === 0 || (flags & OPCODE_MASK) !== 0) return 'not_response';
  if (reply[4] === 0 && reply[5] === 0 && (questionless & (1 << (flags & 0x0f))) !== 0) return undefined;
  if (reply.length < qEnd) return 'short';
  if (reply[4] !== 0 || reply[5] !== 1) return 'question';
  const nameEnd = qEnd - 4;
  for (let i = HEADER_LEN; i < nameEnd; i++) {
    let c = reply[i];
    if (c >= 65 && c <= 90) c += 32;
    // Our own name bytes are lower-case already; length bytes (≤ 63) are never folded.
    if (c !== query[i]) return 'question';
  }
  for (let i = nameEnd; i < qEnd; i++) if (reply[i] !== query[i]) return 'question';
  return undefined;
}
