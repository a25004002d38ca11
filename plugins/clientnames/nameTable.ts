/**
 * The names the plugin answers: devices discovery named (fed by clienttrack's `identified` / `forgotten` hooks
 * and loaded once from the database), and the static `hosts:` entries. Updated off the answer path; a lookup is
 * one or two Map reads.
 */
import type { ClientIdentity } from '../clienttrack/hooks';
import { canonicalIp, hostLabel } from './labels';

/** One client address and what discovery said about it. */
interface Device {
  readonly ip: string;
  readonly family: 4 | 6;
  hostname: string | undefined;
  /** The hostname as a host label; undefined when nothing usable was left of it. */
  label: string | undefined;
  discovering: boolean;
  /** Epoch ms when this was learned (for a device loaded from the database: its last query). */
  at: number;
}

/** Every device that claims one label, and the one answering for it per address family. */
interface Claim {
  readonly members: Set<Device>;
  v4: Device | undefined;
  v6: Device | undefined;
}

export interface Addresses {
  readonly a: readonly string[];
  readonly aaaa: readonly string[];
}

export interface TableStats {
  /** Identities taken (from `identified`, the load, a predecessor). */
  learned: number;
  /** Devices pushed out because the table was full (`max_names`). */
  evicted: number;
  /** Devices removed because clienttrack's retention removed them. */
  forgotten: number;
  /** Identities ignored: an address that does not parse. */
  invalid: number;
}

const EMPTY: readonly string[] = Object.freeze([]);

/**
 * Conflicts are settled per name and address family: the device identified most recently holds the name (ties:
 * the lower address, so the choice never depends on arrival order). A device still `discovering` claims
 * nothing. Names follow the hostname, never the MAC: a phone with a new private MAC (and so a new address) but
 * the same hostname takes its name along, and its old address stops answering. A static entry beats every
 * discovered device of that name.
 */
export class NameTable {
  readonly stats: TableStats = { learned: 0, evicted: 0, forgotten: 0, invalid: 0 };
  /** Whether the stored identities have been loaded (or taken over from the table this one replaces). */
  loaded = false;
  /** Bumped on every change that can alter an answer: the SOA serial. */
  version = 1;
  private readonly maxNames: number;
  /** In update order, oldest first: the eviction order. */
  private readonly devices = new Map<string, Device>();
  private readonly claims = new Map<string, Claim>();
  private staticNames = new Map<string, Addresses>();
  private staticAddresses = new Map<string, string[]>();

  constructor(maxNames: number) {
    this.maxNames = maxNames;
  }

  get size(): number {
    return this.devices.size;
  }

  get capacity(): number {
    return this.maxNames;
  }

  /** Names answered: labels held by a device, plus the static ones. */
  get names(): number {
    let n = this.staticNames.size;
    for (const [label, c] of this.claims) if ((c.v4 !== undefined || c.v6 !== undefined) && !this.staticNames.has(label)) n++;
    return n;
  }

  /** Replaces the static entries: label → addresses (already validated). */
  setStatic(hosts: ReadonlyMap<string, readonly string[]>): void {
    const names = new Map<string, Addresses>();
    const byIp = new Map<string, string[]>();
    for (const [label, list] of hosts) {
      const a: string[] = [];
      const aaaa: string[] = [];
      for (const text of list) {
        const c = canonicalIp(text);
        if (c === undefined) continue;
        (c.family === 4 ? a : aaaa).push(c.ip);
        const labels = byIp.get(c.ip) ?? [];
        if (!labels.includes(label)) labels.push(label);
        byIp.set(c.ip, labels);
      }
      names.set(label, { a, aaaa });
    }
    this.staticNames = names;
    this.staticAddresses = byIp;
    this.version++;
  }

  /** An identity from clienttrack: merged into what is known of that address (a field left out keeps its value). */
  apply(id: ClientIdentity): void {
    const c = canonicalIp(id.ip);
    if (c === undefined) {
      this.stats.invalid++;
      return;
    }
    const d = this.devices.get(c.ip);
    // Nothing to name and nothing known of this address: most identities (a MAC alone, a discovery that found
    // nothing) end here.
    if (d === undefined && id.hostname === undefined) return;
    const hostname = id.hostname ?? d?.hostname;
    const next: Device = { ip: c.ip, family: c.family, hostname, label: hostname === undefined ? undefined : hostLabel(hostname), discovering: id.discovering, at: id.at };
    if (next.label === undefined && d === undefined) return;
    this.stats.learned++;
    if (d !== undefined) {
      this.unclaim(d);
      this.devices.delete(c.ip);
    }
    this.devices.set(c.ip, next);
    this.claim(next);
    this.evictOverflow();
  }

