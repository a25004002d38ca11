/**
 * The tracking pool's bounds and queue, from the `workerpool` and `priority` lines — or, in old Corefiles, from
 * clienttrack's own deprecated `workers`, `queue` and `priority` options (each with a warning naming the new line).
 */
import type { PoolSettings } from '../../core/primitives/workerPool';
import type { DeprecatedOption } from '../../core/plugin';
import { deprecatedPoolOptions, ignoredPoolOptions } from '../pkg/poolOptions';
import type { PriorityQueues } from '../priority/hooks';
import type { WorkerPools } from '../workerpool/hooks';

export const TRACKING_POOL = 'tracking';
export const TRACKING_POOL_DEFAULTS: PoolSettings = { workers: 100, queue: 10_000 };

export interface OldTrackingOptions {
  readonly workers?: number;
  readonly queue?: number;
  readonly priority?: { readonly high: number; readonly low: number; readonly low_every: number };
}

export interface TrackingPool {
  readonly workers: number;
  /** The FIFO's capacity, or high + low when split. */
  readonly queue: number;
  readonly priority?: { high: number; low: number; lowEvery: number };
  /** Stable text of the above: part of the retained tracker's key, so a changed workerpool or priority line builds a new tracker. */
  readonly key: string;
  readonly warnings: string[];
}

export function chooseTrackingPool(o: OldTrackingOptions, pools: WorkerPools | undefined, priority: PriorityQueues | undefined): TrackingPool {
  const oldPriority = o.priority !== undefined ? { high: o.priority.high, low: o.priority.low, lowEvery: o.priority.low_every } : undefined;
  const fallback: PoolSettings = {
    workers: o.workers ?? TRACKING_POOL_DEFAULTS.workers,
    queue: o.queue ?? (oldPriority !== undefined ? oldPriority.high + oldPriority.low : TRACKING_POOL_DEFAULTS.queue),
  };
  const resolved = pools?.settings(TRACKING_POOL, fallback);
  const warnings = ignoredPoolOptions('clienttrack', TRACKING_POOL, o, resolved?.configured);
  if (oldPriority !== undefined && priority !== undefined) warnings.push('clienttrack.priority is ignored: the priority line wins; remove clienttrack.priority');
  const split = priority !== undefined ? { ...priority.settings } : oldPriority;
  const workers = resolved?.workers ?? fallback.workers;
  let queue = resolved?.queue ?? fallback.queue;
  if (split !== undefined) {
    const total = split.high + split.low;
    // The split queue's two bounds are the waiting room; a different FIFO bound given beside it cannot apply.
    const given = resolved?.configured.queue === true ? `the workerpool line's ${TRACKING_POOL}.queue` : o.queue !== undefined ? 'clienttrack.queue' : undefined;
    if (given !== undefined && queue !== total) warnings.push(`${given} (${queue}) is not used: with priority the tracking queue holds high + low = ${total} jobs`);
    queue = total;
  }
  return { workers, queue, ...(split !== undefined ? { priority: split } : {}), key: `${workers}/${queue}/${split ? `${split.high}:${split.low}:${split.lowEvery}` : 'fifo'}`, warnings };
}

/** For the plugin definition's `deprecated`: the old pool options, each with the line to write instead. */
export function deprecatedTrackingOptions(o: OldTrackingOptions): DeprecatedOption[] {
  const out = deprecatedPoolOptions(TRACKING_POOL, o);
  if (o.priority !== undefined) {
    const p = o.priority;
    out.push({ option: 'priority', message: `deprecated: write \`- priority: { high: ${p.high}, low: ${p.low}, low_every: ${p.low_every} }\` (a line of its own) and remove priority; when both are written the priority line wins` });
  }
  return out;
}
