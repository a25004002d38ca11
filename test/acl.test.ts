import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { buildQuery, startServer, type TestServer } from '../testing';
import { definePlugin, type AnyPluginDefinition } from '../core/plugin';
import { Type } from '../config/types';
import { DnsResponse } from '../core/response';
import { builtinCatalog } from '../server/catalog';

const seen: (string | undefined)[] = [];
const answerer = definePlugin({
  name: 'answerer',
  options: Type.Object({}),
  setup(api) {
    api.hooks.query.tap('answerer', (ctx) => DnsResponse.fromPacket({ type: 'response', id: 0, flags: 0, questions: ctx.message.questions, answers: [{ name: ctx.message.questions![0].name, type: 'A', ttl: 60, data: '192.0.2.9' }] }));
    api.hooks.served.tap('answerer', (ctx) => {
      seen.push(ctx.denied);
    });
  },
});
const catalog = { get: (n: string) => (n === 'answerer' ? (answerer as unknown as AnyPluginDefinition) : builtinCatalog.get(n)), names: () => builtinCatalog.names() };

describe('acl plugin', () => {
  let s: TestServer;
  before(async () => {
    s = await startServer('servers:\n  - listen: [udp://127.0.0.1:0, tcp://127.0.0.1:0]\n    plugins:\n      - acl: { allow: [127.0.0.0/8], deny: [127.0.0.66] }\n      - answerer: {}\n', { catalog });
  });
  after(async () => s.stop());

  test('an allowed client is answered; the served hook sees it as not denied', async () => {
    const a = await s.query('x.example', 'A', { from: '127.0.0.1' });
    assert.equal(a.rcode, 'NOERROR');
    assert.equal(seen.at(-1), undefined);
  });

  test('a denied address inside an allowed network is REFUSED and marked denied', async () => {
    const a = await s.query('x.example', 'A', { from: '127.0.0.66' });
    assert.equal(a.rcode, 'REFUSED');
    assert.equal(seen.at(-1), 'acl');
  });

  test('the remembered decisions are bounded by cache_size and counted in a gauge', async () => {
    const small = await startServer('servers:\n  - listen: [udp://127.0.0.1:0]\n    plugins:\n      - acl: { allow: [127.0.0.0/8], cache_size: 16 }\n      - answerer: {}\n', { catalog });
    try {
      for (let i = 1; i <= 20; i++) assert.equal((await small.query('x.example', 'A', { from: `127.0.7.${i}` })).rcode, 'NOERROR');
      const text = await small.server.metrics.registry.metrics();
      assert.match(text, /^codexdns_acl_decisions_cached\{server="block0"\} 16$/m);
    } finally {
      await small.stop();
    }
  });

  test('two server blocks: the remembered decisions of each block are a series of their own (one source per block)', async () => {
    const two = await startServer(
      'servers:\n  - listen: [udp://127.0.0.1:0]\n    zones: [a.test.]\n    plugins:\n      - acl: { allow: [127.0.0.0/8] }\n      - answerer: {}\n' +
        '  - listen: [udp://127.0.0.1:0]\n    zones: [b.test.]\n    plugins:\n      - acl: { allow: [127.0.0.0/8] }\n      - answerer: {}\n',
      { catalog },
    );
    try {
      for (let i = 1; i <= 3; i++) assert.equal((await two.query('x.a.test', 'A', { from: `127.0.8.${i}` })).rcode, 'NOERROR');
      for (let i = 1; i <= 5; i++) assert.equal((await two.query('x.b.test', 'A', { from: `127.0.9.${i}` })).rcode, 'NOERROR');
      const text = await two.server.metrics.registry.metrics();
      assert.match(text, /^codexdns_acl_decisions_cached\{server="block0"\} 3$/m);
      assert.match(text, /^codexdns_acl_decisions_cached\{server="block1"\} 5$/m);
    } finally {
      await two.stop();
    }
  });

  test('the default allow list is loopback and private ranges only', async () => {
    const only = await startServer('servers:\n  - listen: [udp://127.0.0.1:0]\n    plugins:\n      - acl: { allow: [127.0.0.2/32] }\n      - answerer: {}\n', { catalog });
    try {
      assert.equal((await only.query('x.example', 'A', { from: '127.0.0.1' })).rcode, 'REFUSED');
      assert.equal((await only.query('x.example', 'A', { from: '127.0.0.2' })).rcode, 'NOERROR');
    } finally {
      await only.stop();
    }
    const def = builtinCatalog.get('acl')!;
    const allow = ((def.options as unknown as { properties: { allow: { default: string[] } } }).properties.allow.default);
    assert.ok(allow.includes('192.168.0.0/16') && allow.includes('::1/128') && !allow.includes('0.0.0.0/0'));
  });
});

describe('wildcard listen', () => {
  test('a wildcard UDP address binds each local address and replies from the address the query reached', async () => {
    const s = await startServer('servers:\n  - listen: [udp://0.0.0.0:0]\n    plugins:\n      - answerer: {}\n', { catalog });
    try {
      const dgram = await import('node:dgram');
      const sock = dgram.createSocket('udp4');
      await new Promise<void>((r) => sock.bind(0, '127.0.0.1', () => r()));
      const from = await new Promise<string>((resolve, reject) => {
        const t = setTimeout(() => reject(new Error('no reply')), 2000);
        sock.once('message', (_m, rinfo) => {
          clearTimeout(t);
          resolve(rinfo.address);
        });
        sock.send(buildQuery('w.example', 'A'), s.port, '127.0.0.1');
      });
      sock.close();
      assert.equal(from, '127.0.0.1');
      const os = await import('node:os');
      const v4 = Object.values(os.networkInterfaces()).flat().filter((a) => a && a.family === 'IPv4').length;
      const addrs = s.server.configuration!.servers[0].listen.length;
      assert.equal(addrs, 1);
      assert.ok(v4 >= 1);
    } finally {
      await s.stop();
    }
  });
});
