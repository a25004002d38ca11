/**
 * The UDP exchange engine (plugins/pkg/udpPool.ts) as forward drives it, on its own, against a real UDP server on loopback: rotation of ports, replies matched
 * by socket + ID + source + question across the pool's sockets, a reply on the wrong socket ignored, ID collisions
 * on one socket redrawn, a full in-flight table counted.
 */
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, startFakeUpstream, type FakeUpstream, type TestServer } from '../testing';
import { buildQuery, mismatch, questionEndOf, type RejectReason } from '../plugins/forward/exchange';
import { UdpPool, type UdpPoolOptions, type UdpPoolSink, type UdpTryOwner } from '../plugins/pkg/udpPool';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** `\x07example\x03com\x00` style wire key for a dotted name. */
function wireKey(name: string): string {
  return name.split('.').map((l) => String.fromCharCode(l.length) + l).join('') + '\x00';
}

/** A real UDP server on 127.0.0.1 that records each query and its source port, and answers only when told (`sendUdp`). */
function server(): Promise<FakeUpstream> {
  return startFakeUpstream({ answer: () => null, tcp: false });
}

/** The reply to a query: the query's bytes with QR set and one A record. */
function replyTo(query: Buffer, qEnd: number): Buffer {
  const out = Buffer.alloc(qEnd + 16);
  query.copy(out, 0, 0, qEnd);
  out.writeUInt16BE(0x8180, 2);
  out.writeUInt16BE(1, 6);
  out.writeUInt16BE(0, 10);
  let p = qEnd;
  out.writeUInt16BE(0xc00c, p);
  out.writeUInt16BE(1, p + 2);
  out.writeUInt16BE(1, p + 4);
  out.writeUInt32BE(60, p + 6);
  out.writeUInt16BE(4, p + 10);
  out.writeUInt32BE(0xc0000201, p + 12);
  p += 16;
  return out;
}

class Owner implements UdpTryOwner<RejectReason> {
  readonly query: Buffer;
  readonly qEnd: number;
  replies: Buffer[] = [];
  errors: Error[] = [];
  ignored: string[] = [];
  constructor(name: string) {
    this.query = buildQuery(wireKey(name), 1, 1, false, false, 1232);
    this.qEnd = questionEndOf(this.query);
  }
  onUdpReply(reply: Buffer): void {
    this.replies.push(Buffer.from(reply));
  }
  onUdpError(err: Error): void {
    this.errors.push(err);
  }
  check(reply: Buffer): RejectReason | undefined {
    return mismatch(reply, this.query, this.qEnd);
  }
  onUdpIgnored(reason: RejectReason): void {
    this.ignored.push(reason);
  }
}

function counter(): { n: number; inc(v?: number): void } {
  return {
    n: 0,
    inc(v = 1) {
      this.n += v;
    },
  };
}

function sink(): UdpPoolSink & { strays: string[]; opened: ReturnType<typeof counter>; retired: ReturnType<typeof counter>; idCollisions: ReturnType<typeof counter>; exhausted: ReturnType<typeof counter> } {
  const strays: string[] = [];
  return { strays, stray: (r) => strays.push(r), opened: counter(), retired: counter(), idCollisions: counter(), exhausted: counter() };
}

function pool(port: number, opts: Partial<UdpPoolOptions>, s = sink()): UdpPool<RejectReason> {
  return new UdpPool(4, '127.0.0.1', '127.0.0.1', port, { size: 4, maxInFlight: 64, maxQueries: 1000, maxAgeMs: 30_000, ...opts }, s);
}

async function until(cond: () => boolean, ms = 3000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error('timed out waiting');
    await sleep(5);
  }
}

