/**
 * `requires` and `uses`: a missing requirement is a ConfigError at the requiring plugin's entry (validate and
 * start-up alike), plugins are set up after what they depend on so a published hook called in `setup` answers
 * the same whatever the list order, and the chain (query taps, lifecycle taps) keeps the list's order.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { startServer } from '../testing';
import { ConfigError, formatIssue } from '../config/errors';
import { parseConfig } from '../config/load';
import { setupOrder } from '../core/setupOrder';
import { builtinCatalog } from '../server/catalog';
import { SHIM } from './helpers/codexdnsPackage';

/**
 * `a` publishes `value` (a bail hook) and taps it in its setup with a value it computes there. `b` calls it in
 * its own setup and answers `b.test` TXT with what it got. Both answer `who.test` with their name: whichever is
 * listed first answers it, whatever order setup ran in. Every startup tap records its plugin in `global.order`.
 */
const A = `'use strict';
const { definePlugin, Type, DnsResponse, SyncBailHook } = require('codexdns');
const txt = (ctx, text) => DnsResponse.fromPacket({ type: 'response', flags: 0, questions: ctx.message.questions, answers: [{ name: ctx.message.questions[0].name, type: 'TXT', ttl: 60, data: [text] }] });
module.exports = definePlugin({
  name: 'a',
  options: Type.Object({}),
  __DECL_A__
  declare: () => ({ value: new SyncBailHook([]) }),
  setup(api) {
    const computed = 'from-a-' + api.index;
    api.own.value.tap('a', () => computed);
    api.hooks.query.tap('a', (ctx) => (ctx.qname === 'who.test' ? txt(ctx, 'a') : undefined));
    api.hooks.startup.tap('a', () => { (global.order ??= []).push('a'); });
  },
});
`;
const B = (decl: string): string => `'use strict';
const { definePlugin, Type, DnsResponse } = require('codexdns');
const txt = (ctx, text) => DnsResponse.fromPacket({ type: 'response', flags: 0, questions: ctx.message.questions, answers: [{ name: ctx.message.questions[0].name, type: 'TXT', ttl: 60, data: [text] }] });
module.exports = definePlugin({
  name: 'b',
  options: Type.Object({}),
  ${decl}
  setup(api) {
    const a = api.hooksOf('a');
    const got = a === undefined ? 'no a' : String(a.value.call());
    api.hooks.query.tap('b', (ctx) => (ctx.qname === 'b.test' ? txt(ctx, got) : ctx.qname === 'who.test' ? txt(ctx, 'b') : undefined));
    api.hooks.startup.tap('b', () => { (global.order ??= []).push('b'); });
  },
});
`;

const files = (bDecl: string, aDecl = ''): Record<string, string> => ({ ...SHIM, 'a.js': A.replace('__DECL_A__', aDecl), 'b.js': B(bDecl) });

const corefile = (entries: string[]): string => `servers:
  - listen: [udp://127.0.0.1:0]
    plugins:
      - acl: { allow: [127.0.0.0/8] }
${entries.map((e) => `      - ${e}\n`).join('')}      - forward: { to: ["127.0.0.1:1"] }
`;

const textOf = (a: { answers?: unknown[] }): string => Buffer.concat((a.answers?.[0] as { data: Buffer[] }).data).toString();

async function startError(text: string, extra: Record<string, string>): Promise<ConfigError> {
  const err = await startServer(text, { files: extra }).then(
    (s) => s.stop().then(() => null),
    (e: unknown) => e,
  );
  assert.ok(err instanceof ConfigError, `start-up must fail with a ConfigError: ${String(err)}`);
  return err;
}

