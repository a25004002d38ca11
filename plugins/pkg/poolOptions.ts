/**
 * The deprecation of a consumer's own pool options (`clienttrack: { workers, queue }`, `discovery: { workers,
 * queue }`) in favour of the `workerpool` line. Old Corefiles keep working: `validate` (and start-up) report each
 * old option at its line with the line to write instead; at setup, an old option that the workerpool line
 * overrides is reported as ignored.
 */
import type { DeprecatedOption } from '../../core/plugin';

export interface OldPoolOptions {
  readonly workers?: number;
  readonly queue?: number;
}

const BOUNDS = ['workers', 'queue'] as const;

/** For the plugin definition's `deprecated`: one entry per old option written. */
export function deprecatedPoolOptions(pool: string, old: OldPoolOptions): DeprecatedOption[] {
  const given = BOUNDS.filter((k) => old[k] !== undefined);
  const line = `\`- workerpool: { ${pool}: { ${given.map((k) => `${k}: ${old[k]}`).join(', ')} } }\``;
  return given.map((k) => ({ option: k, message: `deprecated: write ${line} (a line of its own, or merged into yours) and remove ${k}; when both are written the workerpool line wins` }));
}

/** At setup: the old options the workerpool line overrides (`configured`: the bounds its `NAME` sets). */
export function ignoredPoolOptions(plugin: string, pool: string, old: OldPoolOptions, configured: { readonly workers: boolean; readonly queue: boolean } | undefined): string[] {
  if (configured === undefined) return [];
  return BOUNDS.filter((k) => old[k] !== undefined && configured[k]).map((k) => `${plugin}.${k} (${old[k]}) is ignored: the workerpool line's ${pool}.${k} wins; remove ${plugin}.${k}`);
}
