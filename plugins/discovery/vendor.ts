/**
 * MAC address → vendor name, from the IEEE registry.
 *
 * Source: the `oui-data` npm package (BSD-2-Clause; a 5.6 MB JSON of all three IEEE registries — MA-L 24-bit,
 * MA-M 28-bit and MA-S 36-bit prefixes, ~54,000 entries — regenerated from the IEEE files and republished
 * several times a month). Chosen over a bundled extract because an extract goes stale from the day it is
 * cut and needs a script and a network fetch of the IEEE files to refresh, while `npm update oui-data`
 * refreshes the package through the registry every install already uses; and over the `oui` package, which
 * is a CLI wrapping the same data.
 *
 * Memory: the JSON is never `require`d (that would keep ~20 MB of objects with full postal addresses in
 * the module cache for the life of the process). It is read on the FIRST lookup (not at startup), scanned in
 * slices that yield to the event loop between them (so a DNS answer waits at most a few ms), and compacted
 * into sorted typed arrays of prefixes plus one deduplicated vendor-name list — about 1.5 MB resident;
 * the text is dropped after the scan. Lookups are then three binary searches (longest prefix first).
 *
 * MAC classes come before any table: a multicast address (bit 0x01 of the first octet) names no device,
 * so undefined; a locally administered one (bit 0x02: phones and laptops randomise their MAC per network)
 * has no vendor, so the marker 'private address' — never a vendor guess.
 */
import { createReadStream } from 'node:fs';
import { StringDecoder } from 'node:string_decoder';
import { setImmediate as yieldToLoop } from 'node:timers/promises';

export const PRIVATE_ADDRESS = 'private address';

export type MacClass = 'universal' | 'local' | 'multicast';

function macHex(mac: string): string | undefined {
  const hex = mac.trim().toLowerCase().replace(/[:.\-]/g, '');
  return /^[0-9a-f]{12}$/.test(hex) ? hex : undefined;
}

/** universal (IEEE-assigned), local (locally administered / randomised) or multicast; undefined if not a MAC. */
export function classifyMac(mac: string): MacClass | undefined {
  const hex = macHex(mac);
  if (hex === undefined) return undefined;
  const first = parseInt(hex.slice(0, 2), 16);
  if (first & 0x01) return 'multicast';
  if (first & 0x02) return 'local';
  return 'universal';
}

export interface VendorTable {
  /** Vendor of a universal MAC, or undefined when no registry entry matches. */
  lookup(mac: string): string | undefined;
  readonly size: number;
}

interface Group {
  keys: Float64Array;
  vendor: Uint32Array;
}

function searchGroup(g: Group, key: number): number {
  let lo = 0;
  let hi = g.keys.length - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >>> 1;
    const k = g.keys[mid]!;
    if (k === key) return g.vendor[mid]!;
    if (k < key) lo = mid + 1;
    else hi = mid - 1;
  }
  return -1;
}

class CompactTable implements VendorTable {
  constructor(
    private readonly groups: ReadonlyArray<{ digits: number; group: Group }>,
    private readonly names: readonly string[],
  ) {}

  get size(): number {
    return this.groups.reduce((n, g) => n + g.group.keys.length, 0);
  }

  lookup(mac: string): string | undefined {
    const hex = macHex(mac);
    if (hex === undefined) return undefined;
    for (const { digits, group } of this.groups) {
      const i = searchGroup(group, parseInt(hex.slice(0, digits), 16));
      if (i >= 0) return this.names[i];
    }
    return undefined;
  }
}

const ENTRY = /"([0-9A-Fa-f]{6,9})"\s*:\s*"((?:[^"\\]|\\.)*)"/g;

/**
 * Incremental builder of the compact table from the text of an `oui-data`-style JSON object
 * (`"PREFIX": "Vendor\nAddress…"`), fed line-aligned pieces; keeps the first line of each value.
 */
class TableBuilder {
  private readonly names: string[] = [];
  private readonly nameIndex = new Map<string, number>();
  // Flat per-length arrays (no per-entry objects: they would be promoted and bloat the heap while loading).
  private readonly keys = new Map<number, number[]>();
  private readonly vendors = new Map<number, number[]>();
  private readonly re = new RegExp(ENTRY.source, 'g');

  feed(text: string): void {
    const re = this.re;
    re.lastIndex = 0;
    let m: RegExpExecArray | null;
    while ((m = re.exec(text)) !== null) {
      const prefix = m[1]!;
      if (prefix.length !== 6 && prefix.length !== 7 && prefix.length !== 9) continue;
      const value = m[2]!;
      const nl = value.indexOf('\\n');
      const first = nl >= 0 ? value.slice(0, nl) : value;
      let name: string;
      try {
        name = (first.includes('\\') ? (JSON.parse(`"${first}"`) as string) : first).trim();
      } catch {
        continue;
      }
      if (name === '') continue;
      let idx = this.nameIndex.get(name);
      if (idx === undefined) {
        idx = this.names.length;
        // A fresh copy: a substring would keep its whole chunk alive (V8 sliced strings).
        const own = Buffer.from(name, 'utf8').toString('utf8');
        this.names.push(own);
        this.nameIndex.set(own, idx);
      }
      let k = this.keys.get(prefix.length);
      let v = this.vendors.get(prefix.length);
      if (!k || !v) {
        this.keys.set(prefix.length, (k = []));
        this.vendors.set(prefix.length, (v = []));
      }
      k.push(parseInt(prefix, 16));
      v.push(idx);
    }
  }

