/**
 * forward end to end: a real codexdns (testing kit) in front of fake upstreams that are real DNS servers on
 * loopback. Every assertion is about what a client socket receives and what the upstream saw.
 */
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import * as dgram from 'node:dgram';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as dnsPacket from 'dns-packet';
import { startServer, startFakeUpstream, buildQuery, type TestServer, type Answer, type FakeUpstream } from '../testing';
import { parseConfig } from '../config/load';
import { builtinCatalog } from '../server/catalog';
import { ForwardOptions } from '../plugins/forward';
import { metric } from './helpers/metrics';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** An upstream that answers every name with 192.0.2.1 unless told otherwise (`remove('*')`: NXDOMAIN). */
const fakeUpstream = (): Promise<FakeUpstream> => startFakeUpstream({ records: { '*': { A: '192.0.2.1' } } });

function corefile(forward: string): string {
  return `servers:
  - listen: [udp://127.0.0.1:0, tcp://127.0.0.1:0]
    plugins:
      - forward: ${forward}
`;
}

interface Rig {
  s: TestServer;
  ups: FakeUpstream[];
}

/** Starts `n` fake upstreams and a server whose forward options are built from their addresses. */
async function rig(n: number, options: (addrs: string[]) => string, files?: (ups: FakeUpstream[]) => Record<string, string>): Promise<Rig> {
  const ups: FakeUpstream[] = [];
  for (let i = 0; i < n; i++) ups.push(await fakeUpstream());
  try {
    const s = await startServer(corefile(options(ups.map((u) => u.address))), { files: files?.(ups) });
    return { s, ups };
  } catch (err) {
    for (const u of ups) await u.stop();
    throw err;
  }
}

async function done(r: Rig): Promise<void> {
  await r.s.stop();
  for (const u of r.ups) await u.stop();
}


function dataOf(a: Answer): string[] {
  return (a.answers ?? []).map((r) => String((r as { data: unknown }).data));
}

function edeOf(a: Answer): number | undefined {
  const opt = (a.additionals ?? []).find((r) => r.type === 'OPT') as unknown as { options?: { code: number; data?: Buffer }[] } | undefined;
  const ede = opt?.options?.find((o) => o.code === 15);
  return ede?.data ? ede.data.readUInt16BE(0) : undefined;
}

