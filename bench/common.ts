// Small helpers shared by the benchmarks (bench/qps/ behind run.ts, filter, footprint, metrics-overhead,
// querylog, the storms' stormKit) and their Node peers (bare responder, dns-packet responder, relay, fallback
// upstream). Nothing here is used by the server itself.
import dgram from 'node:dgram';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';

/** The address every benchmark name resolves to (TEST-NET-1). */
export const BENCH_ADDRESS = [192, 0, 2, 1] as const;
export const BENCH_TTL = 3600;

/**
 * Offset just past the (single) question of a DNS message, or -1 when the question is not readable.
 * Only uncompressed labels are accepted, as in any query.
 */
export function questionEnd(msg: Buffer): number {
  if (msg.length < 12 + 5) return -1;
  let off = 12;
  for (;;) {
    if (off >= msg.length) return -1;
    const len = msg[off]!;
    if (len === 0) break;
    if (len > 63) return -1;
    off += len + 1;
  }
  off += 1 + 4; // root label, QTYPE, QCLASS
  return off <= msg.length ? off : -1;
}

/**
 * A UDP responder that answers every query with the same A record (compression pointer to the question),
 * patching only the ID and copying the question: a precomputed header + the client's question + a
 * precomputed answer RR. `flagsHi` is the third header byte (0x81 = QR|RD, 0x85 = QR|AA|RD), `flagsLo` the
 * fourth (0x80 = RA, 0x00 = none).
 */
export function startFixedResponder(port: number, flagsHi: number, flagsLo: number): dgram.Socket {
  const header = Buffer.from([0, 0, flagsHi, flagsLo, 0, 1, 0, 1, 0, 0, 0, 0]);
  const rr = Buffer.from([
    0xc0, 0x0c, // name: pointer to the question
    0x00, 0x01, 0x00, 0x01, // A IN
    (BENCH_TTL >>> 24) & 0xff, (BENCH_TTL >>> 16) & 0xff, (BENCH_TTL >>> 8) & 0xff, BENCH_TTL & 0xff,
    0x00, 0x04, ...BENCH_ADDRESS,
  ]);
  const sock = dgram.createSocket('udp4');
  sock.on('message', (msg, rinfo) => {
    if (msg.length < 12 || (msg[2]! & 0x80) !== 0) return;
    const qend = questionEnd(msg);
    if (qend < 0) return;
    const out = Buffer.allocUnsafe(qend + rr.length);
    header.copy(out, 0);
    out[0] = msg[0]!;
    out[1] = msg[1]!;
    msg.copy(out, 12, 12, qend);
    rr.copy(out, qend);
    sock.send(out, rinfo.port, rinfo.address);
  });
  sock.on('error', (err) => {
    console.error(`responder on ${port}: ${err.message}`);
    process.exit(1);
  });
  sock.bind(port, '127.0.0.1', () => console.log(`listening udp://127.0.0.1:${port}`));
  return sock;
}

/** Encode a plain query (RD=1, no EDNS) for `name`/`qtype`. */
export function encodeQuery(id: number, name: string, qtype = 1): Buffer {
  const labels = name.replace(/\.$/, '').split('.').filter((l) => l.length > 0);
  const parts: Buffer[] = [Buffer.from([id >> 8, id & 0xff, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0])];
  for (const l of labels) parts.push(Buffer.from([l.length]), Buffer.from(l, 'ascii'));
  parts.push(Buffer.from([0, qtype >> 8, qtype & 0xff, 0, 1]));
  return Buffer.concat(parts);
}

/** Parse `--name value` pairs of a peer script's command line. */
export function parseArgs(argv: string[]): Map<string, string> {
  const out = new Map<string, string>();
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (!a.startsWith('--')) continue;
    const next = argv[i + 1];
    if (next !== undefined && !next.startsWith('--')) {
      out.set(a.slice(2), next);
      i++;
    } else {
      out.set(a.slice(2), 'true');
    }
  }
  return out;
}

export function portArg(args: Map<string, string>, name: string): number {
  const v = Number(args.get(name));
  if (!Number.isInteger(v) || v <= 0 || v > 65535) {
    console.error(`--${name} PORT is required`);
    process.exit(2);
  }
  return v;
}

/**
 * Exit cleanly on SIGTERM/SIGINT, and after `--max-seconds` in any case (the harness also runs every peer
 * under `timeout`): no benchmark process outlives its run.
 */