describe('setup order', () => {
  test('a stable topological sort: dependencies first, list order otherwise; a cycle is named', () => {
    assert.deepEqual(setupOrder([{ name: 'x' }, { name: 'y' }, { name: 'z' }]), { ok: true, order: [0, 1, 2] });
    // breaker (1) waits for discovery (3), which waits for clienttrack (2); acl and forward keep their places.
    const block = [{ name: 'acl' }, { name: 'breaker', requires: ['discovery'] }, { name: 'clienttrack' }, { name: 'discovery', uses: ['clienttrack'] }, { name: 'forward' }];
    assert.deepEqual(setupOrder(block), { ok: true, order: [0, 2, 3, 1, 4] });
    // An absent `uses` is no dependency.
    assert.deepEqual(setupOrder([{ name: 'm', uses: ['absent'] }, { name: 'n' }]), { ok: true, order: [0, 1] });
    assert.deepEqual(setupOrder([{ name: 'p', uses: ['q'] }, { name: 'q', requires: ['r'] }, { name: 'r', uses: ['q'] }]), { ok: false, cycle: ['q', 'r', 'q'] });
  });

  for (const order of [['a', 'b'], ['b', 'a']]) {
    test(`b uses a hook a publishes, called in setup: the same answer with ${order.join(' before ')}; the chain keeps the list's order`, async () => {
      const g = global as { order?: string[] };
      g.order = [];
      const s = await startServer(corefile(order.map((n) => `use: ./${n}.js`)), { files: files("uses: ['a'],") });
      try {
        const aIndex = order.indexOf('a') + 1;
        assert.equal(textOf(await s.query('b.test', 'TXT')), `from-a-${aIndex}`);
        assert.equal(textOf(await s.query('who.test', 'TXT')), order[0], 'the first listed answers: query taps are in list order');
        assert.deepEqual(g.order, order, 'startup taps run in list order');
      } finally {
        await s.stop();
        delete g.order;
      }
    });
  }

  test('without `uses`, b listed first is set up before a: the hook has no tap yet (why `uses` exists)', async () => {
    const s = await startServer(corefile(['use: ./b.js', 'use: ./a.js']), { files: files('') });
    try {
      assert.equal(textOf(await s.query('b.test', 'TXT')), 'undefined');
    } finally {
      await s.stop();
    }
  });

  test('built-ins in an unusual order: metrics, ratelimit and breaker before what they use still start', async () => {
    const text = `servers:
  - listen: [udp://127.0.0.1:0]
    plugins:
      - acl: { allow: [127.0.0.0/8] }
      - metrics: { listen: "127.0.0.1:0" }
      - breaker: {}
      - ratelimit: { discovery: { rate: 10, burst: 20 } }
      - discovery: { methods: [rdns], rdns: { resolvers: ["127.0.0.1:1"] } }
      - clienttrack: {}
      - forward: { to: ["127.0.0.1:1"] }
storage: { client: sqlite3, connection: { filename: ./clients.sqlite } }
`;
    const cfg = await parseConfig(text, '/tmp/Corefile.yaml', builtinCatalog);
    assert.deepEqual(cfg.servers[0].plugins.map((p) => p.name), ['acl', 'metrics', 'breaker', 'ratelimit', 'discovery', 'clienttrack', 'forward']);
    const s = await startServer(text);
    await s.stop();
  });
});

describe('requires', () => {
  test('breaker without discovery: a ConfigError at breaker\'s entry, the same from validate and start-up', async () => {
    const text = corefile(['breaker: { discovery: { failures: 3 } }', 'clienttrack: {}']) + 'storage: { client: sqlite3, connection: { filename: ./c.sqlite } }\n';
    const expected = 'Corefile.yaml:5:9 plugin breaker: requires discovery in this server block; add `- discovery` before or after it';
    await assert.rejects(parseConfig(text, 'Corefile.yaml', builtinCatalog), (err: unknown) => {
      assert.ok(err instanceof ConfigError);
      assert.deepEqual(err.issues.filter((i) => i.severity === 'error').map(formatIssue), [expected]);
      return true;
    });
    const err = await startError(text, {});
    assert.deepEqual(err.issues.filter((i) => i.severity === 'error').map((i) => formatIssue({ ...i, file: 'Corefile.yaml' })), [expected]);
  });

  test('a custom plugin\'s requirement: named, at its `use:` entry, with the advice for a custom plugin', async () => {
    const err = await startError(corefile(['use: ./b.js']), files("requires: ['a'],"));
    const lines = err.issues.map(formatIssue).join('\n');
    assert.match(lines, /Corefile\.yaml:5:9 plugin b \(.*b\.js\): requires a in this server block; add the custom plugin named a \(`- use: FILE`\) before or after it/);
    // Present: it starts, and a is set up first.
    const s = await startServer(corefile(['use: ./b.js', 'use: ./a.js']), { files: files("requires: ['a'],") });
    try {
      assert.equal(textOf(await s.query('b.test', 'TXT')), 'from-a-2');
    } finally {
      await s.stop();
    }
  });

  test('a cycle through requires/uses is a ConfigError naming the plugins; a malformed declaration is one too', async () => {
    const cyc = await startError(corefile(['use: ./a.js', 'use: ./b.js']), files("uses: ['a'],", "uses: ['b'],"));
    assert.match(cyc.issues.map(formatIssue).join('\n'), /Corefile\.yaml:5:9 plugin a \(.*a\.js\): plugins that each need the other set up first \(requires\/uses\): a → b → a/);
    const bad = await startError(corefile(['use: ./b.js']), files("requires: 'a',"));
    assert.match(bad.issues.map(formatIssue).join('\n'), /Corefile\.yaml:5:14 plugin b \(.*b\.js\): `requires` must be a list of plugin names/);
  });
});
