/**
 * Tests of the discovery methods (plugins/discovery/methods), address helpers and the vendor table.
 *
 * Network rule: every packet goes to a 127.0.0.0/8 address this file binds itself. NetBIOS and mDNS
 * responders bind their real ports (137, 5353) on random 127.0.37.X / 127.0.53.X addresses (we run as root;
 * every 127.x is local on Linux), falling back to port 0 when the port cannot be bound. Nothing binds port
 * 53, nothing multicasts, nothing reads /etc/resolv.conf.
 */
import { after, before, describe, it } from 'node:test';
import * as assert from 'node:assert/strict';
import * as dgram from 'node:dgram';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as dnsPacket from 'dns-packet';
import * as ipaddr from 'ipaddr.js';
import { isProbeable, macFromBytes, normalizeIp, normalizeMac, reverseName } from '../plugins/pkg/address.js';
import {
  buildNbstatRequest,
  buildNbstatResponse,
  createNetbios,
  decodeNetbiosName,
  encodeNetbiosName,
  parseNbstatRequest,
  parseNbstatResponse,
  probeErrorOutcome,
} from '../plugins/discovery/methods/netbios.js';
import { createRdns } from '../plugins/discovery/methods/rdns.js';
import { createMdns, stripLocal } from '../plugins/discovery/methods/mdns.js';
import { pickName } from '../plugins/discovery/methods/dnsutil.js';
import {
  createDhcp,
  isLeaseActive,
  parseDnsmasqLeases,
  parseIscLeases,
  parseKeaLeases,
  parseOdhcpdLeases,
  type LeaseFormat,
} from '../plugins/discovery/methods/dhcp.js';
import { createArp, parseIpNeigh, parseProcArp } from '../plugins/discovery/methods/arp.js';
import type { DiscoveryMethod, MethodOutcome } from '../plugins/discovery/methods/types.js';
import { buildVendorTable, classifyMac, PRIVATE_ADDRESS, vendorOf, vendorOfSync } from '../plugins/discovery/vendor.js';
import { bindUdp, closeSocket, randomOctet } from './helpers/net';
import { startFakeUpstream, type FakeReply, type FakeUpstream } from '../testing';

const FIXTURES = path.resolve(__dirname, '../../test/fixtures/leases');
/** 2026-01-01T00:00:00Z: the fixtures' "now" (past = 1700000000, future = 1800000000). */
const NOW_MS = Date.UTC(2026, 0, 1);

// ------------------------------------------------------------------------------------------------
// helpers

function never(): AbortSignal {
  return new AbortController().signal;
}

/** A port on 127.0.0.1 with nothing listening (bound, then closed). */
async function closedPort(address = '127.0.0.1'): Promise<number> {
  const { socket, port } = await bindUdp(address, 0);
  await closeSocket(socket);
  return port;
}

function expectFound(outcome: MethodOutcome): { hostname?: string; mac?: string } {
  assert.equal(outcome.kind, 'found', `expected found, got ${JSON.stringify(outcome)}`);
  return (outcome as { kind: 'found'; result: { hostname?: string; mac?: string } }).result;
}

function expectKind(outcome: MethodOutcome, kind: MethodOutcome['kind']): void {
  assert.equal(outcome.kind, kind, `expected ${kind}, got ${JSON.stringify(outcome)}`);
}

function reply(
  q: dnsPacket.DecodedPacket,
  opts: { rcode?: number; answers?: dnsPacket.Answer[]; id?: number; questionName?: string; flags?: number } = {},
): Buffer {
  const question = q.questions?.[0];
  return dnsPacket.encode({
    type: 'response',
    id: opts.id ?? q.id ?? 0,
    flags: (opts.flags ?? dnsPacket.RECURSION_DESIRED | dnsPacket.RECURSION_AVAILABLE) | (opts.rcode ?? 0),
    questions: question ? [{ ...question, name: opts.questionName ?? question.name }] : [],
    answers: opts.answers ?? [],
  });
}

function ptr(name: string, target: string): dnsPacket.Answer {
  return { type: 'PTR', name, class: 'IN', ttl: 60, data: target };
}

// ------------------------------------------------------------------------------------------------
// address.ts

