/**
 * clientnames in real servers: discovery names clients on 127.x.y.z addresses (a NetBIOS responder, an mDNS
 * responder, PTR answers from a fake upstream, a dnsmasq lease file — the discovery tests' responders), then
 * `dig` resolves their names and reverse addresses through codexdns. Conflicts, renames, moves, clients still
 * discovering and retention are driven through clienttrack's own `applyDiscovery` hook (what discovery calls),
 * so the path is the real one: clienttrack → identified → the table → the answer.
 *
 * 127.x is loopback, not a private reverse zone (RFC 6303), so the servers here add `127.in-addr.arpa` to
 * `reverse_zones`; `hosts:` entries with 192.168.x addresses show the default private zones.
 *
 * Network rule: every packet goes to a 127.0.0.0/8 address; nothing binds or sends to port 53; no multicast.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import * as dgram from 'node:dgram';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as os from 'node:os';
import * as path from 'node:path';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { startFakeUpstream, startServer, type FakeUpstream, type TestServer } from '../testing';
import { definePlugin } from '../core/plugin';
import { Type } from '../config/types';
import type { ClienttrackHooks } from '../plugins/clienttrack/hooks';
import { buildNbstatResponse, parseNbstatRequest } from '../plugins/discovery/methods/netbios';
import { reverseName } from '../plugins/clientnames/labels';
import { httpListeners } from '../plugins/metrics';
import { bindUdp, randomOctet, sleep, waitFor, startMdnsResponder } from './helpers/net';
import { catalogWith } from './helpers/catalog';

const run = promisify(execFile);

/** `dig` as a client (asynchronous: the server under test runs in this process's event loop). */
async function dig(port: number, ...args: string[]): Promise<string> {
  return (await run('dig', ['@127.0.0.1', '-p', String(port), '+time=2', '+tries=1', ...args], { encoding: 'utf8' })).stdout;
}

/** dig's `+short` answer lines. */
async function short(port: number, ...args: string[]): Promise<string[]> {
  return (await dig(port, '+short', ...args)).split('\n').filter((l) => l !== '');
}

/** Gives the tests clienttrack's hooks: `applyDiscovery` is what discovery calls with a result. */
const namers = new Map<string, ClienttrackHooks>();
const namer = definePlugin({
  name: 'namer',
  options: Type.Object({ id: Type.String() }),
  setup(api, o) {
    const hooks = api.hooksOf('clienttrack');
    if (hooks === undefined) throw new Error('namer needs clienttrack');
    namers.set(o.id, hooks);
  },
});
const catalog = catalogWith(namer);

function getJson(port: number, p: string): Promise<unknown> {
  return new Promise((resolve, reject) => {
    http
      .get({ host: '127.0.0.1', port, path: p }, (res) => {
        let body = '';
        res.on('data', (d) => (body += d));
        res.on('end', () => {
          try {
            resolve(JSON.parse(body));
          } catch (err) {
            reject(err);
          }
        });
      })
      .on('error', reject);
  });
}

/** The data of the first answer record (as dns-packet decodes it), or undefined. */
function dataOf(r: { answers?: unknown[] }): unknown {
  return (r.answers?.[0] as { data?: unknown } | undefined)?.data;
}

async function metricValue(s: TestServer, name: string, labels: Record<string, string>): Promise<number> {
  const m = s.server.metrics.registry.getSingleMetric(name);
  if (m === undefined) return NaN;
  const got = await m.get();
  const v = got.values.find((x) => Object.entries(labels).every(([k, want]) => String(x.labels[k]) === want));
  return v === undefined ? 0 : v.value;
}

