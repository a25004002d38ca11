// RFC 7766 without unbounded buffers: what one TCP client can make the server hold, and what it can hold from
// others. The memory test runs the server as a child process so its RSS is the server's alone.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import * as net from 'node:net';
import { spawn } from 'node:child_process';
import { startServer, startFakeUpstream, buildQuery, query as dnsQuery, type FakeUpstream, type TestServer } from '../testing';
import { Reassembly } from '../core/listeners';
import { startChildServer, metricValue } from './helpers/childServer';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function frame(q: Buffer): Buffer {
  const f = Buffer.alloc(q.length + 2);
  f.writeUInt16BE(q.length, 0);
  q.copy(f, 2);
  return f;
}

function connect(port: number, localAddress = '127.0.0.1'): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const c = net.connect({ host: '127.0.0.1', port, localAddress });
    c.once('connect', () => resolve(c));
    c.once('error', reject);
  });
}

/** Resolves true when the socket is closed by the other side within `ms`. */
function closedWithin(c: net.Socket, ms: number): Promise<boolean> {
  return new Promise((resolve) => {
    if (c.destroyed) return resolve(true);
    const t = setTimeout(() => resolve(false), ms);
    const done = (): void => {
      clearTimeout(t);
      resolve(true);
    };
    c.once('close', done);
    c.once('end', done);
    c.on('error', () => undefined);
  });
}

/** Counts the framed messages arriving on `c` (their IDs into `ids` when given). */
function countReplies(c: net.Socket, onReply: (msg: Buffer) => void): void {
  let pending: Buffer[] = [];
  let have = 0;
  c.on('data', (d: Buffer) => {
    pending.push(d);
    have += d.length;
    if (have < 2) return;
    let buf = pending.length === 1 ? pending[0] : Buffer.concat(pending);
    while (buf.length >= 2 && buf.length >= buf.readUInt16BE(0) + 2) {
      const len = buf.readUInt16BE(0);
      onReply(buf.subarray(2, len + 2));
      buf = buf.subarray(len + 2);
    }
    pending = buf.length ? [buf] : [];
    have = buf.length;
  });
}

function dig(port: number, name: string): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve) => {
    const p = spawn('dig', ['+tcp', '+tries=1', '+time=3', '-b', '127.0.0.1', '-p', String(port), '@127.0.0.1', name, 'A'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    p.stdout.on('data', (d: Buffer) => (out += d.toString()));
    p.stderr.on('data', (d: Buffer) => (out += d.toString()));
    p.on('close', (code) => resolve({ code, out }));
  });
}

const TXT = Array.from({ length: 4 }, (_, i) => String.fromCharCode(97 + i).repeat(250));