describe('address helpers', () => {
  it('probes only private, loopback, link-local, ULA or on-link addresses', () => {
    for (const ip of ['10.1.2.3', '172.16.0.1', '172.31.255.254', '192.168.1.50', '127.0.0.1', '127.9.8.7', '169.254.3.4', '::1', 'fe80::1', 'fe80::1%eth0', 'fd12:3456::1', 'fc00::5', '::ffff:192.168.1.7']) {
      assert.equal(isProbeable(ip), true, ip);
    }
    for (const ip of ['8.8.8.8', '1.1.1.1', '172.32.0.1', '100.64.0.1', '2001:db8::1', '2a00:1450::1', '0.0.0.0', '::', '255.255.255.255', '224.0.0.251', 'ff02::fb', '::ffff:8.8.8.8', 'not-an-ip', '', '010.0.0.1', '10.1']) {
      assert.equal(isProbeable(ip), false, ip);
    }
    // on-link widens to other unicast (a SLAAC global address on the LAN, CGNAT overlay), never to multicast.
    const onLink = (ip: string): boolean => ip === '2001:db8::5' || ip === '100.64.0.1' || ip === 'ff02::fb';
    assert.equal(isProbeable('2001:db8::5', onLink), true);
    assert.equal(isProbeable('100.64.0.1', onLink), true);
    assert.equal(isProbeable('ff02::fb', onLink), false);
    assert.equal(isProbeable('8.8.8.8', onLink), false);
    assert.equal(isProbeable('8.8.8.8', () => { throw new Error('boom'); }), false);
  });

  it('the dotted-quad shortcut agrees with the full classification on every first and second octet', () => {
    const probeRange = (ip: string): boolean => ['private', 'loopback', 'linkLocal'].includes(ipaddr.parse(ip).range());
    for (let a = 0; a < 256; a++) {
      for (let b = 0; b < 256; b += a === 172 || a === 169 || a === 192 ? 1 : 37) {
        for (const tail of ['0.0', '7.255', '255.1']) {
          const ip = `${a}.${b}.${tail}`;
          assert.equal(isProbeable(ip), probeRange(ip), ip);
        }
      }
    }
  });

  it('builds reverse names', () => {
    assert.equal(reverseName('10.0.0.5'), '5.0.0.10.in-addr.arpa');
    assert.equal(reverseName('::ffff:192.168.1.7'), '7.1.168.192.in-addr.arpa');
    assert.equal(reverseName('2001:db8::567:89ab'), 'b.a.9.8.7.6.5.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa');
    assert.equal(reverseName('fe80::1%eth0'), '1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.e.f.ip6.arpa');
    assert.throws(() => reverseName('nope'), TypeError);
  });

  it('normalises IPs and MACs', () => {
    assert.equal(normalizeIp('FD00:0:0::0011'), 'fd00::11');
    assert.equal(normalizeIp('fe80::1%eth0'), 'fe80::1');
    assert.equal(normalizeIp('::ffff:10.0.0.5'), '10.0.0.5');
    assert.equal(normalizeIp('10.0.0'), undefined);
    assert.equal(normalizeMac('AA-BB-CC-DD-EE-0F'), 'aa:bb:cc:dd:ee:0f');
    assert.equal(normalizeMac('a:b:c:d:e:f'), '0a:0b:0c:0d:0e:0f');
    assert.equal(normalizeMac('aabb.ccdd.eeff'), 'aa:bb:cc:dd:ee:ff');
    assert.equal(normalizeMac('001122337701'), '00:11:22:33:77:01');
    assert.equal(normalizeMac('00:00:00:00:00:00'), undefined);
    assert.equal(normalizeMac('06-aa:bb:cc:00:00:05'), undefined);
    assert.equal(normalizeMac('aa:bb:cc:dd:ee'), undefined);
    assert.equal(macFromBytes(Buffer.from([0, 0, 0, 0, 0, 0])), undefined);
    assert.equal(macFromBytes(Buffer.from([0xde, 0xad, 0xbe, 0xef, 0, 1])), 'de:ad:be:ef:00:01');
  });
});

// ------------------------------------------------------------------------------------------------
// rdns

