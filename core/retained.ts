import type { Logger } from './log';

interface Slot {
  readonly signature: string;
  readonly value: unknown;
  readonly dispose?: (value: unknown) => void | Promise<void>;
  /** Moved to a newer chain: the old chain must not dispose it. */
  claimed: boolean;
  /** Created by this chain rather than carried over from the previous one. */
  readonly fresh: boolean;
}

/**
 * State that outlives a chain across reloads: a plugin whose options did not change keeps its cache, queues and
 * breakers. Keys are `block/plugin/key`; a changed signature (the plugin's options) starts afresh.
 */
export class RetainedState {
  private readonly slots = new Map<string, Slot>();

  constructor(private previous?: RetainedState) {}

  get<T>(key: string, signature: string, create: () => T, dispose?: (value: T) => void | Promise<void>): T {
    const own = this.slots.get(key);
    if (own !== undefined && own.signature === signature) return own.value as T;
    const old = this.previous?.slots.get(key);
    if (old !== undefined && old.signature === signature && !old.claimed) {
      old.claimed = true;
      this.slots.set(key, { signature, value: old.value, dispose: old.dispose, claimed: false, fresh: false });
      return old.value as T;
    }
    const value = create();
    this.slots.set(key, { signature, value, dispose: dispose as Slot['dispose'], claimed: false, fresh: true });
    return value;
  }

  /** After a failed build: drop what this chain created, and give back what it took from the previous chain. */
  async disposeFresh(log: Logger): Promise<void> {
    for (const [key, slot] of this.slots) {
      if (slot.fresh) await disposeSlot(slot, log, key);
      else {
        const old = this.previous?.slots.get(key);
        if (old) old.claimed = false;
      }
    }
    this.slots.clear();
  }

  /** When this chain is retired: dispose what no successor took over. */
  async disposeUnclaimed(log: Logger): Promise<void> {
    for (const [key, slot] of this.slots) {
      if (!slot.claimed) await disposeSlot(slot, log, key);
    }
    this.slots.clear();
  }

  /** Forget the link to the previous chain once it is retired, so it can be collected. */
  detachPrevious(): void {
    this.previous = undefined;
  }
}

async function disposeSlot(slot: Slot, log: Logger, key: string): Promise<void> {
  if (!slot.dispose) return;
  try {
    await slot.dispose(slot.value);
  } catch (err) {
    log.warn('disposing plugin state failed', { key, error: err instanceof Error ? err.message : String(err) });
  }
}