describe('TCP: unsent replies are bounded (server in a child process)', () => {
  let up: FakeUpstream;
  before(async () => {
    up = await startFakeUpstream({ records: { 'big.example': { TXT }, '*.example': { A: '192.0.2.5' } } });
  });
  after(async () => up.stop());

  test('40,000 pipelined queries on a connection that never reads: RSS stays within 32 MB, others are answered, the stalled connection is closed', async () => {
    const s = await startChildServer(`servers:
  - listen: [udp://127.0.0.1:{{port}}, tcp://127.0.0.1:{{port}}]
    tcp: { drain_timeout: 6s }
    plugins:
      - metrics: { listen: "127.0.0.1:{{metricsPort}}" }
      - cache: {}
      - forward: { to: ["${up.address}"] }
reload: { watch: false }
`);
    const N = 40_000;
    const queries = Buffer.concat(Array.from({ length: N }, (_, i) => frame(buildQuery('big.example', 'TXT', { id: i & 0xffff }))));
    const socks: net.Socket[] = [];
    let sampler: NodeJS.Timeout | undefined;
    try {
      // Warm-up: the same load on a connection that reads, so the baseline includes the heap such a load grows.
      const warm = await connect(s.port);
      socks.push(warm);
      let warmAnswered = 0;
      let replySize = 0;
      await new Promise<void>((resolve, reject) => {
        const t = setTimeout(() => reject(new Error(`warm-up: ${warmAnswered} of ${N} answered`)), 60_000);
        countReplies(warm, (m) => {
          replySize = m.length;
          if (++warmAnswered === N) {
            clearTimeout(t);
            resolve();
          }
        });
        warm.write(queries);
      });
      warm.destroy();
      assert.ok(replySize > 1000, `replies of ${replySize} bytes`);
      await sleep(1000);
      const before = s.rss();
      let peak = before;
      sampler = setInterval(() => (peak = Math.max(peak, s.rss())), 50);

      // A client that pipelines everything and reads nothing.
      const stalled = await connect(s.port);
      socks.push(stalled);
      stalled.pause();
      stalled.on('error', () => undefined);
      stalled.write(queries);
      await sleep(1500);
      // Everyone else is still answered, over UDP and TCP, and by a real dig.
      for (let i = 0; i < 10; i++) {
        assert.equal((await query(s.port, `u${i}.example`, false)), '192.0.2.5');
        assert.equal((await query(s.port, `t${i}.example`, true)), '192.0.2.5');
      }
      const d = await dig(s.port, 'dig.example');
      assert.equal(d.code, 0, d.out);
      assert.match(d.out, /status: NOERROR/);
      const m1 = await s.metrics();
      assert.ok(metricValue(m1, 'codexdns_dns_tcp_connections_paused') >= 1, 'the stalled connection is paused');
      assert.ok(metricValue(m1, 'codexdns_dns_tcp_backpressure_pauses_total') >= 1);

      // It is closed once its replies have not drained for drain_timeout (the client, not reading, learns it
      // only when it reads again).
      let m2 = '';
      const until = Date.now() + 15_000;
      while (Date.now() < until) {
        m2 = await s.metrics();
        if (metricValue(m2, 'codexdns_dns_tcp_connections_closed_total', 'reason="drain_timeout"') >= 1) break;
        await sleep(200);
      }
      assert.equal(metricValue(m2, 'codexdns_dns_tcp_connections_closed_total', 'reason="drain_timeout"'), 1);
      stalled.resume();
      assert.ok(await closedWithin(stalled, 10_000), 'the stalled connection is closed');
      clearInterval(sampler);
      const after = s.rss();
      assert.equal(metricValue(m2, 'codexdns_dns_tcp_connections_paused'), 0);
      for (const name of ['codexdns_dns_tcp_connections', 'codexdns_dns_tcp_connections_refused_total', 'codexdns_dns_tcp_inflight_full_total', 'codexdns_dns_send_errors_total']) {
        assert.ok(!Number.isNaN(metricValue(m2, name)), `${name} is exported`);
      }
      const mb = (n: number): string => (n / 1048576).toFixed(1);
      process.stdout.write(`# RSS before ${mb(before)} MB, peak ${mb(peak)} MB, after ${mb(after)} MB; warm-up ${warmAnswered} answered (${replySize}-byte replies)\n`);
      assert.ok(peak - before < 32 * 1048576, `RSS grew by ${mb(peak - before)} MB (before ${mb(before)}, peak ${mb(peak)})`);
      assert.equal((await query(s.port, 'still.example', true)), '192.0.2.5');
    } finally {
      clearInterval(sampler);
      socks.forEach((c) => c.destroy());
      await s.stop();
    }
  });
});

async function query(port: number, name: string, tcp: boolean): Promise<string> {
  const a = await dnsQuery(name, 'A', { port, tcp, timeoutMs: 3000 });
  return a.rcode === 'NOERROR' ? (a.answers![0] as { data: string }).data : a.rcode;
}

