/**
 * Reads one line of a list in any of the syntaxes households use: hosts files (`0.0.0.0 ads.example.com`), plain
 * names, wildcards (`*.example.com`, `ads*.example.com`), adblock domain rules (`||ads.example.com^`, exceptions
 * `@@||ads.example.com^`) and regular expressions (`/^ad[0-9]+\./`). Anything else adblock can say (cosmetic
 * rules, paths, `$` modifiers other than a few harmless ones) is counted as unsupported, never guessed at: a
 * misread rule would block a name nobody listed.
 */

export const enum LineKind {
  /** Blank or comment. */
  Skip = 0,
  /** `names` holds reversed keys (see reverseKey). */
  Names = 1,
  /** `pattern` holds a regular expression source (wildcards are translated to one). */
  Pattern = 2,
  Unsupported = 3,
  Bad = 4,
}

export interface ParsedLine {
  kind: LineKind;
  /** An exception (`@@`): allows instead of blocking. */
  exception: boolean;
  names: string[];
  pattern: string;
}

/** 1 for the characters a name may hold (a-z 0-9 - _ .), 2 for A-Z. */
const NAME_CHARS = new Uint8Array(128);
for (let c = 0; c < 128; c++) {
  const ch = String.fromCharCode(c);
  if (/[a-z0-9_.-]/.test(ch)) NAME_CHARS[c] = 1;
  else if (/[A-Z]/.test(ch)) NAME_CHARS[c] = 2;
}

/** A well-formed name (no empty label, ≤ 253 characters, labels ≤ 63), checked without a regular expression. */
export function plainName(s: string): boolean {
  if (s.length === 0 || s.length > 253 || s.charCodeAt(0) === 46 || s.charCodeAt(s.length - 1) === 46) return false;
  let label = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c >= 128 || NAME_CHARS[c] === 0) return false;
    if (c === 46) {
      if (label === 0) return false;
      label = 0;
    } else if (++label > 63) return false;
  }
  return true;
}

/** Names a hosts file maps to itself; listing them would break the machine, not an advert. */
const HOSTS_SELF = new Set(['localhost', 'localhost.localdomain', 'local', 'broadcasthost', 'ip6-localhost', 'ip6-loopback', 'ip6-localnet', 'ip6-mcastprefix', 'ip6-allnodes', 'ip6-allrouters', 'ip6-allhosts', '0.0.0.0']);

/** The label separator inside a key: 0 sorts below every character of a name. */
export const SEP = '\0';

/** `ads.example.com` → `com\0example\0ads`: a parent is a prefix of its subdomains' keys, ending on SEP. */
export function reverseKey(name: string): string {
  const labels = name.split('.');
  labels.reverse();
  return labels.join(SEP);
}

/** The inverse of reverseKey (a trailing SEP, a subdomains-only key, becomes a leading `*.`). */
export function nameOfKey(key: string): string {
  const sub = key.endsWith(SEP);
  const labels = (sub ? key.slice(0, -1) : key).split(SEP).reverse();
  return (sub ? '*.' : '') + labels.join('.');
}

const ADDRESS = /^[0-9.]+$|^[0-9a-fA-F:]*:[0-9a-fA-F:.%a-zA-Z]*$/;
/** Adblock modifiers that do not change which names a DNS rule means. */
const HARMLESS_MODIFIERS = new Set(['important', 'all', 'document', 'first-party', '1p', 'third-party', '3p', 'popup']);

function globToRegex(glob: string, withSubdomains: boolean): string {
  let re = '';
  for (const ch of glob) re += ch === '*' ? '[a-z0-9_.-]*' : ch === '.' ? '\\.' : ch;
  return (withSubdomains ? '^([a-z0-9_-]+\\.)*' : '^') + re + '$';
}

function nameOrWildcard(s: string, out: ParsedLine, adblock: boolean): LineKind {
  if (s.endsWith('.')) s = s.slice(0, -1);
  if (s.startsWith('*.') && plainName(s.slice(2))) {
    // `*.x` means the subdomains of x, not x itself; `||*.x^` the same.
    out.names.push(reverseKey(s.slice(2).toLowerCase()) + SEP);
    return (out.kind = LineKind.Names);
  }
  if (plainName(s)) {
    const name = s.toLowerCase();
    if (HOSTS_SELF.has(name)) return (out.kind = LineKind.Skip);
    out.names.push(reverseKey(name));
    return (out.kind = LineKind.Names);
  }
  if (s.includes('*') && plainName(s.replace(/\*/g, 'a'))) {
    out.pattern = globToRegex(s.toLowerCase(), adblock);
    return (out.kind = LineKind.Pattern);
  }
  return (out.kind = LineKind.Bad);
}