describe('forward: UDP socket pool', () => {
  test('tries spread over the pool (a new port for each of the first `size`), and sockets retire after maxQueries', async () => {
    const up = await server();
    const s = sink();
    const p = pool(up.port, { size: 4, maxQueries: 2 }, s);
    try {
      const owners: Owner[] = [];
      for (let i = 0; i < 4; i++) {
        const o = new Owner(`a${i}.example`);
        owners.push(o);
        const key = p.send(o);
        assert.ok(key >= 0);
      }
      await until(() => up.queries.length === 4);
      assert.equal(new Set(up.queries.map((x) => x.port)).size, 4, 'a random permutation of the pool: four sockets for four tries');
      assert.equal(s.opened.n, 4);
      // Answer them all, then send 8 more: each socket reaches 2 sends and is replaced.
      for (const x of up.queries) {
        const o = owners.find((w) => w.query.subarray(2, w.qEnd).equals(x.raw.subarray(2, w.qEnd)))!;
        up.sendUdp(replyTo(x.raw, o.qEnd), x.port);
      }
      await until(() => owners.every((o) => o.replies.length === 1));
      for (let i = 0; i < 8; i++) {
        const o = new Owner(`b${i}.example`);
        p.send(o);
        await until(() => up.queries.length === 5 + i);
        p.cancel(-1, o);
      }
      // 12 sends on sockets good for 2 each: at least 4 retired, and the ports seen change.
      assert.ok(s.retired.n >= 4, `retired ${s.retired.n}`);
      assert.ok(s.opened.n >= 8, `opened ${s.opened.n}`);
      assert.ok(new Set(up.queries.map((x) => x.port)).size >= 8, 'retired sockets are replaced by sockets on new ports');
      assert.ok(p.sockets <= 8, 'at most size active plus size draining');
    } finally {
      p.close();
      await up.stop();
    }
  });

  test('sockets retire by age too (monotonic clock)', async () => {
    const up = await server();
    const s = sink();
    const p = pool(up.port, { size: 1, maxAgeMs: 30 }, s);
    try {
      const o1 = new Owner('age1.example');
      p.send(o1);
      await until(() => up.queries.length === 1);
      await sleep(60);
      const o2 = new Owner('age2.example');
      p.send(o2);
      await until(() => up.queries.length === 2);
      assert.equal(s.retired.n, 1);
      assert.notEqual(up.queries[0].port, up.queries[1].port);
      // The retired socket still takes the answer to the try it carried.
      up.sendUdp(replyTo(up.queries[0].raw, o1.qEnd), up.queries[0].port);
      await until(() => o1.replies.length === 1);
      assert.equal(p.sockets, 1, 'the retired socket closed once its last try was answered');
    } finally {
      p.close();
      await up.stop();
    }
  });

  test('replies are matched across sockets; a reply arriving on another socket of the pool is ignored', async () => {
    const up = await server();
    const s = sink();
    const p = pool(up.port, { size: 4 }, s);
    try {
      const a = new Owner('one.example');
      const b = new Owner('two.example');
      p.send(a);
      p.send(b);
      await until(() => up.queries.length === 2);
      const qa = up.queries.find((x) => x.raw.includes(Buffer.from('one')))!;
      const qb = up.queries.find((x) => x.raw.includes(Buffer.from('two')))!;
      assert.notEqual(qa.port, qb.port);
      // a's exact answer (right ID, question, source) delivered to b's socket: not a's socket, so not a's answer.
      up.sendUdp(replyTo(qa.raw, a.qEnd), qb.port);
      await until(() => s.strays.length + b.ignored.length >= 1);
      assert.equal(a.replies.length, 0);
      assert.equal(b.replies.length, 0);
      // Unless b happens to hold the same ID on its socket, it is an unknown ID there.
      if (qa.raw.readUInt16BE(0) !== qb.raw.readUInt16BE(0)) assert.deepEqual(s.strays, ['id']);
      else assert.deepEqual(b.ignored, ['question']);
      // The right answers on the right sockets, in the other order.
      up.sendUdp(replyTo(qb.raw, b.qEnd), qb.port);
      up.sendUdp(replyTo(qa.raw, a.qEnd), qa.port);
      await until(() => a.replies.length === 1 && b.replies.length === 1);
      assert.ok(a.replies[0].includes(Buffer.from('one')));
      assert.ok(b.replies[0].includes(Buffer.from('two')));
      assert.equal(p.inFlight, 0);
    } finally {
      p.close();
      await up.stop();
    }
  });

  test('a reply from another source port is ignored even on the right socket', async () => {
    const up = await server();
    const other = await server();
    const s = sink();
    const p = pool(up.port, { size: 2 }, s);
    try {
      const a = new Owner('src.example');
      p.send(a);
      await until(() => up.queries.length === 1);
      other.sendUdp(replyTo(up.queries[0].raw, a.qEnd), up.queries[0].port);
      await sleep(50);
      // The connected socket drops it in the kernel; were it to arrive, it would be counted as 'source'.
      assert.equal(a.replies.length, 0);
      assert.ok(s.strays.every((r) => r === 'source'));
      up.sendUdp(replyTo(up.queries[0].raw, a.qEnd), up.queries[0].port);
      await until(() => a.replies.length === 1);
    } finally {
      p.close();
      await up.stop();
      await other.stop();
    }
  });

  test('ID collisions on one socket are drawn again: every try in flight has its own ID', async () => {
    const up = await server();
    const s = sink();
    // One socket, 3,000 tries in flight: about 68 birthday collisions among 65,536 IDs are expected.
    const p = pool(up.port, { size: 1, maxInFlight: 3000, maxQueries: 1_000_000 }, s);
    const owners: Owner[] = [];
    try {
      const ids = new Set<number>();
      const keys: number[] = [];
      for (let i = 0; i < 3000; i++) {
        const o = new Owner(`c${i}.example`);
        owners.push(o);
        keys.push(p.send(o));
        assert.ok(keys[i] >= 0);
        ids.add(o.query.readUInt16BE(0));
      }
      assert.equal(ids.size, 3000, 'no two tries in flight on one socket share an ID');
      assert.equal(p.inFlight, 3000);
      assert.ok(s.idCollisions.n >= 1, `collisions ${s.idCollisions.n}`);
      // The table finds every one of them after the redraws and backward-shift deletions.
      for (let i = 0; i < 3000; i += 2) p.cancel(keys[i], owners[i]);
      assert.equal(p.inFlight, 1500);
      // Loopback drops what overflows the server's receive buffer: answer some of the odd ones it did see.
      await until(() => up.queries.length >= 100);
      await sleep(100);
      const byId = new Map(up.queries.map((x) => [x.raw.readUInt16BE(0), x]));
      let answered = 0;
      for (let i = 1; i < 3000 && answered < 20; i += 2) {
        const x = byId.get(owners[i].query.readUInt16BE(0));
        if (x === undefined || !x.raw.subarray(12, owners[i].qEnd).equals(owners[i].query.subarray(12, owners[i].qEnd))) continue;
        up.sendUdp(replyTo(x.raw, owners[i].qEnd), x.port);
        answered++;
      }
      await until(() => owners.filter((o) => o.replies.length === 1).length === answered);
      assert.ok(answered >= 10, `answered ${answered}`);
      assert.ok(owners.every((o, i) => o.replies.length === 0 || i % 2 === 1), 'cancelled tries get nothing');
    } finally {
      p.close();
      await up.stop();
    }
  });

  test('a full in-flight table is counted and the try refused at once; room comes back as tries end', async () => {
    const up = await server();
    const s = sink();
    const p = pool(up.port, { size: 2, maxInFlight: 4 }, s);
    try {
      const owners = [0, 1, 2, 3].map((i) => new Owner(`x${i}.example`));
      const keys = owners.map((o) => p.send(o));
      assert.ok(keys.every((k) => k >= 0));
      const extra = new Owner('y.example');
      assert.equal(p.send(extra), -1);
      assert.equal(s.exhausted.n, 1);
      assert.equal(p.stats.exhausted, 1);
      p.cancel(keys[0], owners[0]);
      assert.ok(p.send(extra) >= 0);
      assert.equal(p.inFlight, 4);
    } finally {
      p.close();
      await up.stop();
    }
  });

  test('ICMP port unreachable reaches the tries on that socket as an error', async () => {
    const up = await server();
    const port = up.port;
    await up.stop();
    const s = sink();
    const p = pool(port, { size: 1 }, s);
    try {
      const o = new Owner('closed.example');
      p.send(o);
      await until(() => o.errors.length === 1);
      assert.equal((o.errors[0] as NodeJS.ErrnoException).code, 'ECONNREFUSED');
      assert.equal(p.inFlight, 0);
    } finally {
      p.close();
    }
  });
});

