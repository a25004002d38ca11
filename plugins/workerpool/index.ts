/**
 * `workerpool`: bounded pools by name — so many jobs at once, so many waiting, the rest dropped and counted —
 * for the plugins that work off the answer path (clienttrack's `tracking`, discovery's `discovery`). See README.md.
 */
import { OptionError } from '../../config/errors';
import { Type, type Static } from '../../config/types';
import { definePlugin } from '../../core/plugin';
import type { WorkerPool } from '../../core/primitives/workerPool';
import type { WorkerpoolHooks } from './hooks';
import { registerPoolMetrics } from './metrics';
import { NamedPools, type PoolsOption } from './pools';

export type { PoolJobs, PoolSettings, ResolvedPoolSettings, WorkerPools, WorkerpoolHooks } from './hooks';
export { NamedPools, type PoolsOption } from './pools';

/** Pool names become metric labels and option paths: keep them plain. */
const POOL_NAME = /^[a-z][a-z0-9_]{0,31}$/;

const Pool = Type.Object(
  {
    workers: Type.Optional(Type.Integer({ minimum: 1, maximum: 10_000, description: 'Jobs running at once (default: the consumer\'s: tracking 100, discovery 10)' })),
    queue: Type.Optional(Type.Integer({ minimum: 1, maximum: 1_000_000, description: 'Jobs waiting for a worker; beyond it a job is dropped and counted (default: tracking 10000, discovery 1000)' })),
  },
  { description: 'One pool\'s bounds; a bound left out is the consuming plugin\'s default' },
);

/** The line is the pools by name, as DESIGN.md writes it: `- workerpool: { tracking: { workers: 100 }, discovery: { queue: 500 } }`. */
export const options = Type.Unsafe<PoolsOption>({
  type: 'object',
  additionalProperties: Pool,
  default: {},
  description: 'Pools by name: `tracking` (clienttrack), `discovery` (discovery); a pool not named here gets its consumer\'s defaults',
});

export type WorkerpoolOptions = Static<typeof options>;

/** The serving chain's pools, per server (its metrics registry) and block: what the metrics read. */
const shownByServer = new WeakMap<object, Map<string, NamedPools>>();

function shownPools(shown: ReadonlyMap<string, NamedPools>): ReadonlyMap<string, WorkerPool<unknown>> {
  if (shown.size === 1) return shown.values().next().value!.attached;
  // Several blocks: one series per pool name (a name used in two blocks shows the later block's pool).
  const all = new Map<string, WorkerPool<unknown>>();
  for (const p of shown.values()) for (const [name, pool] of p.attached) all.set(name, pool);
  return all;
}

export const workerpool = definePlugin({
  name: 'workerpool',
  description: 'Bounded worker pools by name (workers, queue, drop counter) for clienttrack and discovery',
  options,
  check(o) {
    for (const name of Object.keys(o)) {
      if (!POOL_NAME.test(name)) throw new OptionError(name, `pool name ${JSON.stringify(name)}: lower-case letters, digits and _, starting with a letter (e.g. tracking, discovery)`);
    }
  },
  declare(_api, o): WorkerpoolHooks {
    return { pools: new NamedPools(o ?? {}) };
  },
  setup(api) {
    const pools = api.own.pools as NamedPools;
    const block = `${api.block.configFile}#${api.block.name}`;
    let shown = shownByServer.get(api.metrics.registry);
    if (shown === undefined) shownByServer.set(api.metrics.registry, (shown = new Map()));
    const mine = shown;
    registerPoolMetrics(api.metrics, () => shownPools(mine));
    // Shown from the swap (a reload that fails after this setup leaves the serving chain's pools shown) until
    // this chain retires without a successor's workerpool taking its place (the line removed: no metrics).
    api.hooks.startup.tap('workerpool', () => {
      mine.set(block, pools);
      // After every plugin's setup, so every consumer has asked for its pool by then.
      const where = `${api.block.configFile} (${api.block.name}, zones ${api.block.zones.join(' ')})`;
      for (const name of pools.unused()) {
        api.log.warn(`${where}: option workerpool.${name}: no plugin in this server block uses pool ${name} (tracking: clienttrack, discovery: discovery)`);
      }
    });
    api.hooks.shutdown.tap('workerpool', () => {
      if (mine.get(block) === pools) mine.delete(block);
    });
  },
});

export default workerpool;