describe('rdns', () => {
  const servers: FakeUpstream[] = [];
  let good: FakeUpstream;
  let servfail: FakeUpstream;
  let silent: FakeUpstream;
  let forger: FakeUpstream;
  const methods: DiscoveryMethod[] = [];
  const make = (...ports: number[]): DiscoveryMethod => {
    const m = createRdns({ resolvers: ports.map((port) => ({ host: '127.0.0.1', port })), timeoutMs: 250 });
    methods.push(m);
    return m;
  };

  before(async () => {
    good = await startFakeUpstream({
      tcp: false,
      answer: ({ name }): FakeReply => {
        if (name === '5.0.0.10.in-addr.arpa') {
          // Three PTRs in an order that is not the answer: shortest wins, ties lexically.
          return { answers: [ptr(name, 'printer-office.lan'), ptr(name, 'laptop.lan'), ptr(name, 'abcdef.lan')] };
        }
        if (name === '6.0.0.10.in-addr.arpa') return { answers: [] }; // NODATA
        if (name === '7.0.0.10.in-addr.arpa') {
          // RFC 2317 classless delegation: a CNAME to the PTR's real owner.
          return {
            answers: [
              { type: 'CNAME', name, class: 'IN', ttl: 60, data: '7.0-25.0.0.10.in-addr.arpa' },
              ptr('7.0-25.0.0.10.in-addr.arpa', 'classless.lan.'),
              ptr('unrelated.in-addr.arpa', 'a.lan'),
            ],
          };
        }
        if (name === reverseName('fd00::5')) return { answers: [ptr(name, 'nas.lan')] };
        return { rcode: 'NXDOMAIN' };
      },
    });
    servfail = await startFakeUpstream({ tcp: false, rcode: 'SERVFAIL' });
    silent = await startFakeUpstream({ tcp: false, silent: true });
    // Before the real answer (a little later): the right ID and question from another port (the connected socket
    // never sees it), a forged ID, the right ID with another question, and garbage.
    forger = await startFakeUpstream({ tcp: false, forge: { source: true, id: true, question: true, garbage: true }, answer: ({ name }) => ({ answers: [ptr(name, 'real.lan')], delayMs: 30 }) });
    servers.push(good, servfail, silent, forger);
  });

  after(async () => {
    for (const m of methods) m.close?.();
    for (const s of servers) await s.stop();
  });

  it('finds the PTR name, picking the shortest, ties lexically, trailing dot stripped', async () => {
    const r = expectFound(await make(good.port).lookup('10.0.0.5', never()));
    assert.deepEqual(r, { hostname: 'abcdef.lan', source: 'rdns' });
    const q = good.queries[good.queries.length - 1]!;
    assert.equal(q.recursionDesired, true);
    assert.equal(q.type, 'PTR');
    const r2 = expectFound(await make(good.port).lookup('10.0.0.7', never()));
    assert.equal(r2.hostname, 'classless.lan');
  });

  it('uses ip6.arpa for IPv6 and strips a zone id', async () => {
    assert.equal(expectFound(await make(good.port).lookup('fd00::5', never())).hostname, 'nas.lan');
    assert.equal(expectFound(await make(good.port).lookup('fd00:0::5%eth0', never())).hostname, 'nas.lan');
  });

  it('uses random IDs', async () => {
    const before = good.queries.length;
    const m = make(good.port);
    for (let i = 0; i < 4; i++) await m.lookup('10.0.0.5', never());
    const ids = new Set(good.queries.slice(before).map((q) => q.id));
    assert.ok(ids.size >= 3, `IDs should vary: ${[...ids].join(',')}`);
  });

  it('NXDOMAIN and NODATA are negative', async () => {
    expectKind(await make(good.port).lookup('10.0.0.99', never()), 'negative');
    expectKind(await make(good.port).lookup('10.0.0.6', never()), 'negative');
  });

  it('SERVFAIL, a silent resolver and a closed port are failures', async () => {
    const sf = await make(servfail.port).lookup('10.0.0.5', never());
    expectKind(sf, 'failure');
    assert.match((sf as { error: string }).error, /SERVFAIL/);
    const t0 = performance.now();
    const to = await make(silent.port).lookup('10.0.0.5', never());
    expectKind(to, 'failure');
    assert.match((to as { error: string }).error, /timed out/);
    assert.ok(performance.now() - t0 >= 200);
    expectKind(await make(await closedPort()).lookup('10.0.0.5', never()), 'failure');
  });

  it('moves to the next resolver only when one fails', async () => {
    const before = good.count();
    assert.equal(expectFound(await make(servfail.port, good.port).lookup('10.0.0.5', never())).hostname, 'abcdef.lan');
    assert.equal(expectFound(await make(silent.port, good.port).lookup('10.0.0.5', never())).hostname, 'abcdef.lan');
    // NXDOMAIN from the first is the answer: the second is not asked.
    const sfBefore = servfail.count();
    expectKind(await make(good.port, servfail.port).lookup('10.0.0.99', never()), 'negative');
    assert.equal(servfail.count(), sfBefore);
    assert.equal(good.count(), before + 3);
  });

  it('ignores replies from another port, with another ID or question, and garbage', async () => {
    const r = expectFound(await make(forger.port).lookup('10.0.0.5', never()));
    assert.equal(r.hostname, 'real.lan');
  });

  it('an aborted lookup ends at once as a failure; bad input is negative', async () => {
    const ctl = new AbortController();
    const p = make(silent.port).lookup('10.0.0.5', ctl.signal);
    setTimeout(() => ctl.abort(), 20);
    const t0 = performance.now();
    expectKind(await p, 'failure');
    assert.ok(performance.now() - t0 < 200);
    expectKind(await make(good.port).lookup('not-an-ip', never()), 'negative');
    expectKind(await createRdns({ resolvers: [{ host: 'localhost', port: 1 }], timeoutMs: 100 }).lookup('10.0.0.5', never()), 'failure');
  });

  it('close() ends lookups in flight', async () => {
    const m = make(silent.port);
    const p = m.lookup('10.0.0.5', never());
    setTimeout(() => m.close?.(), 20);
    const t0 = performance.now();
    expectKind(await p, 'failure');
    assert.ok(performance.now() - t0 < 200);
  });

  it('pickName is order-independent', () => {
    assert.equal(pickName(['b.lan', 'a.lan', 'longer.lan']), 'a.lan');
    assert.equal(pickName(['B.lan', 'a.lan']), 'a.lan');
    assert.equal(pickName([]), undefined);
  });
});

// ------------------------------------------------------------------------------------------------
// netbios