describe('clientnames: names from discovery, resolved by dig', () => {
  let up: FakeUpstream;
  let nb: dgram.Socket;
  let mdns: dgram.Socket;
  let nbPort = 137;
  let mdnsPort = 5353;
  const rdnsIp = `127.0.60.${randomOctet()}`;
  const nbIp = `127.0.37.${randomOctet()}`;
  const mdnsIp = `127.0.53.${randomOctet()}`;
  const leaseIp = '127.10.0.11';
  let s: TestServer;
  let httpPort = 0;

  before(async () => {
    up = await startFakeUpstream({ records: { '*.test': { A: '192.0.2.1' } } });
    up.set(reverseName(rdnsIp), 'PTR', ['pc-rdns.lan']);
    ({ socket: nb, port: nbPort } = await bindUdp(nbIp, 137));
    nb.on('message', (msg, rinfo) => {
      const id = parseNbstatRequest(msg);
      if (id === undefined) return;
      nb.send(buildNbstatResponse(id, [{ name: 'WORKGROUP', group: true }, { name: 'DESKTOP-7Q', suffix: 0x00 }], 'D8:3A:DD:01:02:03'), rinfo.port, rinfo.address);
    });
    ({ socket: mdns, port: mdnsPort } = await startMdnsResponder(mdnsIp, "Anna's Printer.local"));
    const leases = `2100000000 aa:bb:cc:00:00:01 ${leaseIp} Laptop_Kitchen 01:aa:bb:cc:00:00:01\n`;
    s = await startServer(
      `
servers:
  - listen: [udp://127.0.0.1:0, tcp://127.0.0.1:0]
    plugins:
      - acl: { allow: [127.0.0.0/8] }
      - metrics: { listen: 127.0.0.1:0 }
      - cache: {}
      - clienttrack: { flush: 100ms }
      - discovery:
          methods: [dhcp, rdns, netbios, mdns]
          timeout: 500ms
          rdns: { resolvers: ["${up.address}"] }
          netbios: { port: ${nbPort} }
          mdns: { port: ${mdnsPort} }
          dhcp: { leases: [./leases/dnsmasq.leases] }
      - clientnames:
          zones: [home.arpa., lan.]
          reverse_zones: [127.in-addr.arpa, 168.192.in-addr.arpa, d.f.ip6.arpa]
          negative_ttl: 30
          hosts: { nas: [192.168.1.10, "fd00::10"], printer2: 127.0.90.9 }
      # private: the reverse zones clientnames hands down go to the upstream (forward would answer them NXDOMAIN itself).
      - forward: { to: ["${up.address}"], private: ["${up.address}"] }
storage: { client: sqlite3, connection: { filename: ./clients.sqlite } }
`,
      { files: { 'leases/dnsmasq.leases': leases } },
    );
    httpPort = httpListeners(s.server.metrics.registry)[0].port;
  });

  after(async () => {
    await s?.stop();
    await up.stop();
    nb.close();
    mdns.close();
  });

  test('each client queries once; discovery names it (rdns, NetBIOS, mDNS, DHCP lease); dig resolves the names in both zones', async (t) => {
    t.diagnostic(`rdns ${rdnsIp}, NetBIOS ${nbIp}:${nbPort}, mDNS ${mdnsIp}:${mdnsPort}, lease ${leaseIp}, upstream ${up.address}`);
    await sleep(200);
    for (const ip of [rdnsIp, nbIp, mdnsIp, leaseIp]) assert.equal((await s.query('www.example.test', 'A', { from: ip })).rcode, 'NOERROR');
    const want: Record<string, string> = { 'pc-rdns': rdnsIp, 'desktop-7q': nbIp, 'annas-printer': mdnsIp, 'laptop-kitchen': leaseIp };
    // Polled through the API's dnsName (the table), not by asking: the cache would keep an early NXDOMAIN for
    // negative_ttl.
    await waitFor('every client named', async () => {
      const body = (await getJson(httpPort, '/api/clients?limit=1000')) as { clients?: Array<Record<string, unknown>> };
      const names = new Map((body.clients ?? []).map((c) => [c.ip, c.dnsName]));
      return Object.entries(want).every(([label, ip]) => names.get(ip) === `${label}.home.arpa`);
    }, 20_000);
    for (const [label, ip] of Object.entries(want)) {
      const out = await dig(s.port, `${label}.home.arpa`, 'A');
      assert.match(out, /status: NOERROR/);
      assert.match(out, /flags: qr aa rd ra;/, 'authoritative');
      assert.match(out, new RegExp(`${label}\\.home\\.arpa\\.\\s+60\\s+IN\\s+A\\s+${ip.replace(/\./g, '\\.')}`));
      assert.deepEqual(await short(s.port, `${label.toUpperCase()}.LAN`, 'A'), [ip], 'letter case ignored, second zone');
    }
  });

  test('dig -x: the reverse address of every named client, in the first zone', async () => {
    for (const [ip, name] of [
      [rdnsIp, 'pc-rdns.home.arpa.'],
      [nbIp, 'desktop-7q.home.arpa.'],
      [mdnsIp, 'annas-printer.home.arpa.'],
      [leaseIp, 'laptop-kitchen.home.arpa.'],
    ]) {
      await waitFor(`PTR of ${ip}`, async () => (await s.query(reverseName(ip), 'PTR')).answers?.length === 1);
      const out = await dig(s.port, '-x', ip);
      assert.match(out, /status: NOERROR/);
      assert.match(out, new RegExp(`PTR\\s+${name.replace(/\./g, '\\.')}`), out);
    }
  });

  test('a known name without a record of the type asked: NODATA with the SOA', async () => {
    const out = await dig(s.port, 'desktop-7q.home.arpa', 'AAAA');
    assert.match(out, /status: NOERROR/);
    assert.match(out, /ANSWER: 0, AUTHORITY: 1/);
    assert.match(out, /home\.arpa\.\s+30\s+IN\s+SOA\s+home\.arpa\. hostmaster\.home\.arpa\. \d+ 3600 600 86400 30/);
    assert.match(await dig(s.port, 'pc-rdns.home.arpa', 'MX'), /status: NOERROR[\s\S]*ANSWER: 0, AUTHORITY: 1/);
  });

  test('an unknown name in the zone: NXDOMAIN with the SOA (minimum = negative_ttl), kept by the cache', async () => {
    const before = await metricValue(s, 'codexdns_clientnames_answers_total', { result: 'nxdomain' });
    const out = await dig(s.port, 'no-such-device.home.arpa', 'A');
    assert.match(out, /status: NXDOMAIN/);
    assert.match(out, /flags: qr aa rd ra;/);
    assert.match(out, /AUTHORITY SECTION:\nhome\.arpa\.\s+30\s+IN\s+SOA\s+home\.arpa\. hostmaster\.home\.arpa\. \d+ 3600 600 86400 30/);
    const hits = await metricValue(s, 'codexdns_cache_hits_total', { type: 'denial' });
    const again = await dig(s.port, 'no-such-device.home.arpa', 'A');
    assert.match(again, /status: NXDOMAIN/);
    assert.match(again, /home\.arpa\.\s+(30|29|28)\s+IN\s+SOA/);
    assert.equal(await metricValue(s, 'codexdns_cache_hits_total', { type: 'denial' }), hits + 1, 'the second answer came from the cache');
    assert.equal(await metricValue(s, 'codexdns_clientnames_answers_total', { result: 'nxdomain' }), before + 1);
    assert.match(await dig(s.port, 'a.b.home.arpa', 'A'), /status: NXDOMAIN/);
    assert.match(await dig(s.port, 'home.arpa', 'SOA'), /ANSWER: 1[\s\S]*IN\s+SOA\s+home\.arpa\./);
    assert.equal(up.count('no-such-device.home.arpa'), 0, 'never forwarded');
  });

  test('hosts: entries answer A, AAAA and PTR (the default private zones for their 192.168 address)', async () => {
    assert.deepEqual(await short(s.port, 'nas.home.arpa', 'A'), ['192.168.1.10']);
    assert.deepEqual(await short(s.port, 'nas.lan', 'AAAA'), ['fd00::10']);
    assert.deepEqual(await short(s.port, '-x', '192.168.1.10'), ['nas.home.arpa.']);
    assert.deepEqual(await short(s.port, '-x', 'fd00::10'), ['nas.home.arpa.']);
    assert.deepEqual(await short(s.port, '-x', '127.0.90.9'), ['printer2.home.arpa.']);
  });

  test('a reverse question about an address without a name goes on down the chain', async () => {
    const ip = `127.0.99.${randomOctet()}`;
    const before = up.count(reverseName(ip), 'PTR');
    const passed = await metricValue(s, 'codexdns_clientnames_answers_total', { result: 'passed' });
    assert.match(await dig(s.port, '-x', ip), /status: NXDOMAIN/);
    assert.equal(up.count(reverseName(ip), 'PTR'), before + 1, 'forwarded to the (private) upstream');
    assert.equal(await metricValue(s, 'codexdns_clientnames_answers_total', { result: 'passed' }), passed + 1);
    up.set(reverseName(`127.0.98.7`), 'PTR', 'router-knows.lan');
    assert.deepEqual(await short(s.port, '-x', '127.0.98.7'), ['router-knows.lan.'], 'the answer from below reaches the client');
    // Outside the reverse zones served: not ours either.
    up.set(reverseName('192.0.2.7'), 'PTR', 'far.example');
    assert.deepEqual(await short(s.port, '-x', '192.0.2.7'), ['far.example.']);
  });

  test('the API gives each client its dnsName (the name in the first zone), null when it has none', async () => {
    // A client every method knows nothing about: discovered, without a name.
    const nameless = `127.0.97.${randomOctet()}`;
    assert.equal((await s.query('www.example.test', 'A', { from: nameless })).rcode, 'NOERROR');
    await waitFor('the nameless client discovered and written', async () => {
      const body = (await getJson(httpPort, '/api/clients?limit=1000')) as { clients?: Array<Record<string, unknown>> };
      return (body.clients ?? []).some((c) => c.ip === nameless && c.discovering === false);
    }, 20_000);
    const body = (await getJson(httpPort, '/api/clients?limit=1000')) as { clients: Array<Record<string, unknown>> };
    const byIp = new Map(body.clients.map((c) => [c.ip, c.dnsName]));
    assert.equal(byIp.get(rdnsIp), 'pc-rdns.home.arpa');
    assert.equal(byIp.get(nbIp), 'desktop-7q.home.arpa');
    assert.equal(byIp.get(leaseIp), 'laptop-kitchen.home.arpa');
    assert.equal(byIp.get(nameless), null, 'a client without a name');
    const one = (await getJson(httpPort, `/api/clients/${mdnsIp}`)) as Record<string, unknown>;
    assert.equal(one.dnsName, 'annas-printer.home.arpa');
  });
});

