import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import * as dnsPacket from 'dns-packet';
import { startServer, type TestServer, buildQuery } from '../testing';
import { definePlugin } from '../core/plugin';
import { Type } from '../config/types';
import { DnsResponse } from '../core/response';
import { builtinCatalog } from '../server/catalog';
import type { PluginCatalog } from '../config/load';
import type { AnyPluginDefinition } from '../core/plugin';

/** A plugin that answers every A query with 192.0.2.1 and a big TXT for "big." names: a stand-in answerer for core tests. */
const answerer = definePlugin({
  name: 'answerer',
  options: Type.Object({ txt_size: Type.Integer({ default: 0 }) }),
  role: 'answers',
  setup(api, opts) {
    api.hooks.query.tap('answerer', (ctx) => {
      const q = ctx.message.questions![0];
      const answers: dnsPacket.Answer[] = [];
      if (q.type === 'A') answers.push({ name: q.name, type: 'A', ttl: 300, data: '192.0.2.1' });
      if (q.type === 'TXT') answers.push({ name: q.name, type: 'TXT', ttl: 300, data: ['x'.repeat(200)] }, ...Array.from({ length: Math.ceil(opts.txt_size / 220) }, () => ({ name: q.name, type: 'TXT' as const, ttl: 300, data: ['y'.repeat(200)] })));
      return DnsResponse.fromPacket({ type: 'response', id: 0, flags: 0, questions: [q], answers });
    });
  },
});

const catalog: PluginCatalog = {
  get: (name) => (name === 'answerer' ? (answerer as unknown as AnyPluginDefinition) : builtinCatalog.get(name)),
  names: () => [...builtinCatalog.names(), 'answerer'],
};

const CONF = `
servers:
  - listen: [udp://127.0.0.1:0, tcp://127.0.0.1:0]
    zones: [example.]
    plugins:
      - answerer: { txt_size: 3000 }
`;

describe('core wire behaviour', () => {
  let s: TestServer;
  before(async () => {
    s = await startServer(CONF, { catalog });
  });
  after(async () => s.stop());

  test('ID and question echoed byte-exact, flags right', async () => {
    const a = await s.query('WwW.ExAmPle', 'A', { id: 4242 });
    assert.equal(a.id, 4242);
    assert.equal(a.questions![0].name, 'WwW.ExAmPle');
    assert.equal(a.flag_qr, true);
    assert.equal(a.flag_rd, true);
    assert.equal(a.flag_ra, true);
    assert.equal(a.flag_aa, false);
    assert.equal((a.answers![0] as { data: string }).data, '192.0.2.1');
  });

  test('a zone the server does not serve gets REFUSED', async () => {
    const a = await s.query('www.other', 'A');
    assert.equal(a.rcode, 'REFUSED');
  });

  test('EDNS: OPT back with our size; no OPT without EDNS', async () => {
    const a = await s.query('a.example', 'A', { edns: 4096 });
    const opt = a.additionals!.find((r) => r.type === 'OPT') as unknown as { udpPayloadSize: number };
    assert.equal(opt.udpPayloadSize, 1232);
    const b = await s.query('a.example', 'A');
    assert.equal(b.additionals!.length, 0);
  });

  test('DO bit is mirrored; CD passes through', async () => {
    const a = await s.query('a.example', 'A', { edns: 1232, dnssecOk: true, checkingDisabled: true });
    const opt = a.additionals!.find((r) => r.type === 'OPT') as unknown as { flags: number };
    assert.equal(opt.flags & dnsPacket.DNSSEC_OK, dnsPacket.DNSSEC_OK);
    assert.equal(a.flag_cd, true);
  });

  test('an answer over the client limit is truncated over UDP and complete over TCP', async () => {
    const small = await s.query('big.example', 'TXT');
    assert.equal(small.flag_tc, true);
    assert.equal(small.answers!.length, 0);
    assert.ok(small.raw.length <= 512);
    const edns = await s.query('big.example', 'TXT', { edns: 1232 });
    assert.equal(edns.flag_tc, true);
    assert.ok(edns.raw.length <= 1232);
    const tcp = await s.query('big.example', 'TXT', { tcp: true });
    assert.equal(tcp.flag_tc, false);
    assert.ok(tcp.answers!.length > 10);
    assert.ok(tcp.raw.length > 1232);
  });

  test('EDNS version above 0 gets BADVERS', async () => {
    const q = buildQuery('a.example', 'A', { edns: 1232 });
    // OPT TTL byte 2 is the version: the OPT is the last 11 bytes.
    q[q.length - 11 + 6] = 1;
    const raw = await s.exchange(q);
    assert.ok(raw);
    const d = dnsPacket.decode(raw!);
    const opt = d.additionals!.find((r) => r.type === 'OPT') as unknown as { extendedRcode: number; ednsVersion: number };
    assert.equal(opt.extendedRcode, 1);
    assert.equal(opt.ednsVersion, 0);
    assert.equal((d as unknown as { rcode: string }).rcode, 'NOERROR');
  });

  test('pipelined TCP queries on one connection are all answered', async () => {
    const net = await import('node:net');
    const sock = net.connect({ host: '127.0.0.1', port: s.tcpPort });
    await new Promise<void>((r) => sock.once('connect', () => r()));
    const ids = Array.from({ length: 20 }, (_, i) => 1000 + i);
    const frames = ids.map((id) => {
      const q = buildQuery(`p${id}.example`, 'A', { id });
      const f = Buffer.alloc(q.length + 2);
      f.writeUInt16BE(q.length, 0);
      q.copy(f, 2);
      return f;
    });
    // Split one frame across two writes to test reassembly.
    const all = Buffer.concat(frames);
    sock.write(all.subarray(0, 7));
    await new Promise((r) => setTimeout(r, 20));
    sock.write(all.subarray(7));
    const got = new Set<number>();
    let buf = Buffer.alloc(0);
    await new Promise<void>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`only ${got.size} answers`)), 3000);
      sock.on('data', (d) => {
        buf = Buffer.concat([buf, d]);
        while (buf.length >= 2 && buf.length >= buf.readUInt16BE(0) + 2) {
          const m = dnsPacket.decode(buf.subarray(2, buf.readUInt16BE(0) + 2));
          got.add(m.id!);
          buf = buf.subarray(buf.readUInt16BE(0) + 2);
        }
        if (got.size === ids.length) {
          clearTimeout(t);
          resolve();
        }
      });
    });
    sock.destroy();
    assert.deepEqual([...got].sort(), ids);
  });
});

