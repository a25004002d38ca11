/**
 * Issue 15, point 4: answers as complete as the client can take. Truncation for a client's UDP size cuts at
 * RRset boundaries (RFC 2181 §9): additional records first, then the authority of a positive answer; TC=1 only
 * when an answer RRset (or a negative answer's SOA) does not fit. Same on a miss and on a cache hit.
 */
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import * as dnsPacket from 'dns-packet';
import { startServer, startFakeUpstream, buildQuery, buildReply, type TestServer, type FakeQuery, type FakeUpstream } from '../testing';

const run = promisify(execFile);

const A = (name: string, ip: string): dnsPacket.Answer => ({ name, type: 'A', class: 'IN', ttl: 300, data: ip });
const NS = (name: string, host: string): dnsPacket.Answer => ({ name, type: 'NS', class: 'IN', ttl: 300, data: host });
const TXT = (name: string, text: string): dnsPacket.Answer => ({ name, type: 'TXT', class: 'IN', ttl: 300, data: [text] }) as dnsPacket.Answer;
const PAD = (name: string): dnsPacket.Answer => ({ name, type: 'TXT', class: 'IN', ttl: 300, data: ['p'.repeat(250), 'q'.repeat(200)] }) as dnsPacket.Answer;
const SOA = (zone: string): dnsPacket.Answer =>
  ({ name: zone, type: 'SOA', class: 'IN', ttl: 60, data: { mname: 'ns1.' + zone, rname: 'hostmaster.' + zone, serial: 1, refresh: 3600, retry: 600, expire: 86400, minimum: 60 } }) as dnsPacket.Answer;

/** 4 NS in authority and an A RRset of 6 glue addresses for each (24 records in additional): about 580 bytes in all. */
function glued(q: FakeQuery): Buffer {
  const ns = [1, 2, 3, 4].map((i) => `ns${i}.glue-provider.test`);
  return buildReply(q, {
    answers: [A(q.name, '192.0.2.1')],
    authorities: ns.map((n) => NS('glue.test', n)),
    additionals: ns.flatMap((n, i) => [1, 2, 3, 4, 5, 6].map((j) => A(n, `198.51.${100 + i}.${j}`))),
  });
}

function answer(q: FakeQuery): Buffer | null {
  if (q.name === 'glue.test') return glued(q);
  // An answer RRset alone bigger than 512 bytes (40 A records).
  if (q.name === 'many.test') return buildReply(q, { answers: Array.from({ length: 40 }, (_, i) => A(q.name, `192.0.2.${i + 1}`)) });
  // A positive answer whose authority alone does not fit beside it.
  if (q.name === 'auth.test') return buildReply(q, { answers: [TXT(q.name, 'x'.repeat(250))], authorities: [1, 2, 3, 4, 5, 6].map((i) => NS('auth.test', `ns${i}.some-long-provider-name.example.test`)) });
  // NXDOMAIN: its SOA is required, the padding in additional is not.
  if (q.name === 'gone.test') return buildReply(q, { rcode: 3, authorities: [SOA('test')], additionals: [PAD('pad.test'), PAD('pad2.test')] });
  // NODATA whose authority has more than its SOA (a proof a DNSSEC client needs), too much for 512 bytes.
  if (q.name === 'proof.test') return buildReply(q, { authorities: [SOA('test'), PAD('proof.test')] });
  return buildReply(q, { rcode: 3, authorities: [SOA('test')] });
}

let up: FakeUpstream;
let s: TestServer;

function decode(raw: Buffer | null): dnsPacket.Packet & { flag_tc: boolean; rcode: string } {
  assert.ok(raw, 'a reply');
  return dnsPacket.decode(raw) as unknown as dnsPacket.Packet & { flag_tc: boolean; rcode: string };
}

