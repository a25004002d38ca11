/**
 * Everything the filter keeps across reloads that leave its options unchanged (`api.retain`): the sources and
 * their tables, the client groups and identities, the counters, the top list and the pauses. Nothing in it
 * depends on the chain that made it (no hooks, no chain timers).
 */
import { monotonicClock } from '../../core/clock';
import { ClientGroups } from './clientGroups';
import { FilterEngine, type GroupLists } from './filterEngine';
import type { Source } from './sources';
import { TopNames } from './topNames';

export class FilterState {
  readonly engine: FilterEngine;
  /** Per group; plain numbers on the answer path, exported to /metrics by difference at each scrape. */
  readonly counters: { queries: number; blocked: number; blockedCname: number; allowed: number }[];
  /** Blocked queries per client address (the API's per-client view), bounded like the group cache. */
  readonly blockedByClient = new Map<string, number>();
  blockedByClientDropped = 0;
  readonly top: TopNames;
  /** The group names in order, the default group last. */
  readonly groupNames: string[];
  private pauseAllUntil = 0;
  private readonly pauseUntil: number[];
  /** True while any pause may be running: the answer path reads the clock only then. */
  private anyPause = false;
  private chain: Promise<unknown> = Promise.resolve();
  loaded = false;
  /** File sources' last seen stamps (mtime:size), to rebuild only what changed. */
  readonly stamps = new Map<Source, string>();

  constructor(readonly sources: readonly Source[], lists: readonly GroupLists[], readonly groups: ClientGroups, topCapacity: number) {
    this.engine = new FilterEngine(lists, sources);
    this.groupNames = lists.map((l) => l.name);
    this.counters = lists.map(() => ({ queries: 0, blocked: 0, blockedCname: 0, allowed: 0 }));
    this.pauseUntil = lists.map(() => 0);
    this.top = new TopNames(topCapacity);
  }

  /** Runs builds one at a time: two million-name builds at once would double the peak memory. */
  serialize<T>(fn: () => Promise<T>): Promise<T> {
    const p = this.chain.then(fn, fn);
    this.chain = p.catch(() => undefined);
    return p;
  }

  countBlockedClient(ip: string, max: number): void {
    const n = this.blockedByClient.get(ip);
    if (n !== undefined) this.blockedByClient.set(ip, n + 1);
    else if (this.blockedByClient.size < max) this.blockedByClient.set(ip, 1);
    else this.blockedByClientDropped++;
  }

  indexOfGroup(name: string): number {
    return this.groupNames.indexOf(name);
  }

  /** Whether filtering is paused for group `g` now (answer path: no clock read unless a pause was set). */
  paused(g: number): boolean {
    if (!this.anyPause) return false;
    const now = monotonicClock.now();
    if (now < this.pauseAllUntil || now < this.pauseUntil[g]) return true;
    if (now >= this.pauseAllUntil && this.pauseUntil.every((u) => now >= u)) this.anyPause = false;
    return false;
  }

  pause(minutes: number, group?: number): void {
    const until = monotonicClock.now() + minutes * 60_000;
    if (group === undefined) this.pauseAllUntil = until;
    else this.pauseUntil[group] = until;
    this.anyPause = true;
  }

  resume(group?: number): void {
    if (group === undefined) {
      this.pauseAllUntil = 0;
      this.pauseUntil.fill(0);
    } else this.pauseUntil[group] = 0;
  }

  /** Milliseconds of the pause of everything left (0: not paused). */
  pausedAllMs(): number {
    return Math.max(0, this.pauseAllUntil - monotonicClock.now());
  }

  pausedGroupMs(name: string): number {
    const g = this.indexOfGroup(name);
    return g === -1 ? 0 : Math.max(0, this.pauseUntil[g] - monotonicClock.now());
  }
}
