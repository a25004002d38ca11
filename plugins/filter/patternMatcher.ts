/**
 * Regular expressions and wildcards from lists someone else wrote, matched in time linear in the name: the
 * expression is compiled to a small program (Thompson's construction) and run as a Pike VM, a set of threads
 * stepping together over the input, so no expression can backtrack catastrophically (`(a+)+$` costs what `a+$`
 * costs). Supported: literals, `.`, classes `[a-z]` `[^…]`, `\d \w \s \. …`, groups `( )` `(?: )`, `|`,
 * `* + ?`, `{m}` `{m,}` `{m,n}`, and `^ $` anywhere. Back-references and look-arounds are refused (unsupported):
 * they cannot be matched in linear time. Programs are bounded in size (MAX_PROGRAM).
 */

/** Longest expression accepted, and most instructions one may compile to (after `{m,n}` expansion). */
export const MAX_PATTERN_LENGTH = 512;
export const MAX_PROGRAM = 2000;

const enum Op {
  Char = 0,
  Split = 1,
  Jmp = 2,
  Bol = 3,
  Eol = 4,
  Match = 5,
}

type Node =
  | { t: 'set'; set: Uint8Array }
  | { t: 'cat'; items: Node[] }
  | { t: 'alt'; a: Node; b: Node }
  | { t: 'rep'; e: Node; min: number; max: number }
  | { t: 'bol' }
  | { t: 'eol' }
  | { t: 'empty' };

export class PatternError extends Error {}

function setOf(chars: string): Uint8Array {
  const s = new Uint8Array(256);
  for (const c of chars) s[c.charCodeAt(0) & 0xff] = 1;
  return s;
}
const DIGITS = '0123456789';
const WORD = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_';
const SPACE = ' \t\n\r\f\v';

function escapeSet(c: string): Uint8Array | null {
  switch (c) {
    case 'd': return setOf(DIGITS);
    case 'w': return setOf(WORD);
    case 's': return setOf(SPACE);
    case 'D': case 'W': case 'S': {
      const s = escapeSet(c.toLowerCase()) as Uint8Array;
      for (let i = 0; i < 256; i++) s[i] ^= 1;
      return s;
    }
    default: return null;
  }
}

class Parser {
  private pos = 0;
  constructor(private readonly src: string) {}

  parse(): Node {
    const n = this.alt();
    if (this.pos < this.src.length) throw new PatternError(`unexpected ${this.src[this.pos]} at ${this.pos}`);
    return n;
  }

  private alt(): Node {
    let left = this.cat();
    while (this.src[this.pos] === '|') {
      this.pos++;
      left = { t: 'alt', a: left, b: this.cat() };
    }
    return left;
  }

  private cat(): Node {
    const items: Node[] = [];
    while (this.pos < this.src.length && this.src[this.pos] !== '|' && this.src[this.pos] !== ')') items.push(this.repeat());
    return items.length === 1 ? items[0] : items.length === 0 ? { t: 'empty' } : { t: 'cat', items };
  }

  private repeat(): Node {
    let e = this.atom();
    for (;;) {
      const c = this.src[this.pos];
      let min: number;
      let max: number;
      if (c === '*') [min, max] = [0, -1];
      else if (c === '+') [min, max] = [1, -1];
      else if (c === '?') [min, max] = [0, 1];
      else if (c === '{' && /^\{\d+(,\d*)?\}/.test(this.src.slice(this.pos))) {
        const m = /^\{(\d+)(,(\d*))?\}/.exec(this.src.slice(this.pos)) as RegExpExecArray;
        min = Number(m[1]);
        max = m[2] === undefined ? min : m[3] === '' ? -1 : Number(m[3]);
        if (min > 255 || max > 255 || (max !== -1 && max < min)) throw new PatternError(`bad repetition ${m[0]}`);
        this.pos += m[0].length - 1;
      } else return e;
      this.pos++;
      // Lazy and possessive forms match the same names (we only ask whether a match exists).
      if (this.src[this.pos] === '?' || this.src[this.pos] === '+') this.pos++;
      e = { t: 'rep', e, min, max };
    }
  }