/** Parses `line` into `out` (reused: its `names` array is emptied first) and returns the kind. */
export function parseLine(line: string, out: ParsedLine): LineKind {
  out.names.length = 0;
  out.exception = false;
  out.pattern = '';
  let s = line;
  if (s.length > 0 && s.charCodeAt(s.length - 1) === 13) s = s.slice(0, -1);
  // The common line of a big list, first and cheaply.
  if (plainName(s)) return nameOrWildcard(s, out, false);
  s = s.trim();
  if (s === '' || s[0] === '#' || s[0] === '!' || (s[0] === '[' && s.endsWith(']'))) return (out.kind = LineKind.Skip);
  if (s[0] === '/' && s.length > 2 && s.endsWith('/')) {
    out.pattern = s.slice(1, -1);
    return (out.kind = LineKind.Pattern);
  }
  if (s.startsWith('@@')) {
    out.exception = true;
    s = s.slice(2);
  }
  if (s.startsWith('||') || s.startsWith('|') || out.exception) {
    if (s.startsWith('||')) s = s.slice(2);
    else if (s.startsWith('|')) s = s.slice(1);
    const dollar = s.indexOf('$');
    if (dollar !== -1) {
      const mods = s.slice(dollar + 1).split(',');
      if (!mods.every((m) => HARMLESS_MODIFIERS.has(m.trim().toLowerCase()))) return (out.kind = LineKind.Unsupported);
      s = s.slice(0, dollar);
    }
    if (s.endsWith('|')) s = s.slice(0, -1);
    if (s.endsWith('^')) s = s.slice(0, -1);
    else return (out.kind = LineKind.Unsupported); // `||x/path`, `||x` (a prefix of any URL): not a name rule
    if (s.includes('/') || s.includes('^') || s.includes(':')) return (out.kind = LineKind.Unsupported);
    return nameOrWildcard(s, out, true);
  }
  // Cosmetic and URL rules of adblock lists.
  if (s.includes('##') || s.includes('#@#') || s.includes('#?#') || s.includes('#$#') || s.startsWith('/') || s.includes('$') || s.includes('^')) return (out.kind = LineKind.Unsupported);
  const hash = s.indexOf(' #');
  if (hash !== -1) s = s.slice(0, hash).trim();
  const fields = s.split(/\s+/);
  if (fields.length > 1) {
    if (!ADDRESS.test(fields[0])) return (out.kind = LineKind.Bad);
    // hosts format: an address, then one or more names.
    for (let i = 1; i < fields.length; i++) {
      const f = fields[i].endsWith('.') ? fields[i].slice(0, -1) : fields[i];
      if (f.startsWith('#')) break;
      if (!plainName(f)) return (out.kind = out.names.length > 0 ? LineKind.Names : LineKind.Bad);
      const name = f.toLowerCase();
      if (!HOSTS_SELF.has(name)) out.names.push(reverseKey(name));
    }
    return (out.kind = out.names.length > 0 ? LineKind.Names : LineKind.Skip);
  }
  return nameOrWildcard(fields[0], out, false);
}

/** HOSTS_SELF by length, for the byte path's check without making a string. */
const HOSTS_SELF_BY_LENGTH = new Map<number, Uint8Array[]>();
for (const n of HOSTS_SELF) {
  const list = HOSTS_SELF_BY_LENGTH.get(n.length) ?? [];
  list.push(Uint8Array.from(n, (c) => c.charCodeAt(0)));
  HOSTS_SELF_BY_LENGTH.set(n.length, list);
}

function isHostsSelf(b: Uint8Array, start: number, end: number): boolean {
  const list = HOSTS_SELF_BY_LENGTH.get(end - start);
  if (list === undefined) return false;
  next: for (const n of list) {
    for (let i = 0; i < n.length; i++) if ((b[start + i] | (NAME_CHARS[b[start + i]] === 2 ? 0x20 : 0)) !== n[i]) continue next;
    return true;
  }
  return false;
}

const HOSTS_PREFIXES = ['0.0.0.0 ', '127.0.0.1 '].map((p) => Uint8Array.from(p, (c) => c.charCodeAt(0)));

function startsWithBytes(b: Uint8Array, start: number, end: number, prefix: Uint8Array): boolean {
  if (end - start <= prefix.length) return false;
  for (let i = 0; i < prefix.length; i++) if (b[start + i] !== prefix[i]) return false;
  return true;
}

/**
 * The key of the lines that make up nearly all of a big list — `name`, `0.0.0.0 name`, `127.0.0.1 name`,
 * `||name^` — read straight from the file's bytes into `out`: no string per line, so building a million names
 * leaves the builder's heap almost untouched. Returns the key's length, or -1 for any other line (and for the
 * names a hosts file maps to itself): parseLine then reads it, so the two paths cannot disagree on what a line means.
 */
export function nameKeyOfBytes(b: Uint8Array, start: number, end: number, out: Uint8Array): number {
  if (end > start && b[end - 1] === 13) end--;
  if (end - start > 3 && b[start] === 124) {
    // `||name^`
    if (b[start + 1] !== 124 || b[end - 1] !== 94) return -1;
    start += 2;
    end--;
  } else if (b[start] === 48 || b[start] === 49) {
    // Only the exact two-field hosts line; `0.0.0.0` alone is a HOSTS_SELF name, refused below.
    if (startsWithBytes(b, start, end, HOSTS_PREFIXES[0])) start += HOSTS_PREFIXES[0].length;
    else if (startsWithBytes(b, start, end, HOSTS_PREFIXES[1])) start += HOSTS_PREFIXES[1].length;
  }
  // plainName on bytes.
  const len = end - start;
  if (len === 0 || len > 253 || b[start] === 46 || b[end - 1] === 46) return -1;
  let label = 0;
  for (let i = start; i < end; i++) {
    const c = b[i];
    if (c >= 128 || NAME_CHARS[c] === 0) return -1;
    if (c === 46) {
      if (label === 0) return -1;
      label = 0;
    } else if (++label > 63) return -1;
  }
  if (isHostsSelf(b, start, end)) return -1;
  // Labels last to first, lower-cased, SEP between them.
  let o = 0;
  let labelEnd = end;
  for (let i = end - 1; i >= start - 1; i--) {
    if (i >= start && b[i] !== 46) continue;
    for (let j = i + 1; j < labelEnd; j++) out[o++] = NAME_CHARS[b[j]] === 2 ? b[j] | 0x20 : b[j];
    if (i >= start) out[o++] = 0;
    labelEnd = i;
  }
  return o;
}

export function newParsedLine(): ParsedLine {
  return { kind: LineKind.Skip, exception: false, names: [], pattern: '' };
}