  finish(): VendorTable {
    const groups: Array<{ digits: number; group: Group }> = [];
    for (const digits of [9, 7, 6]) {
      const k = this.keys.get(digits) ?? [];
      const v = this.vendors.get(digits) ?? [];
      const order = Uint32Array.from(k.keys()).sort((x, y) => k[x]! - k[y]!);
      const keys = new Float64Array(order.length);
      const vendor = new Uint32Array(order.length);
      order.forEach((from, i) => {
        keys[i] = k[from]!;
        vendor[i] = v[from]!;
      });
      groups.push({ digits, group: { keys, vendor } });
    }
    return new CompactTable(groups, this.names);
  }
}

/** Builds the table from the whole JSON text at once (tests, small tables). */
export function buildVendorTable(json: string): VendorTable {
  const b = new TableBuilder();
  b.feed(json);
  return b.finish();
}

/**
 * Builds the table from a file, streamed in 16 KiB pieces cut at line ends (the file has one entry per line)
 * with a yield to the event loop after each: neither the 5.6 MB file nor its decoded text is ever held
 * whole (decoding it at once blocks the loop for hundreds of ms on a slow CPU, and the freed buffer keeps
 * the process's RSS up long after).
 */
export async function buildVendorTableFromFile(path: string): Promise<VendorTable> {
  const builder = new TableBuilder();
  const stream = createReadStream(path, { highWaterMark: 16 * 1024 });
  const decoder = new StringDecoder('utf8');
  let carry = '';
  for await (const chunk of stream as AsyncIterable<Buffer>) {
    const text = carry + decoder.write(chunk);
    const cut = text.lastIndexOf('\n');
    if (cut < 0) {
      carry = text;
      if (carry.length > 1024 * 1024) throw new Error('vendor table: no line breaks in the registry file');
      continue;
    }
    builder.feed(text.slice(0, cut + 1));
    carry = text.slice(cut + 1);
    await yieldToLoop();
  }
  builder.feed(carry + decoder.end());
  return builder.finish();
}

let tablePromise: Promise<VendorTable | undefined> | undefined;
let table: VendorTable | undefined;
let loadError: string | undefined;
let sourcePath: string | undefined;
let generation = 0;

/** Where the registry JSON is read from (tests point it at a fixture). Resets a loaded table. */
export function setVendorSource(path: string | undefined): void {
  sourcePath = path;
  unloadVendorTable();
}

function resolveSource(): string {
  return sourcePath ?? require.resolve('oui-data');
}

/** Loads the table once (concurrent callers share the load). Resolves undefined when it cannot be loaded. */
export function loadVendorTable(): Promise<VendorTable | undefined> {
  if (!tablePromise) {
    const gen = generation;
    tablePromise = (async (): Promise<VendorTable | undefined> => {
      try {
        const built = await buildVendorTableFromFile(resolveSource());
        if (gen === generation) {
          table = built;
          loadError = undefined;
        }
        return built;
      } catch (err) {
        if (gen === generation) loadError = err instanceof Error ? err.message : String(err);
        return undefined;
      }
    })();
  }
  return tablePromise;
}

/** Drops the loaded table (memory back to the heap); the next lookup loads it again. */
export function unloadVendorTable(): void {
  generation++;
  tablePromise = undefined;
  table = undefined;
}

/** Why the last load failed (the `oui-data` package missing, an unreadable file), if it did. */
export function vendorTableError(): string | undefined {
  return loadError;
}

/**
 * The vendor of a MAC address: `'private address'` for a locally administered (randomised) MAC, undefined
 * for a multicast or malformed one or when the registry has no entry (or could not be loaded). The first
 * call for a universal MAC loads the table.
 */
export async function vendorOf(mac: string): Promise<string | undefined> {
  const cls = classifyMac(mac);
  if (cls === undefined || cls === 'multicast') return undefined;
  if (cls === 'local') return PRIVATE_ADDRESS;
  const t = table ?? (await loadVendorTable());
  return t?.lookup(mac);
}

/**
 * The same without waiting: undefined while the table is not loaded yet (and starts loading it). For
 * callers that must not await.
 */
export function vendorOfSync(mac: string): string | undefined {
  const cls = classifyMac(mac);
  if (cls === undefined || cls === 'multicast') return undefined;
  if (cls === 'local') return PRIVATE_ADDRESS;
  if (!table) {
    void loadVendorTable();
    return undefined;
  }
  return table.lookup(mac);
}
