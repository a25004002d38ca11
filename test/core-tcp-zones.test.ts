import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import * as net from 'node:net';
import * as dnsPacket from 'dns-packet';
import { startServer, buildQuery } from '../testing';
import { definePlugin, type AnyPluginDefinition } from '../core/plugin';
import { Type, Duration } from '../config/types';
import { DnsResponse } from '../core/response';
import { builtinCatalog } from '../server/catalog';

/** Answers A with `address` after `delay`: lets tests see which block answered and keep queries in flight. */
const answerer = definePlugin({
  name: 'answerer',
  options: Type.Object({ address: Type.String({ default: '192.0.2.1' }), delay: Duration(0) }),
  setup(api, opts) {
    let inFlight = 0;
    api.hooks.query.tapPromise('answerer', async (ctx) => {
      inFlight++;
      peak = Math.max(peak, inFlight);
      if (opts.delay) await new Promise((r) => setTimeout(r, opts.delay));
      inFlight--;
      return DnsResponse.fromPacket({ type: 'response', id: 0, flags: 0, questions: ctx.message.questions, answers: [{ name: ctx.message.questions![0].name, type: 'A', ttl: 60, data: opts.address }] });
    });
  },
});
let peak = 0;
const catalog = { get: (n: string) => (n === 'answerer' ? (answerer as unknown as AnyPluginDefinition) : builtinCatalog.get(n)), names: () => builtinCatalog.names() };

function frame(q: Buffer): Buffer {
  const f = Buffer.alloc(q.length + 2);
  f.writeUInt16BE(q.length, 0);
  q.copy(f, 2);
  return f;
}

describe('zones', () => {
  test('the block with the longest matching zone answers; others REFUSED', async () => {
    const s = await startServer(`servers:
  - listen: [udp://127.0.0.1:0]
    zones: [example.org.]
    plugins:
      - answerer: { address: 192.0.2.1 }
  - listen: [udp://127.0.0.1:0]
    zones: [lan.example.org, Home.Arpa]
    plugins:
      - answerer: { address: 192.0.2.2 }
`, { catalog });
    try {
      const ans = async (name: string): Promise<string> => {
        const a = await s.query(name, 'A');
        return a.rcode === 'NOERROR' ? (a.answers![0] as { data: string }).data : a.rcode;
      };
      assert.equal(await ans('www.example.org'), '192.0.2.1');
      assert.equal(await ans('example.org'), '192.0.2.1');
      assert.equal(await ans('nas.lan.example.org'), '192.0.2.2');
      assert.equal(await ans('lan.EXAMPLE.org'), '192.0.2.2');
      assert.equal(await ans('printer.home.arpa'), '192.0.2.2');
      assert.equal(await ans('xlan.example.org'), '192.0.2.1');
      assert.equal(await ans('example.com'), 'REFUSED');
    } finally {
      await s.stop();
    }
  });
});

describe('TCP bounds', () => {
  // A connection with a query in flight is never evicted to make room (an idle one would be: tcp-limits.test).
  test('connections beyond max_connections are closed at once and counted when none is idle', async () => {
    const s = await startServer('servers:\n  - listen: [tcp://127.0.0.1:0]\n    tcp: { max_connections: 2 }\n    plugins:\n      - answerer: { delay: 5s }\n', { catalog });
    const socks: net.Socket[] = [];
    try {
      for (let i = 0; i < 2; i++) {
        const c = net.connect({ host: '127.0.0.1', port: s.tcpPort });
        await new Promise<void>((r) => c.once('connect', () => r()));
        c.write(frame(buildQuery(`busy${i}.example`, 'A')));
        socks.push(c);
      }
      await new Promise((r) => setTimeout(r, 50));
      const third = net.connect({ host: '127.0.0.1', port: s.tcpPort });
      const closed = await new Promise<boolean>((r) => {
        third.once('close', () => r(true));
        third.once('error', () => r(true));
        setTimeout(() => r(false), 2000);
      });
      assert.ok(closed);
      assert.equal(s.server.dispatcher.counters.tcpConnectionsRefused, 1);
    } finally {
      socks.forEach((c) => c.destroy());
      await s.stop();
    }
  });

  test('an idle connection is closed after idle_timeout', async () => {
    const s = await startServer('servers:\n  - listen: [tcp://127.0.0.1:0]\n    tcp: { idle_timeout: 200ms }\n    plugins:\n      - answerer: {}\n', { catalog });
    try {
      const c = net.connect({ host: '127.0.0.1', port: s.tcpPort });
      const started = Date.now();
      await new Promise<void>((r) => c.once('close', () => r()));
      const took = Date.now() - started;
      assert.ok(took >= 150 && took < 3000, `closed after ${took} ms`);
    } finally {
      await s.stop();
    }
  });

  test('queries in flight per connection are bounded by max_inflight; all are answered', async () => {
    peak = 0;
    const s = await startServer('servers:\n  - listen: [tcp://127.0.0.1:0]\n    tcp: { max_inflight: 3 }\n    plugins:\n      - answerer: { delay: 50ms }\n', { catalog });
    try {
      const c = net.connect({ host: '127.0.0.1', port: s.tcpPort });
      await new Promise<void>((r) => c.once('connect', () => r()));
      c.write(Buffer.concat(Array.from({ length: 12 }, (_, i) => frame(buildQuery(`q${i}.example`, 'A', { id: i })))));
      const ids = new Set<number>();
      let buf = Buffer.alloc(0);
      await new Promise<void>((resolve, reject) => {
        const t = setTimeout(() => reject(new Error(`${ids.size} answers`)), 5000);
        c.on('data', (d) => {
          buf = Buffer.concat([buf, d]);
          while (buf.length >= 2 && buf.length >= buf.readUInt16BE(0) + 2) {
            ids.add(dnsPacket.decode(buf.subarray(2, buf.readUInt16BE(0) + 2)).id!);
            buf = buf.subarray(buf.readUInt16BE(0) + 2);
          }
          if (ids.size === 12) {
            clearTimeout(t);
            resolve();
          }
        });
      });
      c.destroy();
      assert.equal(peak, 3);
      assert.ok(s.server.dispatcher.counters.tcpInflightFull >= 1, 'the pauses at max_inflight are counted');
    } finally {
      await s.stop();
    }
  });
});
