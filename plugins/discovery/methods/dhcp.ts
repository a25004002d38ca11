/**
 * dhcp: the client's hostname and MAC from the DHCP server's lease files, when the DNS server runs beside
 * the DHCP server (the router, a NAS running dnsmasq, Pi-hole, Kea, OpenWrt's odhcpd).
 *
 * All files are parsed into one map, ip → lease; a lookup is a map read, checked against the wall clock
 * (lease files hold wall-clock expiry times, so expiry uses `now()`, Date.now by default — not the monotonic
 * clock the rest of the server uses). Each file is watched (fs.watch on its directory, since DHCP servers
 * replace the file by rename, which a watch on the file itself would lose) with a stat poll as fallback
 * (every 30 s: fs.watch misses events on some network and overlay file systems), re-read 200 ms after the
 * last change.
 *
 * Outcomes: an active lease with a hostname or MAC is `found`; no lease (or an expired / released one) is
 * `negative`; when the address is not in the map and a file could not be read at its last reading (missing,
 * unreadable, too large), the outcome is a `failure` — the lease may be in the file we could not read. The
 * map of a file that has become unreadable is kept: its last good content still answers.
 *
 * Formats (pure parsers exported below, each returning ip → last entry for that ip):
 * - dnsmasq: `expiry mac ip hostname clientid` (expiry 0 = infinite, `*` = no name); after a `duid <server
 *   DUID>` line come DHCPv6 leases `expiry iaid ip hostname duid`, which carry no MAC.
 * - ISC dhcpd (dhcpd.leases / dhcpd6.leases): a journal of `lease IP { … }` blocks where the last block for
 *   an address wins; leases in binding state free/expired/released/abandoned/backup/reset are dropped; `ends`
 *   gives expiry (`ends 3 2026/11/30 10:00:00;` UTC, `ends epoch N;`, `ends never;`); `ia-na`/`ia-ta`
 *   blocks hold DHCPv6 `iaaddr` entries without a MAC (the name, when present, from `ddns-fwd-name`);
 *   `ia-pd` prefixes are not host addresses and are ignored.
 * - Kea memfile CSV (kea-leases4.csv / kea-leases6.csv): the header row names the columns; rows are appended,
 *   so the last row for an address wins. A row with valid_lifetime 0 is Kea's record of a deleted lease.
 *   States (Kea's Lease::STATE_*): 0 default (active), 1 declined, 2 expired-reclaimed, 3 released (Kea
 *   ≥ 2.7); 4 registered (DHCPv6 only, Kea ≥ 3.0: an address the client registered, RFC 9686) is in use and
 *   kept; other states are dropped. `expire` (Unix seconds) gives expiry, an infinite valid lifetime
 *   (0xffffffff) none. Commas inside fields are escaped `&#x2c`. v6 rows have a duid and an optional hwaddr
 *   column; prefix delegations (lease_type 2) are ignored. Kea's lease file cleanup (LFC) moves history to
 *   `<file>.1` / `<file>.2`: list those paths too to read leases not renewed since the last cleanup.
 * - odhcpd (OpenWrt, the `leasefile`/statefile): one `# ` line per lease,
 *   `# iface duid iaid hostname valid-until assigned length addr/len…` for DHCPv6 and
 *   `# iface hwaddr-hex ipv4 hostname valid-until assigned-hex 32 addr/32` for DHCPv4 (hostname `-` = none,
 *   `broken\x20name` = rejected name; valid-until in Unix seconds, -1 infinite, 0 expired). Only host
 *   addresses (/128, /32) are taken; the other lines (hosts-file style) repeat the names and are skipped.
 */
import { promises as fsp, watch, type FSWatcher } from 'node:fs';
import { basename, dirname } from 'node:path';
import { normalizeIp, normalizeMac } from '../../pkg/address.js';
import { cleanHostname } from './dnsutil.js';
import { failure, found, NEGATIVE, type DiscoveryMethod, type MethodOutcome } from './types.js';

export type LeaseFormat = 'dnsmasq' | 'isc' | 'kea' | 'odhcpd';

