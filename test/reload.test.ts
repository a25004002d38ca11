/**
 * Hot reload (issue 6, point 5): a broken edit keeps the old chain (logged with file:line:col, counted), an
 * edited plugin file is loaded afresh, state survives when options do not change, metrics are registered once,
 * timers and watchers die with their chain, in-flight queries finish on the old chain, sockets are kept.
 */
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import * as dnsPacket from 'dns-packet';
import { buildQuery, startFakeUpstream, startServer, type TestServer } from '../testing';

const distIndex = path.resolve(__dirname, '..', 'index.js');
const minimal = path.resolve(__dirname, '..', '..', 'examples', 'plugins', 'minimal', 'index.js');

function txt(a: { answers?: unknown[] }): string {
  const r = (a.answers ?? []).find((x) => (x as { type: string }).type === 'TXT') as { data: Buffer[] } | undefined;
  return r ? Buffer.concat(r.data).toString() : '';
}

/**
 * A plugin that answers TXT for `<anything>.tag` with `tag` and the state it keeps, and records its lifecycle
 * in globalThis.__reloadEvents. `body` is spliced in to make versions that differ.
 */
const tagPlugin = (version: string, flavour: 'cjs' | 'esm' = 'cjs'): string => `${flavour === 'cjs' ? `const { definePlugin, Type, DnsResponse } = require(${JSON.stringify(distIndex)});` : `import codexdns from ${JSON.stringify(distIndex)};\nconst { definePlugin, Type, DnsResponse } = codexdns;`}
const VERSION = ${JSON.stringify(version)};
const events = (globalThis.__reloadEvents ??= []);
const plugin = definePlugin({
  name: 'tag',
  options: Type.Object({ tag: Type.String({ default: 'a' }), delay: Type.Integer({ default: 0 }), tick: Type.Integer({ default: 0 }) }),
  setup(api, options) {
    const state = api.retain('state', () => ({ created: Date.now(), hits: 0 }), () => { events.push('dispose ' + options.tag); });
    const hits = api.metrics.counter({ name: 'hits_total', help: 'tag answers' });
    api.metrics.gauge({ name: 'state_hits', help: 'hits in the retained state', collect() { this.set(state.hits); } });
    if (options.tick > 0) api.timers.setInterval(() => { events.push('tick ' + options.tag); }, options.tick);
    api.hooks.startup.tap('tag', (info) => { events.push('startup ' + options.tag + ' ' + info.reason); });
    api.hooks.reload.tap('tag', (info) => { events.push('reload ' + options.tag + ' ' + info.reason); });
    api.hooks.shutdown.tap('tag', (info) => { events.push('shutdown ' + options.tag + ' ' + info.reason); });
    api.hooks.query.tapPromise('tag', async (ctx) => {
      if (!ctx.qname.endsWith('.tag')) return undefined;
      if (options.delay > 0) await new Promise((r) => setTimeout(r, options.delay));
      state.hits++;
      hits.inc();
      const q = ctx.message.questions[0];
      events.push('answer ' + options.tag);
      return DnsResponse.fromPacket({ type: 'response', flags: 0, questions: [q], answers: [{ name: q.name, type: 'TXT', ttl: 0, data: [VERSION + ' ' + options.tag + ' hits=' + state.hits] }] });
    });
  },
});
${flavour === 'cjs' ? 'module.exports = plugin;' : 'export default plugin;'}
`;

const conf = (plugins: string, extra = ''): string => `servers:
  - listen: [udp://127.0.0.1:0, tcp://127.0.0.1:0]
    plugins:
${plugins}${extra}`;
const tag = (options = '{ tag: a }', file = './tag.js'): string => `      - use: ${file}\n        options: ${options}\n`;

function events(): string[] {
  const g = globalThis as { __reloadEvents?: string[] };
  return (g.__reloadEvents ??= []);
}

async function until(what: string, fn: () => boolean | Promise<boolean>, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await fn())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

async function withServer(text: string, files: Record<string, string>, fn: (s: TestServer) => Promise<void>, watch = false): Promise<void> {
  events().length = 0;
  const s = await startServer(text, { files, watch });
  try {
    await fn(s);
  } finally {
    await s.stop();
  }
}