describe('forward: answers', () => {
  test('a forwarded answer reaches the client with its ID and question case; the upstream sees RD, OPT, a random ID and a lower-cased name', async () => {
    const r = await rig(1, (a) => `{ to: [${a[0]}] }`);
    try {
      r.ups[0].set('www.example.com', 'A', ['192.0.2.10', '192.0.2.11']);
      const q = buildQuery('WwW.ExAmPle.CoM', 'A', { id: 0x4321, edns: 1232 });
      const raw = await r.s.exchange(q);
      assert.ok(raw, 'a reply');
      assert.equal(raw.readUInt16BE(0), 0x4321, 'ID echoed');
      assert.deepEqual(raw.subarray(12, q.length - 11), q.subarray(12, q.length - 11), 'question bytes echoed (client case)');
      const d = dnsPacket.decode(raw) as unknown as Answer;
      assert.equal(d.rcode, 'NOERROR');
      assert.equal(d.flag_qr, true);
      assert.equal(d.flag_ra, true);
      assert.equal(d.flag_aa, false, 'AA never set on a forwarded answer');
      assert.deepEqual(dataOf(d).sort(), ['192.0.2.10', '192.0.2.11']);

      const seen = r.ups[0].queries[0];
      assert.equal(seen.name, 'www.example.com', 'lower-cased upstream question');
      assert.equal(seen.transport, 'udp');
      const flags = seen.raw.readUInt16BE(2);
      assert.equal(flags & 0x0100, 0x0100, 'RD=1');
      const opt = (seen.packet.additionals ?? []).find((x) => x.type === 'OPT') as unknown as { udpPayloadSize: number } | undefined;
      assert.equal(opt?.udpPayloadSize, 1232);
    } finally {
      await done(r);
    }
  });

  test('every upstream query leaves from a fresh source port with its own ID', async () => {
    const r = await rig(1, (a) => `{ to: [${a[0]}] }`);
    try {
      for (let i = 0; i < 8; i++) await r.s.query(`n${i}.example`, 'A', { id: 1 });
      const ports = new Set(r.ups[0].queries.map((x) => x.port));
      const ids = new Set(r.ups[0].queries.map((x) => x.raw.readUInt16BE(0)));
      assert.equal(r.ups[0].count({ transport: 'udp' }), 8);
      assert.ok(ports.size >= 7, `source ports: ${[...ports].join(',')}`);
      assert.ok(ids.size >= 7, `ids: ${[...ids].join(',')}`);
      assert.ok(!ids.has(1) || ids.size === 8, 'not the client ID');
    } finally {
      await done(r);
    }
  });

  test('DO and CD are passed upstream; NXDOMAIN passes through', async () => {
    const r = await rig(1, (a) => `{ to: [${a[0]}] }`);
    try {
      r.ups[0].remove('*');
      const a = await r.s.query('nothing.example', 'A', { edns: 1232, dnssecOk: true, checkingDisabled: true });
      assert.equal(a.rcode, 'NXDOMAIN');
      assert.equal(a.flag_cd, true);
      const seen = r.ups[0].queries[0];
      assert.equal(seen.raw.readUInt16BE(2) & 0x0010, 0x0010, 'CD upstream');
      const opt = (seen.packet.additionals ?? []).find((x) => x.type === 'OPT') as unknown as { flags: number };
      assert.equal(opt.flags & dnsPacket.DNSSEC_OK, dnsPacket.DNSSEC_OK, 'DO upstream');
    } finally {
      await done(r);
    }
  });

  test('over TCP from the client too', async () => {
    const r = await rig(1, (a) => `{ to: [${a[0]}] }`);
    try {
      const a = await r.s.query('tcp-client.example', 'A', { tcp: true });
      assert.deepEqual(dataOf(a), ['192.0.2.1']);
    } finally {
      await done(r);
    }
  });
});

describe('forward: forgery', () => {
  for (const kind of ['id', 'question', 'source'] as const) {
    test(`a reply with a forged ${kind} is ignored and the real answer used`, async () => {
      const r = await rig(1, (a) => `{ to: [${a[0]}] }`);
      try {
        r.ups[0].forge = { [kind]: true };
        r.ups[0].delayMs = 20;
        const a = await r.s.query('victim.example', 'A');
        assert.equal(a.rcode, 'NOERROR');
        assert.deepEqual(dataOf(a), ['192.0.2.1'], 'the real answer, not the forged one');
        if (kind !== 'source') {
          // A forged source never reaches us: the connected socket drops it in the kernel.
          assert.ok((await metric(r.s, 'codexdns_forward_ignored_replies_total', { reason: kind })) >= 1);
        }
        // ...and it was never cached or reused: a second query asks again and gets the real answer.
        r.ups[0].forge = {};
        const b = await r.s.query('victim.example', 'A');
        assert.deepEqual(dataOf(b), ['192.0.2.1']);
      } finally {
        await done(r);
      }
    });
  }

  test('with only forged replies the query fails (SERVFAIL), never answered with them', async () => {
    const r = await rig(1, (a) => `{ to: [${a[0]}], timeout: 200ms, deadline: 400ms, max_fails: 0 }`);
    try {
      // Forged replies at once; the real one would come long after the deadline.
      r.ups[0].forge = { id: true, question: true };
      r.ups[0].delayMs = 10_000;
      const a = await r.s.query('victim2.example', 'A', { timeoutMs: 3000 });
      assert.equal(a.rcode, 'SERVFAIL');
      assert.deepEqual(dataOf(a), []);
    } finally {
      await done(r);
    }
  });
});

