// workerpool and priority: the mechanisms on their own (bounds, drops, order), how clienttrack and discovery
// choose their pools (new lines, deprecated options, both), then real servers (metrics, reloads, order).
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { startServer } from '../testing';
import { definePlugin } from '../core/plugin';
import { Type } from '../config/types';
import { parseConfig } from '../config/load';
import { ConfigError, formatIssue } from '../config/errors';
import { builtinCatalog } from '../server/catalog';
import workerpool, { NamedPools, type WorkerpoolHooks } from '../plugins/workerpool';
import priority, { type PriorityHooks } from '../plugins/priority';
import { chooseTrackingPool } from '../plugins/clienttrack';
import { discoveryPool, getDiscoveryMetrics } from '../plugins/discovery';
import type { ClienttrackHooks, QueueMetrics } from '../plugins/clienttrack/hooks';
import { sleep, waitFor } from './helpers/net';
import { answerer, catalogWith } from './helpers/catalog';

/** A job that runs until released: lets a test fill the workers and then the queue. */
function gate(): { wait: Promise<void>; open: () => void } {
  let open!: () => void;
  const wait = new Promise<void>((r) => (open = r));
  return { wait, open };
}

function declared<H>(def: { declare?: (api: never, o?: never) => object }, o: unknown): H {
  return def.declare!({ block: {} as never } as never, o as never) as H;
}

describe('workerpool: named pools', () => {
  test('settings: the pools line wins bound by bound, the consumer\'s fallback fills the rest', () => {
    const pools = new NamedPools({ tracking: { workers: 7 }, discovery: { workers: 2, queue: 30 } });
    assert.deepEqual(pools.settings('tracking', { workers: 100, queue: 10_000 }), { workers: 7, queue: 10_000, configured: { workers: true, queue: false } });
    assert.deepEqual(pools.settings('discovery', { workers: 10, queue: 1000 }), { workers: 2, queue: 30, configured: { workers: true, queue: true } });
    assert.deepEqual(pools.settings('other', { workers: 3, queue: 4 }), { workers: 3, queue: 4, configured: { workers: false, queue: false } });
    // Names are looked up as own keys only.
    assert.equal(pools.settings('constructor', { workers: 1, queue: 1 }).configured.workers, false);
  });

  test('a pool holds `workers` running and `queue` waiting; the rest is dropped and counted, never waited for', async () => {
    const pools = declared<WorkerpoolHooks>(workerpool, { tracking: { workers: 2, queue: 3 } }).pools;
    const g = gate();
    let ran = 0;
    const pool = pools.create<number>('tracking', { workers: 100, queue: 10_000 }, {
      run: async () => {
        ran++;
        await g.wait;
      },
    });
    const accepted: boolean[] = [];
    for (let i = 0; i < 10; i++) accepted.push(pool.submit(i));
    assert.deepEqual(accepted, [true, true, true, true, true, false, false, false, false, false]);
    await sleep(0);
    const s = pool.stats();
    assert.equal(s.busy, 2);
    assert.equal(pool.depth, 3);
    assert.equal(pool.capacity, 3);
    assert.equal(pool.dropped, 5);
    assert.equal(s.submitted, s.processed + s.failed + s.dropped + s.queued + s.busy);
    g.open();
    assert.equal(await pool.drain(5000), true);
    assert.equal(ran, 5);
    assert.equal(pool.stats().processed, 5);
    pool.close();
    assert.equal(pool.submit(99), false, 'a closed pool refuses');
    assert.equal(pool.dropped, 6);
    assert.equal((pools as NamedPools).attached.get('tracking'), pool, 'create attaches the pool to the chain\'s metrics');
  });

  test('a pool named but used by no plugin is reported', () => {
    const pools = new NamedPools({ trackng: { workers: 1 } });
    pools.create('tracking', { workers: 1, queue: 1 }, { run: () => undefined });
    assert.deepEqual(pools.unused(), ['trackng']);
  });
});