export function exitOnSignalOrDeadline(args: Map<string, string>): void {
  const max = Number(args.get('max-seconds') ?? '1800');
  setTimeout(() => process.exit(0), max * 1000).unref();
  process.on('SIGTERM', () => process.exit(0));
  process.on('SIGINT', () => process.exit(0));
}

/** USER_HZ: the unit of the CPU times in /proc/PID/stat (100 on Linux). */
export const CLOCK_TICKS_PER_SECOND = 100;

/**
 * utime + stime from a /proc stat file (`/proc/PID/stat` or `/proc/PID/task/TID/stat`), in clock ticks; with
 * `children`, plus the reaped children's (cutime + cstime). Null when the process or thread is gone.
 */
export function statTicks(statFile: string, children = false): number | null {
  try {
    const stat = fs.readFileSync(statFile, 'utf8');
    // After the command name, which may hold spaces and parentheses: field 3 (state) is f[0], utime f[11].
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return Number(f[11]) + Number(f[12]) + (children ? Number(f[13]) + Number(f[14]) : 0);
  } catch {
    return null;
  }
}

/** A numeric knob from the environment, bounded; a bad value stops the benchmark with a message. */
export function envNum(name: string, def: number, min: number, max: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return def;
  const v = Number(raw);
  if (!Number.isFinite(v) || v < min || v > max) {
    console.error(`${name}=${raw}: expected a number from ${min} to ${max}`);
    process.exit(2);
  }
  return v;
}

export const envInt = (name: string, def: number, min: number, max: number): number => Math.floor(envNum(name, def, min, max));

/** An executable on PATH (or in the sbin folders, where dnsmasq and unbound live), or null. */
export function findBinary(name: string): string | null {
  for (const d of [...(process.env.PATH ?? '').split(':'), '/usr/sbin', '/usr/local/sbin', '/sbin', '/usr/bin']) {
    if (d === '') continue;
    const p = path.join(d, name);
    try {
      fs.accessSync(p, fs.constants.X_OK);
      return p;
    } catch {
      // next
    }
  }
  return null;
}

/** A port free on 127.0.0.1 for both UDP and TCP (the servers listen on both). */
export function freeUdpPort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = dgram.createSocket('udp4');
    s.once('error', reject);
    s.bind(0, '127.0.0.1', () => {
      const p = s.address().port;
      const t = net.createServer();
      t.once('error', () => s.close(() => resolve(freeUdpPort())));
      t.listen(p, '127.0.0.1', () => t.close(() => s.close(() => resolve(p))));
    });
  });
}

/** The service unit the NAS build installs: the benchmarks start the server the way it does. */
export const UNIT_FILE = path.resolve(__dirname, '..', '..', 'packaging', 'codexdns.service');

/** The unit's `Environment=` variables (NODE_OPTIONS, MALLOC_ARENA_MAX, …). */
export function unitEnvironment(unitFile = UNIT_FILE): Record<string, string> {
  const out: Record<string, string> = {};
  for (const m of fs.readFileSync(unitFile, 'utf8').matchAll(/^Environment="?([A-Z_]+)=([^"\n]*)"?$/gm)) out[m[1]] = m[2].trim();
  return out;
}

/** The options the unit's ExecStart gives node itself (those NODE_OPTIONS does not accept, e.g. --single-threaded-gc). */
export function unitExecNodeFlags(unitFile = UNIT_FILE): string[] {
  // `ExecStart=/usr/bin/env node --flag … PROGRAM …` or `ExecStart=/usr/bin/node --flag … PROGRAM …`.
  const m = /^ExecStart=(?:\S*\/)?(?:env\s+)?(?:\S*\/)?node((?: --?[\w-]+(?:=\S+)?)*) /m.exec(fs.readFileSync(unitFile, 'utf8'));
  return m ? m[1].split(' ').filter(Boolean) : [];
}

/**
 * The server's node flags for a benchmark: `$envName` when set (an empty value: none), else the unit's —
 * its ExecStart's node options and its NODE_OPTIONS — so a benchmark measures the service as installed.
 */
export function serverNodeFlags(envName: string): string[] {
  const given = process.env[envName];
  if (given !== undefined) return given.split(/\s+/).filter(Boolean);
  return [...unitExecNodeFlags(), ...(unitEnvironment().NODE_OPTIONS ?? '').split(/\s+/).filter(Boolean)];
}
