// Bench-only plugin loaded by bench/storm.ts (through `use:`) in every run: measures the server's own event
// loop (delay percentiles and utilization) and its memory (peak RSS, V8 heap, external buffers, sampled every
// 250 ms) during the run and logs them at shutdown, so a slow answer can be told apart from a slow load
// generator, and RSS from what holds it. It taps nothing on the query path.
import { monitorEventLoopDelay, performance } from 'node:perf_hooks';
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
    const peak = { rss: 0, heapUsed: 0, heapTotal: 0, external: 0, arrayBuffers: 0 };
    const sampler = setInterval(() => {
      const m = process.memoryUsage();
      for (const k of Object.keys(peak) as Array<keyof typeof peak>) peak[k] = Math.max(peak[k], m[k]);
    }, 250);
    sampler.unref();
    // Stalls of the event loop longer than 100 ms, with when they happened (ms since setup).
    const stalls: number[] = [];
    const t0 = performance.now();
    let last = t0;
    const watch = setInterval(() => {
      const now = performance.now();
      if (now - last > 110) stalls.push(Math.round(now - t0), Math.round(now - last - 10));
      last = now;
    }, 10);
    watch.unref();
    api.hooks.shutdown.tapPromise('stormprobe', async () => {
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
        peak_rss_mb: mb(peak.rss),
        peak_heap_used_mb: mb(peak.heapUsed),
        peak_heap_total_mb: mb(peak.heapTotal),
        peak_external_mb: mb(peak.external),
        peak_array_buffers_mb: mb(peak.arrayBuffers),
        stalls_over_100ms: stalls.length / 2,
        stalls: stalls.slice(0, 40).join(','),
      });
    });
  },
});