describe('priority: known clients before new ones', () => {
  async function order(queue: ReturnType<PriorityHooks['queues']['create']> | undefined, jobs: Array<[string, 'high' | 'low']>): Promise<string[]> {
    const pools = new NamedPools({});
    const g = gate();
    const seen: string[] = [];
    const pool = pools.create<string>('tracking', { workers: 1, queue: 100 }, {
      ...(queue !== undefined ? { queue: queue as never } : {}),
      run: async (j) => {
        if (j === 'first') await g.wait;
        else seen.push(j);
      },
    });
    pool.submit('first');
    for (const [j, p] of jobs) assert.equal(pool.submit(j, p), true);
    g.open();
    assert.equal(await pool.drain(5000), true);
    return seen;
  }

  test('high first; while both wait one low after every `low_every` high; each class has its own bound', async () => {
    const prio = declared<PriorityHooks>(priority, { high: 10, low: 3, low_every: 2 }).queues;
    assert.deepEqual(prio.settings, { high: 10, low: 3, lowEvery: 2 });
    const jobs: Array<[string, 'high' | 'low']> = [];
    for (let i = 0; i < 3; i++) jobs.push([`new${i}`, 'low']);
    for (let i = 0; i < 6; i++) jobs.push([`known${i}`, 'high']);
    assert.deepEqual(await order(prio.create<string>(), jobs), ['known0', 'known1', 'new0', 'known2', 'known3', 'new1', 'known4', 'known5', 'new2']);
    // A storm of new clients fills only the low class: known clients still find room.
    const q = prio.create<string>();
    for (let i = 0; i < 3; i++) assert.equal(q.push(`new${i}`, 'low'), true);
    assert.equal(q.push('new3', 'low'), false, 'low is full');
    assert.equal(q.push('known', 'high'), true, 'high has its own room');
    assert.equal(q.capacity, 13);
  });

  test('defaults: high 5000, low 5000, low_every 8', () => {
    assert.deepEqual(declared<PriorityHooks>(priority, undefined).queues.settings, { high: 5000, low: 5000, lowEvery: 8 });
  });

  test('without priority: one FIFO in arrival order, whatever class a job is given', async () => {
    const jobs: Array<[string, 'high' | 'low']> = [['a', 'low'], ['b', 'high'], ['c', 'low'], ['d', 'high']];
    assert.deepEqual(await order(undefined, jobs), ['a', 'b', 'c', 'd']);
  });
});