describe('reload: a broken edit', () => {
  test('keeps the old behaviour, is logged with file:line:col, and is counted (also in metrics)', async () => {
    const good = conf(tag());
    await withServer(good, { 'tag.js': tagPlugin('v1') }, async (s) => {
      assert.equal(txt(await s.query('x.tag', 'TXT')), 'v1 a hits=1');
      const broken = [
        { text: good.replace('    plugins:\n', '    plugins:\n     - bad: indent\n'), error: /Corefile\.yaml:\d+:\d+ YAML: / },
        { text: conf(tag('{ tag: b, colour: red }')), error: /Corefile\.yaml:5:28 plugin tag \(\S+tag\.js\): unknown option colour/ },
        { text: conf(tag('{ tag: 7 }')), error: /Corefile\.yaml:5:25 plugin tag \(\S+tag\.js\): option tag: must be string/ },
        { text: conf(tag() + '      - no_such_plugin: {}\n'), error: /Corefile\.yaml:6:9 plugin no_such_plugin: unknown plugin/ },
        { text: conf(tag('{ tag: b }', './missing.js')), error: /Corefile\.yaml:4:14 plugin \.\/missing\.js: cannot load plugin/ },
      ];
      for (const [i, b] of broken.entries()) {
        const r = await s.reload(b.text);
        assert.equal(r.ok, false, `edit ${i} was accepted`);
        assert.match(r.error!, b.error);
        assert.ok(s.logs.some((l) => / ERROR reload failed; the previous configuration keeps serving/.test(l) && b.error.test(l)), `edit ${i} not logged:\n${s.logs.slice(-3).join('\n')}`);
        assert.equal(txt(await s.query('x.tag', 'TXT')), `v1 a hits=${i + 2}`);
      }
      assert.deepEqual(s.server.reloads, { success: 0, failure: broken.length });
      const metrics = await s.server.metrics.registry.metrics();
      assert.match(metrics, /codexdns_config_reloads_total\{result="failure"\} 5/);
      assert.equal((await s.reload(conf(tag('{ tag: c }')))).ok, true);
      assert.match(await s.server.metrics.registry.metrics(), /codexdns_config_reloads_total\{result="success"\} 1/);
      assert.equal(txt(await s.query('x.tag', 'TXT')), 'v1 c hits=1');
      // The old chain was never touched by the failed attempts: one shutdown, for the successful reload.
      assert.deepEqual(events().filter((e) => e.startsWith('shutdown') || e.startsWith('startup') || e.startsWith('reload')), ['startup a startup', 'startup c reload', 'reload c reload', 'shutdown a reload']);
    });
  });
});

describe('reload: custom plugin files', () => {
  for (const flavour of ['cjs', 'esm'] as const) {
    const file = flavour === 'cjs' ? 'tag.js' : 'tag.mjs';
    test(`${flavour}: a file edited on disk answers with its new behaviour after the reload (the Corefile unchanged)`, async () => {
      await withServer(conf(tag('{ tag: a }', `./${file}`)), { [file]: tagPlugin('v1', flavour) }, async (s) => {
        assert.equal(txt(await s.query('x.tag', 'TXT')), 'v1 a hits=1');
        assert.equal((await s.reload()).ok, true);
        assert.equal(txt(await s.query('x.tag', 'TXT')), 'v1 a hits=2', 'an unchanged file keeps the module and its state');
        fs.writeFileSync(path.join(s.dir, file), tagPlugin('version-2', flavour));
        assert.equal((await s.reload()).ok, true);
        // New code; and its state starts afresh (the plugin's signature includes its file's version).
        assert.equal(txt(await s.query('x.tag', 'TXT')), 'version-2 a hits=1');
        assert.ok(events().includes('dispose a'));
        // A broken edit of the plugin file keeps the previous version serving.
        fs.writeFileSync(path.join(s.dir, file), 'this is not javascript {');
        const r = await s.reload();
        assert.equal(r.ok, false);
        assert.match(r.error!, new RegExp(`Corefile\\.yaml:4:14 plugin \\./${file.replace('.', '\\.')}: cannot load plugin`));
        assert.equal(txt(await s.query('x.tag', 'TXT')), 'version-2 a hits=2');
      });
    });
  }
});