describe('forward: transport', () => {
  test('a truncated UDP answer is retried over TCP to the same upstream', async () => {
    const r = await rig(1, (a) => `{ to: [${a[0]}] }`);
    try {
      r.ups[0].truncate = true;
      r.ups[0].set('big.example', 'A', ['192.0.2.1', '192.0.2.2', '192.0.2.3']);
      const a = await r.s.query('big.example', 'A', { edns: 1232 });
      assert.equal(a.flag_tc, false);
      assert.equal(dataOf(a).length, 3);
      assert.equal(r.ups[0].count({ transport: 'udp' }), 1);
      assert.equal(r.ups[0].count({ transport: 'tcp' }), 1);
      assert.equal(await metric(r.s, 'codexdns_forward_truncated_retries_total'), 1);
    } finally {
      await done(r);
    }
  });

  test('force_tcp uses TCP only, and reuses one connection (pipelined)', async () => {
    const r = await rig(1, (a) => `{ to: [${a[0]}], force_tcp: true }`);
    try {
      for (let i = 0; i < 5; i++) assert.deepEqual(dataOf(await r.s.query(`seq${i}.example`, 'A')), ['192.0.2.1']);
      r.ups[0].delayMs = 50;
      const many = await Promise.all(Array.from({ length: 10 }, (_, i) => r.s.query(`par${i}.example`, 'A')));
      for (const a of many) assert.deepEqual(dataOf(a), ['192.0.2.1']);
      assert.equal(r.ups[0].count({ transport: 'udp' }), 0);
      assert.equal(r.ups[0].count({ transport: 'tcp' }), 15);
      assert.equal(r.ups[0].tcpConnections, 1, 'one connection for all of them');
    } finally {
      await done(r);
    }
  });

  test('a reused TCP connection the upstream closed is replaced without failing the query', async () => {
    const r = await rig(1, (a) => `{ to: [${a[0]}], force_tcp: true, max_fails: 1 }`);
    try {
      await r.s.query('one.example', 'A');
      r.ups[0].dropTcpConnections();
      await sleep(50);
      const a = await r.s.query('two.example', 'A');
      assert.deepEqual(dataOf(a), ['192.0.2.1']);
      assert.equal(r.ups[0].tcpConnections, 2);
      assert.equal(await metric(r.s, 'codexdns_forward_upstream_up'), 1, 'still up');
    } finally {
      await done(r);
    }
  });
});

describe('forward: failure and failover', () => {
  test('a silent upstream: SERVFAIL within the deadline', async () => {
    const r = await rig(1, (a) => `{ to: [${a[0]}], timeout: 150ms, deadline: 400ms, max_fails: 0 }`);
    try {
      r.ups[0].silent = true;
      const t0 = Date.now();
      const a = await r.s.query('down.example', 'A', { edns: 1232, timeoutMs: 3000 });
      const took = Date.now() - t0;
      assert.equal(a.rcode, 'SERVFAIL');
      assert.equal(edeOf(a), 22, 'Extended DNS Error 22: No Reachable Authority');
      assert.ok(took >= 350 && took < 1500, `answered after ${took} ms`);
      assert.ok(r.ups[0].count({ transport: 'udp' }) >= 2, 'retried within the deadline');
    } finally {
      await done(r);
    }
  });

  test('a closed port (ICMP unreachable): SERVFAIL at once, not at the deadline', async () => {
    const up = await fakeUpstream();
    const addr = up.address;
    await up.stop();
    const s = await startServer(corefile(`{ to: [${addr}], timeout: 2s, deadline: 5s, max_fails: 0 }`));
    try {
      const t0 = Date.now();
      const a = await s.query('refused.example', 'A', { timeoutMs: 6000 });
      assert.equal(a.rcode, 'SERVFAIL');
      assert.ok(Date.now() - t0 < 1000, `took ${Date.now() - t0} ms`);
    } finally {
      await s.stop();
    }
  });

  test('fails over to the second upstream on timeout (sequential)', async () => {
    const r = await rig(2, (a) => `{ to: [${a[0]}, ${a[1]}], policy: sequential, timeout: 150ms, max_fails: 0 }`);
    try {
      r.ups[0].silent = true;
      r.ups[1].set('fo.example', 'A', ['192.0.2.22']);
      const a = await r.s.query('fo.example', 'A');
      assert.deepEqual(dataOf(a), ['192.0.2.22']);
      assert.equal(r.ups[0].count(), 1);
      assert.equal(r.ups[1].count(), 1);
    } finally {
      await done(r);
    }
  });

  test('fails over on SERVFAIL; when every upstream says SERVFAIL, that SERVFAIL is the answer', async () => {
    const r = await rig(2, (a) => `{ to: [${a[0]}, ${a[1]}], policy: sequential }`);
    try {
      r.ups[0].rcode = 'SERVFAIL';
      const a = await r.s.query('sf.example', 'A');
      assert.deepEqual(dataOf(a), ['192.0.2.1']);
      assert.equal(r.ups[1].count(), 1);
      r.ups[1].rcode = 'SERVFAIL';
      const t0 = Date.now();
      const b = await r.s.query('sf2.example', 'A');
      assert.equal(b.rcode, 'SERVFAIL');
      assert.ok(Date.now() - t0 < 500, 'no waiting: both answered');
      assert.equal(r.ups[0].count(), 2, 'each asked once for sf2');
      assert.equal(r.ups[1].count(), 2);
    } finally {
      await done(r);
    }
  });

  test('round_robin spreads queries over the upstreams', async () => {
    const r = await rig(3, (a) => `{ to: [${a.join(', ')}], policy: round_robin }`);
    try {
      for (let i = 0; i < 9; i++) await r.s.query(`rr${i}.example`, 'A');
      assert.deepEqual(r.ups.map((u) => u.count()), [3, 3, 3]);
    } finally {
      await done(r);
    }
  });
});

