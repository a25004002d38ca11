import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import * as dgram from 'node:dgram';
import { spawnSync } from 'node:child_process';
import * as dnsPacket from 'dns-packet';
import { startServer, startFakeUpstream, buildQuery, type TestServer, type FakeUpstream } from '../testing';
import { UdpListener, type MessageSink } from '../core/listeners';
import { definePlugin, type AnyPluginDefinition } from '../core/plugin';
import { Type } from '../config/types';
import { DnsResponse } from '../core/response';
import { builtinCatalog } from '../server/catalog';

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

/** A query whose question is `name` (raw wire bytes) with QTYPE `type`. */
function withQuestion(id: number, flags: number, name: Buffer, type: number): Buffer {
  return Buffer.concat([header(id, flags, 1), name, Buffer.from([type >> 8, type & 0xff, 0, 1])]);
}

describe('malformed and meta queries are answered by the core, never forwarded', () => {
  let s: TestServer;
  let up: FakeUpstream;
  before(async () => {
    up = await startFakeUpstream({ records: { '*.example': { A: '192.0.2.9' } } });
    s = await startServer(`servers:\n  - listen: [udp://127.0.0.1:0, tcp://127.0.0.1:0]\n    plugins:\n      - forward: { to: ["${up.address}"] }\n`);
  });
  after(async () => {
    await s.stop();
    await up.stop();
  });

  const both = [false, true];

  test('a compression pointer in the question: FORMERR over UDP and TCP, nothing sent upstream', async () => {
    // An ID whose high byte is 0 makes offset 0 read as the root name: the pointer "resolves", and used to
    // pass for an uncompressed name and then break the chain (no reply at all).
    const cases = [Buffer.from([0xc0, 0x00]), Buffer.from([1, 0x61, 0xc0, 0x00]), Buffer.from([1, 0x61, 0xc0, 0x04]), Buffer.from([0xc0, 0x0c])];
    for (const tcp of both) {
      for (const name of cases) {
        const raw = await s.exchange(withQuestion(0x0042, 0x0100, name, 1), { tcp, timeoutMs: 2000 });
        assert.ok(raw, `a reply (${tcp ? 'tcp' : 'udp'}, ${name.toString('hex')})`);
        assert.equal(raw!.readUInt16BE(0), 0x0042);
        assert.equal(raw![3] & 0x0f, 1, 'FORMERR');
      }
    }
    assert.equal(up.count(), 0);
  });

  test('an unknown opcode is NOTIMP with RA (and every other flag) clear, even with QDCOUNT 0', async () => {
    for (const tcp of both) {
      // genreport's `opcode`: header only, opcode 15.
      const plain = await s.exchange(header(0x1234, 15 << 11, 0), { tcp });
      assert.ok(plain);
      assert.equal(plain!.length, 12);
      assert.equal(plain!.readUInt16BE(2), 0x8000 | (15 << 11) | 4, `flags ${plain!.readUInt16BE(2).toString(16)}`);
      assert.equal(plain!.readUInt16BE(4), 0);
      // genreport's `opcodeflg`: the same with TC, RD, RA, CD, AD, AA and Z set.
      const flagged = await s.exchange(header(0x1235, (15 << 11) | 0x0200 | 0x0100 | 0x0080 | 0x0010 | 0x0020 | 0x0400 | 0x0040, 0), { tcp });
      assert.ok(flagged);
      assert.equal(flagged!.readUInt16BE(2), 0x8000 | (15 << 11) | 4);
    }
    // A known-but-unsupported opcode with a question echoes it.
    const status = await s.exchange(withQuestion(9, (2 << 11) | 0x0100, Buffer.from([1, 0x61, 7, ...Buffer.from('example'), 0]), 1));
    assert.equal(status![3] & 0x0f, 4);
    assert.equal(status![3] & 0x80, 0, 'RA clear');
    assert.equal(status!.readUInt16BE(4), 1);
    assert.equal(up.count(), 0);
  });

  test('QTYPE OPT is FORMERR; AXFR/IXFR REFUSED; MAILA/MAILB NOTIMP; none forwarded', async () => {
    const name = Buffer.from([1, 0x61, 7, ...Buffer.from('example'), 0]);
    const expect: [number, number, boolean][] = [
      [41, 1, false], [41, 1, true],
      [252, 5, false], [251, 5, false], [252, 5, true], [251, 5, true],
      [253, 4, false], [254, 4, false], [254, 4, true],
    ];
    for (const [type, rcode, tcp] of expect) {
      const raw = await s.exchange(withQuestion(77, 0x0100, name, type), { tcp });
      assert.ok(raw, `reply to type ${type}`);
      assert.equal(raw![3] & 0x0f, rcode, `type ${type} over ${tcp ? 'tcp' : 'udp'}`);
      assert.equal(raw!.readUInt16BE(4), 1, 'the question is echoed');
    }
    assert.equal(up.count(), 0);
    const a = await s.query('ok.example', 'A');
    assert.equal((a.answers![0] as { data: string }).data, '192.0.2.9');
  });

  test('a datagram from source port 0 is dropped and counted, nothing thrown', { skip: spawnSync('python3', ['-c', '1']).status !== 0 ? 'needs python3 for a raw socket' : false }, async () => {
    let uncaught = 0;
    const onUncaught = (): void => {
      uncaught++;
    };
    process.on('uncaughtException', onUncaught);
    try {
      const before = s.server.dispatcher.counters.dropped.source_port_0 ?? 0;
      const payload = buildQuery('p0.example', 'A').toString('hex');
      // A raw socket writes the UDP header itself, so the source port can be 0 (root only, as the tests run).
      const py = 'import socket,struct,sys\nport=int(sys.argv[1]);p=bytes.fromhex(sys.argv[2])\ns=socket.socket(socket.AF_INET,socket.SOCK_RAW,socket.IPPROTO_UDP)\nfor i in range(20): s.sendto(struct.pack("!HHHH",0,port,8+len(p),0)+p,("127.0.0.1",0))';
      const r = spawnSync('python3', ['-c', py, String(s.port), payload], { encoding: 'utf8' });
      assert.equal(r.status, 0, r.stderr);
      const deadline = Date.now() + 2000;
      while ((s.server.dispatcher.counters.dropped.source_port_0 ?? 0) < before + 20 && Date.now() < deadline) await new Promise((res) => setTimeout(res, 20));
      await new Promise((res) => setTimeout(res, 100));
      assert.equal(s.server.dispatcher.counters.dropped.source_port_0, before + 20);
      assert.equal(uncaught, 0);
      assert.equal(up.count('p0.example'), 0);
    } finally {
      process.off('uncaughtException', onUncaught);
    }
  });
});