describe('reload: what survives', () => {
  test('a plugin whose options did not change keeps its state: cache entries survive (the upstream sees no second query)', async () => {
    const up = await startFakeUpstream({ records: { 'www.example.org': { A: '192.0.2.10' } } });
    const forward = `      - forward: { to: ["${up.address}"] }\n`;
    const cache = (opts = '{ capacity: 1000 }'): string => `      - cache: ${opts}\n`;
    try {
      await withServer(conf(cache() + forward), { 'tag.js': tagPlugin('v1') }, async (s) => {
        await s.query('www.example.org', 'A');
        assert.equal(up.count('www.example.org'), 1);
        // Add plugins before and after cache: its options are the same, so its entries move to the new chain.
        assert.equal((await s.reload(conf('      - acl: { allow: [127.0.0.0/8] }\n' + tag() + cache() + forward))).ok, true);
        assert.equal(((await s.query('www.example.org', 'A')).answers![0] as { data: string }).data, '192.0.2.10');
        assert.equal(up.count('www.example.org'), 1, 'the cache entry survived');
        // Remove them again: still the same cache.
        assert.equal((await s.reload(conf(cache() + forward))).ok, true);
        await s.query('www.example.org', 'A');
        assert.equal(up.count('www.example.org'), 1);
        // Other cache options: a new, empty cache.
        assert.equal((await s.reload(conf(cache('{ capacity: 2000 }') + forward))).ok, true);
        await s.query('www.example.org', 'A');
        assert.equal(up.count('www.example.org'), 2);
      });
    } finally {
      await up.stop();
    }
  });

  test('a custom plugin\'s retained state follows the same rule, and is disposed once nothing claims it', async () => {
    await withServer(conf(tag('{ tag: a }')), { 'tag.js': tagPlugin('v1') }, async (s) => {
      await s.query('x.tag', 'TXT');
      await s.query('x.tag', 'TXT');
      assert.equal((await s.reload(conf('      - acl: {}\n' + tag('{ tag: a }')))).ok, true);
      assert.equal(txt(await s.query('x.tag', 'TXT')), 'v1 a hits=3');
      assert.ok(!events().some((e) => e.startsWith('dispose')));
      assert.equal((await s.reload(conf(tag('{ tag: b }')))).ok, true);
      assert.equal(txt(await s.query('x.tag', 'TXT')), 'v1 b hits=1');
      assert.deepEqual(events().filter((e) => e.startsWith('dispose')), ['dispose a']);
      assert.equal((await s.reload(conf('      - acl: {}\n'))).ok, true);
      assert.deepEqual(events().filter((e) => e.startsWith('dispose')), ['dispose a', 'dispose b']);
    });
  });

  test('an edited log block applies at the reload: format and level, for the server from then on', async () => {
    await withServer(conf(tag()), { 'tag.js': tagPlugin('v1') }, async (s) => {
      let n = s.logs.length;
      assert.equal((await s.reload(conf(tag(), 'log: { level: info, format: json }\n'))).ok, true);
      const reloaded = s.logs.slice(n).find((l) => l.includes('configuration reloaded'));
      assert.ok(reloaded, s.logs.slice(n).join('\n'));
      assert.equal((JSON.parse(reloaded) as { msg: string }).msg, 'configuration reloaded');
      // Warnings and errors only, as text again: the next reload's info line is not written, a failure is.
      n = s.logs.length;
      assert.equal((await s.reload(conf(tag(), 'log: { level: warn, format: text }\n'))).ok, true);
      assert.equal((await s.reload('servers: [\n')).ok, false);
      const after = s.logs.slice(n);
      assert.ok(!after.some((l) => l.includes('configuration reloaded')), after.join('\n'));
      assert.ok(after.some((l) => / ERROR reload failed/.test(l)), after.join('\n'));
      assert.equal((await s.query('x.tag', 'TXT')).rcode, 'NOERROR', 'the previous chain still answers');
    });
  });

  test('metrics are registered once: a reload returns the same counters, and gauges read the new instance', async () => {
    await withServer(conf(tag('{ tag: a }') + `      - use: ${minimal}\n`), { 'tag.js': tagPlugin('v1') }, async (s) => {
      await s.query('x.tag', 'TXT');
      await s.query('hello.test', 'TXT');
      for (let i = 0; i < 5; i++) {
        const t = i % 2 === 0 ? 'b' : 'a';
        const r = await s.reload(conf((i % 2 === 0 ? '      - acl: {}\n' : '') + tag(`{ tag: ${t} }`) + `      - use: ${minimal}\n`));
        assert.equal(r.ok, true, r.error);
        await s.query('x.tag', 'TXT');
        await s.query('hello.test', 'TXT');
      }
      const json = await s.server.metrics.registry.getMetricsAsJSON();
      const names = json.map((m) => m.name);
      assert.deepEqual(names.filter((n, i) => names.indexOf(n) !== i), [], 'a metric name registered twice');
      const text = await s.server.metrics.registry.metrics();
      // Counters carry on across the six chains.
      assert.match(text, /codexdns_tag_hits_total 6/);
      assert.match(text, /codexdns_minimal_answered_total 6/);
      // The gauge's collect() reads the state of the chain now serving (tag b, fresh: 1 hit... then a, b…).
      assert.match(text, /codexdns_tag_state_hits 1/);
      assert.match(text, /codexdns_config_reloads_total\{result="success"\} 5/);
    });
  });
});

