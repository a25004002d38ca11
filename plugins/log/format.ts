import { Flag, RCODE_NAMES, Rcode } from '../../core/wire/constants';
import { wireKeyToText } from '../../core/wire/names';
import { typeName } from '../../core/context';

/**
 * What the `served` tap copies out of a query and its response: primitives only (no reference to the context,
 * its raw bytes or the response), so a buffered record keeps nothing else alive. Formatting happens later, at
 * flush time, off the answer path.
 */
export interface QueryRecord {
  /** Wall-clock milliseconds when the answer was written. */
  time: number;
  remote: string;
  port: number;
  id: number;
  qtype: number;
  qclass: number;
  /** The question name as the core keeps it (length-prefixed labels, lower case). */
  wireKey: string;
  proto: 'udp' | 'tcp';
  size: number;
  dnssecOk: boolean;
  /** The client's EDNS size, 0 without EDNS. */
  ednsSize: number;
  /** -1 when nothing was sent (a `drop` action). */
  rcode: number;
  /** Header flags of the reply as written (QR, AA, TC, RD, RA, AD, CD). */
  flags: number;
  rsize: number;
  /** Seconds from arrival to the written answer. */
  duration: number;
  server: string;
  plugin: string;
}

/** CoreDNS's response classes (`class` option). */
export type ResponseClass = 'success' | 'denial' | 'error';

/**
 * CoreDNS's classification: NXDOMAIN and NODATA (NOERROR, no answer, an SOA in the authority section) are a
 * denial; any other NOERROR (answers, a delegation, an empty reply) is a success; everything else (SERVFAIL,
 * REFUSED, FORMERR, NOTIMP, a dropped query) is an error. Unlike CoreDNS, an NXDOMAIN without an SOA (as a
 * plugin's own reply has) is still a denial.
 */
export function classify(rcode: number, answerCount: number, hasSoa: boolean): ResponseClass {
  if (rcode === Rcode.NXDOMAIN) return 'denial';
  if (rcode === Rcode.NOERROR) return answerCount === 0 && hasSoa ? 'denial' : 'success';
  return 'error';
}

const CLASS_NAMES: Record<number, string> = { 1: 'IN', 3: 'CH', 4: 'HS', 254: 'NONE', 255: 'ANY' };

export function className(qclass: number): string {
  return CLASS_NAMES[qclass] ?? `CLASS${qclass}`;
}

export function rcodeName(rcode: number): string {
  if (rcode < 0) return '-';
  return RCODE_NAMES[rcode] ?? `RCODE${rcode}`;
}

/** The reply's flags as CoreDNS writes them: `qr,aa,tc,rd,ra,ad,cd`, in that order. */
export function flagNames(flags: number, rcode: number): string {
  if (rcode < 0) return '-';
  let out = '';
  const add = (bit: number, name: string): void => {
    if ((flags & bit) !== 0) out += out ? `,${name}` : name;
  };
  add(Flag.QR, 'qr');
  add(Flag.AA, 'aa');
  add(Flag.TC, 'tc');
  add(Flag.RD, 'rd');
  add(Flag.RA, 'ra');
  add(Flag.AD, 'ad');
  add(Flag.CD, 'cd');
  return out || '-';
}

/**
 * The question name in CoreDNS's form: lower case, with the trailing dot (`.` for the root), escaped as RFC 1035
 * presentation format (`\.`, `\DDD`) so a label holding a dot, a space or a newline cannot forge a log line.
 */
export function fqdn(wireKey: string): string {
  const name = wireKeyToText(wireKey);
  return name === '' ? '.' : `${name}.`;
}

/** Seconds with Go's `Duration.Seconds()` look: `0.000306s`. */
export function formatDuration(seconds: number): string {
  return `${seconds.toFixed(6)}s`;
}

/** CoreDNS's `{common}` format. */
export const COMMON_FORMAT = '{remote}:{port} - {>id} "{type} {class} {name} {proto} {size} {>do} {>bufsize}" {rcode} {>rflags} {rsize} {duration}';
/** CoreDNS's `{combined}` format: common plus the answering plugin (CoreDNS has the referer here; DNS has none). */
export const COMBINED_FORMAT = `${COMMON_FORMAT} "{plugin}"`;

type Field = (r: QueryRecord) => string;

/** Every placeholder, by name; `{>id}` and `{id}` are the same (CoreDNS marks header fields with `>`). */
const FIELDS: Record<string, Field> = {
  remote: (r) => (r.remote.includes(':') ? `[${r.remote}]` : r.remote),
  port: (r) => String(r.port),
  id: (r) => String(r.id),
  type: (r) => typeName(r.qtype),
  class: (r) => className(r.qclass),
  name: (r) => fqdn(r.wireKey),
  proto: (r) => r.proto,
  size: (r) => String(r.size),
  do: (r) => (r.dnssecOk ? 'true' : 'false'),
  bufsize: (r) => String(r.ednsSize === 0 ? 512 : r.ednsSize),
  rcode: (r) => rcodeName(r.rcode),
  rflags: (r) => flagNames(r.flags, r.rcode),
  rsize: (r) => String(r.rsize),
  duration: (r) => formatDuration(r.duration),
  server: (r) => r.server,
  plugin: (r) => r.plugin || '-',
  time: (r) => new Date(r.time).toISOString(),
};

export const PLACEHOLDERS = Object.keys(FIELDS);

/**
 * Compiles a format string once into a list of literal parts and field readers. Throws on an unknown
 * placeholder, naming it (the option check turns that into `Corefile.yaml:LINE:COL plugin log: …`).
 */
export function compileFormat(format: string): (r: QueryRecord) => string {
  const text = format.replace(/\{common\}/g, COMMON_FORMAT).replace(/\{combined\}/g, COMBINED_FORMAT);
  const parts: (string | Field)[] = [];
  const re = /\{>?([a-z_]+)\}/g;
  let last = 0;
  let m: RegExpExecArray | null;
  while ((m = re.exec(text)) !== null) {
    const field = FIELDS[m[1]];
    if (field === undefined) throw new Error(`unknown placeholder {${m[1]}} (known: ${PLACEHOLDERS.map((p) => `{${p}}`).join(' ')}, {common}, {combined})`);
    if (m.index > last) parts.push(text.slice(last, m.index));
    parts.push(field);
    last = m.index + m[0].length;
  }
  if (last < text.length) parts.push(text.slice(last));
  return (r) => {
    let out = '';
    for (const p of parts) out += typeof p === 'string' ? p : p(r);
    return out;
  };
}

/** The fields of a JSON query line (the logger adds `level`, `plugin: "log"` and `msg: "query"`). */
export function jsonFields(r: QueryRecord): Record<string, unknown> {
  return {
    time: new Date(r.time).toISOString(),
    remote: r.remote,
    port: r.port,
    id: r.id,
    type: typeName(r.qtype),
    class: className(r.qclass),
    name: fqdn(r.wireKey),
    proto: r.proto,
    size: r.size,
    do: r.dnssecOk,
    bufsize: r.ednsSize === 0 ? 512 : r.ednsSize,
    rcode: rcodeName(r.rcode),
    rflags: flagNames(r.flags, r.rcode),
    rsize: r.rsize,
    duration: Number(r.duration.toFixed(6)),
    server: r.server,
    answered_by: r.plugin || null,
  };
}
