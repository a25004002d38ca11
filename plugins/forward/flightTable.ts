/**
 * The questions in flight to upstreams, found by the client's question so identical queries merge.
 *
 * Not a Map (see plugins/pkg/probeTable.ts): a Map that took a Flight per miss and deleted it on the answer made
 * V8 copy about 1 KB per miss (the Flight and the client query it holds) into the old generation, where it died;
 * the scavenges that did so cost about a sixth of a miss. A fixed table sized for `max_concurrent` instead.
 *
 * The key is read from the client's bytes (its question name folded to lower case, type, class) plus the bits
 * that make a different upstream question (DO, CD, AD): no key string per miss.
 */
import { HEADER_LEN } from '../../core/wire/constants';
import { wireNameHash } from '../../core/wire/names';
import { ProbeTable } from '../pkg/probeTable';

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
  private readonly table: ProbeTable<F>;

  /** `bound`: the most flights ever held at once (the forwarder's max_concurrent). */
  constructor(bound: number) {
    this.table = new ProbeTable<F>(bound);
  }

  get size(): number {
    return this.table.size;
  }

  /** The flight asking the question raw[HEADER_LEN, questionEnd) with these bits, if one is in flight. */
  find(hash: number, raw: Buffer, questionEnd: number, bits: number): F | undefined {
    const t = this.table;
    for (let s = t.first(hash); s !== -1; s = t.next(s, hash)) {
      const f = t.at(s) as F;
      if (f.bits === bits && sameQuestion(f, raw, questionEnd)) return f;
    }
    return undefined;
  }

  /** Adds a flight (none asking its question is held: `find` said so). */
  add(f: F): void {
    this.table.add(f.hash, f);
  }

  /** Removes this flight if it is held. */
  remove(f: F): void {
    const slot = this.table.slotOf(f.hash, f);
    if (slot !== -1) this.table.removeAt(slot);
  }

  /** Every flight held (a copy: the caller may remove while it walks). */
  values(): F[] {
    const out: F[] = [];
    for (let s = 0; s < this.table.capacity; s++) {
      const f = this.table.at(s);
      if (f !== null) out.push(f);
    }
    return out;
  }

  clear(): void {
    this.table.clear();
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
