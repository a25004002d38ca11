/**
 * The compiled chain (core/queryWalk.ts): `ctx.next()` bound per position (a retry runs the same rest again),
 * `ctx.boundNext()` after a tap answered (what prefetch uses), a failure named by the plugin it came from,
 * and a `query` tap added after setup (from a startup hook) compiled in.
 */
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { SHIM, withServer } from './helpers/codexdnsPackage';

const corefile = (entries: string): string => `servers:
  - listen: [udp://127.0.0.1:0]
    plugins:
${entries}`;

function txtOf(a: { answers?: unknown[] }): string {
  return Buffer.concat((a.answers?.[0] as { data: Buffer[] }).data).toString();
}

/** Counts the queries that reach it, per name, and passes them on. */
const mark = `const { definePlugin, Type } = require('codexdns');
const seen = new Map();
module.exports = definePlugin({ name: 'mark', options: Type.Object({}), setup(api) {
  api.hooks.query.tap('mark', (ctx) => { seen.set(ctx.qname, (seen.get(ctx.qname) || 0) + 1); return undefined; });
  globalThis.__chainTestSeen = seen;
} });
`;

/** Answers every A query with 192.0.2.7. */
const answer = `const { definePlugin, Type, DnsResponse } = require('codexdns');
module.exports = definePlugin({ name: 'answer', options: Type.Object({}), setup(api) {
  api.hooks.query.tap('answer', (ctx) => {
    const q = ctx.message.questions[0];
    return DnsResponse.fromPacket({ type: 'response', flags: 0, questions: [q], answers: [{ name: q.name, type: 'A', ttl: 0, data: '192.0.2.7' }] });
  });
} });
`;

/** A TXT answer with a text, for the plugins below that report what they saw. */
const txt = `function txt(DnsResponse, ctx, text) {
  const q = ctx.message.questions[0];
  return DnsResponse.fromPacket({ type: 'response', flags: 0, questions: [q], answers: [{ name: q.name, type: 'TXT', ttl: 0, data: [text] }] });
}
`;

