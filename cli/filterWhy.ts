/**
 * `codexdns filter why NAME [--client IP] [--conf FILE]`: which source, line and group block (or allow) a name, as
 * `pihole -q` does. Builds the tables from the configuration the way the server does, from the files and the
 * last good copies of URL lists on disk (no download: it answers for what the server holds). Groups by MAC or
 * name need the server's discovery data: ask the running server (`GET /api/filter/why`) for those.
 */
import * as path from 'node:path';
import { loadConfigFile } from '../config/load';
import { builtinCatalog } from '../server/catalog';
import { buildConfig, loadAll, FilterState, type FilterOptions } from '../plugins/filter';
import { filterWhy } from '../plugins/filter/api';

export async function filterWhyCommand(args: readonly string[], confFile: string, out: (s: string) => void): Promise<number> {
  const name = args.find((a, i) => !a.startsWith('-') && args[i - 1] !== '--client' && args[i - 1] !== '--conf' && args[i - 1] !== '-c');
  if (name === undefined) {
    out('usage: codexdns filter why NAME [--client IP] [--conf FILE]\n');
    return 2;
  }
  const ci = args.indexOf('--client');
  const client = ci !== -1 ? args[ci + 1] : undefined;
  const cfg = await loadConfigFile(confFile, builtinCatalog);
  let found = 0;
  for (const block of cfg.servers) {
    for (const p of block.plugins) {
      if (p.name !== 'filter') continue;
      found++;
      const o = p.options as FilterOptions;
      const built = buildConfig(o, (f) => path.resolve(cfg.dir, f));
      const state = new FilterState(built.sources, built.lists, built.groups, 1);
      await loadAll(state, { ...built.limits, timeoutMs: 1 });
      for (const s of state.sources) if (s.location.type === 'url' && s.lastRefresh === null) out(`note: ${s.id} has no copy on disk yet (the server downloads it)\n`);
      const r = await filterWhy(state, { name, client });
      if (cfg.servers.length > 1) out(`[${block.name}] `);
      out(`${r.name}: ${r.verdict} (group ${r.group}${r.client !== null ? `, client ${r.client}` : ''})\n`);
      for (const m of r.matches) out(`  ${m.kind === 'allow' ? 'allowed' : 'blocked'} by ${m.source}:${m.line}  ${m.rule}\n`);
    }
  }
  if (found === 0) {
    out(`${cfg.file}: no filter plugin in the configuration\n`);
    return 1;
  }
  return 0;
}