  /**
   * Identities read from the database at start, most recent first. An address already learned live keeps what
   * it has (it is newer); the loaded ones go behind the live ones in eviction order.
   */
  load(ids: readonly ClientIdentity[]): void {
    const live = [...this.devices.values()];
    const liveIps = new Set(this.devices.keys());
    for (const d of live) this.unclaim(d);
    this.devices.clear();
    for (let i = ids.length - 1; i >= 0; i--) {
      const id = ids[i];
      const c = canonicalIp(id.ip);
      if (c === undefined) {
        this.stats.invalid++;
        continue;
      }
      if (id.hostname === undefined || liveIps.has(c.ip)) continue;
      const label = hostLabel(id.hostname);
      if (label === undefined) continue;
      this.stats.learned++;
      this.devices.delete(c.ip);
      this.devices.set(c.ip, { ip: c.ip, family: c.family, hostname: id.hostname, label, discovering: id.discovering, at: id.at });
    }
    for (const d of live) {
      this.devices.delete(d.ip);
      this.devices.set(d.ip, d);
    }
    for (const d of this.devices.values()) this.claim(d);
    this.loaded = true;
    this.evictOverflow();
  }

  /** Takes over the devices of the table this one replaces (a reload that changed the options). */
  adopt(prev: NameTable): void {
    const ids: ClientIdentity[] = [];
    for (const d of prev.devices.values()) {
      if (d.hostname !== undefined) ids.unshift({ ip: d.ip, hostname: d.hostname, discovering: d.discovering, at: d.at });
    }
    this.load(ids);
    this.loaded = prev.loaded;
  }

  /** Addresses clienttrack's retention removed. */
  forget(ips: readonly string[]): void {
    for (const text of ips) {
      const c = canonicalIp(text);
      const d = c === undefined ? undefined : this.devices.get(c.ip);
      if (d === undefined) continue;
      this.unclaim(d);
      this.devices.delete(d.ip);
      this.stats.forgotten++;
    }
  }

  /** The addresses of a label; undefined when no device or static entry answers for it. */
  lookup(label: string): Addresses | undefined {
    const s = this.staticNames.get(label);
    if (s !== undefined) return s;
    const c = this.claims.get(label);
    if (c === undefined || (c.v4 === undefined && c.v6 === undefined)) return undefined;
    return { a: c.v4 === undefined ? EMPTY : [c.v4.ip], aaaa: c.v6 === undefined ? EMPTY : [c.v6.ip] };
  }

  /** The labels an address answers to in PTR (static entries first), or undefined. */
  labelsOf(ip: string): readonly string[] | undefined {
    const s = this.staticAddresses.get(ip);
    if (s !== undefined) return s;
    const d = this.devices.get(ip);
    if (d === undefined || d.label === undefined || this.staticNames.has(d.label)) return undefined;
    const c = this.claims.get(d.label);
    if (c === undefined || (d.family === 4 ? c.v4 : c.v6) !== d) return undefined;
    return [d.label];
  }

  /** The label an address answers to (for the API), from any spelling of the address. */
  labelOf(ipText: string): string | undefined {
    const c = canonicalIp(ipText);
    return c === undefined ? undefined : this.labelsOf(c.ip)?.[0];
  }

  private claim(d: Device): void {
    if (d.label === undefined || d.discovering) return;
    let c = this.claims.get(d.label);
    if (c === undefined) {
      c = { members: new Set(), v4: undefined, v6: undefined };
      this.claims.set(d.label, c);
    }
    c.members.add(d);
    const holder = d.family === 4 ? c.v4 : c.v6;
    if (holder === undefined || newer(d, holder)) {
      if (d.family === 4) c.v4 = d;
      else c.v6 = d;
    }
    this.version++;
  }

  private unclaim(d: Device): void {
    if (d.label === undefined) return;
    const c = this.claims.get(d.label);
    if (c === undefined || !c.members.delete(d)) return;
    this.version++;
    if (c.members.size === 0) {
      this.claims.delete(d.label);
      return;
    }
    if (c.v4 === d || c.v6 === d) {
      // The holder left: the most recent of the others of its family takes the name back.
      let best: Device | undefined;
      for (const m of c.members) if (m.family === d.family && (best === undefined || newer(m, best))) best = m;
      if (d.family === 4) c.v4 = best;
      else c.v6 = best;
    }
  }

  private evictOverflow(): void {
    while (this.devices.size > this.maxNames) {
      const oldest = this.devices.values().next().value as Device;
      this.unclaim(oldest);
      this.devices.delete(oldest.ip);
      this.stats.evicted++;
    }
  }
}

function newer(a: Device, b: Device): boolean {
  return a.at > b.at || (a.at === b.at && a.ip < b.ip);
}
