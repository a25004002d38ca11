import type { PluginTimers } from './plugin';

/** Timers owned by one chain: all cleared when the chain is retired, so a reload leaves none behind. */
export class TimerSet implements PluginTimers {
  private readonly live = new Set<NodeJS.Timeout>();

  setTimeout(fn: () => void, ms: number): NodeJS.Timeout {
    const t = setTimeout(() => {
      this.live.delete(t);
      fn();
    }, ms);
    t.unref();
    this.live.add(t);
    return t;
  }

  setInterval(fn: () => void, ms: number): NodeJS.Timeout {
    const t = setInterval(fn, ms);
    t.unref();
    this.live.add(t);
    return t;
  }

  clear(timer: NodeJS.Timeout): void {
    clearTimeout(timer);
    this.live.delete(timer);
  }

  clearAll(): void {
    for (const t of this.live) clearTimeout(t);
    this.live.clear();
  }
}
