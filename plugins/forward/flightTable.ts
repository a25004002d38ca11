/**
 * The questions in flight to upstreams, found by the client's question so identical queries merge.
 *
 * Not a Map: a Map that takes a Flight per miss and deletes it on the answer kept every Flight (and the client
 * query it holds: context, bytes, callbacks) alive through the young generation's next collection, so V8 copied
 * about 1 KB per miss into the old generation, where it died; the scavenges that did so cost about a sixth of a
 * miss. This table is a fixed array sized for `max_concurrent` (open addressing, linear probing, deletion by
 * backward shift, so no tombstones), and a settled flight's slot is cleared at once.
 *
 * The key is read from the client's bytes (its question name folded to lower case, type, class) plus the bits
 * that make a different upstream question (DO, CD, AD): no key string per miss.
 */
import { HEADER_LEN } from '../../core/wire/constants';
import { wireNameHash } from '../../core/wire/names';

/** What the table needs of a flight: its key's hash and bits, and its own question to compare with. */
export interface Keyed {
  readonly hash: number;
  readonly bits: number;
  /** The upstream query: the question sits at [HEADER_LEN, qEnd), its name in lower case. */
  readonly query: Buffer;
  readonly qEnd: number;
}

/** The hash of a client's question and its bits, as `FlightTable` keys it. */
export function questionHash(raw: Buffer, questionEnd: number, bits: number): number {
  const h = wireNameHash(raw, HEADER_LEN, questionEnd - 4);
  const tail = (raw[questionEnd - 4] << 24) | (raw[questionEnd - 3] << 16) | (raw[questionEnd - 2] << 8) | raw[questionEnd - 1];
  return (Math.imul(h ^ tail, 0x01000193) ^ bits) >>> 0;
}

export class FlightTable<F extends Keyed> {
  private readonly hashes: Uint32Array;
  private readonly slots: (F | null)[];
  private readonly mask: number;
  private readonly shift: number;
  private count = 0;

  /** `bound`: the most flights ever held at once (the forwarder's max_concurrent). */
  constructor(bound: number) {
    let cap = 16;
    while (cap < bound * 2) cap *= 2;
    this.hashes = new Uint32Array(cap);
    this.slots = new Array<F | null>(cap).fill(null);
    this.mask = cap - 1;
    this.shift = 32 - Math.log2(cap);
  }

  get size(): number {
    return this.count;
  }

  /** The flight asking the question raw[HEADER_LEN, questionEnd) with these bits, if one is in flight. */
  find(hash: number, raw: Buffer, questionEnd: number, bits: number): F | undefined {
    const slots = this.slots;
    for (let i = this.home(hash); ; i = (i + 1) & this.mask) {
      const f = slots[i];
      if (f === null) return undefined;
      if (this.hashes[i] === hash && f.bits === bits && sameQuestion(f, raw, questionEnd)) return f;
    }
  }

  /** Adds a flight (none asking its question is held: `find` said so). */
  add(f: F): void {
    if (this.count >= this.mask) throw new Error('flight table full');
    let i = this.home(f.hash);
    while (this.slots[i] !== null) i = (i + 1) & this.mask;
    this.slots[i] = f;
    this.hashes[i] = f.hash;
    this.count++;
  }

  /** Removes this flight if it is held. */
  remove(f: F): void {
    const slots = this.slots;
    const mask = this.mask;
    let hole = this.home(f.hash);
    while (slots[hole] !== f) {
      if (slots[hole] === null) return;
      hole = (hole + 1) & mask;
    }
    for (let i = (hole + 1) & mask; slots[i] !== null; i = (i + 1) & mask) {
      const h = this.home(this.hashes[i]);
      // Move the entry at i into the hole when its home is not cyclically within (hole, i].
      if (hole <= i ? h <= hole || h > i : h <= hole && h > i) {
        slots[hole] = slots[i];
        this.hashes[hole] = this.hashes[i];
        hole = i;
      }
    }
    slots[hole] = null;
    this.count--;
  }

  /** Every flight held (a copy: the caller may remove while it walks). */
  values(): F[] {
    const out: F[] = [];
    for (const f of this.slots) if (f !== null) out.push(f);
    return out;
  }

  clear(): void {
    this.slots.fill(null);
    this.count = 0;
  }

  private home(hash: number): number {
    return Math.imul(hash, 0x9e3779b1) >>> this.shift;
  }
}

/** The client's question equals the flight's: the name without letter case, type and class exactly. */
function sameQuestion(f: Keyed, raw: Buffer, questionEnd: number): boolean {
  if (f.qEnd !== questionEnd) return false;
  const q = f.query;
  const nameEnd = questionEnd - 4;
  for (let i = HEADER_LEN; i < nameEnd; i++) {
    let c = raw[i];
    if (c >= 65 && c <= 90) c += 32;
    if (c !== q[i]) return false;
  }
  for (let i = nameEnd; i < questionEnd; i++) if (raw[i] !== q[i]) return false;
  return true;
}
