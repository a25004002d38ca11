/**
 * Custom plugins: loaded by path (ESM and CommonJS) or by package name, options validated by their own schema
 * with errors that name the plugin file at line:col, two-phase setup (a plugin taps the hook of one listed
 * after it), and a throwing setup that keeps the old chain on reload.
 */
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, type TestServer } from '../testing';
import { ConfigError } from '../config/errors';
import { SHIM, withServer } from './helpers/codexdnsPackage';

/** A plugin that answers one name with an A record: the body shared by the module flavours below. */
const body = (name: string) => `{
  name: '${name}',
  options: Type.Object({
    name: Type.String({ default: '${name}.test' }),
    address: Type.String({ pattern: '^\\\\d+\\\\.\\\\d+\\\\.\\\\d+\\\\.\\\\d+$', default: '192.0.2.1' }),
    wait: Duration(0),
    ttl: Type.Integer({ minimum: 0, maximum: 86400, default: 60 }),
  }),
  setup(api, options) {
    api.hooks.query.tap(api.name, (ctx) => {
      if (ctx.qname !== options.name) return undefined;
      const q = ctx.message.questions[0];
      return DnsResponse.fromPacket({ type: 'response', flags: 0, questions: [q], answers: [{ name: q.name, type: 'A', ttl: options.ttl, data: options.address }] });
    });
  },
}`;

const ESM = (name: string): string => `import { definePlugin, Type, Duration, DnsResponse } from 'codexdns';\nexport default definePlugin(${body(name)});\n`;
const CJS = (name: string): string => `'use strict';\nconst { definePlugin, Type, Duration, DnsResponse } = require('codexdns');\nmodule.exports = definePlugin(${body(name)});\n`;
/** What `tsc` emits for `export default definePlugin(…)` with module: commonjs/node16. */
const TSC_CJS = (name: string): string => `"use strict";\nObject.defineProperty(exports, "__esModule", { value: true });\nconst codexdns_1 = require("codexdns");\nconst { Type, Duration, DnsResponse } = codexdns_1;\nexports.default = (0, codexdns_1.definePlugin)(${body(name)});\n`;

const corefile = (entries: string): string => `servers:
  - listen: [udp://127.0.0.1:0]
    plugins:
${entries}`;

function addressOf(a: { answers?: unknown[] }): string | undefined {
  return (a.answers?.[0] as { data?: string } | undefined)?.data;
}

async function startError(text: string, files: Record<string, string>): Promise<string> {
  try {
    const s = await startServer(text, { files: { ...SHIM, ...files } });
    await s.stop();
  } catch (err) {
    assert.ok(err instanceof ConfigError, String(err));
    return err.message;
  }
  throw new Error('the server started');
}