describe('reload: metrics of an edited plugin', () => {
  test('a new version of a plugin that changes a metric\'s labels does not make every query fail', {
  }, async () => {
    const version = (labels: string[], inc: string): string => `const { definePlugin, Type, DnsResponse } = require(${JSON.stringify(distIndex)});
module.exports = definePlugin({
  name: 'lab',
  options: Type.Object({}),
  setup(api) {
    const answers = api.metrics.counter({ name: 'answers_total', help: 'answers', labelNames: ${JSON.stringify(labels)} });
    api.hooks.query.tap('lab', (ctx) => {
      answers.inc(${inc});
      const q = ctx.message.questions[0];
      return DnsResponse.fromPacket({ type: 'response', flags: 0, questions: [q], answers: [{ name: q.name, type: 'A', ttl: 0, data: '192.0.2.1' }] });
    });
  },
});
`;
    await withServer(conf('      - use: ./lab.js\n'), { 'lab.js': version(['kind'], "{ kind: 'a' }") }, async (s) => {
      assert.equal((await s.query('x.test', 'A')).rcode, 'NOERROR');
      fs.writeFileSync(path.join(s.dir, 'lab.js'), version(['kind', 'rcode'], "{ kind: 'a', rcode: 'NOERROR' }"));
      const r = await s.reload();
      // Either fix will do: the new version with its new labels, or a failed reload and the old version serving.
      assert.equal((await s.query('x.test', 'A')).rcode, 'NOERROR');
      if (r.ok) assert.match(await s.server.metrics.registry.metrics(), /codexdns_lab_answers_total\{kind="a",rcode="NOERROR"\} 1/);
      else assert.match(r.error!, /Corefile\.yaml:\d+:\d+ plugin lab.*answers_total/);
    });
  });
});

