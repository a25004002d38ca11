/**
 * Issue 15, point 4, forward's side: the client's AD bit reaches the upstream and keys the cache and the merge;
 * RD=0 is never forwarded; an upstream's Extended DNS Error reaches the client on a miss and on a hit;
 * question-less FORMERR/REFUSED replies are accepted, FORMERR to our EDNS query is retried without OPT; an
 * upstream that truncates over UDP and cannot be reached over TCP gives UDP clients its TC=1 answer (not
 * cached), with an EDE saying so, and keeps its health.
 */
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import * as dnsPacket from 'dns-packet';
import { startServer, startFakeUpstream, buildQuery, buildReply, type TestServer, type FakeQuery, type FakeUpstream } from '../testing';
import { metric } from './helpers/metrics';


type Decoded = dnsPacket.Packet & { rcode: string; flag_tc: boolean };

function decode(raw: Buffer | null): Decoded {
  assert.ok(raw, 'a reply');
  return dnsPacket.decode(raw) as unknown as Decoded;
}

function edeOf(d: dnsPacket.Packet): { code: number; text: string } | undefined {
  const opt = (d.additionals ?? []).find((r) => r.type === 'OPT') as unknown as { options?: { code: number; data?: Buffer }[] } | undefined;
  const o = opt?.options?.find((x) => x.code === 15);
  return o?.data ? { code: o.data.readUInt16BE(0), text: o.data.toString('utf8', 2) } : undefined;
}

function withAd(q: Buffer): Buffer {
  q.writeUInt16BE(q.readUInt16BE(2) | 0x0020, 2);
  return q;
}

function corefile(to: string, forward = '', cache = true): string {
  return `servers:
  - listen: [udp://127.0.0.1:0, tcp://127.0.0.1:0]
    plugins:
${cache ? '      - cache: {}\n' : ''}      - forward: { to: [${to}]${forward ? ', ' + forward : ''} }
`;
}

const A = (name: string, ip: string): dnsPacket.Answer => ({ name, type: 'A', class: 'IN', ttl: 300, data: ip });

/** A header-only reply (no question) with this RCODE. */
function bare(q: FakeQuery, rcode: number): Buffer {
  const out = Buffer.alloc(12);
  out.writeUInt16BE(q.packet.id ?? 0, 0);
  out.writeUInt16BE(0x8000 | 0x0100 | rcode, 2);
  return out;
}

function scripted(q: FakeQuery): Buffer | null {
  switch (q.name) {
    case 'blocked.test':
      return buildReply(q, {
        answers: [A(q.name, '0.0.0.0')],
        additionals: [{ type: 'OPT', name: '.', udpPayloadSize: 1232, flags: 0, options: [{ code: 15, data: Buffer.concat([Buffer.from([0, 15]), Buffer.from('Blocked by policy')]) }] } as unknown as dnsPacket.Answer],
      });
    case 'old.test':
      // A server from before EDNS: FORMERR without a question to anything with OPT.
      return q.edns ? bare(q, 1) : buildReply(q, { answers: [A(q.name, '192.0.2.9')] });
    case 'refused.test':
      return bare(q, 5);
    case 'big.test':
      // Over UDP always truncated (this upstream has no TCP listener).
      return buildReply(q, { tc: true });
    default:
      return buildReply(q, { answers: [A(q.name, '192.0.2.1')] });
  }
}

async function withRaw(fn: (s: TestServer, up: FakeUpstream) => Promise<void>, opts: { tcp?: boolean; forward?: string } = {}): Promise<void> {
  const up = await startFakeUpstream({ answer: scripted, tcp: opts.tcp });
  const s = await startServer(corefile(up.address, opts.forward ?? 'timeout: 500ms, deadline: 1500ms'));
  try {
    await fn(s, up);
  } finally {
    await s.stop();
    await up.stop();
  }
}

