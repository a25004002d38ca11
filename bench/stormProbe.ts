// Bench-only plugin loaded by bench/storm.ts (through `use:`) in every run: measures the server's own event
// loop (delay percentiles and utilization) and its memory (peak RSS, V8 heap, external buffers, sampled every
// 250 ms) and the time each query spent inside it during the run, and logs them at shutdown, so a slow answer can be told apart from a slow load
// generator, and RSS from what holds it. It taps nothing on the query path.
import fs from 'node:fs';
import { Session } from 'node:inspector';
import { createHistogram, monitorEventLoopDelay, performance } from 'node:perf_hooks';
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
    const t0 = performance.now();
    let last = t0;
    const watch = setInterval(() => {
      const now = performance.now();
      if (now - last > stallMs + 10) stalls.push(Math.round(now - t0), Math.round(now - last - 10));
      last = now;
    }, 10);
    watch.unref();
    // STORMPROBE_HEAP_PROFILE=FILE: a sampling heap profile of what survived young-generation collection (the
    // objects that were promoted, whether the old generation later freed them or not): what makes mark-compacts
    // frequent. Written at shutdown; open it in Chrome's DevTools (Memory tab).
    const heapProfile = process.env.STORMPROBE_HEAP_PROFILE;
    let session: Session | undefined;
    if (heapProfile) {
      session = new Session();
      session.connect();
      session.post('HeapProfiler.startSampling', { samplingInterval: 16384, includeObjectsCollectedByMajorGC: true, includeObjectsCollectedByMinorGC: false });
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
      });
    });
  },
});