describe('netbios', () => {
  const base = `127.0.37.${randomOctet()}`;
  let responderIp = '';
  let responderPort = 137;
  let responder: dgram.Socket;
  let silentIp = '';
  let silentPort = 137;
  let silent: dgram.Socket;
  const requests: Array<{ id: number; port: number }> = [];
  const methods: DiscoveryMethod[] = [];

  before(async () => {
    responderIp = base;
    const r = await bindUdp(responderIp, 137);
    responder = r.socket;
    responderPort = r.port;
    responder.on('message', (msg, rinfo) => {
      const id = parseNbstatRequest(msg);
      if (id === undefined) return;
      requests.push({ id, port: rinfo.port });
      // Garbage and a wrong ID first: both must be ignored.
      responder.send(Buffer.from('garbage'), rinfo.port, rinfo.address);
      responder.send(buildNbstatResponse((id + 1) & 0xffff, [{ name: 'WRONG-ID' }], '66:66:66:66:66:66'), rinfo.port, rinfo.address);
      responder.send(
        buildNbstatResponse(
          id,
          [
            { name: 'WORKGROUP', suffix: 0x00, group: true },
            { name: 'DESKTOP-7Q', suffix: 0x20 },
            { name: 'DESKTOP-7Q', suffix: 0x00 },
            { name: '__MSBROWSE__', suffix: 0x01, group: true },
          ],
          'D8:3A:DD:01:02:03',
        ),
        rinfo.port,
        rinfo.address,
      );
    });
    silentIp = `127.0.37.${(Number(base.split('.')[3]) % 250) + 3}`;
    const s = await bindUdp(silentIp, 137);
    silent = s.socket;
    silentPort = s.port;
  });

  after(async () => {
    for (const m of methods) m.close?.();
    await closeSocket(responder);
    await closeSocket(silent);
  });

  it('encodes the wildcard name and the 50-byte request', () => {
    assert.equal(encodeNetbiosName('*'), 'CK' + 'A'.repeat(30));
    assert.equal(encodeNetbiosName('FRED', 0x20), 'EGFCEFEECACACACACACACACACACACACA');
    assert.deepEqual([...decodeNetbiosName('CK' + 'A'.repeat(30))!], [0x2a, ...new Array(15).fill(0)]);
    const req = buildNbstatRequest(0x1234);
    assert.equal(req.length, 50);
    assert.equal(req.readUInt16BE(0), 0x1234);
    assert.equal(req[12], 0x20);
    assert.equal(req.subarray(13, 45).toString('ascii'), 'CK' + 'A'.repeat(30));
    assert.equal(req.readUInt16BE(46), 0x21);
    assert.equal(req.readUInt16BE(48), 0x01);
    assert.equal(parseNbstatRequest(req), 0x1234);
  });

  it('parses names, the first unique 0x00 name and the MAC', () => {
    const buf = buildNbstatResponse(7, [
      { name: 'WORKGROUP', suffix: 0x00, group: true },
      { name: 'NAS', suffix: 0x20 },
      { name: 'NAS', suffix: 0x00 },
    ], 'AA:BB:CC:00:11:22');
    const r = parseNbstatResponse(buf, 7)!;
    assert.equal(r.hostname, 'NAS');
    assert.equal(r.mac, 'aa:bb:cc:00:11:22');
    assert.equal(r.names.length, 3);
    assert.equal(r.names[0]!.group, true);
    assert.equal(parseNbstatResponse(buf, 8), undefined);
    // Samba sends a zero unit ID: no MAC.
    assert.equal(parseNbstatResponse(buildNbstatResponse(7, [{ name: 'SAMBA' }], null))!.mac, undefined);
    // Only group names: no hostname.
    assert.equal(parseNbstatResponse(buildNbstatResponse(7, [{ name: 'WG', group: true }], null))!.hostname, undefined);
  });

  it('never throws on truncated or garbage replies', () => {
    const buf = buildNbstatResponse(9, [{ name: 'HOST-A' }, { name: 'HOST-B', suffix: 0x20 }], '00:11:22:33:44:55');
    for (let len = 0; len <= buf.length; len++) {
      const r = parseNbstatResponse(buf.subarray(0, len), 9);
      if (r && r.mac) assert.equal(r.mac, '00:11:22:33:44:55');
      if (r && r.hostname) assert.equal(r.hostname, 'HOST-A');
    }
    let seed = 42;
    const rand = (): number => (seed = (seed * 1103515245 + 12345) & 0x7fffffff) & 0xff;
    for (let i = 0; i < 2000; i++) {
      const g = Buffer.alloc(12 + (i % 120));
      for (let j = 0; j < g.length; j++) g[j] = rand();
      g[2] = g[2]! | 0x80; // looks like a response
      parseNbstatResponse(g);
    }
    // A name count larger than the data: complete 18-byte entries only (the statistics block reads as two
    // more), no MAC since the unit ID's place is unknown.
    const lying = Buffer.from(buf);
    lying[12 + 34 + 10] = 200;
    const r = parseNbstatResponse(lying)!;
    assert.equal(r.names.length, Math.floor((2 * 18 + 46) / 18));
    assert.equal(r.hostname, 'HOST-A');
    assert.equal(r.mac, undefined);
  });

  it(`finds the name and MAC from a responder (port 137 when it can be bound)`, async (t) => {
    t.diagnostic(`NetBIOS responder on ${responderIp}:${responderPort}`);
    const m = createNetbios({ port: responderPort, timeoutMs: 500 });
    methods.push(m);
    const r = expectFound(await m.lookup(responderIp, never()));
    assert.deepEqual(r, { hostname: 'DESKTOP-7Q', mac: 'd8:3a:dd:01:02:03', source: 'netbios' });
    const req = requests[requests.length - 1]!;
    assert.notEqual(req.port, 137, 'the probe leaves from an ephemeral port');
  });

  it('a silent device, a closed port and IPv6 are negative', async () => {
    const t0 = performance.now();
    expectKind(await createNetbios({ port: silentPort, timeoutMs: 150 }).lookup(silentIp, never()), 'negative');
    assert.ok(performance.now() - t0 >= 100);
    const closed = await closedPort(silentIp);
    const t1 = performance.now();
    expectKind(await createNetbios({ port: closed, timeoutMs: 2000 }).lookup(silentIp, never()), 'negative');
    assert.ok(performance.now() - t1 < 1000, 'ICMP port unreachable ends the probe early');
    expectKind(await createNetbios({ port: responderPort, timeoutMs: 150 }).lookup('::1', never()), 'negative');
  });

  it('does not send to an address that is not allowed', async () => {
    const before = requests.length;
    const m = createNetbios({ port: responderPort, timeoutMs: 150, allow: () => false });
    expectKind(await m.lookup(responderIp, never()), 'negative');
    await new Promise((r) => setTimeout(r, 50));
    assert.equal(requests.length, before);
  });

  it('socket errors are failures, except unreachable ones', async () => {
    // A port the socket cannot use: the error happens before any packet leaves.
    expectKind(await createNetbios({ port: 0, timeoutMs: 150 }).lookup(responderIp, never()), 'failure');
    expectKind(probeErrorOutcome('netbios', 'EACCES', 'send EACCES'), 'failure');
    expectKind(probeErrorOutcome('mdns', 'ENETUNREACH', 'send ENETUNREACH'), 'failure');
    expectKind(probeErrorOutcome('netbios', 'ECONNREFUSED', 'x'), 'negative');
    expectKind(probeErrorOutcome('mdns', 'EHOSTUNREACH', 'x'), 'negative');
  });
});