async function metric(s: TestServer, name: string): Promise<number> {
  const m = s.server.metrics.registry.getSingleMetric(name);
  if (!m) return NaN;
  const v = await m.get();
  return v.values.reduce((a, x) => a + x.value, 0);
}

describe('forward: the pool in the server', () => {
  test('queries go out through the pool; its gauges and counters are exported', async () => {
    const up = await startFakeUpstream();
    const s = await startServer(`servers:
  - listen: [udp://127.0.0.1:0]
    plugins:
      - forward: { to: [${up.address}], max_concurrent: 50 }
`);
    try {
      for (let i = 0; i < 5; i++) up.set(`p${i}.test`, 'A', '192.0.2.1');
      for (let i = 0; i < 5; i++) assert.equal((await s.query(`p${i}.test`, 'A')).rcode, 'NOERROR');
      assert.equal(await metric(s, 'codexdns_forward_udp_sockets_opened_total'), 5, 'one new socket for each of the first tries');
      assert.equal(await metric(s, 'codexdns_forward_udp_sockets'), 5);
      assert.equal(await metric(s, 'codexdns_forward_udp_inflight_tries'), 0);
      assert.equal(await metric(s, 'codexdns_forward_udp_inflight_tries_limit'), 51);
      assert.equal(await metric(s, 'codexdns_forward_udp_pool_exhausted_total'), 0);
      // The two recorded on every try (fast metrics): one request and one duration per query.
      assert.equal(await metric(s, 'codexdns_forward_requests_total'), 5);
      const duration = await s.server.metrics.registry.getSingleMetric('codexdns_forward_request_duration_seconds')?.get();
      const counts = ((duration?.values ?? []) as Array<{ metricName?: string; labels: object; value: number }>).filter((v) => v.metricName === 'codexdns_forward_request_duration_seconds_count') ?? [];
      assert.deepEqual(counts.map((v) => [v.labels, v.value]), [[{ to: up.address, rcode: 'NOERROR' }, 5]]);
    } finally {
      await s.stop();
      await up.stop();
    }
  });

  test('an upstream whose connect() fails (a zone naming no interface) is a SERVFAIL at once, not a crash', async () => {
    // Node reports this failure through connect's callback, without a socket as `this`: the pool used to throw
    // there, out of the event loop, and the whole server died.
    const up = await startFakeUpstream();
    const s = await startServer(`servers:
  - listen: [udp://127.0.0.1:0]
    plugins:
      - forward: { to: ["[fe80::1%nosuchif0]:53", ${up.address}], policy: sequential, timeout: 3s }
`);
    try {
      up.set('after.test', 'A', '192.0.2.7');
      const started = Date.now();
      const r = await s.query('after.test', 'A');
      assert.equal(r.rcode, 'NOERROR', 'the next upstream answers');
      assert.ok(Date.now() - started < 2500, 'the failed upstream is skipped at once, not after its timeout');
      assert.equal(await metric(s, 'codexdns_forward_udp_sockets'), 1, 'only the working upstream keeps a socket');
    } finally {
      await s.stop();
      await up.stop();
    }
  });
});