describe('truncation at RRset boundaries (issue 15.4)', () => {
  before(async () => {
    up = await startFakeUpstream({ answer });
    s = await startServer(`servers:
  - listen: [udp://127.0.0.1:0, tcp://127.0.0.1:0]
    plugins:
      - cache: {}
      - forward: { to: [${up.address}] }
`);
  });
  after(async () => {
    await s.stop();
    await up.stop();
  });

  test('an answer whose glue does not fit 512 bytes keeps its answer (and what fits), without TC; same on the cache hit', async () => {
    for (const round of ['miss', 'hit']) {
      const raw = await s.exchange(buildQuery('glue.test', 'A'));
      const d = decode(raw);
      assert.ok((raw as Buffer).length <= 512, `${round}: ${(raw as Buffer).length} bytes`);
      assert.equal(d.flag_tc, false, `${round}: TC only when the answer does not fit`);
      assert.equal(d.rcode, 'NOERROR');
      assert.deepEqual(d.answers?.map((r) => (r as { data: string }).data), ['192.0.2.1'], round);
      assert.equal(d.authorities?.length, 4, `${round}: the authority fits once the glue is gone`);
      const extra = d.additionals ?? [];
      assert.ok(extra.length < 24, `${round}: some glue was dropped`);
      assert.ok(extra.length > 0, `${round}: the glue that fits is kept`);
      // Whole RRsets only: each glue owner keeps its 6 addresses, or none.
      const owners = new Map<string, number>();
      for (const r of extra) owners.set(r.name, (owners.get(r.name) ?? 0) + 1);
      for (const [owner, n] of owners) assert.equal(n, 6, `${owner}: an RRset is kept whole`);
    }
    assert.equal(up.count('glue.test'), 1, 'the second was a cache hit');
    // With room for everything (EDNS 1232), everything.
    const full = decode(await s.exchange(buildQuery('glue.test', 'A', { edns: 1232 })));
    assert.equal(full.flag_tc, false);
    assert.equal((full.additionals ?? []).filter((r) => r.type !== 'OPT').length, 24);
  });

  test('seen by dig without EDNS: the answer, no tc flag', async () => {
    const { stdout } = await run('dig', ['+noedns', '+tries=1', '+time=3', '+ignore', '-p', String(s.port), '@127.0.0.1', 'glue.test', 'A'], { timeout: 10_000 });
    const flags = /flags: ([a-z ]+);/.exec(stdout)?.[1] ?? '';
    assert.ok(!flags.split(' ').includes('tc'), stdout);
    assert.match(stdout, /ANSWER: 1,/);
    assert.match(stdout, /glue\.test\.\s+\d+\s+IN\s+A\s+192\.0\.2\.1/);
  });

  test('an answer RRset that does not fit: TC=1 and no partial RRset; complete over TCP', async () => {
    const d = decode(await s.exchange(buildQuery('many.test', 'A')));
    assert.equal(d.flag_tc, true);
    assert.equal(d.answers?.length ?? 0, 0, 'no partial RRset');
    const t = decode(await s.exchange(buildQuery('many.test', 'A'), { tcp: true }));
    assert.equal(t.flag_tc, false);
    assert.equal(t.answers?.length, 40);
  });

  test('the authority of a positive answer is dropped when it does not fit; no TC', async () => {
    const d = decode(await s.exchange(buildQuery('auth.test', 'TXT')));
    assert.equal(d.flag_tc, false);
    assert.equal(d.answers?.length, 1);
    assert.equal(d.authorities?.length ?? 0, 0);
  });

  test('a negative answer: beyond its SOA the authority is optional for a plain client, required for a DO client', async () => {
    const plain = decode(await s.exchange(buildQuery('proof.test', 'A', { edns: 512 })));
    assert.equal(plain.flag_tc, false);
    assert.deepEqual(plain.authorities?.map((r) => r.type), ['SOA']);
    const dnssec = decode(await s.exchange(buildQuery('proof.test', 'A', { edns: 512, dnssecOk: true })));
    assert.equal(dnssec.flag_tc, true, 'a DO client needs the whole proof: TC');
    assert.equal(dnssec.authorities?.length ?? 0, 0);
  });

  test("a negative answer keeps its SOA, loses the additional padding; no TC", async () => {
    const d = decode(await s.exchange(buildQuery('gone.test', 'A')));
    assert.equal(d.rcode, 'NXDOMAIN');
    assert.equal(d.flag_tc, false);
    assert.deepEqual(d.authorities?.map((r) => r.type), ['SOA']);
    assert.equal(d.additionals?.length ?? 0, 0);
  });
});
