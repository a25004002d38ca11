/**
 * The one-shot UDP exchange (plugins/pkg/udpExchange.ts) that discovery's probes use, run on the shared engine
 * (udpPool.ts) against real sockets on loopback: the payload's own ID goes out and the caller's buffer is left
 * alone, datagrams with another ID or that `accept` refuses are ignored, a closed port is an error at once, an
 * abort ends the exchange, and every exchange closes its socket.
 */
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import * as dgram from 'node:dgram';
import { udpExchange } from '../plugins/pkg/udpExchange';
import { UdpPool, type UdpPoolSink, type UdpTryOwner } from '../plugins/pkg/udpPool';
import { closeSocket } from './helpers/net';

/** A 12-byte header with this ID, then `tag`: enough for the engine, which reads only the ID. */
function request(id: number, tag: string): Buffer {
  const b = Buffer.alloc(12 + tag.length);
  b.writeUInt16BE(id, 0);
  b.write(tag, 12, 'latin1');
  return b;
}

/** A UDP server on 127.0.0.1 that answers each datagram with whatever `answer` returns (none when empty). */
async function responder(answer: (msg: Buffer) => Buffer[]): Promise<{ socket: dgram.Socket; port: number; seen: Buffer[] }> {
  const socket = dgram.createSocket('udp4');
  const seen: Buffer[] = [];
  socket.on('message', (msg, rinfo) => {
    seen.push(Buffer.from(msg));
    for (const out of answer(msg)) socket.send(out, rinfo.port, rinfo.address);
  });
  await new Promise<void>((resolve) => socket.bind(0, '127.0.0.1', resolve));
  return { socket, port: socket.address().port, seen };
}

/** The tag of a datagram that echoes ours (`accept`'s reading of a reply). */
const tagOf = (msg: Buffer): string | undefined => (msg.length > 12 ? msg.toString('latin1', 12) : undefined);

/**
 * The sockets the engine opens that are not closed yet (a one-shot exchange must leave none behind): the engine
 * calls `dgram.createSocket` through the module object, so wrapping it here sees each of its sockets.
 */
const openSockets = new Set<dgram.Socket>();
// The module object itself (an `import *` namespace is read-only); the engine's namespace reads through to it.
// eslint-disable-next-line @typescript-eslint/no-require-imports
const dgramModule = require('node:dgram') as { createSocket: typeof dgram.createSocket };
const createSocket = dgramModule.createSocket;
dgramModule.createSocket = ((...args: Parameters<typeof dgram.createSocket>) => {
  const s = createSocket(...args);
  openSockets.add(s);
  s.once('close', () => openSockets.delete(s));
  return s;
}) as typeof dgram.createSocket;

async function udpHandles(): Promise<number> {
  await new Promise((r) => setImmediate(r));
  return openSockets.size;
}

