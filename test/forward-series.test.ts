/** forward's fast metric children (SeriesCounter, SeriesHistogram) leave the same figures as prom-client's own children. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Counter, Histogram, Registry } from 'prom-client';
import { DURATION_BUCKETS, SeriesCounter, SeriesHistogram } from '../plugins/forward/metrics';

function pair(): { fast: Registry; plain: Registry; hf: Histogram<string>; hp: Histogram<string>; cf: Counter<string>; cp: Counter<string> } {
  const fast = new Registry();
  const plain = new Registry();
  const h = (r: Registry): Histogram<string> => new Histogram({ name: 'd_seconds', help: 'h', labelNames: ['to', 'rcode'], buckets: [...DURATION_BUCKETS], registers: [r] });
  const c = (r: Registry): Counter<string> => new Counter({ name: 'r_total', help: 'c', labelNames: ['to'], registers: [r] });
  return { fast, plain, hf: h(fast), hp: h(plain), cf: c(fast), cp: c(plain) };
}

test('the same observations and increments give the same exposition, across a reset and a removed series', async () => {
  const { fast, plain, hf, hp, cf, cp } = pair();
  const values = [0, 0.0001, 0.00025, 0.0003, 0.001, 0.02, 0.5, 3, 9, 100];
  const fh = [new SeriesHistogram(hf, { to: 'a', rcode: 'NOERROR' }, DURATION_BUCKETS), new SeriesHistogram(hf, { to: 'b', rcode: 'NXDOMAIN' }, DURATION_BUCKETS)];
  const ph = [hp.labels('a', 'NOERROR'), hp.labels('b', 'NXDOMAIN')];
  const fc = [new SeriesCounter(cf, { to: 'a' }), new SeriesCounter(cf, { to: 'b' })];
  const pc = [cp.labels('a'), cp.labels('b')];
  const round = (): void => {
    for (let i = 0; i < 50; i++) {
      const v = values[i % values.length];
      fh[i % 2].observe(v);
      ph[i % 2].observe(v);
      fc[i % 2].inc();
      pc[i % 2].inc();
      if (i % 7 === 0) {
        fc[0].inc(3);
        pc[0].inc(3);
      }
    }
  };
  round();
  assert.equal(await fast.metrics(), await plain.metrics());
  fast.resetMetrics();
  plain.resetMetrics();
  round();
  assert.equal(await fast.metrics(), await plain.metrics());
  hf.remove('a', 'NOERROR');
  hp.remove('a', 'NOERROR');
  cf.remove('b');
  cp.remove('b');
  round();
  assert.equal(await fast.metrics(), await plain.metrics());
  const text = await fast.metrics();
  assert.match(text, /d_seconds_count\{to="a",rcode="NOERROR"\} 25/);
  // a: 25 + 8 × 3 per round, two rounds since the reset
  assert.match(text, /r_total\{to="a"\} 98/);
});

test('what prom-client refuses it still refuses', () => {
  const { hf, cf } = pair();
  const h = new SeriesHistogram(hf, { to: 'a', rcode: 'NOERROR' }, DURATION_BUCKETS);
  const c = new SeriesCounter(cf, { to: 'a' });
  h.observe(0.1);
  c.inc();
  assert.throws(() => h.observe(NaN));
  assert.throws(() => c.inc(-1));
});
