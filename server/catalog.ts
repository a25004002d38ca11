import type { PluginCatalog } from '../config/load';
import type { AnyPluginDefinition } from '../core/plugin';

/**
 * The built-in plugins, by name: each is the folder `plugins/NAME/` whose `index` exports the definition as
 * `default`. Loaded on first use, so a chain without, say, the metrics plugin never pays for its dependencies.
 */
const BUILTIN_NAMES = ['acl', 'log', 'metrics', 'ratelimit', 'breaker', 'filter', 'cache', 'workerpool', 'priority', 'clienttrack', 'discovery', 'clientnames', 'forward', 'querylog'] as const;

function available(name: string): boolean {
  try {
    require.resolve(`../plugins/${name}`);
    return true;
  } catch {
    return false;
  }
}

export const builtinCatalog: PluginCatalog = {
  get: (name) => {
    if (!(BUILTIN_NAMES as readonly string[]).includes(name) || !available(name)) return undefined;
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    return (require(`../plugins/${name}`) as { default: AnyPluginDefinition }).default;
  },
  names: () => BUILTIN_NAMES.filter(available),
};