describe('forward on the wire (issue 15.4)', () => {
  test("the client's AD bit reaches the upstream, and AD is part of the cache key", async () => {
    await withRaw(async (s, up) => {
      const a1 = decode(await s.exchange(withAd(buildQuery('ad.test', 'A', { edns: 1232 }))));
      assert.equal(a1.rcode, 'NOERROR');
      assert.equal((up.queries.at(-1)?.flags ?? 0) & 0x20, 0x20, 'AD=1 upstream');
      decode(await s.exchange(buildQuery('ad.test', 'A', { edns: 1232 })));
      assert.equal(up.count('ad.test'), 2, 'a query without AD is another cache entry');
      assert.equal((up.queries.at(-1)?.flags ?? 0) & 0x20, 0, 'AD=0 upstream');
      decode(await s.exchange(withAd(buildQuery('ad.test', 'A', { edns: 1232 }))));
      assert.equal(up.count('ad.test'), 2, 'AD=1 again: a cache hit');
    });
  });

  test('AD is part of the merge key: identical questions with and without AD are two upstream queries', async () => {
    const up = await startFakeUpstream({ delayMs: 150 });
    up.set('m.test', 'A', '192.0.2.5');
    const s = await startServer(corefile(up.address, '', false));
    try {
      const replies = await Promise.all([s.exchange(withAd(buildQuery('m.test', 'A'))), s.exchange(buildQuery('m.test', 'A')), s.exchange(buildQuery('m.test', 'A'))]);
      for (const r of replies) assert.equal(decode(r).rcode, 'NOERROR');
      assert.equal(up.count('m.test'), 2);
    } finally {
      await s.stop();
      await up.stop();
    }
  });

  test('RD=0 is answered from the cache only, never forwarded: REFUSED with EDE 20 on a miss', async () => {
    await withRaw(async (s, up) => {
      const miss = decode(await s.exchange(buildQuery('rd.test', 'A', { recursionDesired: false, edns: 1232 })));
      assert.equal(miss.rcode, 'REFUSED');
      assert.equal(edeOf(miss)?.code, 20);
      assert.equal(up.count('rd.test'), 0, 'not forwarded');
      assert.equal(await metric(s, 'codexdns_forward_not_recursed_total'), 1);
      decode(await s.exchange(buildQuery('rd.test', 'A')));
      const hit = decode(await s.exchange(buildQuery('rd.test', 'A', { recursionDesired: false })));
      assert.equal(hit.rcode, 'NOERROR');
      assert.deepEqual(hit.answers?.map((r) => (r as { data: string }).data), ['192.0.2.1']);
      assert.equal(up.count('rd.test'), 1);
    });
  });

  test("an upstream's Extended DNS Error reaches the client on the miss and on the cache hit", async () => {
    await withRaw(async (s, up) => {
      for (const round of ['miss', 'hit']) {
        const d = decode(await s.exchange(buildQuery('blocked.test', 'A', { edns: 1232 })));
        assert.equal(d.rcode, 'NOERROR', round);
        assert.deepEqual(edeOf(d), { code: 15, text: 'Blocked by policy' }, round);
      }
      assert.equal(up.count('blocked.test'), 1);
    });
  });

  test('a FORMERR without question or OPT to our EDNS query: asked again without OPT (RFC 6891 §7)', async () => {
    await withRaw(async (s, up) => {
      const d = decode(await s.exchange(buildQuery('old.test', 'A', { edns: 1232 })));
      assert.equal(d.rcode, 'NOERROR');
      assert.deepEqual(d.answers?.map((r) => (r as { data: string }).data), ['192.0.2.9']);
      assert.deepEqual(up.queries.filter((q) => q.name === 'old.test').map((q) => q.edns), [true, false]);
      assert.equal(await metric(s, 'codexdns_forward_noedns_retries_total'), 1);
    });
  });

  test('a REFUSED without question is accepted at once (not waited out as a forgery)', async () => {
    await withRaw(async (s) => {
      const t0 = Date.now();
      const d = decode(await s.exchange(buildQuery('refused.test', 'A')));
      assert.equal(d.rcode, 'REFUSED');
      assert.ok(Date.now() - t0 < 400, `${Date.now() - t0} ms`);
      assert.deepEqual(d.questions?.map((q) => q.name), ['refused.test'], "the client's question is echoed");
    });
  });

  test('truncated over UDP and no TCP: a UDP client gets TC=1 (not cached) with EDE 23; the upstream stays up', async () => {
    await withRaw(
      async (s, up) => {
        for (let i = 0; i < 3; i++) {
          const t0 = Date.now();
          const d = decode(await s.exchange(buildQuery('big.test', 'TXT', { edns: 1232 }), { timeoutMs: 3000 }));
          assert.equal(d.flag_tc, true, `#${i}: TC passed on`);
          assert.equal(d.rcode, 'NOERROR');
          assert.deepEqual(edeOf(d), { code: 23, text: 'the upstream truncated its UDP answer and could not be reached over TCP' });
          if (i > 0) assert.ok(Date.now() - t0 < 300, `#${i}: TCP known broken, passed on at once`);
        }
        assert.equal(up.count('big.test'), 3, 'never cached');
        assert.equal(await metric(s, 'codexdns_forward_tcp_failures_total', { to: up.address }), 1);
        assert.equal(await metric(s, 'codexdns_forward_tcp_skipped_total'), 2);
        assert.equal(await metric(s, 'codexdns_forward_upstream_up', { to: up.address }), 1);
        assert.equal(decode(await s.exchange(buildQuery('fine.test', 'A'))).rcode, 'NOERROR', 'UDP still used');
        const overTcp = decode(await s.exchange(buildQuery('big.test', 'TXT', { edns: 1232 }), { tcp: true }));
        assert.equal(overTcp.rcode, 'SERVFAIL', 'a TCP client cannot retry over TCP');
        assert.equal(edeOf(overTcp)?.code, 23);
      },
      { tcp: false, forward: 'timeout: 500ms, deadline: 1500ms, max_fails: 1' },
    );
  });
});
