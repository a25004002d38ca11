/**
 * What `priority` publishes (`api.hooksOf('priority')`): a queue factory that serves known clients before new
 * ones. clienttrack builds its tracking pool's queue with it; without the `priority` line that queue is one FIFO.
 */
import type { JobQueue } from '../../core/primitives/jobQueue';

export type { JobPriority, JobQueue } from '../../core/primitives/jobQueue';

/** The two bounds and the anti-starvation ratio, as the `priority` line gives them. */
export interface PrioritySettings {
  /** Jobs of known clients that may wait. */
  readonly high: number;
  /** Jobs of new clients (or clients still being discovered) that may wait. */
  readonly low: number;
  /** While both wait, one low job is served after this many high ones. */
  readonly lowEvery: number;
}

export interface PriorityQueues {
  readonly settings: PrioritySettings;
  /** A new split queue with these bounds (capacity high + low); submit a job with priority 'high' or 'low'. */
  create<J>(): JobQueue<J>;
}

export interface PriorityHooks {
  readonly queues: PriorityQueues;
}

declare module '../../core/plugin' {
  interface PluginHookRegistry {
    priority: PriorityHooks;
  }
}