export interface LeaseEntry {
  /** Canonical address (normalizeIp). */
  ip: string;
  hostname?: string;
  mac?: string;
  /** Wall-clock expiry in ms since the epoch; undefined = never expires. */
  expiresAt?: number;
}

export type LeaseMap = Map<string, LeaseEntry>;

export function isLeaseActive(entry: LeaseEntry, nowMs: number): boolean {
  return entry.expiresAt === undefined || entry.expiresAt > nowMs;
}

function entry(ip: string, hostname: string | undefined, mac: string | undefined, expiresAt: number | undefined): LeaseEntry {
  const e: LeaseEntry = { ip };
  if (hostname !== undefined) e.hostname = hostname;
  if (mac !== undefined) e.mac = mac;
  if (expiresAt !== undefined) e.expiresAt = expiresAt;
  return e;
}

function lines(text: string): string[] {
  return text.split(/\r?\n/);
}

function secondsToMs(text: string | undefined): number | undefined {
  if (text === undefined || !/^-?\d+$/.test(text)) return undefined;
  const n = Number(text);
  return Number.isSafeInteger(n) ? n * 1000 : undefined;
}

// ---------------------------------------------------------------------------------------------------------
// dnsmasq

/** Parses a dnsmasq lease file (see the module comment). Lines that do not parse are skipped. */
export function parseDnsmasqLeases(text: string): LeaseMap {
  const map: LeaseMap = new Map();
  for (const raw of lines(text)) {
    const f = raw.trim().split(/\s+/);
    if (f.length < 3 || f[0] === '') continue;
    if (f[0] === 'duid') continue; // the server's DUID: DHCPv6 leases follow
    const expiry = secondsToMs(f[0]);
    if (expiry === undefined || expiry < 0) continue;
    const ip = normalizeIp(f[2]!);
    if (ip === undefined) continue;
    // DHCPv4: field 2 is the MAC. DHCPv6: field 2 is the IAID (maybe `T`-prefixed for IA_TA), no MAC.
    const mac = ip.includes(':') ? undefined : normalizeMac(f[1]);
    const name = f[3] === undefined || f[3] === '*' ? undefined : cleanHostname(f[3]);
    map.set(ip, entry(ip, name, mac, expiry === 0 ? undefined : expiry));
  }
  return map;
}

// ---------------------------------------------------------------------------------------------------------
// ISC dhcpd

type IscToken = { kind: 'word' | 'string'; text: string } | { kind: 'punct'; text: '{' | '}' | ';' };

interface IscStatement {
  words: IscToken[];
  block?: IscStatement[];
}