describe('a response rendered with room of its own (DnsResponse.fromRender)', () => {
  // The writer builds the reply in that room only when the records already lie where the reply needs them; a
  // response for a question of another length is reshaped first, and its records must come from the new bytes.
  const rendered = dnsPacket.encode({
    type: 'response',
    id: 0,
    flags: dnsPacket.RECURSION_DESIRED | dnsPacket.RECURSION_AVAILABLE,
    questions: [{ name: 'a-much-longer-name.example', type: 'A', class: 'IN' }],
    answers: [{ name: 'a-much-longer-name.example', type: 'A', class: 'IN', ttl: 60, data: '192.0.2.44' }],
  });
  const renderer = definePlugin({
    name: 'renderer',
    options: Type.Object({}),
    setup(api) {
      api.hooks.query.tap('renderer', () => {
        const room = Buffer.alloc(rendered.length + 512);
        rendered.copy(room);
        return DnsResponse.fromRender(room, rendered.length);
      });
    },
  });
  const renderCatalog: PluginCatalog = {
    get: (name) => (name === 'renderer' ? (renderer as unknown as AnyPluginDefinition) : builtinCatalog.get(name)),
    names: () => [...builtinCatalog.names(), 'renderer'],
  };

  test('answering a question of another length gives a whole reply, the client question and the records', async () => {
    const s = await startServer('servers:\n  - listen: [udp://127.0.0.1:0]\n    plugins:\n      - renderer: {}\n', { catalog: renderCatalog });
    try {
      for (const edns of [undefined, 1232]) {
        const r = await s.query('q.test', 'A', edns === undefined ? {} : { edns });
        assert.equal(r.rcode, 'NOERROR');
        assert.equal(r.questions?.[0]?.name, 'q.test');
        assert.deepEqual((r.answers ?? []).map((a) => [a.name, (a as { data?: unknown }).data]), [['a-much-longer-name.example', '192.0.2.44']]);
      }
    } finally {
      await s.stop();
    }
  });
});