describe('forward: health', () => {
  test('timeouts start probes; max_fails consecutive failed probes mark an upstream down; it is skipped, probed, and used again once it answers', async () => {
    const r = await rig(2, (a) => `{ to: [${a[0]}, ${a[1]}], policy: sequential, timeout: 400ms, max_fails: 2, health_check: 100ms }`);
    try {
      const [first, second] = r.ups;
      first.silent = true;
      await r.s.query('h1.example', 'A');
      await r.s.query('h2.example', 'A');
      // A timeout is not a failure of the upstream: it starts `. NS` probes (every health_check while they fail),
      // and max_fails failed probes mark it down (CoreDNS's rule).
      assert.deepEqual(first.queries.filter((q) => q.name !== '.').map((q) => q.name), ['h1.example', 'h2.example']);
      for (let i = 0; i < 40 && !r.s.logs.some((l) => /upstream marked down/.test(l)); i++) await sleep(50);
      assert.ok(r.s.logs.some((l) => /upstream marked down/.test(l) && l.includes(first.address)), 'logged once');
      assert.equal(await metric(r.s, 'codexdns_forward_upstream_up', { to: first.address }), 0);
      first.reset();
      const t0 = Date.now();
      const a = await r.s.query('h3.example', 'A');
      assert.ok(Date.now() - t0 < 300, 'the down upstream is not waited for');
      assert.deepEqual(dataOf(a), ['192.0.2.1']);
      // Probes time out after `timeout` (400 ms) like any try.
      await sleep(650);
      // Probes are `. NS` queries; the down upstream got some, and no client query.
      assert.ok(first.queries.length >= 1, 'probed');
      assert.ok(first.queries.every((q) => q.name === '.' && q.type === 'NS'), first.queries.map((q) => `${q.name} ${q.type}`).join(','));
      assert.ok((await metric(r.s, 'codexdns_forward_healthcheck_failures_total', { to: first.address })) >= 1);
      // It comes back: the next probe sees it, and sequential order uses it again.
      first.silent = false;
      await sleep(800);
      assert.ok(r.s.logs.some((l) => /upstream is back up/.test(l)), 'recovery logged');
      assert.equal(await metric(r.s, 'codexdns_forward_upstream_up', { to: first.address }), 1);
      const before = second.count();
      await r.s.query('h4.example', 'A');
      assert.ok(first.queries.some((q) => q.name === 'h4.example'), 'first upstream used again');
      assert.equal(second.count(), before);
    } finally {
      await done(r);
    }
  });

  test('with every upstream down the client gets SERVFAIL at once, and one trial per interval notices recovery', async () => {
    const r = await rig(1, (a) => `{ to: [${a[0]}], timeout: 300ms, deadline: 1s, max_fails: 1, health_check: 1500ms }`);
    try {
      const up = r.ups[0];
      up.silent = true;
      const first = await r.s.query('d1.example', 'A', { timeoutMs: 3000 });
      assert.equal(first.rcode, 'SERVFAIL');
      const t0 = Date.now();
      for (let i = 0; i < 5; i++) {
        const a = await r.s.query(`d${i + 2}.example`, 'A', { edns: 1232 });
        assert.equal(a.rcode, 'SERVFAIL');
        assert.equal(edeOf(a), 22, 'Extended DNS Error 22: No Reachable Authority');
      }
      assert.ok(Date.now() - t0 < 250, `prompt: ${Date.now() - t0} ms for 5 queries`);
      assert.ok((await metric(r.s, 'codexdns_forward_healthcheck_broken_total')) >= 5);
      up.silent = false;
      await sleep(1700);
      const back = await r.s.query('d9.example', 'A');
      assert.deepEqual(dataOf(back), ['192.0.2.1']);
    } finally {
      await done(r);
    }
  });

  test('upstream health survives a reload with unchanged options', async () => {
    const r = await rig(1, (a) => `{ to: [${a[0]}], timeout: 500ms, deadline: 1s, max_fails: 1, health_check: 10s }`);
    try {
      r.ups[0].silent = true;
      assert.equal((await r.s.query('r1.example', 'A')).rcode, 'SERVFAIL');
      // The timeout starts a probe; its failure (max_fails: 1) is what marks the upstream down.
      for (let i = 0; i < 40 && !r.s.logs.some((l) => /upstream marked down/.test(l)); i++) await sleep(50);
      assert.ok(r.s.logs.some((l) => /upstream marked down/.test(l)), 'marked down before the reload');
      const res = await r.s.reload();
      assert.equal(res.ok, true, res.error);
      r.ups[0].reset();
      const t0 = Date.now();
      assert.equal((await r.s.query('r2.example', 'A')).rcode, 'SERVFAIL');
      assert.ok(Date.now() - t0 < 300, 'still known down: answered at once');
      // Health probes (`. NS`) go on while it is down; the question itself never reached it.
      assert.deepEqual(r.ups[0].queries.filter((q) => q.name !== '.').map((q) => q.name), []);
    } finally {
      await done(r);
    }
  });
});

