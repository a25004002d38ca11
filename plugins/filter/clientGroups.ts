/**
 * Which group a client belongs to: by address or network, by MAC, or by the host name discovery found. Who a
 * client is comes from clienttrack's `identified` / `loadIdentities` hooks into an in-memory table (no database
 * read per query); the verdict per address is cached and dropped when what it was decided from changes. A device
 * that moves to another address keeps its group as soon as discovery names it there (by MAC or name), and its
 * old address forgets it.
 */
import { CidrSet, CidrParseError, isAddressOrCidr } from '../pkg/cidr';
import type { ClientIdentity } from '../clienttrack/hooks';

const MAC = /^([0-9a-f]{2}[:-]){5}[0-9a-f]{2}$/i;

export function normalizeMac(mac: string): string {
  return mac.toLowerCase().replace(/-/g, ':');
}

function normalizeName(name: string): string {
  return name.toLowerCase().replace(/\.$/, '');
}

/** The client matchers of one group. */
class Members {
  readonly networks = new CidrSet();
  readonly macs = new Set<string>();
  readonly names = new Set<string>();

  /** Throws CidrParseError (with the entry's index) for an address-like entry that does not parse. */
  constructor(entries: readonly string[]) {
    entries.forEach((e, i) => {
      const t = e.trim();
      if (MAC.test(t)) this.macs.add(normalizeMac(t));
      else if (isAddressOrCidr(t) || /^[0-9.]+\/\d+$|^[0-9a-f:]+\/\d+$/i.test(t)) this.networks.add(t, i);
      else if (/^[a-z0-9_][a-z0-9_.-]*$/i.test(t)) this.names.add(normalizeName(t));
      else throw new CidrParseError(i, t);
    });
  }

  matches(ip: string, id: Identity | undefined): boolean {
    if (this.networks.has(ip)) return true;
    if (id === undefined) return false;
    if (id.mac !== undefined && this.macs.has(id.mac)) return true;
    if (id.hostname !== undefined && this.names.size > 0) {
      if (this.names.has(id.hostname)) return true;
      const dot = id.hostname.indexOf('.');
      if (dot > 0 && this.names.has(id.hostname.slice(0, dot))) return true;
    }
    return false;
  }
}

interface Identity {
  mac?: string;
  hostname?: string;
}

export interface GroupCounters {
  queries: number;
  blocked: number;
}

export class ClientGroups {
  private readonly members: Members[];
  private readonly identities = new Map<string, Identity>();
  private readonly byMac = new Map<string, string>();
  private readonly cache = new Map<string, number>();
  /** Identities not kept because the table was full (a gauge shows the size, a counter these). */
  identitiesDropped = 0;
  cacheEvictions = 0;

  /**
   * `entries[i]` are the client entries of group i; the default group is index `entries.length` (matches
   * everyone else).
   */
  constructor(entries: readonly (readonly string[])[], private readonly maxIdentities: number, private readonly maxCache: number) {
    this.members = entries.map((e) => new Members(e));
  }

  get defaultIndex(): number {
    return this.members.length;
  }

  get identityCount(): number {
    return this.identities.size;
  }

  get cacheSize(): number {
    return this.cache.size;
  }

  /** The group index of a client address: one Map read on the answer path once decided. */
  groupOf(ip: string): number {
    const g = this.cache.get(ip);
    if (g !== undefined) return g;
    const id = this.identities.get(ip);
    let found = this.members.length;
    for (let i = 0; i < this.members.length; i++) {
      if (this.members[i].matches(ip, id)) {
        found = i;
        break;
      }
    }
    if (this.cache.size >= this.maxCache) {
      // Forget the oldest decision (Map keeps insertion order); it is recomputed on the next query.
      const first = this.cache.keys().next().value as string;
      this.cache.delete(first);
      this.cacheEvictions++;
    }
    this.cache.set(ip, found);
    return found;
  }

  identify(c: ClientIdentity): void {
    let id = this.identities.get(c.ip);
    if (id === undefined) {
      if (this.identities.size >= this.maxIdentities) {
        this.identitiesDropped++;
        return;
      }
      id = {};
      this.identities.set(c.ip, id);
    }
    if (c.mac !== undefined && c.mac !== '') {
      const mac = normalizeMac(c.mac);
      const before = this.byMac.get(mac);
      if (before !== undefined && before !== c.ip) {
        // The device moved: its old address is no longer it.
        this.identities.delete(before);
        this.cache.delete(before);
      }
      this.byMac.set(mac, c.ip);
      id.mac = mac;
    }
    if (c.hostname !== undefined && c.hostname !== '') id.hostname = normalizeName(c.hostname);
    this.cache.delete(c.ip);
  }

  forget(ips: readonly string[]): void {
    for (const ip of ips) {
      const id = this.identities.get(ip);
      if (id?.mac !== undefined && this.byMac.get(id.mac) === ip) this.byMac.delete(id.mac);
      this.identities.delete(ip);
      this.cache.delete(ip);
    }
  }

  /** What is known of a client (for `why` and the API). */
  identityOf(ip: string): Readonly<Identity> | undefined {
    return this.identities.get(ip);
  }
}