/** Tokenises dhcpd.leases: words, quoted strings (with \\ escapes and \NNN octal), `{ } ;`, `#` comments. */
export function tokenizeIsc(text: string): IscToken[] {
  const tokens: IscToken[] = [];
  let i = 0;
  const n = text.length;
  while (i < n) {
    const c = text[i]!;
    if (c === ' ' || c === '\t' || c === '\r' || c === '\n') {
      i++;
    } else if (c === '#') {
      while (i < n && text[i] !== '\n') i++;
    } else if (c === '{' || c === '}' || c === ';') {
      tokens.push({ kind: 'punct', text: c });
      i++;
    } else if (c === '"') {
      i++;
      let s = '';
      while (i < n && text[i] !== '"') {
        if (text[i] === '\\' && i + 1 < n) {
          const next = text[i + 1]!;
          if (/[0-7]/.test(next)) {
            const m = /^[0-7]{1,3}/.exec(text.slice(i + 1, i + 4))!;
            s += String.fromCharCode(parseInt(m[0], 8) & 0xff);
            i += 1 + m[0].length;
          } else {
            s += next === 'n' ? '\n' : next === 't' ? '\t' : next;
            i += 2;
          }
        } else {
          s += text[i];
          i++;
        }
      }
      i++; // closing quote (or end of text)
      tokens.push({ kind: 'string', text: s });
    } else {
      const start = i;
      while (i < n && !/[\s{};"#]/.test(text[i]!)) i++;
      tokens.push({ kind: 'word', text: text.slice(start, i) });
    }
  }
  return tokens;
}

/** Groups tokens into statements: words up to `;`, or up to `{` followed by a nested block and `}`. */
export function parseIscStatements(tokens: IscToken[]): IscStatement[] {
  let pos = 0;
  const parseBlock = (depth: number): IscStatement[] => {
    const out: IscStatement[] = [];
    let words: IscToken[] = [];
    while (pos < tokens.length) {
      const t = tokens[pos++]!;
      if (t.kind === 'punct') {
        if (t.text === ';') {
          if (words.length) out.push({ words });
          words = [];
        } else if (t.text === '{') {
          const block = depth < 16 ? parseBlock(depth + 1) : [];
          out.push({ words, block });
          words = [];
        } else {
          // '}': end of this block (a stray one at top level is skipped)
          if (words.length) out.push({ words });
          if (depth > 0) return out;
          words = [];
        }
      } else {
        words.push(t);
      }
    }
    if (words.length) out.push({ words });
    return out;
  };
  return parseBlock(0);
}

const ISC_INACTIVE = new Set(['free', 'expired', 'released', 'abandoned', 'backup', 'reset']);

function iscTime(words: IscToken[]): number | undefined | 'never' {
  // words: ends <weekday> <yyyy/mm/dd> <hh:mm:ss> | ends epoch <n> | ends never
  const w1 = words[1]?.text;
  if (w1 === 'never') return 'never';
  if (w1 === 'epoch') return secondsToMs(words[2]?.text);
  const date = /^(\d{4})\/(\d{1,2})\/(\d{1,2})$/.exec(words[2]?.text ?? '');
  const time = /^(\d{1,2}):(\d{2}):(\d{2})$/.exec(words[3]?.text ?? '');
  if (!date || !time) return undefined;
  const ms = Date.UTC(+date[1]!, +date[2]! - 1, +date[3]!, +time[1]!, +time[2]!, +time[3]!);
  return Number.isFinite(ms) ? ms : undefined;
}

interface IscFields {
  state?: string;
  ends?: number | 'never';
  mac?: string;
  hostname?: string;
  ddnsName?: string;
}

function iscFields(block: IscStatement[]): IscFields {
  const f: IscFields = {};
  for (const st of block) {
    const w = st.words;
    const k0 = w[0]?.text;
    if (k0 === 'binding' && w[1]?.text === 'state' && w[2]) f.state = w[2].text;
    else if (k0 === 'ends') {
      const t = iscTime(w);
      if (t !== undefined) f.ends = t;
    } else if (k0 === 'hardware' && w[1]?.text === 'ethernet' && w[2]) {
      const mac = normalizeMac(w[2].text);
      if (mac !== undefined) f.mac = mac;
    } else if (k0 === 'client-hostname' && w[1]?.kind === 'string') {
      const h = cleanHostname(w[1].text);
      if (h !== undefined) f.hostname = h;
    } else if (k0 === 'set' && w[1]?.text === 'ddns-fwd-name') {
      const v = w.find((t) => t.kind === 'string');
      const h = cleanHostname(v?.text);
      if (h !== undefined) f.ddnsName = h;
    }
  }
  return f;
}

function applyIsc(map: LeaseMap, ip: string | undefined, f: IscFields, withMac: boolean): void {
  if (ip === undefined) return;
  if (f.state !== undefined && ISC_INACTIVE.has(f.state)) {
    map.delete(ip); // journal: a later free/released entry ends the earlier active one
    return;
  }
  const expiresAt = f.ends === 'never' ? undefined : f.ends;
  map.set(ip, entry(ip, f.hostname ?? f.ddnsName, withMac ? f.mac : undefined, expiresAt));
}

/** Parses ISC dhcpd's lease journal (dhcpd.leases or dhcpd6.leases). */
export function parseIscLeases(text: string): LeaseMap {
  const map: LeaseMap = new Map();
  for (const st of parseIscStatements(tokenizeIsc(text))) {
    const kind = st.words[0]?.text;
    if (!st.block) continue;
    if (kind === 'lease' && st.words[1]) {
      applyIsc(map, normalizeIp(st.words[1].text), iscFields(st.block), true);
    } else if (kind === 'ia-na' || kind === 'ia-ta') {
      const outer = iscFields(st.block);
      for (const inner of st.block) {
        if (inner.words[0]?.text !== 'iaaddr' || !inner.words[1] || !inner.block) continue;
        const f = iscFields(inner.block);
        if (f.ddnsName === undefined && outer.ddnsName !== undefined) f.ddnsName = outer.ddnsName;
        applyIsc(map, normalizeIp(inner.words[1].text), f, false);
      }
    }
  }
  return map;
}

// ---------------------------------------------------------------------------------------------------------
// Kea memfile

function keaUnescape(field: string): string {
  return field.includes('&#x') ? field.replace(/&#x([0-9a-fA-F]{2})/g, (_, h: string) => String.fromCharCode(parseInt(h, 16))) : field;
}

const KEA_INFINITE = 0xffffffff;

/** Parses a Kea memfile lease file, v4 or v6 (see the module comment). */
export function parseKeaLeases(text: string): LeaseMap {
  const map: LeaseMap = new Map();
  let cols: Map<string, number> | undefined;
  for (const raw of lines(text)) {
    const line = raw.trim();
    if (line === '') continue;
    const fields = line.split(',');
    if (fields[0] === 'address') {
      cols = new Map(fields.map((name, i) => [name.trim(), i]));
      continue;
    }
    if (!cols) continue; // no header yet: cannot know the columns
    const get = (name: string): string | undefined => {
      const i = cols!.get(name);
      return i === undefined ? undefined : fields[i] === undefined ? undefined : keaUnescape(fields[i]!);
    };
    const ip = normalizeIp(get('address') ?? '');
    if (ip === undefined) continue;
    const leaseType = get('lease_type');
    if (leaseType !== undefined && leaseType !== '0' && leaseType !== '1') continue; // IA_PD: a prefix
    const prefixLen = get('prefix_len');
    if (prefixLen !== undefined && prefixLen !== '' && prefixLen !== '128') continue;
    const valid = Number(get('valid_lifetime'));
    const state = Number(get('state') ?? '0');
    const v6 = cols.has('duid');
    const active = state === 0 || (v6 && state === 4);
    if (valid === 0 || !active) {
      map.delete(ip);
      continue;
    }
    const expiresAt = valid === KEA_INFINITE ? undefined : secondsToMs(get('expire'));
    map.set(ip, entry(ip, cleanHostname(get('hostname')), normalizeMac(get('hwaddr')), expiresAt));
  }
  return map;
}

// ---------------------------------------------------------------------------------------------------------
// odhcpd

/** Parses odhcpd's state file (see the module comment). */
export function parseOdhcpdLeases(text: string): LeaseMap {
  const map: LeaseMap = new Map();
  for (const raw of lines(text)) {
    if (!raw.startsWith('#')) continue;
    const f = raw.slice(1).trim().split(/\s+/);
    if (f.length < 8) continue;
    const [, id, iaid, host, validText] = f as [string, string, string, string, string];
    const valid = Number(validText);
    if (!Number.isInteger(valid) || valid === 0 || valid < -1) continue; // 0: expired
    const expiresAt = valid === -1 ? undefined : valid * 1000;
    const v4 = iaid === 'ipv4';
    const hostname = host === '-' || host.startsWith('broken\\x20') ? undefined : cleanHostname(host);
    const mac = v4 ? normalizeMac(id) : undefined;
    for (const a of f.slice(7)) {
      const slash = a.lastIndexOf('/');
      if (slash < 0) continue;
      const len = a.slice(slash + 1);
      const ip = normalizeIp(a.slice(0, slash));
      if (ip === undefined) continue;
      const isV6 = ip.includes(':');
      if ((isV6 && len !== '128') || (!isV6 && len !== '32')) continue;
      map.set(ip, entry(ip, hostname, mac, expiresAt));
    }
  }
  return map;
}

export function parseLeases(format: LeaseFormat, text: string): LeaseMap {
  switch (format) {
    case 'dnsmasq':
      return parseDnsmasqLeases(text);
    case 'isc':
      return parseIscLeases(text);
    case 'kea':
      return parseKeaLeases(text);
    case 'odhcpd':
      return parseOdhcpdLeases(text);
  }
}

// ---------------------------------------------------------------------------------------------------------
// The method

export interface LeaseFileConfig {
  path: string;
  format: LeaseFormat;
}

export interface DhcpOptions {
  leases: LeaseFileConfig[];
  /** Wall clock in ms (lease files use wall time). Default Date.now. */
  now?: () => number;
  /** Stat poll interval, the fallback when fs.watch misses a change. Default 30 s. */
  pollMs?: number;
  /** Re-read this long after the last change event. Default 200 ms. */
  debounceMs?: number;
  /** Refuse files larger than this (a failure): bounded memory. Default 32 MiB. */
  maxBytes?: number;
  /** Use fs.watch (default true); the poll runs regardless. */
  watch?: boolean;
}

export interface LeaseFileStatus {
  path: string;
  format: LeaseFormat;
  /** The last reading succeeded. */
  ok: boolean;
  error?: string;
  /** Entries in the last good map (including expired ones not yet replaced). */
  entries: number;
  /** Number of successful readings. */
  loads: number;
}

export interface DhcpMethod extends DiscoveryMethod {
  /** Settles when every file has been read once (successfully or not). */
  readonly ready: Promise<void>;
  /** Re-reads every file now. */
  reload(): Promise<void>;
  status(): LeaseFileStatus[];
}

interface FileState {
  cfg: LeaseFileConfig;
  map: LeaseMap | undefined;
  error: string | undefined;
  signature: string | undefined;
  loads: number;
  watcher: FSWatcher | undefined;
  debounce: NodeJS.Timeout | undefined;
  reading: Promise<void> | undefined;
  again: boolean;
}

function signatureOf(st: { ino: number; size: number; mtimeMs: number; ctimeMs: number }): string {
  return `${st.ino}:${st.size}:${st.mtimeMs}:${st.ctimeMs}`;
}

export function createDhcp(options: DhcpOptions): DhcpMethod {
  const now = options.now ?? Date.now;
  const pollMs = options.pollMs ?? 30_000;
  const debounceMs = options.debounceMs ?? 200;
  const maxBytes = options.maxBytes ?? 32 * 1024 * 1024;
  const files: FileState[] = options.leases.map((cfg) => ({
    cfg: { path: cfg.path, format: cfg.format },
    map: undefined,
    error: undefined,
    signature: undefined,
    loads: 0,
    watcher: undefined,
    debounce: undefined,
    reading: undefined,
    again: false,
  }));
  let merged: LeaseMap = new Map();
  let closed = false;

  function rebuild(): void {
    // The same address in several files: the entry that lasts longer wins (an active lease beats an old
    // expired one), ties to the file listed first.
    const out: LeaseMap = new Map();
    for (const f of files) {
      if (!f.map) continue;
      for (const [ip, e] of f.map) {
        const prev = out.get(ip);
        if (!prev || (prev.expiresAt !== undefined && (e.expiresAt === undefined || e.expiresAt > prev.expiresAt))) out.set(ip, e);
      }
    }
    merged = out;
  }

  async function readOnce(f: FileState): Promise<void> {
    try {
      const st = await fsp.stat(f.cfg.path);
      if (!st.isFile()) throw new Error('not a regular file');
      if (st.size > maxBytes) throw new Error(`larger than ${maxBytes} bytes`);
      const text = await fsp.readFile(f.cfg.path, 'utf8');
      if (closed) return;
      f.map = parseLeases(f.cfg.format, text);
      f.signature = signatureOf(st);
      f.error = undefined;
      f.loads++;
      rebuild();
    } catch (err) {
      if (closed) return;
      const e = err as NodeJS.ErrnoException;
      f.error = e?.code ? `${e.code}` : e instanceof Error ? e.message : String(err);
      f.signature = undefined;
    }
  }

  /** Reads a file; a change during a read schedules one more read after it (never two reads at once). */
  function read(f: FileState): Promise<void> {
    if (f.reading) {
      f.again = true;
      return f.reading;
    }
    f.reading = (async (): Promise<void> => {
      do {
        f.again = false;
        await readOnce(f);
      } while (f.again && !closed);
      f.reading = undefined;
    })();
    return f.reading;
  }

  function schedule(f: FileState): void {
    if (closed) return;
    if (f.debounce) clearTimeout(f.debounce);
    f.debounce = setTimeout(() => {
      f.debounce = undefined;
      void read(f);
    }, debounceMs);
    f.debounce.unref();
  }

  function startWatch(f: FileState): void {
    if (options.watch === false) return;
    const dir = dirname(f.cfg.path);
    const base = basename(f.cfg.path);
    try {
      const w = watch(dir, { persistent: false }, (_event, filename) => {
        // filename can be null on some platforms: then any change in the directory counts.
        if (filename === null || filename === undefined || filename.toString() === base) schedule(f);
      });
      w.on('error', () => {
        // The directory went away or the watch broke: fall back to the poll, which restarts the watch.
        w.close();
        if (f.watcher === w) f.watcher = undefined;
      });
      f.watcher = w;
    } catch {
      f.watcher = undefined; // directory missing: the poll will retry
    }
  }

  async function poll(): Promise<void> {
    for (const f of files) {
      if (closed) return;
      if (!f.watcher) startWatch(f);
      try {
        const st = await fsp.stat(f.cfg.path);
        if (f.error !== undefined || signatureOf(st) !== f.signature) void read(f);
      } catch {
        if (f.error === undefined) void read(f); // it vanished: record the error
      }
    }
  }

  for (const f of files) startWatch(f);
  const ready = Promise.all(files.map((f) => read(f))).then(() => undefined);
  const pollTimer = setInterval(() => void poll(), pollMs);
  pollTimer.unref();
  let initialDone = false;
  void ready.then(() => {
    initialDone = true;
  });

  async function lookup(ip: string, signal: AbortSignal): Promise<MethodOutcome> {
    try {
      if (!initialDone && !signal.aborted) {
        // The first reading is still under way: wait for it (or for the caller to give up).
        let onAbort: (() => void) | undefined;
        await Promise.race([
          ready,
          new Promise<void>((resolve) => {
            onAbort = resolve;
            signal.addEventListener('abort', onAbort, { once: true });
          }),
        ]);
        if (onAbort) signal.removeEventListener('abort', onAbort);
      }
      const key = normalizeIp(ip);
      if (key === undefined) return NEGATIVE;
      const e = merged.get(key);
      if (e && isLeaseActive(e, now()) && (e.hostname !== undefined || e.mac !== undefined)) {
        return found({ ...(e.hostname !== undefined ? { hostname: e.hostname } : {}), ...(e.mac !== undefined ? { mac: e.mac } : {}), source: 'dhcp' });
      }
      const broken = files.filter((f) => f.error !== undefined);
      if (broken.length > 0) return failure(`dhcp: ${broken.map((f) => `${f.cfg.path}: ${f.error}`).join('; ')}`);
      if (files.length === 0) return failure('dhcp: no lease file configured');
      return NEGATIVE;
    } catch (err) {
      return failure(`dhcp: ${err instanceof Error ? err.message : String(err)}`);
    }
  }

  return {
    name: 'dhcp',
    ready,
    lookup,
    async reload(): Promise<void> {
      await Promise.all(files.map((f) => read(f)));
    },
    status(): LeaseFileStatus[] {
      return files.map((f) => ({
        path: f.cfg.path,
        format: f.cfg.format,
        ok: f.error === undefined && f.map !== undefined,
        ...(f.error !== undefined ? { error: f.error } : {}),
        entries: f.map?.size ?? 0,
        loads: f.loads,
      }));
    },
    close(): void {
      if (closed) return;
      closed = true;
      clearInterval(pollTimer);
      for (const f of files) {
        if (f.debounce) clearTimeout(f.debounce);
        f.debounce = undefined;
        f.watcher?.close();
        f.watcher = undefined;
      }
    },
  };
}
