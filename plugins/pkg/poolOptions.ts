/**
 * The deprecation of a consumer's own pool options (`clienttrack: { workers, queue }`, `discovery: { workers,
 * queue }`) in favour of the `workerpool` line: old Corefiles keep working, and each old option gets a warning
 * that names the line to write instead — or says it is ignored when the workerpool line sets the same bound.
 */

export interface OldPoolOptions {
  readonly workers?: number;
  readonly queue?: number;
}

/** `configured`: which bounds the workerpool line's `pools.NAME` sets (absent: no workerpool line). */
export function deprecatedPoolOptions(plugin: string, pool: string, old: OldPoolOptions, configured?: { readonly workers: boolean; readonly queue: boolean }): string[] {
  const out: string[] = [];
  const given = (['workers', 'queue'] as const).filter((k) => old[k] !== undefined);
  const moved = given.filter((k) => configured === undefined || !configured[k]);
  const line = `\`- workerpool: { pools: { ${pool}: { ${moved.map((k) => `${k}: ${old[k]}`).join(', ')} } } }\``;
  for (const k of given) {
    if (configured !== undefined && configured[k]) out.push(`${plugin}.${k} (${old[k]}) is ignored: the workerpool line's pools.${pool}.${k} wins; remove ${plugin}.${k}`);
    else out.push(`${plugin}.${k} is deprecated: write ${line}${configured !== undefined ? ` (merge it into your workerpool line)` : ''} and remove ${plugin}.${k}`);
  }
  return out;
}