// ------------------------------------------------------------------------------------------------
// mdns

describe('mdns (legacy unicast)', () => {
  const ip = `127.0.53.${randomOctet()}`;
  let port = 5353;
  let responder: dgram.Socket;
  const queries: Array<{ id: number; port: number; rd: boolean; name: string }> = [];

  before(async () => {
    const r = await bindUdp(ip, 5353);
    responder = r.socket;
    port = r.port;
    responder.on('message', (msg, rinfo) => {
      let q: dnsPacket.DecodedPacket;
      try {
        q = dnsPacket.decode(msg);
      } catch {
        return;
      }
      const name = q.questions?.[0]?.name ?? '';
      queries.push({ id: q.id ?? -1, port: rinfo.port, rd: q.flag_rd, name });
      // RFC 6762 §6.7: a query from a port other than 5353 gets a conventional unicast reply to that port,
      // repeating the ID and question.
      if (rinfo.port === 5353) return;
      if (name === reverseName(ip)) {
        responder.send(reply(q, { id: ((q.id ?? 0) + 7) & 0xffff, answers: [ptr(name, 'impostor.local')], flags: dnsPacket.AUTHORITATIVE_ANSWER }), rinfo.port, rinfo.address);
        responder.send(reply(q, { answers: [ptr(name, 'printer.local'), ptr(name, 'printer-2.local')], flags: dnsPacket.AUTHORITATIVE_ANSWER }), rinfo.port, rinfo.address);
      }
      // any other name: silence, as mDNS responders do
    });
  });

  after(async () => {
    await closeSocket(responder);
  });

  it('asks by unicast from an ephemeral port and strips .local', async (t) => {
    t.diagnostic(`mDNS responder on ${ip}:${port}`);
    const m = createMdns({ port, timeoutMs: 500 });
    const r = expectFound(await m.lookup(ip, never()));
    assert.deepEqual(r, { hostname: 'printer', source: 'mdns' });
    const q = queries[queries.length - 1]!;
    assert.notEqual(q.port, 5353);
    assert.equal(q.rd, false);
    assert.equal(q.name, reverseName(ip));
    m.close?.();
  });

  it('a responder that stays silent, or no responder, is negative', async () => {
    // Most devices run no mDNS responder: a socket that never answers, then a closed port.
    const silentIp = `127.0.53.${(Number(ip.split('.')[3]) % 250) + 3}`;
    const s = await bindUdp(silentIp, port);
    try {
      const t0 = performance.now();
      expectKind(await createMdns({ port: s.port, timeoutMs: 150 }).lookup(silentIp, never()), 'negative');
      assert.ok(performance.now() - t0 >= 100);
    } finally {
      await closeSocket(s.socket);
    }
    expectKind(await createMdns({ port: await closedPort(silentIp), timeoutMs: 1000 }).lookup(silentIp, never()), 'negative');
    assert.equal(stripLocal('Host.LOCAL'), 'Host');
    assert.equal(stripLocal('host.lan'), 'host.lan');
    assert.equal(stripLocal('.local'), '.local');
  });
});

// ------------------------------------------------------------------------------------------------
// dhcp

function fixture(name: string): string {
  return fs.readFileSync(path.join(FIXTURES, name), 'utf8');
}

function active(map: ReturnType<typeof parseDnsmasqLeases>, ip: string): { hostname?: string; mac?: string } | undefined {
  const e = map.get(ip);
  if (!e || !isLeaseActive(e, NOW_MS)) return undefined;
  const out: { hostname?: string; mac?: string } = {};
  if (e.hostname !== undefined) out.hostname = e.hostname;
  if (e.mac !== undefined) out.mac = e.mac;
  return out;
}