describe('the tracking and discovery pools: new lines, deprecated options, both', () => {
  const prio = declared<PriorityHooks>(priority, { high: 700, low: 300, low_every: 4 }).queues;

  test('nothing written: today\'s defaults, one FIFO, no warning', () => {
    const c = chooseTrackingPool({}, undefined, undefined);
    assert.equal(c.workers, 100);
    assert.equal(c.queue, 10_000);
    assert.equal(c.priority, undefined);
    assert.deepEqual(c.warnings, []);
    assert.deepEqual(discoveryPool({}, undefined), { settings: { workers: 10, queue: 1000 }, warnings: [] });
  });

  test('the new lines: workerpool bounds, priority split (its bound is high + low)', () => {
    const c = chooseTrackingPool({}, new NamedPools({ tracking: { workers: 20 } }), prio);
    assert.equal(c.workers, 20);
    assert.equal(c.queue, 1000);
    assert.deepEqual(c.priority, { high: 700, low: 300, lowEvery: 4 });
    assert.deepEqual(c.warnings, []);
    const q = chooseTrackingPool({}, new NamedPools({ tracking: { queue: 5 } }), prio);
    assert.equal(q.queue, 1000);
    assert.match(q.warnings.join('\n'), /tracking\.queue \(5\) is not used: with priority the tracking queue holds high \+ low = 1000 jobs/);
  });

  test('old options alone: they still apply; validate reports each at its line with the line to write', async () => {
    const c = chooseTrackingPool({ workers: 50, queue: 600 }, undefined, undefined);
    assert.equal(c.workers, 50);
    assert.equal(c.queue, 600);
    assert.deepEqual(c.warnings, [], 'nothing overrides them: validate has said it already');
    const p = chooseTrackingPool({ priority: { high: 80, low: 20, low_every: 8 } }, undefined, undefined);
    assert.deepEqual(p.priority, { high: 80, low: 20, lowEvery: 8 });
    assert.equal(p.queue, 100);
    assert.deepEqual(discoveryPool({ workers: 3 }, undefined).settings, { workers: 3, queue: 1000 });

    const text = [
      'servers:',
      '  - listen: [udp://127.0.0.1:0]',
      '    plugins:',
      '      - clienttrack: { workers: 50, queue: 600 }',
      '      - discovery:',
      '          workers: 3',
      '      - forward: { to: [127.0.0.1:5301] }',
      '',
    ].join('\n');
    const cfg = await parseConfig(text, path.join(os.tmpdir(), 'Corefile.yaml'), builtinCatalog);
    assert.deepEqual(cfg.warnings.map(formatIssue).map((l) => l.replace(/^.*Corefile\.yaml/, 'Corefile.yaml')), [
      'Corefile.yaml:4:33 warning: plugin clienttrack: option workers: deprecated: write `- workerpool: { tracking: { workers: 50, queue: 600 } }` (a line of its own, or merged into yours) and remove workers; when both are written the workerpool line wins',
      'Corefile.yaml:4:44 warning: plugin clienttrack: option queue: deprecated: write `- workerpool: { tracking: { workers: 50, queue: 600 } }` (a line of its own, or merged into yours) and remove queue; when both are written the workerpool line wins',
      'Corefile.yaml:6:20 warning: plugin discovery: option workers: deprecated: write `- workerpool: { discovery: { workers: 3 } }` (a line of its own, or merged into yours) and remove workers; when both are written the workerpool line wins',
    ]);
    const prio = await parseConfig(text.replace('{ workers: 50, queue: 600 }', '{ priority: { high: 80, low: 20 } }'), path.join(os.tmpdir(), 'Corefile.yaml'), builtinCatalog);
    assert.match(prio.warnings.map(formatIssue).join('\n'), /Corefile\.yaml:4:\d+ warning: plugin clienttrack: option priority: deprecated: write `- priority: \{ high: 80, low: 20, low_every: 8 \}` \(a line of its own\)/);
    // The new lines: no warning.
    const fresh = await parseConfig(text.replace('{ workers: 50, queue: 600 }', '{}').replace('          workers: 3', '          methods: [arp]').replace('      - clienttrack', '      - workerpool: { tracking: { workers: 50 } }\n      - priority: {}\n      - clienttrack'), path.join(os.tmpdir(), 'Corefile.yaml'), builtinCatalog);
    assert.deepEqual(fresh.warnings, []);
  });

  test('old and new: the new wins, the old is reported as ignored', () => {
    const c = chooseTrackingPool({ workers: 50, priority: { high: 80, low: 20, low_every: 8 } }, new NamedPools({ tracking: { workers: 20 } }), prio);
    assert.equal(c.workers, 20);
    assert.deepEqual(c.priority, { high: 700, low: 300, lowEvery: 4 });
    assert.deepEqual(c.warnings, [
      'clienttrack.workers (50) is ignored: the workerpool line\'s tracking.workers wins; remove clienttrack.workers',
      'clienttrack.priority is ignored: the priority line wins; remove clienttrack.priority',
    ]);
    // A workerpool line that leaves a bound out: the old option still gives it (validate says where to move it).
    const d = discoveryPool({ workers: 3, queue: 40 }, new NamedPools({ discovery: { queue: 50 } }));
    assert.deepEqual(d.settings, { workers: 3, queue: 50 });
    assert.deepEqual(d.warnings, ['discovery.queue (40) is ignored: the workerpool line\'s discovery.queue wins; remove discovery.queue']);
  });
});

describe('workerpool: configuration', () => {
  async function errors(plugins: string): Promise<string[]> {
    const text = `servers:\n  - listen: [udp://127.0.0.1:0]\n    plugins:\n${plugins}`;
    try {
      await parseConfig(text, path.join(os.tmpdir(), 'Corefile.yaml'), builtinCatalog);
      return [];
    } catch (err) {
      assert.ok(err instanceof ConfigError, String(err));
      return err.issues.filter((i) => i.severity === 'error').map(formatIssue);
    }
  }

  test('bad pool names and options are reported at their line', async () => {
    assert.deepEqual(await errors('      - workerpool: { tracking: { workers: 10 } }\n      - priority: {}\n'), []);
    assert.match((await errors('      - workerpool: { Tracking: { workers: 10 } }\n')).join('\n'), /Corefile\.yaml:4:\d+ plugin workerpool: option Tracking: pool name "Tracking"/);
    assert.match((await errors('      - workerpool: { tracking: { wrkers: 10 } }\n')).join('\n'), /Corefile\.yaml:4:\d+ plugin workerpool:.*wrkers/);
    assert.match((await errors('      - workerpool: { tracking: { workers: 0 } }\n')).join('\n'), /Corefile\.yaml:4:\d+ plugin workerpool: option tracking\.workers/);
    assert.match((await errors('      - priority: { high: 0 }\n')).join('\n'), /Corefile\.yaml:4:\d+ plugin priority: option high/);
  });
});

// ---------------------------------------------------------------------------------------------------------
// Real servers.