describe('TCP: deadlines, caps and half-close', () => {
  let up: FakeUpstream;
  before(async () => {
    up = await startFakeUpstream({ records: { '*.example': { A: '192.0.2.6' } } });
  });
  after(async () => up.stop());

  const start = (tcp: string): Promise<TestServer> =>
    startServer(`servers:\n  - listen: [udp://127.0.0.1:0, tcp://127.0.0.1:0]\n    tcp: ${tcp}\n    plugins:\n      - forward: { to: ["${up.address}"] }\n`);

  test('20 dribbling connections with max_connections 16 do not lock a real dig +tcp out', async () => {
    const s = await start('{ max_connections: 16 }');
    let stop = false;
    const dribblers: Promise<void>[] = [];
    const live = new Set<net.Socket>();
    try {
      // Each sends a frame announcing 500 bytes, one byte every 300 ms, and reconnects as soon as it is closed.
      for (let i = 0; i < 20; i++) {
        dribblers.push((async () => {
          const until = Date.now() + 20_000;
          while (!stop && Date.now() < until) {
            let c: net.Socket;
            try {
              c = await connect(s.tcpPort, '127.0.0.2');
            } catch {
              await sleep(50);
              continue;
            }
            live.add(c);
            const closed = closedWithin(c, 20_000);
            let open = true;
            void closed.then(() => (open = false));
            c.write(Buffer.from([0x01]));
            while (open && !stop) {
              await sleep(300);
              if (open && !c.destroyed) c.write(Buffer.from([0xf4]));
            }
            c.destroy();
            live.delete(c);
          }
        })());
      }
      await sleep(1000);
      for (let i = 0; i < 5; i++) {
        const d = await dig(s.tcpPort, `dig${i}.example`);
        assert.equal(d.code, 0, d.out);
        assert.match(d.out, /status: NOERROR/);
        assert.match(d.out, /192\.0\.2\.6/);
      }
      const c = s.server.dispatcher.counters;
      assert.ok(c.tcpClosed.evicted + c.tcpClosed.read_timeout > 0, 'dribblers were closed to make room');
    } finally {
      stop = true;
      await Promise.all(dribblers);
      live.forEach((c) => c.destroy());
      await s.stop();
    }
  });

  test('the read deadline counts from a message\'s first byte: a byte now and then does not extend it', async () => {
    const s = await start('{ read_timeout: 1s, idle_timeout: 30s }');
    try {
      const c = await connect(s.tcpPort);
      const started = Date.now();
      const closed = closedWithin(c, 6000);
      let open = true;
      void closed.then(() => (open = false));
      c.write(Buffer.from([0x00]));
      while (open && Date.now() - started < 6000) {
        await sleep(100);
        if (open) c.write(Buffer.from([0x61]));
      }
      assert.ok(await closed, 'closed');
      const took = Date.now() - started;
      assert.ok(took >= 900 && took < 2500, `closed after ${took} ms`);
      assert.equal(s.server.dispatcher.counters.tcpClosed.read_timeout, 1);
      c.destroy();
    } finally {
      await s.stop();
    }
  });

  test('complete messages keep a connection open past idle_timeout; it closes idle_timeout after the last', async () => {
    const s = await start('{ idle_timeout: 600ms }');
    try {
      const c = await connect(s.tcpPort);
      let answers = 0;
      countReplies(c, () => answers++);
      const closed = closedWithin(c, 8000);
      for (let i = 0; i < 8; i++) {
        c.write(frame(buildQuery(`k${i}.example`, 'A')));
        await sleep(300);
      }
      const last = Date.now();
      assert.equal(answers, 8);
      assert.ok(await closed);
      const took = Date.now() - last;
      assert.ok(took >= 200 && took < 2500, `closed ${took} ms after the last message`);
      assert.equal(s.server.dispatcher.counters.tcpClosed.idle_timeout, 1);
    } finally {
      await s.stop();
    }
  });

  test('connections per source address are capped; other sources are not affected', async () => {
    const s = await start('{ max_per_client: 3 }');
    const socks: net.Socket[] = [];
    try {
      for (let i = 0; i < 3; i++) socks.push(await connect(s.tcpPort, '127.0.0.3'));
      await sleep(50);
      const fourth = await connect(s.tcpPort, '127.0.0.3');
      socks.push(fourth);
      assert.ok(await closedWithin(fourth, 2000), 'the fourth from one address is closed');
      assert.equal(s.server.dispatcher.counters.tcpClosed.per_client, 1);
      for (const c of socks.slice(0, 3)) assert.equal(c.destroyed, false);
      assert.equal(await query(s.tcpPort, 'other.example', true), '192.0.2.6');
    } finally {
      socks.forEach((c) => c.destroy());
      await s.stop();
    }
  });

  test('at max_connections the connection idle the longest is closed to admit a new one', async () => {
    const s = await start('{ max_connections: 2 }');
    const socks: net.Socket[] = [];
    try {
      const oldest = await connect(s.tcpPort);
      socks.push(oldest);
      await sleep(50);
      const younger = await connect(s.tcpPort);
      socks.push(younger);
      younger.write(frame(buildQuery('y.example', 'A')));
      await sleep(100);
      const oldestClosed = closedWithin(oldest, 3000);
      assert.equal(await query(s.tcpPort, 'new.example', true), '192.0.2.6');
      assert.ok(await oldestClosed, 'the oldest idle connection made room');
      assert.equal(younger.destroyed, false);
      assert.equal(s.server.dispatcher.counters.tcpClosed.evicted, 1);
      assert.equal(s.server.dispatcher.counters.tcpConnectionsRefused, 0);
    } finally {
      socks.forEach((c) => c.destroy());
      await s.stop();
    }
  });

  test('a client that sends its query and shuts its write side gets the answer, then the connection ends', async () => {
    const s = await start('{}');
    try {
      const c = await connect(s.tcpPort);
      const replies: Buffer[] = [];
      countReplies(c, (m) => replies.push(Buffer.from(m)));
      const ended = new Promise<void>((r) => c.once('end', () => r()));
      c.end(Buffer.concat([frame(buildQuery('half.example', 'A', { id: 4242 })), frame(buildQuery('half2.example', 'A', { id: 4243 }))]));
      await Promise.race([ended, sleep(5000)]);
      assert.equal(replies.length, 2);
      assert.deepEqual(replies.map((r) => r.readUInt16BE(0)).sort(), [4242, 4243]);
      assert.ok(c.readableEnded, 'the server ended its side');
      c.destroy();
    } finally {
      await s.stop();
    }
  });

  test('a message sent one byte per segment is answered', async () => {
    const s = await start('{}');
    try {
      const c = await connect(s.tcpPort);
      c.setNoDelay(true);
      const replies: Buffer[] = [];
      countReplies(c, (m) => replies.push(m));
      const f = frame(buildQuery('byte.by.byte.example', 'A', { id: 99, edns: 1232 }));
      for (const b of f) {
        c.write(Buffer.from([b]));
        await sleep(2);
      }
      const until = Date.now() + 3000;
      while (replies.length === 0 && Date.now() < until) await sleep(10);
      assert.equal(replies.length, 1);
      assert.equal(replies[0].readUInt16BE(0), 99);
      c.destroy();
    } finally {
      await s.stop();
    }
  });
});

