import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import * as dnsPacket from 'dns-packet';
import { startServer, buildQuery, type TestServer } from '../testing';
import { definePlugin, type AnyPluginDefinition } from '../core/plugin';
import { Type } from '../config/types';
import { DnsResponse } from '../core/response';
import { builtinCatalog } from '../plugins/catalog';

const answerer = definePlugin({
  name: 'answerer',
  options: Type.Object({}),
  setup(api) {
    api.hooks.query.tap('answerer', (ctx) => DnsResponse.fromPacket({ type: 'response', id: 0, flags: 0, questions: ctx.message.questions, answers: [{ name: ctx.message.questions![0].name, type: 'A', ttl: 60, data: '192.0.2.7' }] }));
  },
});
const catalog = { get: (n: string) => (n === 'answerer' ? (answerer as unknown as AnyPluginDefinition) : builtinCatalog.get(n)), names: () => builtinCatalog.names() };

function header(id: number, flags: number, qd: number, an = 0, ns = 0, ar = 0): Buffer {
  const b = Buffer.alloc(12);
  b.writeUInt16BE(id, 0);
  b.writeUInt16BE(flags, 2);
  b.writeUInt16BE(qd, 4);
  b.writeUInt16BE(an, 6);
  b.writeUInt16BE(ns, 8);
  b.writeUInt16BE(ar, 10);
  return b;
}
const q = (name: Buffer): Buffer => Buffer.concat([header(7, 0x0100, 1), name, Buffer.from([0, 1, 0, 1])]);
const label = (n: number): Buffer => Buffer.concat([Buffer.from([n]), Buffer.alloc(n, 0x61)]);

describe('malformed input', () => {
  let s: TestServer;
  before(async () => {
    s = await startServer(`servers:\n  - listen: [udp://127.0.0.1:0, tcp://127.0.0.1:0]\n    plugins:\n      - answerer: {}\n`, { catalog });
  });
  after(async () => s.stop());

  const rcodeOf = (raw: Buffer | null): number => {
    assert.ok(raw, 'expected a reply');
    return raw![3] & 0x0f;
  };

  test('too short for a header: dropped and counted, no reply', async () => {
    const before = s.server.dispatcher.counters.dropped.short;
    assert.equal(await s.exchange(Buffer.from([1, 2, 3]), { timeoutMs: 300 }), null);
    assert.equal(s.server.dispatcher.counters.dropped.short, before + 1);
  });

  test('QR=1 is ignored', async () => {
    const pkt = buildQuery('a.example', 'A');
    pkt[2] |= 0x80;
    assert.equal(await s.exchange(pkt, { timeoutMs: 300 }), null);
  });

  const formerrCases: [string, Buffer][] = [
    ['label over 63', q(Buffer.concat([label(64), Buffer.from([0])]))],
    ['name over 255', q(Buffer.concat([...Array.from({ length: 5 }, () => label(60)), Buffer.from([0])]))],
    ['pointer loop', Buffer.concat([header(7, 0x0100, 1), Buffer.from([0xc0, 12]), Buffer.from([0, 1, 0, 1])])],
    ['forward pointer', Buffer.concat([header(7, 0x0100, 1), Buffer.from([0xc0, 40]), Buffer.from([0, 1, 0, 1])])],
    ['truncated question', Buffer.concat([header(7, 0x0100, 1), label(5)])],
    ['truncated qtype', Buffer.concat([header(7, 0x0100, 1), label(5), Buffer.from([0, 0, 1])])],
    ['QDCOUNT 0', header(7, 0x0100, 0)],
    ['QDCOUNT 2', Buffer.concat([header(7, 0x0100, 2), label(1), Buffer.from([0, 0, 1, 0, 1]), label(1), Buffer.from([0, 0, 1, 0, 1])])],
    ['reserved label type 0x40', q(Buffer.from([0x41, 0x61, 0]))],
  ];
  for (const [name, pkt] of formerrCases) {
    test(`FORMERR: ${name}`, async () => {
      const raw = await s.exchange(pkt);
      assert.equal(rcodeOf(raw), 1);
      assert.equal(raw!.readUInt16BE(0), 7);
      assert.equal(raw!.readUInt16BE(10), 0, 'no OPT in a FORMERR');
    });
  }

  test('two OPT records: FORMERR without OPT', async () => {
    const base = buildQuery('a.example', 'A', { edns: 1232 });
    const opt = base.subarray(base.length - 11);
    const pkt = Buffer.concat([base, opt]);
    pkt.writeUInt16BE(2, 10);
    const raw = await s.exchange(pkt);
    assert.equal(rcodeOf(raw), 1);
    assert.equal(raw!.readUInt16BE(10), 0);
  });

  test('OPT whose option length overruns its data: FORMERR', async () => {
    const base = buildQuery('a.example', 'A', { edns: 1232 });
    const opt = Buffer.from([0, 0, 41, 4, 208, 0, 0, 0, 0, 0, 6, 0, 10, 0, 40, 1, 2]);
    const pkt = Buffer.concat([base.subarray(0, base.length - 11), opt]);
    const raw = await s.exchange(pkt);
    assert.equal(rcodeOf(raw), 1);
  });

  test('unknown opcode: NOTIMP', async () => {
    const pkt = buildQuery('a.example', 'A');
    pkt[2] = (pkt[2] & 0x87) | (5 << 3);
    assert.equal(rcodeOf(await s.exchange(pkt)), 4);
  });

  test('random garbage never crashes the server, and it keeps answering', async () => {
    let seed = 12345;
    const rnd = (): number => ((seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff);
    for (let i = 0; i < 400; i++) {
      const len = Math.floor(rnd() * 80);
      const pkt = Buffer.alloc(len);
      for (let j = 0; j < len; j++) pkt[j] = Math.floor(rnd() * 256);
      if (len > 3) pkt[2] &= 0x7f; // mostly queries, so they reach the parser
      await s.exchange(pkt, { timeoutMs: 50 });
    }
    // Mutations of a valid query: flip bytes of the question.
    const valid = buildQuery('mutate.example', 'A', { edns: 1232 });
    for (let i = 0; i < 300; i++) {
      const pkt = Buffer.from(valid);
      pkt[12 + Math.floor(rnd() * (pkt.length - 12))] = Math.floor(rnd() * 256);
      await s.exchange(pkt, { timeoutMs: 50 });
    }
    const a = await s.query('still.alive', 'A');
    assert.equal((a.answers![0] as { data: string }).data, '192.0.2.7');
  });

  test('a TCP frame of garbage is answered or dropped, and the connection stays usable', async () => {
    const raw = await s.exchange(Buffer.from([0, 9, 0, 0, 0, 1, 0, 0, 0, 0]), { tcp: true, timeoutMs: 300 });
    assert.ok(raw === null || raw.length >= 12);
    const a = await s.query('tcp.alive', 'A', { tcp: true });
    assert.equal(a.rcode, 'NOERROR');
  });

  test('the decoded reply of a valid query is well formed', async () => {
    const a = await s.query('ok.example', 'A');
    assert.equal(dnsPacket.decode(a.raw).answers!.length, 1);
  });
});