describe('custom plugins: loading', () => {
  test('ESM (.mjs, and .js under "type": "module") and CommonJS (.js, .cjs, tsc output) by path, relative to the Corefile', async () => {
    const files = {
      'plugins/esm.mjs': ESM('esm'),
      'plugins/esm-pkg/package.json': JSON.stringify({ type: 'module' }),
      'plugins/esm-pkg/plugin.js': ESM('esmjs'),
      'plugins/cjs.js': CJS('cjs'),
      'plugins/cjs2.cjs': CJS('cjs2'),
      'plugins/fromts.js': TSC_CJS('fromts'),
    };
    const text = corefile(`      - use: ./plugins/esm.mjs
        options: { address: 192.0.2.11 }
      - use: ./plugins/esm-pkg/plugin.js
        options: { address: 192.0.2.12 }
      - use: ./plugins/cjs.js
        options: { address: 192.0.2.13 }
      - use: ./plugins/cjs2.cjs
        options: { address: 192.0.2.14 }
      - use: ./plugins/fromts.js
        options: { address: 192.0.2.15 }
`);
    await withServer(text, files, async (s) => {
      assert.equal(addressOf(await s.query('esm.test', 'A')), '192.0.2.11');
      assert.equal(addressOf(await s.query('esmjs.test', 'A')), '192.0.2.12');
      assert.equal(addressOf(await s.query('cjs.test', 'A')), '192.0.2.13');
      assert.equal(addressOf(await s.query('cjs2.test', 'A')), '192.0.2.14');
      assert.equal(addressOf(await s.query('fromts.test', 'A')), '192.0.2.15');
      // Nobody answered: SERVFAIL.
      assert.equal((await s.query('other.test', 'A')).rcode, 'SERVFAIL');
    });
  });

  test('by npm package name (plain and scoped), resolved from the Corefile folder', async () => {
    const files = {
      'node_modules/codexdns-plugin-geo/package.json': JSON.stringify({ name: 'codexdns-plugin-geo', version: '1.0.0', main: 'lib/index.js' }),
      'node_modules/codexdns-plugin-geo/lib/index.js': CJS('geo'),
      'node_modules/@acme/codexdns-echo/package.json': JSON.stringify({ name: '@acme/codexdns-echo', version: '1.0.0', type: 'module', exports: './index.js' }),
      'node_modules/@acme/codexdns-echo/index.js': ESM('echo'),
    };
    const text = corefile(`      - use: codexdns-plugin-geo
        options: { address: 192.0.2.21 }
      - use: "@acme/codexdns-echo"
        options: { address: 192.0.2.22 }
`);
    await withServer(text, files, async (s) => {
      assert.equal(addressOf(await s.query('geo.test', 'A')), '192.0.2.21');
      assert.equal(addressOf(await s.query('echo.test', 'A')), '192.0.2.22');
    });
  });

  test('a missing file, a package not installed, a module without a definition: line:col at `use`', async () => {
    const msg = await startError(corefile(`      - use: ./plugins/nope.js
      - use: codexdns-plugin-absent
      - use: ./plugins/empty.js
`), { 'plugins/empty.js': 'module.exports = { hello: 1 };\n' });
    assert.match(msg, /Corefile\.yaml:4:14 plugin \.\/plugins\/nope\.js: cannot load plugin: .*nope\.js: no such file/);
    assert.match(msg, /Corefile\.yaml:5:14 plugin codexdns-plugin-absent: cannot load plugin: package codexdns-plugin-absent is not installed/);
    assert.match(msg, /Corefile\.yaml:6:14 plugin \.\/plugins\/empty\.js: cannot load plugin: .*empty\.js: exports no plugin definition/);
  });

  test('a syntax error in the plugin file is reported at its `use` line, with the reason', async () => {
    const msg = await startError(corefile(`      - use: ./plugins/broken.js
`), { 'plugins/broken.js': 'module.exports = {\n  name: "broken",,\n};\n' });
    assert.match(msg, /Corefile\.yaml:4:14 plugin \.\/plugins\/broken\.js: cannot load plugin: .*Unexpected token/);
  });
});