  private atom(): Node {
    const c = this.src[this.pos++];
    if (c === '(') {
      if (this.src[this.pos] === '?') {
        if (this.src[this.pos + 1] !== ':') throw new PatternError('look-arounds and named groups are not supported');
        this.pos += 2;
      }
      const inner = this.alt();
      if (this.src[this.pos] !== ')') throw new PatternError('missing )');
      this.pos++;
      return inner;
    }
    if (c === '[') return this.cls();
    if (c === '.') {
      const s = new Uint8Array(256).fill(1);
      s[10] = 0;
      return { t: 'set', set: s };
    }
    if (c === '^') return { t: 'bol' };
    if (c === '$') return { t: 'eol' };
    if (c === '\\') return { t: 'set', set: this.escape() };
    if (c === '*' || c === '+' || c === '?' || c === ')') throw new PatternError(`nothing to repeat at ${this.pos - 1}`);
    return { t: 'set', set: setOf(c.toLowerCase() + c.toUpperCase()) };
  }

  private escape(): Uint8Array {
    const e = this.src[this.pos++];
    if (e === undefined) throw new PatternError('trailing backslash');
    if (/[1-9]/.test(e)) throw new PatternError('back-references are not supported');
    if (e === 'b' || e === 'B') throw new PatternError('word boundaries are not supported');
    const s = escapeSet(e);
    if (s !== null) return s;
    if (e === 'n') return setOf('\n');
    if (e === 't') return setOf('\t');
    return setOf(e.toLowerCase() + e.toUpperCase());
  }

  private cls(): Node {
    const set = new Uint8Array(256);
    let negate = false;
    if (this.src[this.pos] === '^') {
      negate = true;
      this.pos++;
    }
    let first = true;
    for (;;) {
      if (this.pos >= this.src.length) throw new PatternError('missing ]');
      let c = this.src[this.pos++];
      if (c === ']' && !first) break;
      first = false;
      if (c === '\\') {
        const e = this.src[this.pos++] ?? '';
        const s = escapeSet(e);
        if (s !== null) {
          for (let i = 0; i < 256; i++) set[i] |= s[i];
          continue;
        }
        c = e;
      }
      let hi = c;
      if (this.src[this.pos] === '-' && this.src[this.pos + 1] !== ']' && this.pos + 1 < this.src.length) {
        this.pos++;
        hi = this.src[this.pos++];
        if (hi === '\\') hi = this.src[this.pos++] ?? '';
      }
      const a = c.charCodeAt(0) & 0xff;
      const b = hi.charCodeAt(0) & 0xff;
      if (b < a) throw new PatternError(`bad range ${c}-${hi}`);
      for (let i = a; i <= b; i++) {
        set[i] = 1;
        const ch = String.fromCharCode(i);
        set[ch.toLowerCase().charCodeAt(0) & 0xff] = 1;
        set[ch.toUpperCase().charCodeAt(0) & 0xff] = 1;
      }
    }
    if (negate) for (let i = 0; i < 256; i++) set[i] ^= 1;
    return { t: 'set', set };
  }
}

/** A compiled expression: flat arrays of instructions, run by `test`. */
export class Pattern {
  private readonly op: Uint8Array;
  private readonly x: Int32Array;
  private readonly y: Int32Array;
  private readonly sets: Uint8Array[];
  private readonly setOf: Int32Array;
  private readonly mark: Uint32Array;
  private gen = 0;
  private cur: Int32Array;
  private nxt: Int32Array;

