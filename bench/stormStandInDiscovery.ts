// Bench-only stand-in for the discovery plugin (which does not exist yet), loaded by bench/storm.ts through
// `use:`. It behaves as discovery will towards clienttrack: it taps `newClient` (so new clients are written
// with discovering = true and their updates go to the low-priority queue), runs each discovery on its own bounded
// pool (default 25 workers, 10,000 waiting: at 2.5 s per discovery that is 10 discoveries/s, the design's rate),
// and reports the result through `applyDiscovery` (high priority, the single writer path). Each discovery takes
// `delay` (2.5 s): the cost that used to sit inside the tracking queue processor. Nothing here is part of the
// product: the options exist only in this file.
import { definePlugin } from '../core/plugin';
import { Duration, Type } from '../config/types';
import { FifoQueue } from '../core/primitives/jobQueue';
import { WorkerPool } from '../core/primitives/workerPool';
import type {} from '../plugins/clienttrack';

export default definePlugin({
  name: 'stormdiscovery',
  description: 'Bench stand-in: discovery that takes `delay` per client, on its own bounded pool',
  options: Type.Object({
    delay: Duration(2500),
    workers: Type.Integer({ minimum: 1, default: 25 }),
    queue: Type.Integer({ minimum: 1, default: 10_000 }),
  }),
  setup(api, opts) {
    const track = api.hooksOf('clienttrack');
    if (track === undefined) throw new Error('stormdiscovery needs clienttrack in the chain');
    let announced = 0;
    let completed = 0;
    const pool = new WorkerPool<string>({
      name: 'stormdiscovery',
      workers: opts.workers,
      queue: new FifoQueue<string>(opts.queue),
      run: (ip) =>
        new Promise<void>((resolve) => {
          const t = setTimeout(() => {
            completed++;
            track.applyDiscovery.call({ ip, hostname: `host-${ip.replace(/\./g, '-')}.storm`, method: 'standin', done: true });
            resolve();
          }, opts.delay);
          t.unref();
        }),
    });
    track.newClient.tap('stormdiscovery', (e) => {
      announced++;
      pool.submit(e.ip);
    });
    api.hooks.shutdown.tapPromise('stormdiscovery', async () => {
      pool.close();
      const s = pool.stats();
      api.log.info('stand-in discovery stopped', { announced, completed, dropped: s.dropped, queued: s.queued, running: s.busy });
    });
  },
});