const probes = new Map<string, ClienttrackHooks>();
const wpprobe = definePlugin({
  name: 'wpprobe',
  options: Type.Object({ id: Type.String() }),
  setup(api, o) {
    const hooks = api.hooksOf('clienttrack');
    if (!hooks) throw new Error('wpprobe needs clienttrack in the chain');
    probes.set(o.id, hooks);
  },
});

const catalog = catalogWith(answerer, wpprobe);

let seq = 0;
function corefile(dir: string, lines: string, id: string): string {
  return `
servers:
  - listen: [udp://127.0.0.1:0, tcp://127.0.0.1:0]
    plugins:
      - acl: { allow: [127.0.0.0/8] }
${lines}
      - wpprobe: { id: ${id} }
      - answerer: {}
storage: { client: sqlite3, connection: { filename: ${JSON.stringify(path.join(dir, 'clients.sqlite'))} } }
`;
}

function metric(text: string, re: RegExp): number {
  const m = re.exec(text);
  return m === null ? Number.NaN : Number(m[1]);
}

async function settle(id: string, submitted: number): Promise<QueueMetrics> {
  let m = probes.get(id)!.queueMetrics.call();
  await waitFor(`${submitted} tracking jobs done`, () => {
    m = probes.get(id)!.queueMetrics.call();
    return m.submitted >= submitted && m.queued === 0 && m.busy === 0;
  });
  return m;
}