describe('forward: concurrency', () => {
  test('identical questions in flight are merged into one upstream query', async () => {
    const r = await rig(1, (a) => `{ to: [${a[0]}] }`);
    try {
      r.ups[0].delayMs = 150;
      const names = Array.from({ length: 20 }, (_, i) => (i % 2 ? 'Merge.Example' : 'merge.example'));
      const answers = await Promise.all(names.map((n, i) => r.s.exchange(buildQuery(n, 'A', { id: 1000 + i }))));
      assert.equal(r.ups[0].count(), 1, 'one upstream query for 20 clients');
      answers.forEach((raw, i) => {
        assert.ok(raw);
        assert.equal(raw.readUInt16BE(0), 1000 + i, 'each client its own ID');
        const d = dnsPacket.decode(raw);
        assert.equal(d.questions?.[0].name, names[i], 'each client its own question case');
        assert.deepEqual(d.answers?.map((x) => (x as { data: string }).data), ['192.0.2.1']);
      });
      assert.equal(await metric(r.s, 'codexdns_forward_merged_total'), 19);
      // Different DO bits are different questions.
      r.ups[0].reset();
      await Promise.all([r.s.query('do.example', 'A', { edns: 1232, dnssecOk: true }), r.s.query('do.example', 'A', { edns: 1232 })]);
      assert.equal(r.ups[0].count(), 2);
    } finally {
      await done(r);
    }
  });

  test('beyond max_concurrent queries get REFUSED, and are counted', async () => {
    const r = await rig(1, (a) => `{ to: [${a[0]}], max_concurrent: 3, client_share: 100 }`);
    try {
      r.ups[0].delayMs = 200;
      const answers = await Promise.all(Array.from({ length: 8 }, (_, i) => r.s.query(`mc${i}.example`, 'A')));
      const rcodes = answers.map((a) => a.rcode);
      assert.equal(rcodes.filter((c) => c === 'NOERROR').length, 3, rcodes.join(','));
      assert.equal(rcodes.filter((c) => c === 'REFUSED').length, 5);
      assert.equal(await metric(r.s, 'codexdns_forward_max_concurrent_rejects_total'), 5);
      // Capacity is given back.
      assert.equal((await r.s.query('after.example', 'A')).rcode, 'NOERROR');
      assert.equal(await metric(r.s, 'codexdns_forward_inflight_queries'), 0);
    } finally {
      await done(r);
    }
  });
});