describe('udpExchange: one socket, one try, on the shared engine', () => {
  test('the payload goes out with its own ID, unchanged; the accepted reply is the value', async () => {
    const r = await responder((msg) => [Buffer.concat([msg.subarray(0, 12), Buffer.from('pong')])]);
    try {
      const payload = request(0xbeef, 'ping');
      const before = Buffer.from(payload);
      const handles = await udpHandles();
      const result = await udpExchange({ host: '127.0.0.1', port: r.port, payload, timeoutMs: 2000, accept: tagOf });
      assert.deepEqual(result, { kind: 'reply', value: 'pong' });
      assert.deepEqual(payload, before, "the caller's buffer is not written");
      assert.equal(r.seen.length, 1);
      assert.equal(r.seen[0].readUInt16BE(0), 0xbeef);
      assert.equal(r.seen[0].toString('latin1', 12), 'ping');
      assert.equal(await udpHandles(), handles, 'the socket is closed with the exchange');
    } finally {
      await closeSocket(r.socket);
    }
  });

  test('a datagram with another ID, and one that accept refuses, are ignored; the right one is taken', async () => {
    const r = await responder((msg) => {
      const wrongId = Buffer.concat([msg.subarray(0, 12), Buffer.from('forged')]);
      wrongId.writeUInt16BE((msg.readUInt16BE(0) + 1) & 0xffff, 0);
      const refused = Buffer.concat([msg.subarray(0, 12), Buffer.from('junk')]);
      const good = Buffer.concat([msg.subarray(0, 12), Buffer.from('real')]);
      return [wrongId, refused, good];
    });
    try {
      const seen: string[] = [];
      const result = await udpExchange({
        host: '127.0.0.1',
        port: r.port,
        payload: request(0x1234, 'q'),
        timeoutMs: 2000,
        accept: (msg) => {
          const tag = tagOf(msg);
          seen.push(tag ?? '');
          return tag === 'real' ? tag : undefined;
        },
      });
      assert.deepEqual(result, { kind: 'reply', value: 'real' });
      // The forged ID never reaches accept: the engine matches (socket, ID) first.
      assert.deepEqual(seen, ['junk', 'real']);
    } finally {
      await closeSocket(r.socket);
    }
  });

  test('a reply from another port of the same host is dropped (connected socket): the exchange times out', async () => {
    const other = dgram.createSocket('udp4');
    await new Promise<void>((resolve) => other.bind(0, '127.0.0.1', resolve));
    // The reply leaves from `other`, not from the port the query went to.
    const r = await responder((msg) => {
      void msg;
      return [];
    });
    r.socket.on('message', (msg, rinfo) => other.send(Buffer.concat([msg.subarray(0, 12), Buffer.from('spoof')]), rinfo.port, rinfo.address));
    try {
      const result = await udpExchange({ host: '127.0.0.1', port: r.port, payload: request(7, 'q'), timeoutMs: 300, accept: tagOf });
      assert.equal(r.seen.length, 1, 'the query was sent');
      assert.deepEqual(result, { kind: 'timeout' });
    } finally {
      await closeSocket(r.socket);
      await closeSocket(other);
    }
  });

  test('silence is a timeout; a closed port is ECONNREFUSED long before it', async () => {
    const r = await responder(() => []);
    try {
      assert.deepEqual(await udpExchange({ host: '127.0.0.1', port: r.port, payload: request(1, 'q'), timeoutMs: 150, accept: tagOf }), { kind: 'timeout' });
    } finally {
      await closeSocket(r.socket);
    }
    // The port just closed: nothing listens there now.
    const started = Date.now();
    const refused = await udpExchange({ host: '127.0.0.1', port: r.port, payload: request(2, 'q'), timeoutMs: 5000, accept: tagOf });
    assert.equal(refused.kind, 'error');
    assert.equal(refused.kind === 'error' && refused.code, 'ECONNREFUSED');
    assert.ok(Date.now() - started < 4000, 'refused at once, not at the deadline');
  });

  test('an abort ends the exchange and closes its socket; an aborted signal sends nothing', async () => {
    const r = await responder(() => []);
    try {
      const handles = await udpHandles();
      const ctl = new AbortController();
      const pending = udpExchange({ host: '127.0.0.1', port: r.port, payload: request(3, 'q'), timeoutMs: 10_000, signal: ctl.signal, accept: tagOf });
      setTimeout(() => ctl.abort(), 50);
      assert.deepEqual(await pending, { kind: 'aborted' });
      assert.equal(await udpHandles(), handles);
      assert.deepEqual(await udpExchange({ host: '127.0.0.1', port: r.port, payload: request(4, 'q'), timeoutMs: 1000, signal: ctl.signal, accept: tagOf }), { kind: 'aborted' });
      assert.equal(r.seen.length, 1);
    } finally {
      await closeSocket(r.socket);
    }
  });

  test('bad requests are errors, not throws: a name instead of an address, no header, a bad port, a failed connect', async () => {
    const accept = tagOf;
    const name = await udpExchange({ host: 'printer.lan', port: 137, payload: request(5, 'q'), timeoutMs: 100, accept });
    assert.equal(name.kind === 'error' && name.code, 'EINVAL');
    const short = await udpExchange({ host: '127.0.0.1', port: 137, payload: Buffer.alloc(4), timeoutMs: 100, accept });
    assert.equal(short.kind === 'error' && short.code, 'EINVAL');
    const badPort = await udpExchange({ host: '127.0.0.1', port: 70_000, payload: request(6, 'q'), timeoutMs: 1000, accept });
    assert.equal(badPort.kind, 'error');
    // A zone that names no interface: connect() fails in its callback, which must end the exchange at once.
    const started = Date.now();
    const zone = await udpExchange({ host: 'fe80::1%nosuchif0', port: 5353, payload: request(8, 'q'), timeoutMs: 5000, accept });
    assert.equal(zone.kind, 'error');
    assert.ok(Date.now() - started < 4000);
  });
});

describe('UdpPool: a failed connect fails the tries queued on that socket at once', () => {
  test('an IPv6 peer on an IPv4 pool: EINVAL to the owner, not a wait for its timer', async () => {
    const errors: Error[] = [];
    const owner: UdpTryOwner = {
      query: request(0, 'q'),
      check: () => undefined,
      onUdpReply: () => assert.fail('no reply expected'),
      onUdpError: (err) => errors.push(err),
      onUdpIgnored: () => undefined,
    };
    const nothing = { inc(): void {} };
    const sink: UdpPoolSink = { stray: () => undefined, opened: nothing, retired: nothing, idCollisions: nothing, exhausted: nothing };
    const pool = new UdpPool(4, '::1', '', 53000, { size: 2, maxInFlight: 4, maxQueries: 100, maxAgeMs: 60_000 }, sink);
    try {
      assert.notEqual(pool.send(owner), -1);
      const until = Date.now() + 2000;
      while (errors.length === 0 && Date.now() < until) await new Promise((r) => setTimeout(r, 10));
      assert.equal(errors.length, 1);
      assert.equal((errors[0] as NodeJS.ErrnoException).code, 'EINVAL');
      assert.equal(pool.inFlight, 0);
      assert.equal(pool.sockets, 0, 'the socket that never connected is closed');
    } finally {
      pool.close();
    }
  });
});
