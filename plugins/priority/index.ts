/**
 * `priority`: known clients before new ones. A storm of new clients fills only the low class; updates of known
 * clients keep their own room and go first, with one low job after every `low_every` high ones. See README.md.
 */
import { Type, type Static } from '../../config/types';
import { definePlugin } from '../../core/plugin';
import { PriorityJobQueue } from '../../core/primitives/jobQueue';
import type { PriorityHooks, PrioritySettings } from './hooks';

export type { PriorityHooks, PriorityQueues, PrioritySettings } from './hooks';

export const options = Type.Object({
  high: Type.Integer({ minimum: 1, maximum: 1_000_000, default: 5000, description: 'Jobs of known clients that may wait' }),
  low: Type.Integer({ minimum: 1, maximum: 1_000_000, default: 5000, description: 'Jobs of clients new or still being discovered that may wait' }),
  low_every: Type.Integer({ minimum: 1, maximum: 1000, default: 8, description: 'Anti-starvation: one low job after this many high jobs while both wait' }),
});

export type PriorityOptions = Static<typeof options>;

export const priority = definePlugin({
  name: 'priority',
  description: 'Known clients before new ones: splits the tracking queue in two bounded classes (high, low)',
  options,
  declare(_api, o): PriorityHooks {
    const { high = 5000, low = 5000, low_every: lowEvery = 8 } = o ?? {};
    const settings: PrioritySettings = Object.freeze({ high, low, lowEvery });
    return {
      queues: {
        settings,
        create: <J>() => new PriorityJobQueue<J>({ high: settings.high, low: settings.low, lowEvery: settings.lowEvery }),
      },
    };
  },
  setup(api) {
    if (api.hooksOf('clienttrack') === undefined) api.log.warn('clienttrack is not in this server block: no queue to split');
  },
});

export default priority;