describe('forward: private zones (RFC 6303, home.arpa)', () => {
  test('answered locally with NXDOMAIN and an SOA; the upstream receives nothing; public reverse names are forwarded', async () => {
    const r = await rig(1, (a) => `{ to: [${a[0]}] }`);
    try {
      for (const [name, type] of [['4.3.168.192.in-addr.arpa', 'PTR'], ['1.0.0.10.IN-ADDR.ARPA', 'PTR'], ['nas.home.arpa', 'A'], ['1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.d.f.ip6.arpa', 'PTR']]) {
        const a = await r.s.query(name, type, { edns: 1232 });
        assert.equal(a.rcode, 'NXDOMAIN', name);
        assert.equal(a.questions?.[0].name, name, 'question case kept');
        const soa = a.authorities?.[0];
        assert.equal(soa?.type, 'SOA', name);
      }
      const apex = await r.s.query('home.arpa', 'SOA');
      assert.equal(apex.rcode, 'NOERROR');
      assert.equal(apex.answers?.[0].type, 'SOA');
      // ::1's reverse name is the apex of its own zone: NODATA, not NXDOMAIN.
      const loopback = await r.s.query('1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.ip6.arpa', 'PTR');
      assert.equal(loopback.rcode, 'NOERROR');
      assert.equal(loopback.authorities?.[0].type, 'SOA');
      assert.equal(r.ups[0].count(), 0, 'nothing leaked upstream');
      assert.equal(await metric(r.s, 'codexdns_forward_local_answers_total'), 6);
      r.ups[0].remove('*');
      await r.s.query('8.8.8.8.in-addr.arpa', 'PTR');
      assert.equal(r.ups[0].count(), 1, 'a public reverse name is forwarded');
    } finally {
      await done(r);
    }
  });

  test('sent to the `private` upstream when one is set, never to `to`', async () => {
    const r = await rig(2, (a) => `{ to: [${a[0]}], private: [${a[1]}] }`);
    try {
      const [pub, router] = r.ups;
      router.set('nas.home.arpa', 'A', ['192.168.1.10']);
      const a = await r.s.query('nas.home.arpa', 'A');
      assert.deepEqual(dataOf(a), ['192.168.1.10']);
      await r.s.query('4.3.168.192.in-addr.arpa', 'PTR');
      assert.equal(router.count(), 2);
      assert.equal(pub.count(), 0);
      await r.s.query('www.example', 'A');
      assert.equal(pub.count(), 1);
      assert.equal(router.count(), 2);
    } finally {
      await done(r);
    }
  });
});

