/**
 * What `workerpool` publishes (`api.hooksOf('workerpool')`): bounded pools by name. A consumer (clienttrack's
 * `tracking`, discovery's `discovery`) asks for its pool with the defaults it would use alone; the pool is its
 * own (it keeps it across reloads with `api.retain`), and workerpool measures it.
 */
import type { PoolJobs, PoolSettings, WorkerPool } from '../../core/primitives/workerPool';

export type { PoolJobs, PoolSettings, WorkerPool } from '../../core/primitives/workerPool';

/** A pool's bounds as this chain's `workerpool` line gives them, or the consumer's fallback. */
export interface ResolvedPoolSettings extends PoolSettings {
  /** Which bounds `NAME` gives (those win over a consumer's own, deprecated, options). */
  readonly configured: { readonly workers: boolean; readonly queue: boolean };
}

export interface WorkerPools {
  /** The bounds of pool `name`: those under `NAME`, each missing one taken from `fallback`. */
  settings(name: string, fallback: PoolSettings): ResolvedPoolSettings;
  /**
   * A new pool with the bounds of `settings(name, fallback)`, shown in workerpool's metrics as `pool="NAME"`.
   * The caller owns it: it closes and drains it.
   */
  create<J>(name: string, fallback: PoolSettings, jobs: PoolJobs<J>): WorkerPool<J>;
  /**
   * Shows a pool in this chain's metrics under `name`: a pool kept across a reload was created by the previous
   * chain, so its owner attaches it again at each setup (create attaches the pools it makes).
   */
  attach<J>(name: string, pool: WorkerPool<J>): void;
}

export interface WorkerpoolHooks {
  readonly pools: WorkerPools;
}

declare module '../../core/plugin' {
  interface PluginHookRegistry {
    workerpool: WorkerpoolHooks;
  }
}
