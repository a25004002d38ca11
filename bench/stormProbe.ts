// Bench-only plugin loaded by bench/storm.ts (through `use:`) in every run: measures the server's own event
// loop (delay percentiles and utilization) and its memory (peak RSS, V8 heap, external buffers, sampled every
// 250 ms) and the time each query spent inside it during the run, and logs them at shutdown, so a slow answer can be told apart from a slow load
// generator, and RSS from what holds it. It taps nothing on the query path.
import fs from 'node:fs';
import v8 from 'node:v8';
import { Session } from 'node:inspector';
import { constants as perfConstants, createHistogram, monitorEventLoopDelay, PerformanceObserver, performance } from 'node:perf_hooks';
import { definePlugin } from '../core/plugin';
import { Type } from '../config/types';

export default definePlugin({
  name: 'stormprobe',
  description: 'Bench probe: event-loop delay and utilization of the server, logged at shutdown',
  options: Type.Object({}),
  setup(api) {
    const h = monitorEventLoopDelay({ resolution: 5 });
    h.enable();
    const elu0 = performance.eventLoopUtilization();
    // Time inside the server, from the datagram's dispatch to its reply (forwarded ones include the upstream):
    // told apart from the load generator's view, it shows whether a slow answer was slow here.
    const inServer = createHistogram();
    api.hooks.served.tap('stormprobe', (ctx) => {
      inServer.record(Math.max(1, Math.round((performance.now() - ctx.startedAt) * 1000)));
    });
    const peak = { rss: 0, heapUsed: 0, heapTotal: 0, external: 0, arrayBuffers: 0 };
    const sampler = setInterval(() => {
      const m = process.memoryUsage();
      for (const k of Object.keys(peak) as Array<keyof typeof peak>) peak[k] = Math.max(peak[k], m[k]);
    }, 250);
    sampler.unref();
    // Stalls of the event loop longer than STORMPROBE_STALL_MS (default 100 ms), with when they happened (ms since setup).
    const stallMs = Number(process.env.STORMPROBE_STALL_MS ?? 100) || 100;
    const stalls: number[] = [];
    // STORMPROBE_TRACE=PREFIX: a timeline of every loop gap over 3 ms and every collection (start, duration, kind),
    // written to PREFIX.<pid>.json at shutdown, to line the stalls up with the collector's cycles.
    const tracePrefix = process.env.STORMPROBE_TRACE;
    const traceGc: Array<[number, number, string]> = [];
    const traceStalls: number[] = [];
    const t0 = performance.now();
    let last = t0;
    const watch = setInterval(() => {
      const now = performance.now();
      if (now - last > stallMs + 10) stalls.push(Math.round(now - t0), Math.round(now - last - 10));
      if (tracePrefix && now - last > 13) traceStalls.push(Math.round(last - t0), Math.round(now - last - 10));
      last = now;
    }, 10);
    watch.unref();
    // Main-thread pauses of the garbage collector by kind (scavenge, mark-compact, incremental steps): how much of
    // a tail the collector explains, told apart from the chain's own work.
    const gcKinds: Record<number, string> = {
      [perfConstants.NODE_PERFORMANCE_GC_MINOR]: 'minor',
      [perfConstants.NODE_PERFORMANCE_GC_MAJOR]: 'major',
      [perfConstants.NODE_PERFORMANCE_GC_INCREMENTAL]: 'incremental',
      [perfConstants.NODE_PERFORMANCE_GC_WEAKCB]: 'weakcb',
    };
    const gc = new Map<string, { count: number; totalMs: number; maxMs: number; over5: number }>();
    const gcObserver = new PerformanceObserver((list) => {
      for (const e of list.getEntries()) {
        const kind = gcKinds[((e as unknown as { detail?: { kind?: number } }).detail)?.kind ?? -1] ?? 'other';
        let g = gc.get(kind);
        if (g === undefined) gc.set(kind, (g = { count: 0, totalMs: 0, maxMs: 0, over5: 0 }));
        g.count++;
        g.totalMs += e.duration;
        g.maxMs = Math.max(g.maxMs, e.duration);
        if (e.duration > 5) g.over5++;
        if (tracePrefix) traceGc.push([Math.round(e.startTime - t0), Math.round(e.duration * 10) / 10, kind]);
      }
    });
    gcObserver.observe({ entryTypes: ['gc'] });
    // STORMPROBE_HEAP_SNAPSHOT=FILE@SECONDS: a heap snapshot that many seconds after setup (what the heap holds in
    // the middle of a storm, by constructor; the snapshot stalls the server while it is written).
    const snapshotAt = /^(.+)@(\d+(?:\.\d+)?)$/.exec(process.env.STORMPROBE_HEAP_SNAPSHOT ?? '');
    if (snapshotAt) {
      setTimeout(() => {
        try {
          v8.writeHeapSnapshot(snapshotAt[1]);
        } catch (e) {
          api.log.warn('storm probe: no heap snapshot written', { file: snapshotAt[1], error: e instanceof Error ? e.message : String(e) });
        }
      }, Number(snapshotAt[2]) * 1000).unref();
    }
    // STORMPROBE_HEAP_PROFILE=FILE: a sampling heap profile of what survived young-generation collection (the
    // objects that were promoted, whether the old generation later freed them or not): what makes mark-compacts
    // frequent. Written at shutdown; open it in Chrome's DevTools (Memory tab). STORMPROBE_HEAP_PROFILE_ALL=1: every
    // allocation, the short-lived ones too (what makes scavenges frequent).
    const heapProfile = process.env.STORMPROBE_HEAP_PROFILE;
    let session: Session | undefined;
    if (heapProfile) {
      session = new Session();
      session.connect();
      session.post('HeapProfiler.startSampling', { samplingInterval: 16384, includeObjectsCollectedByMajorGC: true, includeObjectsCollectedByMinorGC: process.env.STORMPROBE_HEAP_PROFILE_ALL === '1' });
    }
    api.hooks.shutdown.tapPromise('stormprobe', async () => {
      if (session !== undefined && heapProfile) {
        const s = session;
        await new Promise<void>((resolve) =>
          s.post('HeapProfiler.stopSampling', (err, r) => {
            try {
              if (err) throw err;
              fs.writeFileSync(heapProfile, JSON.stringify(r.profile));
            } catch (e) {
              api.log.warn('storm probe: no heap profile written', { file: heapProfile, error: e instanceof Error ? e.message : String(e) });
            }
            s.disconnect();
            resolve();
          }),
        );
      }
      h.disable();
      gcObserver.disconnect();
      if (tracePrefix) {
        const file = `${tracePrefix}.${process.pid}.json`;
        try {
          fs.writeFileSync(file, JSON.stringify({ gc: traceGc, stalls: traceStalls }));
        } catch (e) {
          api.log.warn('storm probe: no trace written', { file, error: e instanceof Error ? e.message : String(e) });
        }
      }
      clearInterval(sampler);
      clearInterval(watch);
      const mb = (n: number): number => Math.round(n / 104857.6) / 10;
      const elu = performance.eventLoopUtilization(elu0);
      api.log.info('storm probe', {
        loop_p50_ms: Math.round(h.percentile(50) / 1e4) / 100,
        loop_p99_ms: Math.round(h.percentile(99) / 1e4) / 100,
        loop_max_ms: Math.round(h.max / 1e4) / 100,
        elu: Math.round(elu.utilization * 1000) / 1000,
        in_server_p50_ms: Math.round(inServer.percentile(50) / 10) / 100,
        in_server_p99_ms: Math.round(inServer.percentile(99) / 10) / 100,
        in_server_max_ms: Math.round(inServer.max / 10) / 100,
        peak_rss_mb: mb(peak.rss),
        peak_heap_used_mb: mb(peak.heapUsed),
        peak_heap_total_mb: mb(peak.heapTotal),
        peak_external_mb: mb(peak.external),
        peak_array_buffers_mb: mb(peak.arrayBuffers),
        stall_threshold_ms: stallMs,
        stalls_over_threshold: stalls.length / 2,
        stalls: stalls.slice(0, 80).join(','),
        gc_pauses: [...gc].map(([k, g]) => `${k} n=${g.count} total=${Math.round(g.totalMs)}ms max=${g.maxMs.toFixed(1)}ms >5ms=${g.over5}`).join('; '),
      });
    });
  },
});