describe('dhcp lease parsers', () => {
  it('dnsmasq: v4 with MAC, `*` names, infinite and expired leases, DHCPv6 without MAC', () => {
    const m = parseDnsmasqLeases(fixture('dnsmasq.leases'));
    assert.deepEqual(active(m, '10.0.0.11'), { hostname: 'laptop', mac: 'aa:bb:cc:00:00:01' });
    assert.deepEqual(active(m, '10.0.0.12'), { hostname: 'nas', mac: 'aa:bb:cc:00:00:02' });
    assert.equal(m.get('10.0.0.12')!.expiresAt, undefined);
    assert.deepEqual(active(m, '10.0.0.13'), { mac: 'aa:bb:cc:00:00:03' });
    assert.equal(active(m, '10.0.0.14'), undefined, 'expired');
    assert.deepEqual(active(m, '10.0.0.15'), { hostname: 'tokenring' }, 'non-Ethernet hardware address: no MAC');
    assert.deepEqual(active(m, 'fd00::11'), { hostname: 'laptop6' });
    assert.deepEqual(active(m, 'fd00::12'), {});
  });

  it('ISC dhcpd: journal (last entry wins), inactive states, expiry, quoted strings, ia-na', () => {
    const m = parseIscLeases(fixture('dhcpd.leases'));
    assert.equal(active(m, '10.0.1.5'), undefined, 'a later released entry ends the lease');
    assert.deepEqual(active(m, '10.0.1.6'), { hostname: 'phone-renamed', mac: '00:11:22:33:44:06' });
    assert.equal(active(m, '10.0.1.7'), undefined, 'ends in the past');
    assert.ok(m.has('10.0.1.7'));
    assert.equal(active(m, '10.0.1.8'), undefined, 'free');
    assert.deepEqual(active(m, '10.0.1.9'), { hostname: 'printer', mac: '00:11:22:33:44:09' });
    assert.equal(m.get('10.0.1.9')!.expiresAt, undefined, 'ends never');
    assert.deepEqual(active(m, '10.0.1.10'), { hostname: 'epoch-host', mac: '00:11:22:33:44:0a' });
    assert.equal(m.get('10.0.1.10')!.expiresAt, 1800000000 * 1000);
    assert.equal(m.get('10.0.1.6')!.expiresAt, Date.UTC(2027, 0, 15, 11, 0, 0));
    assert.equal(active(m, '10.0.1.11'), undefined, 'abandoned');
    assert.deepEqual(active(m, '10.0.1.12'), { hostname: "Anna's iPad", mac: '00:11:22:33:44:0c' });
    const v6 = parseIscLeases(fixture('dhcpd6.leases'));
    assert.deepEqual(active(v6, 'fd00:1::5'), { hostname: 'host6.example.lan' });
    assert.equal(active(v6, 'fd00:1::6'), undefined);
    assert.equal(v6.has('fd00:2::'), false, 'prefix delegations are not hosts');
  });

  it('Kea memfile v4: header columns, escaped commas, journal, states, deletion, expiry', () => {
    const m = parseKeaLeases(fixture('kea-leases4.csv'));
    assert.deepEqual(active(m, '10.0.2.5'), { hostname: 'smith,jones.lan', mac: '00:11:22:33:55:05' });
    assert.equal(active(m, '10.0.2.6'), undefined, 'declined later');
    assert.equal(active(m, '10.0.2.7'), undefined, 'expired');
    assert.equal(active(m, '10.0.2.8'), undefined, 'deleted (valid_lifetime 0)');
    assert.deepEqual(active(m, '10.0.2.9'), { mac: '00:11:22:33:55:09' });
    assert.deepEqual(active(m, '10.0.2.10'), { hostname: 'renewed', mac: '00:11:22:33:55:0a' }, 'renewed later');
    assert.equal(active(m, '10.0.2.11'), undefined, 'released (state 3)');
    assert.equal(m.get('10.0.2.12')!.expiresAt, undefined, 'infinite lifetime');
  });

  it('Kea memfile v6: duid, optional hwaddr, prefix delegations skipped, registered kept', () => {
    const m = parseKeaLeases(fixture('kea-leases6.csv'));
    assert.deepEqual(active(m, 'fd00:3::5'), { hostname: 'kea6host.lan' });
    assert.deepEqual(active(m, 'fd00:3::6'), { hostname: 'withmac', mac: '00:11:22:33:66:06' });
    assert.equal(m.has('fd00:4::'), false);
    assert.deepEqual(active(m, 'fd00:3::7'), { hostname: 'registered' });
    assert.equal(active(m, 'fd00:3::8'), undefined);
    assert.equal(parseKeaLeases('10.0.0.1,aa:bb:cc:dd:ee:ff,,3600,1800000000,1,0,0,x,0\n').size, 0, 'no header: no columns');
  });

  it('odhcpd: v6 and v4 lines, `-` and broken names, /128 and /32 only, validity', () => {
    const m = parseOdhcpdLeases(fixture('odhcpd.leases'));
    assert.deepEqual(active(m, 'fd00:5::1a'), { hostname: 'laptop' });
    assert.deepEqual(active(m, 'fd00:6::1a'), { hostname: 'laptop' });
    assert.deepEqual(active(m, 'fd00:5::1b'), {});
    assert.deepEqual(active(m, 'fd00:5::1c'), {}, 'broken hostname');
    assert.equal(m.has('fd00:7::'), false, 'a delegated prefix');
    assert.deepEqual(active(m, '10.0.5.10'), { hostname: 'phone4', mac: '00:11:22:33:77:01' });
    assert.deepEqual(active(m, '10.0.5.11'), { mac: '00:11:22:33:77:02' });
    assert.equal(m.get('10.0.5.11')!.expiresAt, undefined, '-1 = infinite');
    assert.equal(m.has('10.0.5.12'), false, '0 = expired');
    assert.equal(active(m, '10.0.5.13'), undefined);
  });

  it('parsers survive garbage', () => {
    const junk = '\u0000\u0001 lease { { } ; "unterminated\n,,,,\n# a b\n' + 'x'.repeat(1000);
    for (const p of [parseDnsmasqLeases, parseIscLeases, parseKeaLeases, parseOdhcpdLeases]) assert.doesNotThrow(() => p(junk));
  });
});