  constructor(readonly source: string) {
    if (source.length > MAX_PATTERN_LENGTH) throw new PatternError(`longer than ${MAX_PATTERN_LENGTH} characters`);
    const ast = new Parser(source).parse();
    const ops: number[] = [];
    const xs: number[] = [];
    const ys: number[] = [];
    const sets: Uint8Array[] = [];
    const setIdx: number[] = [];
    const emit = (o: Op, x = 0, y = 0, s = -1): number => {
      if (ops.length >= MAX_PROGRAM) throw new PatternError(`compiles to more than ${MAX_PROGRAM} instructions`);
      ops.push(o);
      xs.push(x);
      ys.push(y);
      setIdx.push(s);
      return ops.length - 1;
    };
    const gen = (n: Node): void => {
      switch (n.t) {
        case 'set':
          sets.push(n.set);
          emit(Op.Char, 0, 0, sets.length - 1);
          return;
        case 'bol': emit(Op.Bol); return;
        case 'eol': emit(Op.Eol); return;
        case 'empty': return;
        case 'cat': for (const i of n.items) gen(i); return;
        case 'alt': {
          const split = emit(Op.Split);
          xs[split] = ops.length;
          gen(n.a);
          const jmp = emit(Op.Jmp);
          ys[split] = ops.length;
          gen(n.b);
          xs[jmp] = ops.length;
          return;
        }
        case 'rep': {
          for (let i = 0; i < n.min; i++) gen(n.e);
          if (n.max === -1) {
            const split = emit(Op.Split);
            xs[split] = ops.length;
            gen(n.e);
            emit(Op.Jmp, split);
            ys[split] = ops.length;
          } else {
            const splits: number[] = [];
            for (let i = n.min; i < n.max; i++) {
              const split = emit(Op.Split);
              xs[split] = ops.length;
              splits.push(split);
              gen(n.e);
            }
            for (const s of splits) ys[s] = ops.length;
          }
          return;
        }
      }
    };
    gen(ast);
    emit(Op.Match);
    this.op = Uint8Array.from(ops);
    this.x = Int32Array.from(xs);
    this.y = Int32Array.from(ys);
    this.sets = sets;
    this.setOf = Int32Array.from(setIdx);
    this.mark = new Uint32Array(ops.length);
    this.cur = new Int32Array(ops.length);
    this.nxt = new Int32Array(ops.length);
  }

  get size(): number {
    return this.op.length;
  }

  /** Adds pc and what it reaches without reading a character; returns true when that includes Match. */
  private add(list: Int32Array, n: number, pc: number, at: number, len: number): number {
    const stack = [pc];
    while (stack.length > 0) {
      const p = stack.pop() as number;
      if (this.mark[p] === this.gen) continue;
      this.mark[p] = this.gen;
      switch (this.op[p]) {
        case Op.Jmp: stack.push(this.x[p]); break;
        case Op.Split: stack.push(this.y[p], this.x[p]); break;
        case Op.Bol: if (at === 0) stack.push(p + 1); break;
        case Op.Eol: if (at === len) stack.push(p + 1); break;
        case Op.Match: return -1;
        default: list[n++] = p;
      }
    }
    return n;
  }

  /** True when the expression matches somewhere in `s` (like RegExp.test, case-insensitive). */
  test(s: string): boolean {
    const len = s.length;
    let cur = this.cur;
    let nxt = this.nxt;
    this.bump();
    let n = this.add(cur, 0, 0, 0, len);
    if (n < 0) return true;
    for (let i = 0; i < len; i++) {
      const c = s.charCodeAt(i) & 0xff;
      this.bump();
      let m = 0;
      for (let k = 0; k < n; k++) {
        const p = cur[k];
        if (this.sets[this.setOf[p]][c] === 1) {
          m = this.add(nxt, m, p + 1, i + 1, len);
          if (m < 0) return true;
        }
      }
      // Unanchored: a match may also start at the next character.
      m = this.add(nxt, m, 0, i + 1, len);
      if (m < 0) return true;
      const t = cur;
      cur = nxt;
      nxt = t;
      n = m;
    }
    return false;
  }

  private bump(): void {
    if (++this.gen === 0xffffffff) {
      this.mark.fill(0);
      this.gen = 1;
    }
  }
}
