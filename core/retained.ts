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

interface SharedSlot {
  readonly value: unknown;
  readonly dispose?: (value: unknown) => void | Promise<void>;
  /** The chains that asked for it; it is disposed when the last one is gone. */
  readonly holders: Set<object>;
}

/**
 * State a plugin shares between all its instances in one server — every server block, across reloads, whatever
 * its options (`api.shared`): clienttrack hands its tracker to a successor whose options changed, metrics keeps
 * its HTTP listener while blocks come and go. Keys are `plugin/key`. A value lives while at least one chain that
 * asked for it is alive (built and not yet retired): a reload's new chain takes hold before the old one lets go,
 * so the value carries over; a plugin removed from every block has its value disposed with the last chain.
 */
export class SharedState {
  private readonly slots = new Map<string, SharedSlot>();

  acquire<T>(key: string, holder: object, create: () => T, dispose?: (value: T) => void | Promise<void>): T {
    let slot = this.slots.get(key);
    if (slot === undefined) {
      slot = { value: create(), dispose: dispose as SharedSlot['dispose'], holders: new Set() };
      this.slots.set(key, slot);
    }
    slot.holders.add(holder);
    return slot.value as T;
  }

  /** A chain retired or discarded: it lets go of what it held, and what nobody holds any more is disposed. */
  async release(holder: object, log: Logger): Promise<void> {
    for (const [key, slot] of [...this.slots]) {
      if (!slot.holders.delete(holder) || slot.holders.size > 0) continue;
      this.slots.delete(key);
      if (slot.dispose) await disposeSlot({ signature: '', value: slot.value, dispose: slot.dispose, claimed: false, fresh: true }, log, key);
    }
  }
}