describe('dhcp method', () => {
  let dir: string;
  const methods: DiscoveryMethod[] = [];
  before(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'codexdns-leases-'));
  });
  after(() => {
    for (const m of methods) m.close?.();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('merges every file and answers from the map', async () => {
    const files: Array<{ path: string; format: LeaseFormat }> = [
      { path: path.join(FIXTURES, 'dnsmasq.leases'), format: 'dnsmasq' },
      { path: path.join(FIXTURES, 'dhcpd.leases'), format: 'isc' },
      { path: path.join(FIXTURES, 'dhcpd6.leases'), format: 'isc' },
      { path: path.join(FIXTURES, 'kea-leases4.csv'), format: 'kea' },
      { path: path.join(FIXTURES, 'kea-leases6.csv'), format: 'kea' },
      { path: path.join(FIXTURES, 'odhcpd.leases'), format: 'odhcpd' },
    ];
    const m = createDhcp({ leases: files, now: () => NOW_MS });
    methods.push(m);
    assert.deepEqual(expectFound(await m.lookup('10.0.0.11', never())), { hostname: 'laptop', mac: 'aa:bb:cc:00:00:01', source: 'dhcp' });
    assert.deepEqual(expectFound(await m.lookup('::ffff:10.0.1.9', never())), { hostname: 'printer', mac: '00:11:22:33:44:09', source: 'dhcp' });
    assert.equal(expectFound(await m.lookup('10.0.2.5', never())).hostname, 'smith,jones.lan');
    assert.equal(expectFound(await m.lookup('FD00:1:0::5', never())).hostname, 'host6.example.lan');
    assert.equal(expectFound(await m.lookup('fd00:5::1a%br-lan', never())).hostname, 'laptop');
    expectKind(await m.lookup('10.0.1.5', never()), 'negative');
    expectKind(await m.lookup('10.0.0.14', never()), 'negative');
    expectKind(await m.lookup('10.9.9.9', never()), 'negative');
    assert.ok(m.status().every((s) => s.ok));
    // Time moves on: every finite lease expires.
    const later = createDhcp({ leases: files, now: () => 1900000000 * 1000 });
    methods.push(later);
    expectKind(await later.lookup('10.0.0.11', never()), 'negative');
    assert.equal(expectFound(await later.lookup('10.0.0.12', never())).hostname, 'nas', 'infinite lease');
  });

  it('re-reads a file replaced by rename, and keeps the last good map when it becomes unreadable', async () => {
    const file = path.join(dir, 'dnsmasq.leases');
    fs.writeFileSync(file, '1800000000 aa:bb:cc:00:00:01 10.0.0.11 before *\n');
    const m = createDhcp({ leases: [{ path: file, format: 'dnsmasq' }], now: () => NOW_MS, debounceMs: 20, pollMs: 100 });
    methods.push(m);
    assert.equal(expectFound(await m.lookup('10.0.0.11', never())).hostname, 'before');

    const tmp = path.join(dir, '.dnsmasq.leases.tmp');
    fs.writeFileSync(tmp, '1800000000 aa:bb:cc:00:00:01 10.0.0.11 after *\n1800000000 aa:bb:cc:00:00:09 10.0.0.19 newcomer *\n');
    fs.renameSync(tmp, file);
    const deadline = performance.now() + 3000;
    let name: string | undefined;
    while (performance.now() < deadline) {
      const o = await m.lookup('10.0.0.11', never());
      name = o.kind === 'found' ? o.result.hostname : undefined;
      if (name === 'after') break;
      await new Promise((r) => setTimeout(r, 25));
    }
    assert.equal(name, 'after');
    assert.equal(expectFound(await m.lookup('10.0.0.19', never())).hostname, 'newcomer');

    fs.unlinkSync(file);
    const until = performance.now() + 3000;
    while (performance.now() < until && m.status()[0]!.ok) await new Promise((r) => setTimeout(r, 25));
    assert.equal(m.status()[0]!.ok, false);
    // The last good map still answers; a miss is now a failure (the lease may be in the unreadable file).
    assert.equal(expectFound(await m.lookup('10.0.0.19', never())).hostname, 'newcomer');
    const miss = await m.lookup('10.0.0.77', never());
    expectKind(miss, 'failure');
    assert.match((miss as { error: string }).error, /ENOENT/);
  });

  it('a missing file is a failure from the start', async () => {
    const m = createDhcp({ leases: [{ path: path.join(dir, 'nope', 'x.leases'), format: 'isc' }], now: () => NOW_MS });
    methods.push(m);
    expectKind(await m.lookup('10.0.0.1', never()), 'failure');
    m.close?.();
    m.close?.();
  });
});