describe('TCP reassembly', () => {
  test('a 65,535-byte message in one-byte chunks costs linear time', () => {
    const r = new Reassembly();
    const started = process.hrtime.bigint();
    const n = 65_535;
    r.push(Buffer.from([n >> 8]));
    r.push(Buffer.from([n & 0xff]));
    for (let i = 0; i < n; i++) {
      r.push(Buffer.from([i & 0xff]));
      // What the listener does per chunk: look whether a whole message is there.
      if (r.length >= r.peekLength() + 2) break;
    }
    assert.equal(r.peekLength(), n);
    const msg = r.take(2, n);
    const ms = Number(process.hrtime.bigint() - started) / 1e6;
    assert.equal(msg.length, n);
    for (let i = 0; i < n; i += 997) assert.equal(msg[i], i & 0xff);
    assert.equal(r.length, 0);
    // Concatenating on every chunk copies ~2 GB here (seconds); chunks copied once take a few milliseconds.
    assert.ok(ms < 500, `${ms} ms`);
  });

  test('messages split across chunks at every offset come out whole and in order', () => {
    const msgs = Array.from({ length: 50 }, (_, i) => Buffer.alloc(1 + ((i * 37) % 300), i));
    const stream = Buffer.concat(msgs.map(frame));
    for (const size of [1, 2, 3, 7, 64, 1000]) {
      const r = new Reassembly();
      const out: Buffer[] = [];
      for (let p = 0; p < stream.length; p += size) {
        r.push(stream.subarray(p, p + size));
        for (;;) {
          const len = r.peekLength();
          if (len < 0 || r.length < len + 2) break;
          out.push(r.take(2, len));
        }
      }
      assert.equal(out.length, msgs.length, `chunks of ${size}`);
      out.forEach((m, i) => assert.ok(m.equals(msgs[i]), `message ${i}, chunks of ${size}`));
    }
  });
});
