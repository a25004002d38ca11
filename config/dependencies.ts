/**
 * What a plugin declares it needs (`requires`) or can use (`uses`), checked per server block: a missing
 * requirement is reported at the requiring plugin's entry, a cycle at the first plugin in it. Start-up and
 * `codexdns validate` both get here through parseConfig, so they report the same.
 */
import type { AnyPluginDefinition } from '../core/plugin';
import { setupOrder } from '../core/setupOrder';
import type { ConfigIssue } from './errors';
import type { Path, Position } from './positions';

interface Entry {
  readonly name: string;
  readonly definition: AnyPluginDefinition;
  readonly source: string;
  readonly path: Path;
}

type At = (pos: Position, message: string, extra?: Partial<ConfigIssue>) => ConfigIssue;

const label = (e: Entry): string => (e.source === 'builtin' ? e.name : `${e.name} (${e.source})`);

/** `requires`/`uses` as a custom plugin wrote them: a list of names, or a sentence saying what is wrong. */
export function declarationProblem(def: AnyPluginDefinition): string | undefined {
  for (const key of ['requires', 'uses'] as const) {
    const v: unknown = def[key];
    if (v === undefined) continue;
    if (!Array.isArray(v) || v.some((n) => typeof n !== 'string' || n === '')) return `\`${key}\` must be a list of plugin names, e.g. ${key}: ['clienttrack']`;
    if (v.includes(def.name)) return `\`${key}\` names the plugin itself (${def.name})`;
  }
  return undefined;
}

/**
 * Issues of one block's plugins: each requirement not in the block, then a cycle if setup order cannot be
 * found. `isBuiltin` picks the advice: `- NAME` for a built-in, the `use:` entry for a custom plugin.
 */
export function dependencyIssues(plugins: readonly Entry[], isBuiltin: (name: string) => boolean, positionOf: (p: Path) => Position, at: At): ConfigIssue[] {
  const present = new Set(plugins.map((p) => p.name));
  const issues: ConfigIssue[] = [];
  for (const p of plugins) {
    for (const need of p.definition.requires ?? []) {
      if (present.has(need)) continue;
      const add = isBuiltin(need) ? `add \`- ${need}\` before or after it` : `add the custom plugin named ${need} (\`- use: FILE\`) before or after it`;
      issues.push(at(positionOf(p.path), `requires ${need} in this server block; ${add}`, { plugin: label(p) }));
    }
  }
  const order = setupOrder(plugins.map((p) => ({ name: p.name, requires: p.definition.requires, uses: p.definition.uses })));
  if (!order.ok) {
    const first = plugins.find((p) => p.name === order.cycle[0])!;
    issues.push(at(positionOf(first.path), `plugins that each need the other set up first (requires/uses): ${order.cycle.join(' → ')}; remove one of them from this block`, { plugin: label(first) }));
  }
  return issues;
}