describe('clientnames: conflicts, renames, moves, discovering, retention, restart', () => {
  let up: FakeUpstream;
  let dir: string;
  before(async () => {
    up = await startFakeUpstream({ records: { '*.test': { A: '192.0.2.1' } } });
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'codexdns-names-'));
  });
  after(async () => {
    await up.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  const corefile = (id: string, db: string, clienttrack = '{ flush: 100ms }'): string => `
servers:
  - listen: [udp://127.0.0.1:0, tcp://127.0.0.1:0]
    plugins:
      - acl: { allow: [127.0.0.0/8] }
      - clienttrack: ${clienttrack}
      - namer: { id: ${id} }
      - clientnames: { reverse_zones: [127.in-addr.arpa], ttl: 5 }
      - forward: { to: ["${up.address}"] }
storage: { client: sqlite3, connection: { filename: ${JSON.stringify(path.join(dir, db))} } }
`;

  /** The A answers for NAME.home.arpa (empty for NXDOMAIN/NODATA). */
  const addrs = async (s: TestServer, label: string): Promise<string[]> => short(s.port, `${label}.home.arpa`, 'A');
  const ptr = async (s: TestServer, ip: string): Promise<string[]> => short(s.port, '-x', ip);

  test('two devices with one name, a rename, a moved device, a phone with a new private MAC, a client still discovering', async () => {
    const s = await startServer(corefile('conflicts', 'conflicts.sqlite'), { catalog });
    try {
      await waitFor('namer', () => namers.has('conflicts'));
      const ct = namers.get('conflicts')!;
      await waitFor('stored names loaded', async () => (await metricValue(s, 'codexdns_clientnames_loaded', {})) === 1);

      // Learned → answerable within a second (the table is updated when clienttrack takes the update).
      const t0 = Date.now();
      ct.applyDiscovery.call({ ip: '127.0.81.1', hostname: 'tv', method: 'netbios', done: true });
      await waitFor('tv answers', async () => dataOf(await s.query('tv.home.arpa', 'A')) === '127.0.81.1', 1000);
      assert.ok(Date.now() - t0 < 1000);
      assert.deepEqual(await addrs(s, 'tv'), ['127.0.81.1']);

      // A second device says it is "TV": the most recently identified holds the name; the first stops answering.
      await sleep(5);
      ct.applyDiscovery.call({ ip: '127.0.81.2', hostname: 'TV', method: 'mdns', done: true });
      assert.deepEqual(await addrs(s, 'tv'), ['127.0.81.2']);
      assert.deepEqual(await ptr(s, '127.0.81.2'), ['tv.home.arpa.']);
      assert.deepEqual(await ptr(s, '127.0.81.1'), [], 'the loser has no name: its PTR goes to the upstream (NXDOMAIN)');

      // The winner is renamed: the new name answers, and the first device takes "tv" back.
      await sleep(5);
      ct.applyDiscovery.call({ ip: '127.0.81.2', hostname: 'big-tv', method: 'mdns', done: true });
      assert.deepEqual(await addrs(s, 'big-tv'), ['127.0.81.2']);
      assert.deepEqual(await addrs(s, 'tv'), ['127.0.81.1']);
      assert.deepEqual(await ptr(s, '127.0.81.2'), ['big-tv.home.arpa.']);

      // A device that changed address: the old address stops answering, A and PTR.
      ct.applyDiscovery.call({ ip: '127.0.82.1', hostname: 'nas', mac: '00:11:22:33:44:55', done: true });
      assert.deepEqual(await addrs(s, 'nas'), ['127.0.82.1']);
      await sleep(5);
      ct.applyDiscovery.call({ ip: '127.0.82.2', hostname: 'nas', mac: '00:11:22:33:44:55', done: true });
      assert.deepEqual(await addrs(s, 'nas'), ['127.0.82.2']);
      assert.deepEqual(await ptr(s, '127.0.82.1'), []);
      assert.deepEqual(await ptr(s, '127.0.82.2'), ['nas.home.arpa.']);

      // A phone with a private MAC that changes every day (and so a new address): one name, on its newest address.
      const macs = ['da:a1:19:00:00:01', '3e:5c:01:00:00:02', '8a:77:42:00:00:03'];
      for (let day = 0; day < 3; day++) {
        await sleep(5);
        ct.applyDiscovery.call({ ip: `127.0.83.${day + 1}`, hostname: 'Pixel_7', mac: macs[day], vendor: 'private address', method: 'dhcp', done: true });
        assert.deepEqual(await addrs(s, 'pixel-7'), [`127.0.83.${day + 1}`]);
      }
      assert.match(await dig(s.port, 'pixel-7-2.home.arpa', 'A'), /status: NXDOMAIN/, 'no numbered names');

      // Still discovering: a name given now is not answered until the discovery ends.
      ct.applyDiscovery.call({ ip: '127.0.84.1', hostname: 'camera', mac: 'aa:bb:cc:00:84:01', done: false });
      assert.match(await dig(s.port, 'camera.home.arpa', 'A'), /status: NXDOMAIN/);
      assert.deepEqual(await ptr(s, '127.0.84.1'), []);
      ct.applyDiscovery.call({ ip: '127.0.84.1', done: true });
      assert.deepEqual(await addrs(s, 'camera'), ['127.0.84.1']);

      // The metrics counted it all.
      assert.ok((await metricValue(s, 'codexdns_clientnames_learned_total', {})) >= 10);
      assert.equal(await metricValue(s, 'codexdns_clientnames_capacity', {}), 10000);
      assert.ok((await metricValue(s, 'codexdns_clientnames_answers_total', { result: 'passed' })) >= 3);
    } finally {
      await s.stop();
    }
  });

  test('stored names are loaded at start (no discovery needed), a client still discovering in the database waits', async () => {
    const db = 'restart.sqlite';
    const first = await startServer(corefile('restart-1', db), { catalog });
    try {
      await waitFor('namer', () => namers.has('restart-1'));
      const ct = namers.get('restart-1')!;
      ct.applyDiscovery.call({ ip: '127.0.86.1', hostname: 'fridge', done: true });
      ct.applyDiscovery.call({ ip: '127.0.86.2', hostname: 'doorbell', done: false });
      assert.deepEqual(await addrs(first, 'fridge'), ['127.0.86.1']);
    } finally {
      await first.stop(); // writes what is pending
    }
    const second = await startServer(corefile('restart-2', db), { catalog });
    try {
      await waitFor('loaded', async () => (await metricValue(second, 'codexdns_clientnames_loaded', {})) === 1);
      assert.deepEqual(await addrs(second, 'fridge'), ['127.0.86.1']);
      assert.deepEqual(await ptr(second, '127.0.86.1'), ['fridge.home.arpa.']);
      assert.match(await dig(second.port, 'doorbell.home.arpa', 'A'), /status: NXDOMAIN/, 'still discovering in the database');
      assert.ok(second.logs.some((l) => /client names loaded/.test(l)));
    } finally {
      await second.stop();
    }
  });

  test('reloads: changed options take over the serving table (names not yet written answer on), unchanged ones keep it', async () => {
    // flush: 1h — nothing reaches the database, so whatever answers after the reload came from the table.
    const text = (ttl: number, id: string): string => corefile(id, 'reload.sqlite', '{ flush: 1h }').replace('ttl: 5', `ttl: ${ttl}`);
    const s = await startServer(text(5, 'reload-1'), { catalog });
    try {
      await waitFor('namer', () => namers.has('reload-1'));
      namers.get('reload-1')!.applyDiscovery.call({ ip: '127.0.87.1', hostname: 'speaker', done: true });
      assert.match(await dig(s.port, 'speaker.home.arpa', 'A'), /speaker\.home\.arpa\.\s+5\s+IN\s+A\s+127\.0\.87\.1/);

      assert.equal((await s.reload(text(7, 'reload-2'))).ok, true);
      assert.match(await dig(s.port, 'speaker.home.arpa', 'A'), /speaker\.home\.arpa\.\s+7\s+IN\s+A\s+127\.0\.87\.1/, 'taken over, answered with the new ttl');
      namers.get('reload-2')!.applyDiscovery.call({ ip: '127.0.87.2', hostname: 'lamp', done: true });
      assert.deepEqual(await addrs(s, 'lamp'), ['127.0.87.2'], 'the new chain hears clienttrack');

      // A failed reload (a bad hosts: key) changes nothing.
      const bad = text(7, 'reload-3').replace('ttl: 7 }', 'ttl: 7, hosts: { "bad key": 127.0.0.9 } }');
      assert.equal((await s.reload(bad)).ok, false);
      namers.get('reload-2')!.applyDiscovery.call({ ip: '127.0.87.3', hostname: 'kettle', done: true });
      assert.deepEqual(await addrs(s, 'kettle'), ['127.0.87.3']);

      assert.equal((await s.reload(text(7, 'reload-4'))).ok, true);
      assert.deepEqual(await addrs(s, 'speaker'), ['127.0.87.1']);
      assert.deepEqual(await addrs(s, 'kettle'), ['127.0.87.3']);
      assert.equal(await metricValue(s, 'codexdns_clientnames_devices', { server: 'block0' }), 3);
    } finally {
      await s.stop();
    }
  });

  test('a client removed by retention stops answering; a client still seen keeps its name', async () => {
    const s = await startServer(corefile('retention', 'retention.sqlite', '{ flush: 100ms, retention: 2s, prune_interval: 300ms }'), { catalog });
    try {
      await waitFor('namer', () => namers.has('retention'));
      const ct = namers.get('retention')!;
      await waitFor('index loaded', async () => (await metricValue(s, 'codexdns_clientnames_loaded', {})) === 1);
      for (const ip of ['127.0.85.1', '127.0.85.2']) assert.equal((await s.query('www.example.test', 'A', { from: ip })).rcode, 'NOERROR');
      ct.applyDiscovery.call({ ip: '127.0.85.1', hostname: 'old-console', done: true });
      ct.applyDiscovery.call({ ip: '127.0.85.2', hostname: 'busy-laptop', done: true });
      assert.deepEqual(await addrs(s, 'old-console'), ['127.0.85.1']);
      // Only the laptop keeps asking; bounded: at most 40 rounds of 250 ms.
      let gone = false;
      for (let i = 0; i < 40 && !gone; i++) {
        await s.query('www.example.test', 'A', { from: '127.0.85.2' });
        await sleep(250);
        gone = (await s.query('old-console.home.arpa', 'A')).rcode === 'NXDOMAIN';
      }
      assert.ok(gone, 'the console was forgotten');
      assert.deepEqual(await ptr(s, '127.0.85.1'), []);
      assert.deepEqual(await addrs(s, 'busy-laptop'), ['127.0.85.2']);
      assert.ok((await metricValue(s, 'codexdns_clientnames_forgotten_total', {})) >= 1);
    } finally {
      await s.stop();
    }
  });
});
