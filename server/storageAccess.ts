import type { Knex } from 'knex';
import { storageOptions, type StorageConfig } from '../config/load';
import type { Logger } from '../core/log';
import type { StorageAccess } from '../core/plugin';
import type { Storage } from '../storage/open';

/**
 * The process's storage, opened on first use (a chain without storage-backed plugins never touches the disk)
 * with the core migrations applied. A failed open is retried on the next use, so a database that appears
 * later (a mounted disk, PostgreSQL starting after us) is picked up without a restart.
 */
export class LazyStorage implements StorageAccess {
  private opening: Promise<Storage> | null = null;
  private opened: Storage | null = null;
  private readonly pluginDirs = new Map<string, string>();

  constructor(private readonly cfg: StorageConfig, private readonly baseDir: string, private log: Logger) {}

  /** A reload with another `log:` block: storage opened from now on logs through it. */
  setLogger(log: Logger): void {
    this.log = log;
  }

  open(): Promise<Storage> {
    if (this.opened) return Promise.resolve(this.opened);
    if (!this.opening) {
      this.opening = (async () => {
        // eslint-disable-next-line @typescript-eslint/no-require-imports
        const { openStorage } = require('../storage/open') as typeof import('../storage/open');
        const storage = await openStorage(storageOptions(this.cfg), { baseDir: this.baseDir, log: this.log });
        try {
          await storage.migrate.latest();
        } catch (err) {
          await storage.close();
          throw err;
        }
        this.opened = storage;
        return storage;
      })().catch((err: unknown) => {
        this.opening = null;
        throw err;
      });
    }
    return this.opening;
  }

  async writer(): Promise<Knex> {
    return (await this.open()).writer;
  }

  async reader(): Promise<Knex> {
    return (await this.open()).reader;
  }

  async migrate(dir: string, plugin = 'plugin'): Promise<void> {
    const storage = await this.open();
    if (!this.pluginDirs.has(plugin)) {
      storage.migrate.addPlugin(plugin, dir);
      this.pluginDirs.set(plugin, dir);
    }
    await storage.migrate.latest(plugin);
  }

  async health(): Promise<{ ok: boolean; error?: string; latencyMs: number }> {
    if (!this.opened) {
      try {
        await this.open();
      } catch (err) {
        return { ok: false, error: err instanceof Error ? err.message : String(err), latencyMs: 0 };
      }
    }
    return (this.opened as Storage).health();
  }

  get isOpen(): boolean {
    return this.opened !== null;
  }

  /** `timeoutMs` bounds the wait for a statement still running (see Storage.close). */
  async close(timeoutMs?: number): Promise<void> {
    const s = this.opened ?? (this.opening ? await this.opening.catch(() => null) : null);
    this.opened = null;
    this.opening = null;
    if (s) await s.close(timeoutMs);
  }
}