describe('forward: configuration', () => {
  test('to: a resolv.conf path (relative to the Corefile)', async () => {
    const up = await fakeUpstream();
    const s = await startServer(corefile('{ to: [./resolv.conf] }'), { files: { 'resolv.conf': `# test\nnameserver ${up.address}\n` } });
    try {
      assert.deepEqual(dataOf(await s.query('rc.example', 'A')), ['192.0.2.1']);
      assert.equal(up.count(), 1);
    } finally {
      await s.stop();
      await up.stop();
    }
  });

  test('forwarding to one of our own listen addresses is refused at setup', async () => {
    const port = await freePort();
    const text = `servers:
  - listen: [udp://127.0.0.1:${port}]
    plugins:
      - forward: { to: [127.0.0.1:${port}] }
`;
    await assert.rejects(startServer(text), (err: Error) => {
      assert.match(err.message, /Corefile\.yaml:\d+:\d+/);
      assert.match(err.message, /forward/);
      assert.match(err.message, /loop/);
      return true;
    });
  });

  test('a wildcard listen address counts as every local address', async () => {
    const port = await freePort();
    const text = `servers:
  - listen: [udp://0.0.0.0:${port}]
    plugins:
      - forward: { to: [127.0.0.1:${port}] }
`;
    await assert.rejects(startServer(text), /loop/);
  });

  test('a resolv.conf nameserver that is this server is skipped with a warning, the others used', async () => {
    const up = await fakeUpstream();
    const port = await freePort();
    const s = await startServer(`servers:
  - listen: [udp://127.0.0.1:${port}]
    plugins:
      - forward: { to: [./resolv.conf], policy: sequential }
`, { files: { 'resolv.conf': `nameserver 127.0.0.1:${port}\nnameserver ${up.address}\n` } });
    try {
      assert.ok(s.logs.some((l) => /skipping nameserver 127\.0\.0\.1:\d+: it is this server/.test(l)), s.logs.join('\n'));
      assert.deepEqual(dataOf(await s.query('loop.example', 'A')), ['192.0.2.1']);
    } finally {
      await s.stop();
      await up.stop();
    }
  });

  test('a bad upstream, an unknown policy and too many upstreams are errors with a position', async () => {
    await assert.rejects(startServer(corefile('{ to: [dns.example.com] }')), /Corefile\.yaml:4:\d+.*forward.*not an IP address/s);
    await assert.rejects(startServer(corefile('{ to: [192.0.2.1], policy: fastest }')), /Corefile\.yaml:4:\d+.*policy.*random, round_robin, sequential/s);
    const many = Array.from({ length: 16 }, (_, i) => `192.0.2.${i + 1}`).join(', ');
    await assert.rejects(startServer(corefile(`{ to: [${many}] }`)), /Corefile\.yaml:4:\d+.*forward/s);
    await assert.rejects(startServer(corefile('{ to: [./missing.conf] }')), /missing\.conf/);
  });
});

function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = dgram.createSocket('udp4');
    s.bind(0, '127.0.0.1', () => {
      const p = s.address().port;
      s.close(() => resolve(p));
    });
  });
}

describe('forward: README', () => {
  test('every example in plugins/forward/README.md is a valid configuration', async () => {
    const file = path.resolve(__dirname, '../../plugins/forward/README.md');
    const text = fs.readFileSync(file, 'utf8');
    const blocks = [...text.matchAll(/```yaml\n([\s\S]*?)```/g)].map((m) => m[1]);
    assert.ok(blocks.length >= 4, `found ${blocks.length} examples`);
    for (const yaml of blocks) {
      assert.match(yaml, /^servers:/m);
      const cfg = await parseConfig(yaml, path.join(path.dirname(file), 'Corefile.yaml'), builtinCatalog);
      assert.ok(cfg.servers.some((b) => b.plugins.some((p) => p.name === 'forward')));
    }
  });

  test('every option of the schema is in the README table with its default', () => {
    const text = fs.readFileSync(path.resolve(__dirname, '../../plugins/forward/README.md'), 'utf8');
    for (const [name, schema] of Object.entries(ForwardOptions.properties)) {
      const row = text.split('\n').find((l) => l.startsWith(`| \`${name}\` |`));
      assert.ok(row, `option ${name} documented`);
      const def = (schema as { default?: unknown }).default;
      if (def !== undefined) {
        const shown = Array.isArray(def) ? `[${def.join(', ')}]` : String(def);
        assert.ok(row.includes(shown), `${name}: default ${shown} shown in: ${row}`);
      }
    }
  });
});