describe('UDP send errors', () => {
  test('a reply that cannot be sent (its socket closed meanwhile, as a reload does) is counted, not thrown', async () => {
    let uncaught = 0;
    const onUncaught = (): void => {
      uncaught++;
    };
    process.on('uncaughtException', onUncaught);
    let sendErrors = 0;
    let replyLater: (() => void) | undefined;
    const sink: MessageSink = {
      onMessage: (_raw, _peer, _t, reply, done) => {
        replyLater = () => {
          reply(Buffer.from([0, 1, 0x81, 0x80, 0, 0, 0, 0, 0, 0, 0, 0]));
          done();
        };
      },
      onTcpConnection: () => undefined,
      onTcpRefused: () => undefined,
      onTcpClosed: () => undefined,
      onTcpPaused: () => undefined,
      onTcpInflightFull: () => undefined,
      onDropped: () => undefined,
      onSendError: () => {
        sendErrors++;
      },
    };
    const l = new UdpListener({ transport: 'udp', host: '127.0.0.1', port: 0, text: 'udp://127.0.0.1:0' }, sink);
    try {
      await l.start();
      const c = dgram.createSocket('udp4');
      await new Promise<void>((r) => c.bind(0, '127.0.0.1', () => r()));
      c.send(buildQuery('late.example', 'A'), l.port, '127.0.0.1');
      const deadline = Date.now() + 2000;
      while (replyLater === undefined && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
      c.close();
      await l.close();
      assert.ok(replyLater);
      await new Promise<void>((resolve) => setTimeout(() => {
        replyLater!();
        resolve();
      }, 0));
      await new Promise((r) => setTimeout(r, 50));
      assert.equal(uncaught, 0);
      assert.equal(sendErrors, 1);
    } finally {
      process.off('uncaughtException', onUncaught);
    }
  });
});