describe('workerpool and priority in a server', () => {
  test('the tracking pool comes from the lines, listed in any order; metrics per pool; old metric names kept', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'codexdns-wp-'));
    const id = `wp${seq++}`;
    // clienttrack listed above the plugins it uses: the pool is configured all the same.
    const s = await startServer(corefile(dir, '      - clienttrack: { flush: 100ms }\n      - workerpool: { tracking: { workers: 3 } }\n      - priority: { high: 40, low: 60, low_every: 4 }', id), { catalog });
    try {
      for (let i = 0; i < 12; i++) assert.equal((await s.query(`w${i}.example`, 'A', { from: `127.0.7.${1 + (i % 3)}` })).rcode, 'NOERROR');
      const m = await settle(id, 12);
      assert.equal(m.workers, 3);
      assert.equal(m.priority, true);
      assert.deepEqual(m.capacity, { high: 40, low: 60, total: 100 });
      const text = await s.server.metrics.registry.metrics();
      assert.equal(metric(text, /^codexdns_workerpool_workers\{pool="tracking"\} (\d+)/m), 3);
      assert.equal(metric(text, /^codexdns_workerpool_queue_capacity\{pool="tracking"\} (\d+)/m), 100);
      assert.equal(metric(text, /^codexdns_workerpool_submitted_total\{pool="tracking"\} (\d+)/m), m.submitted);
      assert.equal(metric(text, /^codexdns_workerpool_processed_total\{pool="tracking"\} (\d+)/m), m.processed);
      assert.equal(metric(text, /^codexdns_workerpool_dropped_total\{pool="tracking"\} (\d+)/m), 0);
      assert.equal(metric(text, /^codexdns_workerpool_queue_depth\{pool="tracking",priority="low"\} (\d+)/m), 0);
      // clienttrack's own names, which the dashboard and older scrapes read, are unchanged.
      assert.equal(metric(text, /^codexdns_tracking_submitted_total (\d+)/m), m.submitted);
      assert.equal(metric(text, /^codexdns_tracking_queue_capacity\{priority="low"\} (\d+)/m), 60);
      assert.equal(metric(text, /^codexdns_tracking_workers (\d+)/m), 3);
      assert.ok(!s.logs.some((l) => /deprecated/.test(l)), 'no deprecation warning for the new lines');
      // A second scrape does not count twice.
      const again = await s.server.metrics.registry.metrics();
      assert.equal(metric(again, /^codexdns_workerpool_submitted_total\{pool="tracking"\} (\d+)/m), m.submitted);
    } finally {
      await s.stop();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  test('the discovery pool: bounds from the workerpool line, shown per pool; an old discovery option warns', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'codexdns-wp-'));
    const id = `wp${seq++}`;
    const s = await startServer(
      corefile(dir, '      - workerpool: { discovery: { workers: 2, queue: 7 } }\n      - clienttrack: { flush: 100ms }\n      - discovery: { methods: [arp], queue: 9 }', id),
      { catalog },
    );
    try {
      const d = getDiscoveryMetrics('block0');
      assert.ok(d !== undefined, 'discovery runs');
      assert.equal(d.workers, 2);
      assert.equal(d.queue.capacity, 7);
      const text = await s.server.metrics.registry.metrics();
      assert.equal(metric(text, /^codexdns_workerpool_workers\{pool="discovery"\} (\d+)/m), 2);
      assert.equal(metric(text, /^codexdns_workerpool_queue_capacity\{pool="discovery"\} (\d+)/m), 7);
      assert.equal(metric(text, /^codexdns_workerpool_workers\{pool="tracking"\} (\d+)/m), 100, 'a pool the line does not name gets its consumer\'s defaults');
      assert.match(s.logs.join('\n'), /discovery\.queue \(9\) is ignored: the workerpool line's discovery\.queue wins/);
    } finally {
      await s.stop();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  test('an old Corefile keeps working, with warnings naming the new lines', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'codexdns-wp-'));
    const id = `wp${seq++}`;
    const s = await startServer(corefile(dir, '      - clienttrack: { workers: 5, flush: 100ms, priority: { high: 30, low: 20 } }', id), { catalog });
    try {
      for (let i = 0; i < 6; i++) assert.equal((await s.query(`o${i}.example`, 'A', { from: `127.0.8.${1 + i}` })).rcode, 'NOERROR');
      const m = await settle(id, 6);
      assert.equal(m.workers, 5);
      assert.equal(m.priority, true);
      assert.deepEqual(m.capacity, { high: 30, low: 20, total: 50 });
      const logs = s.logs.join('\n');
      assert.match(logs, /plugin clienttrack: option workers: deprecated: write `- workerpool: \{ tracking: \{ workers: 5 \} \}`/);
      assert.match(logs, /plugin clienttrack: option priority: deprecated: write `- priority: \{ high: 30, low: 20, low_every: 8 \}`/);
      // No workerpool line: no workerpool metrics, the tracking ones as before.
      const text = await s.server.metrics.registry.metrics();
      assert.doesNotMatch(text, /^codexdns_workerpool_workers\{/m);
      assert.equal(metric(text, /^codexdns_tracking_workers (\d+)/m), 5);
    } finally {
      await s.stop();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  test('reloads: unchanged lines keep the pool; changed bounds build a new one that takes over the index; removing the lines falls back', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'codexdns-wp-'));
    const id = `wp${seq++}`;
    const lines = (workers: number, withLines = true): string =>
      withLines ? `      - workerpool: { tracking: { workers: ${workers} } }\n      - priority: {}\n      - clienttrack: { flush: 100ms }` : '      - clienttrack: { flush: 100ms }';
    const s = await startServer(corefile(dir, lines(4), id), { catalog });
    try {
      for (let i = 0; i < 5; i++) await s.query(`r${i}.example`, 'A', { from: `127.0.9.${1 + i}` });
      const before = await settle(id, 5);
      const taken = (): number => s.logs.filter((l) => /client index taken over/.test(l)).length;
      assert.equal((await s.reload(corefile(dir, lines(4), id))).ok, true);
      await s.query('r-same.example', 'A', { from: '127.0.9.1' });
      const same = await settle(id, before.submitted + 1);
      assert.equal(same.submitted, before.submitted + 1, 'the same pool: its totals go on');
      assert.equal(taken(), 0, 'no new tracker for an unchanged configuration');

      assert.equal((await s.reload(corefile(dir, lines(6), id))).ok, true);
      await s.query('r-changed.example', 'A', { from: '127.0.9.2' });
      const changed = await settle(id, 1);
      assert.equal(changed.workers, 6);
      assert.equal(changed.submitted, 1, 'a new pool');
      assert.equal(changed.clients.new, 0, 'the index was taken over: known clients stay known');
      assert.equal(taken(), 1);
      const text = await s.server.metrics.registry.metrics();
      assert.equal(metric(text, /^codexdns_workerpool_workers\{pool="tracking"\} (\d+)/m), 6);

      assert.equal((await s.reload(corefile(dir, lines(6, false), id))).ok, true);
      await s.query('r-plain.example', 'A', { from: '127.0.9.3' });
      const plain = await settle(id, 1);
      assert.equal(plain.workers, 100, 'without the workerpool line: the default pool');
      assert.equal(plain.priority, false, 'without the priority line: one FIFO');
      assert.equal(plain.clients.new, 0);
      assert.doesNotMatch(await s.server.metrics.registry.metrics(), /^codexdns_workerpool_workers\{/m, 'the workerpool line removed: its metrics go');
    } finally {
      await s.stop();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
