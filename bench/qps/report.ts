/** The results table (best run per row and set), the target ratios, and the medians of the rounds. */
import type { RunResult } from './dnsperf';
import type { PeerDef } from './peers';
import { BUSY_PCT, type RowId, type SetName } from './settings';


export interface Row {
  id: RowId;
  label: string;
  version: string | null;
  port?: number;
  hits?: RunResult;
  misses?: RunResult;
  peakRssKiB?: number | null;
  skipped?: string;
  error?: string;
  /** Every measured run when BENCH_REPEAT > 1 (the row keeps the best QPS of each set). */
  all?: Array<RunResult & { set: SetName; load?: string }>;
}

function fmtQps(r: RunResult | undefined, applies: boolean): string {
  if (!applies) return '—';
  if (r === undefined) return 'n/a';
  const q = r.qps >= 1000 ? `${(r.qps / 1000).toFixed(1)}k` : r.qps.toFixed(0);
  const us = r.cpuUsPerQuery === null ? '?' : r.cpuUsPerQuery.toFixed(1);
  let s = `${q} (${us})`;
  if (r.lostPct >= 0.1) s += ` lost ${r.lostPct.toFixed(1)}%`;
  if (!/^NOERROR \d+ \(100\.00%\)$/.test(r.rcodes)) s += ` ⚠ ${r.rcodes}`;
  if (r.otherCpuPct >= BUSY_PCT) s += ` ⚠ busy machine (+${r.otherCpuPct.toFixed(0)}% CPU)`;
  return s;
}

function fmtRss(kib: number | null | undefined): string {
  return kib === null || kib === undefined ? 'n/a' : `${(kib / 1024).toFixed(0)} MB`;
}

function ratio(a: RunResult | undefined, b: RunResult | undefined): number | null {
  return a !== undefined && b !== undefined && b.qps > 0 ? a.qps / b.qps : null;
}

export function report(rows: Row[], defs: PeerDef[]): { markdown: string; ratios: Record<string, unknown> } {
  const lines: string[] = [];
  lines.push('| | cache hits, QPS (µs/query) | cache misses, QPS (µs/query) | peak RSS |');
  lines.push('|---|---|---|---|');
  for (const row of rows) {
    const def = defs.find((d) => d.id === row.id)!;
    const label = row.version ? `${row.label} ${row.version}` : row.label;
    if (row.skipped !== undefined) {
      lines.push(`| ${label} | skipped: ${row.skipped} | | |`);
      continue;
    }
    const err = row.error !== undefined ? ` (error: ${row.error.split('\n')[0]})` : '';
    lines.push(`| ${label} | ${fmtQps(row.hits, def.sets.includes('hits'))} | ${fmtQps(row.misses, def.sets.includes('misses'))}${err} | ${fmtRss(row.peakRssKiB)} |`);
  }
  const by = (id: RowId): Row | undefined => rows.find((r) => r.id === id);
  const cx = by('codexdns');
  const hitRatio = ratio(cx?.hits, by('bare')?.hits);
  const missRatio = ratio(cx?.misses, by('unbound')?.misses);
  // CPU-cost ratio: the other's µs/query ÷ codexdns's, i.e. the QPS ratio both would reach with one CPU each
  // saturated. Steadier than QPS when the machine is shared or a run did not saturate the server.
  const costRatio = (a: RunResult | undefined, b: RunResult | undefined): number | null =>
    a?.cpuUsPerQuery != null && b?.cpuUsPerQuery != null && a.cpuUsPerQuery > 0 ? b.cpuUsPerQuery / a.cpuUsPerQuery : null;
  const hitCost = costRatio(cx?.hits, by('bare')?.hits);
  const missCost = costRatio(cx?.misses, by('unbound')?.misses);
  const relayRatio = ratio(cx?.misses, by('relay')?.misses);
  const relayCost = costRatio(cx?.misses, by('relay')?.misses);
  const verdict = (r: number | null, cost: number | null, target: number): string =>
    r === null
      ? 'not measured'
      : `${r.toFixed(2)} (target ≥ ${target.toFixed(2)}: ${r >= target ? 'met' : 'MISSED'}); ` +
        `by CPU µs/query: ${cost === null ? '?' : cost.toFixed(2)}`;
  lines.push('');
  // Issue 20's targets.
  lines.push(`- codexdns cache hits QPS ÷ bare Node responder's: ${verdict(hitRatio, hitCost, 0.9)}`);
  lines.push(`- codexdns cache misses QPS ÷ unbound's (1 thread): ${verdict(missRatio, missCost, 1.5)}`);
  lines.push(`- codexdns cache misses QPS ÷ the one-socket Node relay's: ${verdict(relayRatio, relayCost, 0.6)}`);
  const others: string[] = [];
  if (cx !== undefined && cx.skipped === undefined) {
    for (const r of rows) {
      if (r.id === 'codexdns') continue;
      const h = ratio(cx.hits, r.hits);
      const m = ratio(cx.misses, r.misses);
      if (h === null && m === null) continue;
      others.push(`${r.label}: hits ${h === null ? '—' : h.toFixed(2)}, misses ${m === null ? '—' : m.toFixed(2)}`);
    }
  }
  if (others.length > 0) lines.push(`- codexdns QPS ÷ each peer's: ${others.join('; ')}`);
  // Issue 20 asks for the median of the rounds and their spread, beside the best run above.
  const med = (a: number[]): number => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)];
  const medians = new Map<string, { qps: number; us: number }>();
  lines.push('');
  lines.push('Medians of the rounds [spread], QPS and CPU µs/query, with the 1-minute load average of each run:');
  lines.push('');
  lines.push('| | set | QPS median [min–max] | µs/query median [min–max] | load average per run |');
  lines.push('|---|---|---|---|---|');
  for (const row of rows) {
    for (const set of ['hits', 'misses'] as const) {
      const runs = (row.all ?? []).filter((r) => r.set === set);
      if (runs.length === 0) continue;
      const q = runs.map((r) => r.qps);
      const c = runs.map((r) => r.cpuUsPerQuery ?? NaN).filter((x) => Number.isFinite(x));
      const m = { qps: med(q), us: c.length > 0 ? med(c) : NaN };
      medians.set(`${row.id}/${set}`, m);
      lines.push(`| ${row.label} | ${set} | ${(m.qps / 1000).toFixed(1)}k [${(Math.min(...q) / 1000).toFixed(1)}–${(Math.max(...q) / 1000).toFixed(1)}] | ` +
        `${c.length > 0 ? `${m.us.toFixed(1)} [${Math.min(...c).toFixed(1)}–${Math.max(...c).toFixed(1)}]` : '?'} | ${runs.map((r) => r.load?.split(' ')[0] ?? '?').join(', ')} |`);
    }
  }
  const mr = (a: string, b: string): string => {
    const x = medians.get(a);
    const y = medians.get(b);
    return x && y ? `${(x.qps / y.qps).toFixed(2)} (by CPU µs/query ${(y.us / x.us).toFixed(2)})` : '—';
  };
  lines.push('');
  lines.push(`- medians: codexdns hits ÷ bare ${mr('codexdns/hits', 'bare/hits')}; misses ÷ unbound ${mr('codexdns/misses', 'unbound/misses')}; misses ÷ relay ${mr('codexdns/misses', 'relay/misses')}`);
  return {
    markdown: lines.join('\n'),
    ratios: { hitsVsBare: hitRatio, missesVsUnbound: missRatio, missesVsRelay: relayRatio, hitsVsBareByCpu: hitCost, missesVsUnboundByCpu: missCost, missesVsRelayByCpu: relayCost },
  };
}
