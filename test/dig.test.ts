import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { startFakeUpstream, startServer, type FakeUpstream, type TestServer } from '../testing';

/** What a real client sees: `dig` against a forward + cache chain in front of a loopback upstream. */
// Asynchronous on purpose: the server under test runs in this process's event loop.
async function dig(port: number, ...args: string[]): Promise<string> {
  return (await promisify(execFile)('dig', ['@127.0.0.1', '-p', String(port), '+time=2', '+tries=1', ...args], { encoding: 'utf8' })).stdout;
}

describe('dig as a client', () => {
  let up: FakeUpstream;
  let s: TestServer;
  before(async () => {
    up = await startFakeUpstream({ records: { 'www.example.org': { A: '192.0.2.80' } } });
    s = await startServer(`servers:\n  - listen: [udp://127.0.0.1:0, tcp://127.0.0.1:0]\n    plugins:\n      - acl: {}\n      - cache: {}\n      - forward: { to: ["${up.address}"] }\n`);
  });
  after(async () => {
    await s.stop();
    await up.stop();
  });

  test('an A answer, recursion available, not authoritative, our EDNS size', async () => {
    const out = await dig(s.port, 'WWW.Example.ORG', 'A');
    assert.match(out, /status: NOERROR/);
    assert.match(out, /flags: qr rd ra;/);
    assert.match(out, /;WWW\.Example\.ORG\.\s+IN\s+A/);
    assert.match(out, /www\.example\.org\.\s+\d+\s+IN\s+A\s+192\.0\.2\.80/i);
    assert.match(out, /EDNS: version: 0, flags:; udp: 1232/);
  });

  test('a second dig is a cache hit with a TTL no higher than the first', async () => {
    const first = Number(/www\.example\.org\.\s+(\d+)/.exec(await dig(s.port, 'www.example.org', 'A'))![1]);
    const before = up.count();
    const second = Number(/www\.example\.org\.\s+(\d+)/.exec(await dig(s.port, 'www.example.org', 'A'))![1]);
    assert.equal(up.count(), before);
    assert.ok(second <= first);
  });

  test('over TCP', async () => {
    const out = await dig(s.tcpPort, '+tcp', 'www.example.org', 'A');
    assert.match(out, /192\.0\.2\.80/);
  });

  test('+noedns gets no OPT back', async () => {
    const out = await dig(s.port, '+noedns', 'www.example.org', 'A');
    assert.doesNotMatch(out, /OPT PSEUDOSECTION/);
    assert.match(out, /status: NOERROR/);
  });

  test('EDNS version 1 gets BADVERS', async () => {
    const out = await dig(s.port, '+edns=1', '+noednsneg', 'www.example.org', 'A');
    assert.match(out, /status: BADVERS/);
  });
});