describe('custom plugins: options', () => {
  test('validated by the plugin\'s own schema; every error names the plugin file, the option and its line:col', async () => {
    const text = corefile(`      - use: ./plugins/geo.js
        options:
          address: not-an-ip
          ttl: -5
          wait: soon
          colour: blue
`);
    const msg = await startError(text, { 'plugins/geo.js': CJS('geo') });
    const file = /plugin geo \((\/[^)]*\/plugins\/geo\.js)\)/.exec(msg);
    assert.ok(file, msg);
    assert.match(msg, /Corefile\.yaml:6:20 plugin geo \(\S+geo\.js\): option address: must match pattern/);
    assert.match(msg, /Corefile\.yaml:7:16 plugin geo \(\S+geo\.js\): option ttl: must be >= 0/);
    assert.match(msg, /Corefile\.yaml:8:17 plugin geo \(\S+geo\.js\): option wait: must be a duration such as 500ms, 30s, 5m or 24h/);
    assert.match(msg, /Corefile\.yaml:9:11 plugin geo \(\S+geo\.js\): unknown option colour/);
  });

  test('defaults are filled in and durations arrive in milliseconds', async () => {
    const text = corefile(`      - use: ./plugins/geo.mjs
        options: { wait: 1.5m }
`);
    // A second plugin reads geo's options as the server validated them (api.server.pluginOptions).
    const probe = `import { definePlugin, Type, DnsResponse } from 'codexdns';
export default definePlugin({
  name: 'probe',
  options: Type.Object({}),
  setup(api) {
    api.hooks.query.tap('probe', (ctx) => {
      const o = api.server.pluginOptions('geo');
      const q = ctx.message.questions[0];
      return DnsResponse.fromPacket({ type: 'response', flags: 0, questions: [q], answers: [{ name: q.name, type: 'TXT', ttl: 0, data: [JSON.stringify(o)] }] });
    });
  },
});
`;
    await withServer(text + `      - use: ./plugins/probe.mjs\n`, { 'plugins/geo.mjs': ESM('geo'), 'plugins/probe.mjs': probe }, async (s) => {
      const a = await s.query('x.test', 'TXT');
      const opts = JSON.parse(Buffer.concat((a.answers![0] as { data: Buffer[] }).data).toString()) as Record<string, unknown>;
      assert.deepEqual(opts, { name: 'geo.test', address: '192.0.2.1', wait: 90_000, ttl: 60 });
    });
  });

  test('an OptionError thrown by setup points at that option\'s line:col', async () => {
    const plugin = `const { definePlugin, Type, OptionError } = require('codexdns');
module.exports = definePlugin({
  name: 'picky',
  options: Type.Object({ zone: Type.String({ default: 'home.arpa' }) }),
  setup(api, options) {
    if (!options.zone.endsWith('.arpa')) throw new OptionError('zone', 'must end in .arpa');
  },
});
`;
    const msg = await startError(corefile(`      - use: ./plugins/picky.js
        options: { zone: example.com }
`), { 'plugins/picky.js': plugin });
    assert.match(msg, /Corefile\.yaml:5:26 plugin picky.*: option zone: must end in \.arpa/);
  });

  test('setup errors name the plugin file too, like schema errors do', async () => {
    const plugin = `const { definePlugin, Type, OptionError } = require('codexdns');
module.exports = definePlugin({
  name: 'picky',
  options: Type.Object({ zone: Type.String({ default: 'home.arpa' }) }),
  setup(api, options) {
    if (!options.zone.endsWith('.arpa')) throw new OptionError('zone', 'must end in .arpa');
    throw new Error('cannot start');
  },
});
`;
    const bad = await startError(corefile(`      - use: ./plugins/picky.js
        options: { zone: example.com }
`), { 'plugins/picky.js': plugin });
    assert.match(bad, /Corefile\.yaml:5:26 plugin picky \(\S+picky\.js\): option zone: must end in \.arpa/);
    const thrown = await startError(corefile(`      - use: ./plugins/picky.js
`), { 'plugins/picky.js': plugin });
    assert.match(thrown, /Corefile\.yaml:4:9 plugin picky \(\S+picky\.js\): cannot start/);
  });
});