describe('reload: lifecycle', () => {
  test('timers made through api.timers stop with the chain that made them', async () => {
    await withServer(conf(tag('{ tag: a, tick: 10 }')), { 'tag.js': tagPlugin('v1') }, async (s) => {
      await until('ticks of a', () => events().filter((e) => e === 'tick a').length >= 3);
      assert.equal((await s.reload(conf(tag('{ tag: b, tick: 10 }')))).ok, true);
      const aTicks = events().filter((e) => e === 'tick a').length;
      await until('ticks of b', () => events().filter((e) => e === 'tick b').length >= 3);
      await new Promise((r) => setTimeout(r, 100));
      assert.equal(events().filter((e) => e === 'tick a').length, aTicks, 'the old chain\'s interval still runs');
      await s.stop();
      const bTicks = events().filter((e) => e === 'tick b').length;
      await new Promise((r) => setTimeout(r, 100));
      assert.equal(events().filter((e) => e === 'tick b').length, bTicks, 'an interval survived stop()');
    });
  });

  test('queries in flight finish on the old chain; its shutdown hook runs after them, with reason "reload"', async () => {
    await withServer(conf(tag('{ tag: old, delay: 1500 }')), { 'tag.js': tagPlugin('v1') }, async (s) => {
      let inFlightDone = false;
      const inFlight = s.query('slow.tag', 'TXT', { timeoutMs: 5000 }).finally(() => {
        inFlightDone = true;
      });
      await until('the query to reach the plugin', () => s.server.dispatcher.counters.inFlight === 1);
      const reload = s.reload(conf(tag('{ tag: new }')));
      // The new chain serves at once, while the old one still holds the slow query.
      await until('the new chain', async () => txt(await s.query('fast.tag', 'TXT')).startsWith('v1 new'));
      assert.equal(inFlightDone, false, 'the swap waited for the in-flight query');
      assert.equal(txt(await inFlight), 'v1 old hits=1');
      assert.equal((await reload).ok, true);
      const e = events();
      assert.ok(e.indexOf('answer old') < e.indexOf('shutdown old reload'), e.join(' | '));
      assert.ok(e.indexOf('startup new reload') < e.indexOf('shutdown old reload'), e.join(' | '));
      assert.ok(e.indexOf('reload new reload') > e.indexOf('startup new reload'));
      await s.stop();
      // At stop: the shutdown hooks, then the state nobody will claim.
      assert.deepEqual(events().slice(-2), ['shutdown new shutdown', 'dispose new']);
    });
  });

  test('the old chain keeps answering while the new one is being built (slow async setup)', async () => {
    const slow = `const { definePlugin, Type } = require(${JSON.stringify(distIndex)});
module.exports = definePlugin({ name: 'slowstart', options: Type.Object({ ms: Type.Integer() }), async setup(api, o) { await new Promise((r) => setTimeout(r, o.ms)); } });
`;
    await withServer(conf(tag('{ tag: a }')), { 'tag.js': tagPlugin('v1'), 'slow.js': slow }, async (s) => {
      const reload = s.reload(conf(`      - use: ./slow.js\n        options: { ms: 500 }\n` + tag('{ tag: b }')));
      const t0 = Date.now();
      let answeredByOld = 0;
      while (Date.now() - t0 < 300) {
        if (txt(await s.query('x.tag', 'TXT')).startsWith('v1 a')) answeredByOld++;
      }
      assert.ok(answeredByOld > 0);
      assert.equal((await reload).ok, true);
      assert.match(txt(await s.query('x.tag', 'TXT')), /^v1 b/);
    });
  });

  test('listeners whose address is unchanged keep their sockets: a TCP connection opened before is served after', async () => {
    await withServer(conf(tag('{ tag: a }')), { 'tag.js': tagPlugin('v1') }, async (s) => {
      const port = s.port;
      const sock = net.connect({ host: '127.0.0.1', port: s.tcpPort });
      await new Promise((r) => sock.once('connect', r));
      let buf = Buffer.alloc(0);
      const replies: string[] = [];
      sock.on('data', (d) => {
        buf = Buffer.concat([buf, d]);
        while (buf.length >= 2 && buf.length >= buf.readUInt16BE(0) + 2) {
          replies.push(txt(dnsPacket.decode(buf.subarray(2, 2 + buf.readUInt16BE(0)))));
          buf = buf.subarray(2 + buf.readUInt16BE(0));
        }
      });
      const ask = (): void => {
        const q = buildQuery('t.tag', 'TXT');
        const frame = Buffer.alloc(q.length + 2);
        frame.writeUInt16BE(q.length, 0);
        q.copy(frame, 2);
        sock.write(frame);
      };
      ask();
      await until('the first TCP answer', () => replies.length === 1);
      assert.equal((await s.reload(conf(tag('{ tag: b }')))).ok, true);
      ask();
      await until('the second TCP answer', () => replies.length === 2);
      assert.deepEqual(replies, ['v1 a hits=1', 'v1 b hits=1']);
      assert.equal(s.server.listenerPorts().find((p) => p.transport === 'udp')!.port, port);
      sock.destroy();
    });
  });

  test('editing Corefile.yaml reloads by itself, once per burst of writes (debounced)', async () => {
    const text = (t: string): string => conf(tag(`{ tag: ${t} }`), 'reload: { watch: true, debounce: 150ms }\n');
    await withServer(text('a'), { 'tag.js': tagPlugin('v1') }, async (s) => {
      const reloaded = (): number => s.logs.filter((l) => /configuration reloaded/.test(l)).length;
      for (const t of ['b', 'c', 'd']) {
        fs.writeFileSync(s.configFile, text(t));
        await new Promise((r) => setTimeout(r, 20));
      }
      await until('the reload', async () => txt(await s.query('x.tag', 'TXT')).startsWith('v1 d'));
      await new Promise((r) => setTimeout(r, 400));
      assert.equal(reloaded(), 1);
      // A broken save is logged and ignored; the next good one is picked up.
      fs.writeFileSync(s.configFile, text('e').replace('plugins:', 'plugins: [oops'));
      await until('the failure', () => s.logs.some((l) => /reload failed/.test(l)));
      assert.match(txt(await s.query('x.tag', 'TXT')), /^v1 d/);
      fs.writeFileSync(s.configFile, text('f'));
      await until('the next reload', async () => txt(await s.query('x.tag', 'TXT')).startsWith('v1 f'));
      assert.deepEqual(s.server.reloads, { success: 2, failure: 1 });
    }, true);
  });
});