describe('compiled chain', () => {
  test('ctx.next() called twice by one tap runs the same rest of the chain twice (bound to its position, not to the last tap entered)', async () => {
    const retry = `const { definePlugin, Type, DnsResponse } = require('codexdns');
${txt}
module.exports = definePlugin({ name: 'retry', options: Type.Object({}), setup(api) {
  api.hooks.query.tapPromise('retry', async (ctx) => {
    const first = await ctx.next();
    const second = await ctx.next();
    const seen = globalThis.__chainTestSeen.get(ctx.qname);
    return txt(DnsResponse, ctx, [first.plugin, second.plugin, seen].join(','));
  });
} });
`;
    await withServer(corefile('      - use: ./retry.js\n      - use: ./mark.js\n      - use: ./answer.js\n'), { 'retry.js': retry, 'mark.js': mark, 'answer.js': answer }, async (s) => {
      assert.equal(txtOf(await s.query('twice.test', 'TXT')), 'answer,answer,2');
    });
  });

  test('ctx.nextThen(cb) runs the same rest as next(), twice if called twice, and hands a failure below to cb', async () => {
    const viaCb = `const { definePlugin, Type, DnsResponse } = require('codexdns');
${txt}
module.exports = definePlugin({ name: 'viacb', options: Type.Object({}), setup(api) {
  api.hooks.query.tapAsync('viacb', (ctx, cb) => {
    ctx.nextThen((err, first) => {
      if (err !== null) return cb(null, txt(DnsResponse, ctx, 'failed: ' + err.message));
      ctx.nextThen((err2, second) => {
        const seen = globalThis.__chainTestSeen.get(ctx.qname);
        cb(null, txt(DnsResponse, ctx, [first.plugin, err2 === null ? second.plugin : 'x', seen].join(',')));
      });
    });
  });
} });
`;
    const boomOnFail = `const { definePlugin, Type } = require('codexdns');
module.exports = definePlugin({ name: 'boom', options: Type.Object({}), setup(api) {
  api.hooks.query.tapPromise('boom', async (ctx) => { if (ctx.qname === 'fail.test') throw new Error('disk on fire'); return undefined; });
} });
`;
    const files = { 'viacb.js': viaCb, 'mark.js': mark, 'boom.js': boomOnFail, 'answer.js': answer };
    await withServer(corefile('      - use: ./viacb.js\n      - use: ./mark.js\n      - use: ./boom.js\n      - use: ./answer.js\n'), files, async (s) => {
      assert.equal(txtOf(await s.query('twice.test', 'TXT')), 'answer,answer,2');
      assert.equal(txtOf(await s.query('fail.test', 'TXT')), 'failed: disk on fire');
    });
  });

  test('ctx.boundNext(), taken while the tap runs, reaches the plugins below after the tap has answered', async () => {
    const early = `const { definePlugin, Type, DnsResponse } = require('codexdns');
${txt}
let refreshed = 'none';
module.exports = definePlugin({ name: 'early', options: Type.Object({}), setup(api) {
  api.hooks.query.tapAsync('early', (ctx, cb) => {
    if (ctx.qname === 'report.test') return cb(null, txt(DnsResponse, ctx, refreshed));
    const next = ctx.boundNext();
    cb(null, txt(DnsResponse, ctx, 'early'));
    next().then((res) => { refreshed = res.plugin + ':' + globalThis.__chainTestSeen.get(ctx.qname); }, (err) => { refreshed = 'failed: ' + err.message; });
  });
} });
`;
    await withServer(corefile('      - use: ./early.js\n      - use: ./mark.js\n      - use: ./answer.js\n'), { 'early.js': early, 'mark.js': mark, 'answer.js': answer }, async (s) => {
      assert.equal(txtOf(await s.query('detached.test', 'A')), 'early');
      let report = '';
      for (let i = 0; i < 50 && report !== 'answer:1'; i++) {
        await new Promise((r) => setTimeout(r, 20));
        report = txtOf(await s.query('report.test', 'TXT'));
      }
      assert.equal(report, 'answer:1');
    });
  });

  test('a plain (sync) tap: its throw is its own failure, a failure below it is not, and its answer ends the walk', async () => {
    const sync = `const { definePlugin, Type, DnsResponse } = require('codexdns');
${txt}
module.exports = definePlugin({ name: 'sync', options: Type.Object({}), setup(api) {
  api.hooks.query.tap('sync', (ctx) => {
    if (ctx.qname === 'own.test') throw new Error('sync tap broke');
    if (ctx.qname === 'mine.test') return txt(DnsResponse, ctx, 'sync');
    return undefined;
  });
} });
`;
    const boom = `const { definePlugin, Type } = require('codexdns');
module.exports = definePlugin({ name: 'boom', options: Type.Object({}), setup(api) {
  api.hooks.query.tap('boom', (ctx) => { if (ctx.qname === 'below.test') throw new Error('below broke'); return undefined; });
} });
`;
    const files = { 'sync.js': sync, 'boom.js': boom, 'answer.js': answer };
    const firstWarning = async (s: { logs: string[] }): Promise<string> => {
      let line: string | undefined;
      for (let i = 0; i < 50 && line === undefined; i++) {
        line = s.logs.find((l) => l.includes('queries failed in the chain'));
        if (line === undefined) await new Promise((r) => setTimeout(r, 20));
      }
      return line ?? s.logs.join('\n');
    };
    // The first failure of an interval is logged at once, naming its plugin: one server per failure.
    await withServer(corefile('      - use: ./sync.js\n      - use: ./boom.js\n      - use: ./answer.js\n'), files, async (s) => {
      assert.equal(txtOf(await s.query('mine.test', 'TXT')), 'sync');
      assert.equal((await s.query('through.test', 'A')).rcode, 'NOERROR');
      assert.equal((await s.query('below.test', 'A')).rcode, 'SERVFAIL');
      assert.match(await firstWarning(s), /boom: below broke/);
    });
    await withServer(corefile('      - use: ./sync.js\n      - use: ./boom.js\n      - use: ./answer.js\n'), files, async (s) => {
      assert.equal((await s.query('own.test', 'A')).rcode, 'SERVFAIL');
      assert.match(await firstWarning(s), /sync: sync tap broke/);
    });
  });

  test('an async tap (query or response) that throws before answering fails that query only; the server goes on', async () => {
    const thrower = `const { definePlugin, Type } = require('codexdns');
module.exports = definePlugin({ name: 'thrower', options: Type.Object({}), setup(api) {
  api.hooks.query.tapAsync('thrower', (ctx, cb) => {
    if (ctx.qname === 'query.test') throw new Error('query tap threw');
    cb();
    if (ctx.qname === 'twice.test') cb();
  });
  api.hooks.response.tapAsync('thrower', (res, ctx, cb) => { if (ctx.qname === 'response.test') throw new Error('response tap threw'); cb(null, res); });
} });
`;
    await withServer(corefile('      - use: ./thrower.js\n      - use: ./answer.js\n'), { 'thrower.js': thrower, 'answer.js': answer }, async (s) => {
      assert.equal((await s.query('query.test', 'A')).rcode, 'SERVFAIL');
      // The response tap failed: the unmodified response goes out.
      assert.equal((await s.query('response.test', 'A')).rcode, 'NOERROR');
      assert.equal((await s.query('after.test', 'A')).rcode, 'NOERROR');
      // A tap answering twice: the client gets one answer; the second is dropped and said.
      assert.equal((await s.query('twice.test', 'A')).rcode, 'NOERROR');
      assert.equal((await s.query('after2.test', 'A')).rcode, 'NOERROR');
      let line: string | undefined;
      for (let i = 0; i < 50 && line === undefined; i++) {
        line = s.logs.find((l) => l.includes('queries failed in the chain'));
        if (line === undefined) await new Promise((r) => setTimeout(r, 20));
      }
      assert.match(line ?? s.logs.join('\n'), /thrower: query tap threw/);
      assert.ok(s.logs.some((l) => /response hook failed/.test(l)), s.logs.join('\n'));
      assert.ok(s.logs.some((l) => /answered a query twice .*plugin=thrower/.test(l)), s.logs.join('\n'));
    });
  });

  test('a failing tap answers SERVFAIL and the warning names that plugin', async () => {
    const boom = `const { definePlugin, Type } = require('codexdns');
module.exports = definePlugin({ name: 'boom', options: Type.Object({}), setup(api) {
  api.hooks.query.tapPromise('boom', async () => { throw new Error('disk on fire'); });
} });
`;
    await withServer(corefile('      - use: ./mark.js\n      - use: ./boom.js\n      - use: ./answer.js\n'), { 'boom.js': boom, 'mark.js': mark, 'answer.js': answer }, async (s) => {
      const a = await s.query('fails.test', 'A');
      assert.equal(a.rcode, 'SERVFAIL');
      let line: string | undefined;
      for (let i = 0; i < 50 && line === undefined; i++) {
        line = s.logs.find((l) => l.includes('queries failed in the chain'));
        if (line === undefined) await new Promise((r) => setTimeout(r, 20));
      }
      assert.match(line ?? s.logs.join('\n'), /boom: disk on fire/);
    });
  });

  test('a query tap added after setup (in a startup hook) is compiled into the walk', async () => {
    const late = `const { definePlugin, Type, DnsResponse } = require('codexdns');
${txt}
module.exports = definePlugin({ name: 'late', options: Type.Object({}), setup(api) {
  api.hooks.startup.tap('late', () => {
    api.hooks.query.tap('late', (ctx) => (ctx.qname === 'late.test' ? txt(DnsResponse, ctx, 'late') : undefined));
  });
} });
`;
    await withServer(corefile('      - use: ./late.js\n      - use: ./answer.js\n'), { 'late.js': late, 'answer.js': answer }, async (s) => {
      assert.equal(txtOf(await s.query('late.test', 'TXT')), 'late');
      assert.equal((await s.query('other.test', 'A')).answers?.length, 1);
    });
  });
});