describe('custom plugins: hooks and setup', () => {
  test('a plugin taps the hook another publishes, even when listed before it (two-phase setup)', async () => {
    // `audit` is listed first and taps `geo`'s `answered` hook; `geo` publishes it in declare().
    const geo = `const { SyncHook } = require(${JSON.stringify(require.resolve('tapable'))});
const { definePlugin, Type, DnsResponse } = require('codexdns');
module.exports = definePlugin({
  name: 'geo',
  options: Type.Object({}),
  declare: () => ({ answered: new SyncHook(['name', 'country']) }),
  setup(api) {
    api.hooks.query.tap('geo', (ctx) => {
      if (!ctx.qname.endsWith('.geo.test')) return undefined;
      api.own.answered.call(ctx.qname, 'NL');
      const q = ctx.message.questions[0];
      return DnsResponse.fromPacket({ type: 'response', flags: 0, questions: [q], answers: [{ name: q.name, type: 'A', ttl: 0, data: '192.0.2.31' }] });
    });
  },
});
`;
    const audit = `const { definePlugin, Type, DnsResponse } = require('codexdns');
module.exports = definePlugin({
  name: 'audit',
  options: Type.Object({}),
  setup(api) {
    const seen = [];
    const geo = api.hooksOf('geo');
    if (geo === undefined) throw new Error('geo is not in the chain');
    geo.answered.tap('audit', (name, country) => { seen.push(name + '=' + country); });
    const absent = api.hooksOf('nobody');
    api.hooks.query.tap('audit', (ctx) => {
      if (ctx.qname !== 'audit.test') return undefined;
      const q = ctx.message.questions[0];
      return DnsResponse.fromPacket({ type: 'response', flags: 0, questions: [q], answers: [{ name: q.name, type: 'TXT', ttl: 0, data: [seen.join(',') + '|' + String(absent)] }] });
    });
  },
});
`;
    await withServer(corefile(`      - use: ./audit.js
      - use: ./geo.js
`), { 'audit.js': audit, 'geo.js': geo }, async (s) => {
      assert.equal(addressOf(await s.query('a.geo.test', 'A')), '192.0.2.31');
      assert.equal(addressOf(await s.query('b.geo.test', 'A')), '192.0.2.31');
      const a = await s.query('audit.test', 'TXT');
      assert.equal(Buffer.concat((a.answers![0] as { data: Buffer[] }).data).toString(), 'a.geo.test=NL,b.geo.test=NL|undefined');
    });
  });

  test('ctx.next(): a plugin sees what the rest of the chain answers, and may change it; response hook sees the final answer', async () => {
    const wrap = `const { definePlugin, Type, DnsResponse } = require('codexdns');
module.exports = definePlugin({
  name: 'wrap',
  options: Type.Object({}),
  setup(api) {
    let last = '';
    api.hooks.query.tapPromise('wrap', async (ctx) => {
      if (ctx.qname === 'last.test') {
        const q = ctx.message.questions[0];
        return DnsResponse.fromPacket({ type: 'response', flags: 0, questions: [q], answers: [{ name: q.name, type: 'TXT', ttl: 0, data: [last] }] });
      }
      const res = await ctx.next();
      if (res.rcode === 3) {
        const q = ctx.message.questions[0];
        return DnsResponse.fromPacket({ type: 'response', flags: 0, questions: [q], answers: [{ name: q.name, type: 'A', ttl: 0, data: '192.0.2.99' }] });
      }
      return res;
    });
    api.hooks.response.tap('wrap', (res, ctx) => { last = ctx.qname + ':' + res.plugin + ':' + res.rcode; return res; });
  },
});
`;
    const nx = `const { definePlugin, Type, Rcode } = require('codexdns');
module.exports = definePlugin({ name: 'nx', options: Type.Object({}), setup(api) { api.hooks.query.tap('nx', (ctx) => ctx.reply(Rcode.NXDOMAIN)); } });
`;
    await withServer(corefile(`      - use: ./wrap.js
      - use: ./nx.js
`), { 'wrap.js': wrap, 'nx.js': nx }, async (s) => {
      assert.equal(addressOf(await s.query('gone.test', 'A')), '192.0.2.99');
      const a = await s.query('last.test', 'TXT');
      assert.equal(Buffer.concat((a.answers![0] as { data: Buffer[] }).data).toString(), 'gone.test:wrap:0');
    });
  });

  test('a setup that throws at reload keeps the old chain serving; the error is logged with line:col and counted', async () => {
    const plugin = `const { definePlugin, Type, DnsResponse } = require('codexdns');
module.exports = definePlugin({
  name: 'fragile',
  options: Type.Object({ address: Type.String(), fail: Type.Boolean({ default: false }) }),
  setup(api, options) {
    if (options.fail) throw new Error('upstream database unreachable');
    api.hooks.query.tap('fragile', (ctx) => {
      const q = ctx.message.questions[0];
      return DnsResponse.fromPacket({ type: 'response', flags: 0, questions: [q], answers: [{ name: q.name, type: 'A', ttl: 0, data: options.address }] });
    });
  },
});
`;
    const text = (opts: string): string => corefile(`      - use: ./fragile.js
        options: ${opts}
`);
    await withServer(text('{ address: 192.0.2.41 }'), { 'fragile.js': plugin }, async (s) => {
      assert.equal(addressOf(await s.query('x.test', 'A')), '192.0.2.41');
      const r = await s.reload(text('{ address: 192.0.2.42, fail: true }'));
      assert.equal(r.ok, false);
      assert.match(r.error!, /Corefile\.yaml:4:9 plugin fragile.*: upstream database unreachable/);
      assert.ok(s.logs.some((l) => /ERROR reload failed; the previous configuration keeps serving .*Corefile\.yaml:4:9 plugin fragile.*upstream database unreachable/.test(l)), s.logs.join('\n'));
      assert.equal(addressOf(await s.query('x.test', 'A')), '192.0.2.41');
      assert.deepEqual(s.server.reloads, { success: 0, failure: 1 });
      assert.equal((await s.reload(text('{ address: 192.0.2.43 }'))).ok, true);
      assert.equal(addressOf(await s.query('x.test', 'A')), '192.0.2.43');
      assert.deepEqual(s.server.reloads, { success: 1, failure: 1 });
    });
  });

  test('a throwing setup on reload disposes what the new chain created and gives retained state back to the old one', async () => {
    const plugin = `const { definePlugin, Type, DnsResponse } = require('codexdns');
let made = 0;
const disposed = [];
module.exports = definePlugin({
  name: 'keeper',
  options: Type.Object({ tag: Type.String() }),
  setup(api, options) {
    const state = api.retain('state', () => ({ id: ++made, hits: 0 }), (v) => { disposed.push(v.id); });
    api.hooks.query.tap('keeper', (ctx) => {
      state.hits++;
      const q = ctx.message.questions[0];
      return DnsResponse.fromPacket({ type: 'response', flags: 0, questions: [q], answers: [{ name: q.name, type: 'TXT', ttl: 0, data: [options.tag + ' state=' + state.id + ' hits=' + state.hits + ' disposed=' + disposed.join(',')] }] });
    });
  },
});
`;
    const bomb = `module.exports = { name: 'bomb', options: { type: 'object', properties: {} }, setup() { throw new Error('boom'); } };\n`;
    const keeper = (tag: string): string => `      - use: ./keeper.js\n        options: { tag: ${tag} }\n`;
    const read = async (s: TestServer): Promise<string> => Buffer.concat(((await s.query('k.test', 'TXT')).answers![0] as { data: Buffer[] }).data).toString();
    await withServer(corefile(keeper('one')), { 'keeper.js': plugin, 'bomb.js': bomb }, async (s) => {
      assert.equal(await read(s), 'one state=1 hits=1 disposed=');
      // Same options + a plugin that throws: keeper's state was claimed by the new chain, then handed back.
      assert.equal((await s.reload(corefile(keeper('one') + '      - use: ./bomb.js\n'))).ok, false);
      assert.equal(await read(s), 'one state=1 hits=2 disposed=');
      // Other options + a plugin that throws: the fresh state is disposed, the old one keeps serving.
      assert.equal((await s.reload(corefile(keeper('two') + '      - use: ./bomb.js\n'))).ok, false);
      assert.equal(await read(s), 'one state=1 hits=3 disposed=2');
      // Same options, good file: state 1 carries over.
      assert.equal((await s.reload(corefile(keeper('one')))).ok, true);
      assert.equal(await read(s), 'one state=1 hits=4 disposed=2');
    });
  });

  test('an ES module plugin whose file did not change is not loaded again by a reload', async () => {
    const plugin = `import { definePlugin, Type } from 'codexdns';
globalThis.__codexdnsEsmCopies = (globalThis.__codexdnsEsmCopies ?? 0) + 1;
export default definePlugin({ name: 'counted', options: Type.Object({}), setup() {} });
`;
    const g = globalThis as { __codexdnsEsmCopies?: number };
    g.__codexdnsEsmCopies = 0;
    await withServer(corefile('      - use: ./counted.mjs\n'), { 'counted.mjs': plugin }, async (s) => {
      assert.equal(g.__codexdnsEsmCopies, 1);
      for (let i = 0; i < 3; i++) assert.equal((await s.reload()).ok, true);
      assert.equal(g.__codexdnsEsmCopies, 1);
    });
  });
});
