import { boundedPool, type PoolJobs, type PoolSettings, type WorkerPool } from '../../core/primitives/workerPool';
import type { ResolvedPoolSettings, WorkerPools } from './hooks';

/** The `workerpool` line as written: each pool's bounds, either of which may be left to the consumer's default. */
export type PoolsOption = Readonly<Record<string, { readonly workers?: number; readonly queue?: number }>>;

/**
 * One chain's named pools: the settings of its `workerpool` line, and the pools its consumers attached (what the
 * metrics read). Built in `declare`, so a consumer listed above `workerpool` already finds it configured.
 */
export class NamedPools implements WorkerPools {
  /** Pools attached in this chain, by name; a later attach under the same name replaces the earlier one. */
  readonly attached = new Map<string, WorkerPool<unknown>>();

  constructor(readonly configured: PoolsOption) {}

  settings(name: string, fallback: PoolSettings): ResolvedPoolSettings {
    const own = Object.prototype.hasOwnProperty.call(this.configured, name) ? this.configured[name] : undefined;
    return {
      workers: own?.workers ?? fallback.workers,
      queue: own?.queue ?? fallback.queue,
      configured: { workers: own?.workers !== undefined, queue: own?.queue !== undefined },
    };
  }

  create<J>(name: string, fallback: PoolSettings, jobs: PoolJobs<J>): WorkerPool<J> {
    const pool = boundedPool(name, this.settings(name, fallback), jobs);
    this.attach(name, pool);
    return pool;
  }

  attach<J>(name: string, pool: WorkerPool<J>): void {
    this.attached.set(name, pool as WorkerPool<unknown>);
  }

  /** Pools named in the `workerpool` line that no plugin of the chain asked for (a typo, or a consumer not listed). */
  unused(): string[] {
    return Object.keys(this.configured).filter((n) => !this.attached.has(n));
  }
}
