/**
 * The lists each group applies, and the verdict for a name: allow rules (allow lists, and `@@` exceptions in block
 * lists) win over block rules. Per group the tables are flattened into arrays once per table swap, so a query
 * costs one key reversal and one binary search per non-empty table — no allocation, no string slicing.
 */
import { LineKind, SEP, newParsedLine, parseLine, reverseKey } from './listParser';
import { MAX_KEY, type NameTable, reverseInto, reverseWireInto } from './nameTable';
import { Pattern } from './patternMatcher';
import { forEachLine, type Source } from './sources';

export const enum Verdict {
  None = 0,
  Blocked = 1,
  Allowed = 2,
}

export interface GroupLists {
  readonly name: string;
  readonly block: readonly Source[];
  readonly allow: readonly Source[];
}

interface Compiled {
  allowTables: NameTable[];
  allowPatterns: Pattern[];
  blockTables: NameTable[];
  blockPatterns: Pattern[];
}

export interface WhyMatch {
  readonly source: string;
  readonly line: number;
  readonly rule: string;
  readonly kind: 'block' | 'allow';
}

/** Matches reported by `why` at most, per source. */
const MAX_MATCHES = 20;
/**
 * Verdicts remembered per group, by question wire key: answers a repeated name (most of a home's traffic) with one
 * Map read instead of a search per table. Emptied when full and whenever a table changes.
 */
export const RECENT_VERDICTS = 4096;

export class FilterEngine {
  private compiled: Compiled[] = [];
  private recent: Map<string, Verdict>[] = [];
  private readonly scratch = new Uint8Array(MAX_KEY);
  /** Times a group's remembered verdicts were dropped because RECENT_VERDICTS was reached. */
  recentClears = 0;

  /** `groups`: the configured groups in order, the default group last. */
  constructor(readonly groups: readonly GroupLists[], readonly sources: readonly Source[]) {
    this.recompile();
  }

  /** Call after any source swapped its tables. */
  recompile(): void {
    this.recent = this.groups.map(() => new Map());
    this.compiled = this.groups.map((g) => {
      const c: Compiled = { allowTables: [], allowPatterns: [], blockTables: [], blockPatterns: [] };
      for (const s of [...g.allow, ...g.block]) {
        if (s.tables.allow.count > 0) c.allowTables.push(s.tables.allow);
        c.allowPatterns.push(...s.tables.allowPatterns);
      }
      for (const s of g.block) {
        if (s.tables.block.count > 0) c.blockTables.push(s.tables.block);
        c.blockPatterns.push(...s.tables.blockPatterns);
      }
      return c;
    });
  }

  verdict(group: number, name: string): Verdict {
    const len = reverseInto(name, this.scratch);
    return len < 0 ? Verdict.None : this.verdictOfKey(group, len, name);
  }

  /**
   * The verdict for a query's question (`ctx.query.wireKey`); `q.qname` (decoded on first read) is asked only
   * when patterns need it. Taking the context itself rather than a thunk spares a closure per query.
   */
  verdictWire(group: number, wireKey: string, q: { readonly qname: string }): Verdict {
    const recent = this.recent[group];
    const known = recent.get(wireKey);
    if (known !== undefined) return known;
    const len = reverseWireInto(wireKey, this.scratch);
    const v = len < 0 ? Verdict.None : this.verdictOfKey(group, len, q);
    if (recent.size >= RECENT_VERDICTS) {
      recent.clear();
      this.recentClears++;
    }
    recent.set(wireKey, v);
    return v;
  }

  /** Verdicts remembered now, all groups together. */
  get recentSize(): number {
    let n = 0;
    for (const m of this.recent) n += m.size;
    return n;
  }

  private verdictOfKey(group: number, len: number, name: string | { readonly qname: string }): Verdict {
    const c = this.compiled[group];
    const q = this.scratch;
    for (const t of c.allowTables) if (t.find(q, len) !== -1) return Verdict.Allowed;
    if (c.allowPatterns.length > 0) {
      const n = typeof name === 'string' ? name : name.qname;
      for (const p of c.allowPatterns) if (p.test(n)) return Verdict.Allowed;
    }
    for (const t of c.blockTables) if (t.find(q, len) !== -1) return Verdict.Blocked;
    if (c.blockPatterns.length > 0) {
      const n = typeof name === 'string' ? name : name.qname;
      for (const p of c.blockPatterns) if (p.test(n)) return Verdict.Blocked;
    }
    return Verdict.None;
  }

  get names(): number {
    let n = 0;
    for (const s of this.sources) n += s.tables.block.count + s.tables.allow.count;
    return n;
  }

  get byteLength(): number {
    let n = 0;
    for (const s of this.sources) n += s.byteLength;
    return n;
  }

  get patterns(): number {
    let n = 0;
    for (const s of this.sources) n += s.tables.blockPatterns.length + s.tables.allowPatterns.length;
    return n;
  }

  /**
   * Which lines of which sources of `group` match `name` (off the answer path: it reads the sources' copies).
   * The verdict is the one `verdict` gives.
   */
  async why(group: number, name: string): Promise<{ verdict: Verdict; matches: WhyMatch[] }> {
    const g = this.groups[group];
    const matches: WhyMatch[] = [];
    const key = reverseKey(name);
    const seen = new Set<Source>();
    for (const s of [...g.allow, ...g.block]) {
      if (seen.has(s)) continue;
      seen.add(s);
      await scanSource(s, key, name, matches);
    }
    return { verdict: this.verdict(group, name), matches };
  }
}

function keyCovers(k: string, nameKey: string): boolean {
  if (k === nameKey) return true;
  if (!nameKey.startsWith(k)) return false;
  return k.endsWith(SEP) || nameKey[k.length] === SEP;
}

async function scanSource(s: Source, nameKey: string, name: string, out: WhyMatch[]): Promise<void> {
  const t = s.tables;
  const mayMatch =
    t.block.count + t.allow.count > 0 || t.blockPatterns.length + t.allowPatterns.length > 0;
  if (!mayMatch) return;
  const p = newParsedLine();
  let found = 0;
  const onLine = (line: string, n: number): void => {
    if (found >= MAX_MATCHES) return;
    const kind = parseLine(line, p);
    let hit = false;
    if (kind === LineKind.Names) hit = p.names.some((k) => keyCovers(k, nameKey));
    else if (kind === LineKind.Pattern) {
      try {
        hit = new Pattern(p.pattern).test(name);
      } catch {
        hit = false;
      }
    }
    if (!hit) return;
    found++;
    out.push({ source: s.id, line: n, rule: line.trim(), kind: s.kind === 'allow' || p.exception ? 'allow' : 'block' });
  };
  if (s.location.type === 'inline') s.location.lines.forEach((l, i) => onLine(l, i + 1));
  else if (s.copyPath !== null) {
    try {
      await forEachLine(s.copyPath, (line, n) => {
        onLine(line, n);
      });
    } catch {
      // A copy that vanished since it was loaded: nothing to quote.
    }
  }
}
