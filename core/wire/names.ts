import { MAX_LABEL_LEN, MAX_NAME_LEN } from './constants';

/** Why a name could not be read; the reply to such a query is FORMERR. */
export type NameError = 'truncated' | 'label-too-long' | 'name-too-long' | 'bad-pointer' | 'pointer-loop';

const MAX_POINTER_HOPS = 64;

/**
 * Returns the offset just past the name that starts at `off`, or a NameError.
 * Validates label and name lengths and follows pointers (bounded) so a crafted loop cannot stall us.
 */
export function skipName(buf: Buffer, off: number): number | NameError {
  let pos = off;
  let end = -1;
  let total = 1;
  let hops = 0;
  for (;;) {
    if (pos >= buf.length) return 'truncated';
    const len = buf[pos];
    if (len === 0) return end === -1 ? pos + 1 : end;
    const kind = len & 0xc0;
    if (kind === 0xc0) {
      if (pos + 1 >= buf.length) return 'truncated';
      const target = ((len & 0x3f) << 8) | buf[pos + 1];
      if (end === -1) end = pos + 2;
      if (++hops > MAX_POINTER_HOPS) return 'pointer-loop';
      if (target >= pos) return target === pos ? 'pointer-loop' : 'bad-pointer';
      pos = target;
      continue;
    }
    if (kind !== 0) return 'label-too-long';
    if (len > MAX_LABEL_LEN) return 'label-too-long';
    total += len + 1;
    if (total > MAX_NAME_LEN) return 'name-too-long';
    pos += len + 1;
  }
}

/** Reads a (possibly compressed) name as a lower-case dotted string without the trailing dot ('' = root). */
export function readName(buf: Buffer, off: number): string {
  const labels: string[] = [];
  let pos = off;
  let hops = 0;
  while (pos < buf.length && hops < MAX_POINTER_HOPS) {
    const len = buf[pos];
    if (len === 0) break;
    if ((len & 0xc0) === 0xc0) {
      pos = ((len & 0x3f) << 8) | buf[pos + 1];
      hops++;
      continue;
    }
    labels.push(lowerAscii(buf.toString('latin1', pos + 1, pos + 1 + len)));
    pos += len + 1;
  }
  return labels.join('.');
}

/**
 * FNV-1a of the wire name in buf[start, end) with its ASCII letters folded to lower case, as `lowerAscii` folds a
 * wire key: a name's hash straight from a packet, without making its string. 30 bits, so a Map keyed by it keeps
 * its keys unboxed.
 */
export function wireNameHash(buf: Buffer, start: number, end: number): number {
  let h = 0x811c9dc5;
  for (let i = start; i < end; i++) {
    let c = buf[i];
    if (c >= 65 && c <= 90) c += 32;
    h = Math.imul(h ^ c, 0x01000193);
  }
  return (h >>> 1) & 0x3fffffff;
}

/** DNS compares names case-insensitively for ASCII only (RFC 4343): never fold bytes above 0x7f. */
export function lowerAscii(s: string): string {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c >= 0x80) return foldAsciiOnly(s);
  }
  return s.toLowerCase();
}

function foldAsciiOnly(s: string): string {
  let out = '';
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    out += c >= 65 && c <= 90 ? String.fromCharCode(c + 32) : s[i];
  }
  return out;
}

/** Encodes a dotted name to uncompressed wire format. Throws on labels over 63 bytes. */
export function encodeName(name: string): Buffer {
  const trimmed = name.endsWith('.') ? name.slice(0, -1) : name;
  if (trimmed === '') return Buffer.from([0]);
  const labels = trimmed.split('.');
  const parts: Buffer[] = [];
  for (const label of labels) {
    const b = Buffer.from(label, 'latin1');
    if (b.length === 0 || b.length > MAX_LABEL_LEN) throw new Error(`invalid label in name ${name}`);
    parts.push(Buffer.from([b.length]), b);
  }
  parts.push(Buffer.from([0]));
  return Buffer.concat(parts);
}

/** Normalises a zone or domain name to lower case, no trailing dot ('.' → ''). */
export function normaliseName(name: string): string {
  const n = lowerAscii(name.trim());
  return n === '.' ? '' : n.endsWith('.') ? n.slice(0, -1) : n;
}

/** True when `name` equals `zone` or lies below it (both normalised). */
export function isInZone(name: string, zone: string): boolean {
  if (zone === '') return true;
  if (name.length === zone.length) return name === zone;
  return name.length > zone.length && name.endsWith(zone) && name.charCodeAt(name.length - zone.length - 1) === 46;
}

/**
 * A name's labels in presentation form (RFC 1035 §5.1): `.` and `\` inside a label are backslash-escaped and
 * bytes outside printable ASCII become `\DDD`, so a label holding a dot, a space or a newline can neither pass
 * for two labels nor break a log line. `labels` is a wire key (length-prefixed labels, as `ParsedQuery.wireKey`);
 * the result has no trailing dot ('' = root).
 */
export function wireKeyToText(wireKey: string): string {
  let out = '';
  let pos = 0;
  while (pos < wireKey.length) {
    const len = wireKey.charCodeAt(pos);
    if (len === 0) break;
    if (pos !== 0) out += '.';
    const end = pos + 1 + len;
    let plain = true;
    for (let i = pos + 1; i < end; i++) {
      const c = wireKey.charCodeAt(i);
      if (c <= 0x20 || c >= 0x7f || c === 0x2e || c === 0x5c || c === 0x22 || c === 0x3b || c === 0x28 || c === 0x29) {
        plain = false;
        break;
      }
    }
    out += plain ? wireKey.slice(pos + 1, end) : escapeLabel(wireKey, pos + 1, end);
    pos = end;
  }
  return out;
}

function escapeLabel(s: string, from: number, to: number): string {
  let out = '';
  for (let i = from; i < to; i++) {
    const c = s.charCodeAt(i);
    if (c <= 0x20 || c >= 0x7f) out += '\\' + String(c).padStart(3, '0');
    else if (c === 0x2e || c === 0x5c || c === 0x22 || c === 0x3b || c === 0x28 || c === 0x29) out += '\\' + s[i];
    else out += s[i];
  }
  return out;
}

/**
 * The offset of the next label separator in a presentation-form name at or after `from`, skipping escaped dots
 * (`\.`, and a dot after `\\` is a separator); -1 when there is none.
 */
export function nextLabelDot(name: string, from: number): number {
  for (let i = from; i < name.length; i++) {
    const c = name.charCodeAt(i);
    if (c === 0x5c) i++;
    else if (c === 0x2e) return i;
  }
  return -1;
}

/** A zone as a wire key (lower case, length-prefixed labels, root label included): what `wireKeyInZone` compares. */
export function zoneWireKey(zone: string): string {
  return lowerAscii(encodeName(zone).toString('latin1'));
}

/**
 * True when the name whose wire key is `wireKey` equals the zone or lies below it, compared label by label:
 * a label that contains a dot cannot make a name look like it is inside another zone.
 */
export function wireKeyInZone(wireKey: string, zoneKey: string): boolean {
  if (zoneKey.length === 1) return true;
  let pos = 0;
  for (;;) {
    const rest = wireKey.length - pos;
    if (rest === zoneKey.length) return wireKey.endsWith(zoneKey);
    if (rest < zoneKey.length) return false;
    const len = wireKey.charCodeAt(pos);
    if (len === 0) return false;
    pos += len + 1;
  }
}