// ------------------------------------------------------------------------------------------------
// arp

describe('arp', () => {
  it('parses /proc/net/arp and ip neigh', () => {
    const m = parseProcArp(fixture('proc-net-arp'));
    assert.equal(m.get('192.168.1.1'), 'aa:bb:cc:dd:ee:01');
    assert.equal(m.has('192.168.1.20'), false, 'incomplete');
    assert.equal(m.has('192.168.1.21'), false, 'all zeros');
    assert.equal(m.get('192.168.1.22'), 'aa:bb:cc:dd:ee:22');
    const n = parseIpNeigh(
      [
        'fe80::1 dev eth0 lladdr 52:54:00:12:34:56 router STALE',
        'fd00::20 dev eth0 lladdr 52:54:00:AB:CD:EF REACHABLE',
        'fd00::21 dev eth0  FAILED',
        'fd00::22 dev eth0 INCOMPLETE',
        '',
      ].join('\n'),
    );
    assert.equal(n.get('fe80::1'), '52:54:00:12:34:56');
    assert.equal(n.get('fd00::20'), '52:54:00:ab:cd:ef');
    assert.equal(n.size, 2);
  });

  it('gives the MAC, negative on a miss, failure when the table cannot be read', async () => {
    const a = createArp({ procPath: path.join(FIXTURES, 'proc-net-arp'), ipNeigh: false });
    assert.deepEqual(expectFound(await a.lookup('192.168.1.1', never())), { mac: 'aa:bb:cc:dd:ee:01', source: 'arp' });
    expectKind(await a.lookup('192.168.1.20', never()), 'negative');
    expectKind(await a.lookup('fd00::20', never()), 'negative');
    a.close?.();
    const b = createArp({ procPath: path.join(FIXTURES, 'no-such-file'), ipNeigh: false });
    expectKind(await b.lookup('192.168.1.1', never()), 'failure');
    b.close?.();
  });

  it('re-reads on a miss, at most once per interval', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'codexdns-arp-'));
    const file = path.join(dir, 'arp');
    const header = 'IP address       HW type     Flags       HW address            Mask     Device\n';
    fs.writeFileSync(file, header);
    const a = createArp({ procPath: file, ipNeigh: false, missRefreshMs: 60_000 });
    await a.ready;
    fs.writeFileSync(file, header + '10.0.0.5 0x1 0x2 aa:bb:cc:dd:ee:05 * eth0\n');
    // The initial read was just now: a miss does not re-read yet.
    expectKind(await a.lookup('10.0.0.5', never()), 'negative');
    a.close?.();
    const b = createArp({ procPath: file, ipNeigh: false, missRefreshMs: 0 });
    await b.ready;
    fs.writeFileSync(file, header + '10.0.0.6 0x1 0x2 aa:bb:cc:dd:ee:06 * eth0\n');
    assert.equal(expectFound(await b.lookup('10.0.0.6', never())).mac, 'aa:bb:cc:dd:ee:06');
    b.close?.();
    fs.rmSync(dir, { recursive: true, force: true });
  });
});

// ------------------------------------------------------------------------------------------------
// vendor

describe('vendor', () => {
  it('classifies MACs: randomised → private address, multicast → undefined', async () => {
    assert.equal(classifyMac('02:11:22:33:44:55'), 'local');
    assert.equal(classifyMac('da:a1:19:00:00:01'), 'local');
    assert.equal(classifyMac('01:00:5e:00:00:fb'), 'multicast');
    assert.equal(classifyMac('00:11:22:33:44:55'), 'universal');
    assert.equal(classifyMac('zz'), undefined);
    assert.equal(await vendorOf('da:a1:19:00:00:01'), PRIVATE_ADDRESS);
    assert.equal(vendorOfSync('02:00:00:00:00:01'), PRIVATE_ADDRESS);
    assert.equal(await vendorOf('33:33:00:00:00:fb'), undefined);
    assert.equal(await vendorOf('bogus'), undefined);
  });

  it('matches the longest registry prefix (MA-S, MA-M, MA-L)', () => {
    const t = buildVendorTable(
      [
        '{',
        ' "001122": "Big Vendor\\nStreet 1\\nTown",',
        ' "0011223": "Medium Vendor\\nStreet 2",',
        ' "001122334": "Small \\"Quoted\\" Vendor\\nStreet 3",',
        ' "ABCDEF": "Caf\\u00e9 Devices"',
        '}',
      ].join('\n'),
    );
    assert.equal(t.lookup('00:11:22:00:00:00'), 'Big Vendor');
    assert.equal(t.lookup('00:11:22:30:00:00'), 'Medium Vendor');
    assert.equal(t.lookup('00:11:22:33:40:00'), 'Small "Quoted" Vendor');
    assert.equal(t.lookup('ab:cd:ef:01:02:03'), 'Caf\u00e9 Devices');
    assert.equal(t.lookup('00:00:01:00:00:00'), undefined);
    assert.equal(t.size, 4);
  });

  it('loads the IEEE table lazily from oui-data', async () => {
    assert.equal(await vendorOf('3c:22:fb:12:34:56'), 'Apple, Inc.');
    assert.equal(vendorOfSync('00:00:00:12:34:56'), 'XEROX CORPORATION');
  });
});
