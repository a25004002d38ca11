// The plugin catalog a test passes to startServer/parseConfig: the built-in plugins plus the test's own.
import type { PluginCatalog } from '../../config/load';
import type { AnyPluginDefinition } from '../../core/plugin';
import { builtinCatalog } from '../../server/catalog';

/** The built-in catalog plus `defs` (definePlugin results), each found under its `name`. */
export function catalogWith(...defs: ReadonlyArray<{ readonly name: string }>): PluginCatalog {
  const extra = new Map(defs.map((d) => [d.name, d as unknown as AnyPluginDefinition]));
  return { get: (name) => extra.get(name) ?? builtinCatalog.get(name), names: () => [...builtinCatalog.names(), ...extra.keys()] };
}
