// clientnames on its own: hostnames to labels, reverse names, the name table's conflict rules, options and the
// README. The server tests (discovery responders, dig) are in clientnames-server.test.ts.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { parseConfig } from '../config/load';
import { startServer } from '../testing';
import { ConfigError, formatIssue } from '../config/errors';
import { builtinCatalog } from '../server/catalog';
import { options as ClientnamesOptions } from '../plugins/clientnames';
import { NameTable } from '../plugins/clientnames/nameTable';
import { PRIVATE_REVERSE_ZONES, addressOfReverse, hostLabel, reverseName, zoneOf } from '../plugins/clientnames/labels';
import type { ClientIdentity } from '../plugins/clienttrack/hooks';

const README = path.resolve(__dirname, '../../plugins/clientnames/README.md');

describe('clientnames: labels', () => {
  test('hostnames become host labels: case, .local, dotted names, spaces, underscores, apostrophes, punctuation', () => {
    const cases: Array<[string, string | undefined]> = [
      ['DESKTOP-7Q', 'desktop-7q'],
      ['printer.local', 'printer'],
      ['Printer.LOCAL.', 'printer'],
      ['pc-rdns.lan', 'pc-rdns'],
      ['nas.fritz.box', 'nas'],
      ['smith,jones.lan', 'smith-jones'],
      ['Living Room TV', 'living-room-tv'],
      ['my_laptop', 'my-laptop'],
      ["Anna's iPhone", 'annas-iphone'],
      ['Anna\u2019s iPad', 'annas-ipad'],
      ['  --weird__name--  ', 'weird-name'],
      ['tv (2)', 'tv-2'],
      ['📱 Phone', 'phone'],
      ['', undefined],
      ['---', undefined],
      ['.hidden', undefined],
      ['📱', undefined],
    ];
    for (const [input, want] of cases) assert.equal(hostLabel(input), want, JSON.stringify(input));
  });

  test('letters outside ASCII are written in punycode; labels longer than 63 are cut', () => {
    assert.equal(hostLabel('Küche'), 'xn--kche-0ra');
    assert.equal(hostLabel('Café Pi'), hostLabel('café-pi'));
    assert.match(hostLabel('Café Pi')!, /^xn--/);
    assert.equal(hostLabel('日本'), 'xn--wgv71a');
    const long = hostLabel('a'.repeat(62) + '-b-c');
    assert.equal(long, 'a'.repeat(62));
    assert.ok(hostLabel('x'.repeat(100))!.length === 63);
  });

  test('reverse names both ways, zone matching on label boundaries', () => {
    assert.equal(reverseName('192.168.1.10'), '10.1.168.192.in-addr.arpa');
    assert.equal(addressOfReverse('10.1.168.192.in-addr.arpa'), '192.168.1.10');
    const v6 = reverseName('fd00::10');
    assert.ok(v6.endsWith('.d.f.ip6.arpa'));
    assert.equal(addressOfReverse(v6), 'fd00::10');
    assert.equal(addressOfReverse('1.168.192.in-addr.arpa'), undefined, 'not a whole address');
    assert.equal(addressOfReverse('300.1.168.192.in-addr.arpa'), undefined);
    assert.equal(zoneOf('10.1.168.192.in-addr.arpa', PRIVATE_REVERSE_ZONES), '168.192.in-addr.arpa');
    assert.equal(zoneOf('1.0.16.172.in-addr.arpa', PRIVATE_REVERSE_ZONES), '16.172.in-addr.arpa');
    assert.equal(zoneOf('1.0.32.172.in-addr.arpa', PRIVATE_REVERSE_ZONES), undefined, '172.32/16 is public');
    assert.equal(zoneOf('8.8.8.8.in-addr.arpa', PRIVATE_REVERSE_ZONES), undefined);
    assert.equal(zoneOf(reverseName('fe80::1'), PRIVATE_REVERSE_ZONES), '8.e.f.ip6.arpa');
    assert.equal(zoneOf(reverseName('2001:db8::1'), PRIVATE_REVERSE_ZONES), undefined);
    assert.equal(zoneOf('xhome.arpa', ['home.arpa']), undefined);
    assert.equal(zoneOf('nas.home.arpa', ['home.arpa']), 'home.arpa');
  });
});

const id = (ip: string, hostname: string | undefined, at: number, extra: Partial<ClientIdentity> = {}): ClientIdentity => ({
  ip,
  ...(hostname !== undefined ? { hostname } : {}),
  discovering: false,
  at,
  ...extra,
});

describe('clientnames: the name table', () => {
  test('two devices with one name: the most recently identified holds it; the other answers nothing; it takes the name back when the holder is forgotten', () => {
    const t = new NameTable(100);
    t.apply(id('192.168.1.10', 'tv', 1000));
    t.apply(id('192.168.1.11', 'TV', 2000));
    assert.deepEqual(t.lookup('tv'), { a: ['192.168.1.11'], aaaa: [] });
    assert.deepEqual(t.labelsOf('192.168.1.11'), ['tv']);
    assert.equal(t.labelsOf('192.168.1.10'), undefined, 'the loser has no PTR');
    // The first one is identified again (a refresh): it wins now.
    t.apply(id('192.168.1.10', 'tv', 3000));
    assert.deepEqual(t.lookup('tv')?.a, ['192.168.1.10']);
    t.forget(['192.168.1.10']);
    assert.deepEqual(t.lookup('tv')?.a, ['192.168.1.11'], 'the other takes it back');
    t.forget(['192.168.1.11']);
    assert.equal(t.lookup('tv'), undefined);
    assert.equal(t.stats.forgotten, 2);
  });

  test('ties go to the lower address, whatever the arrival order', () => {
    const a = new NameTable(10);
    a.apply(id('10.0.0.2', 'x', 5));
    a.apply(id('10.0.0.1', 'x', 5));
    const b = new NameTable(10);
    b.apply(id('10.0.0.1', 'x', 5));
    b.apply(id('10.0.0.2', 'x', 5));
    assert.deepEqual(a.lookup('x'), b.lookup('x'));
    assert.deepEqual(a.lookup('x')?.a, ['10.0.0.1']);
  });

  test('a device that changed address: the new one answers, the old one stops (A and PTR)', () => {
    const t = new NameTable(10);
    t.apply(id('192.168.1.20', 'nas', 1000, { mac: '00:11:22:33:44:55' }));
    t.apply(id('192.168.1.21', 'nas', 2000, { mac: '00:11:22:33:44:55' }));
    assert.deepEqual(t.lookup('nas')?.a, ['192.168.1.21']);
    assert.equal(t.labelsOf('192.168.1.20'), undefined);
  });

  test('randomised MACs: a phone with a new private MAC and address each day keeps one name', () => {
    const t = new NameTable(10);
    t.apply(id('192.168.1.50', 'pixel-7', 1000, { mac: '9a:11:22:33:44:01' }));
    t.apply(id('192.168.1.51', 'pixel-7', 2000, { mac: 'd6:55:66:77:88:02' }));
    t.apply(id('192.168.1.52', 'Pixel 7', 3000, { mac: '3e:aa:bb:cc:dd:03' }));
    assert.deepEqual(t.lookup('pixel-7'), { a: ['192.168.1.52'], aaaa: [] });
    assert.equal(t.lookup('pixel-7-2'), undefined, 'no numbered names');
  });

  test('IPv4 and IPv6 are settled separately: a dual-stack device answers both', () => {
    const t = new NameTable(10);
    t.apply(id('192.168.1.30', 'laptop', 1000));
    t.apply(id('fd00::30', 'laptop', 2000));
    t.apply(id('::ffff:192.168.1.31', 'other', 2000));
    assert.deepEqual(t.lookup('laptop'), { a: ['192.168.1.30'], aaaa: ['fd00::30'] });
    assert.deepEqual(t.labelsOf('fd00::30'), ['laptop']);
    assert.deepEqual(t.lookup('other')?.a, ['192.168.1.31'], 'IPv4-mapped addresses are IPv4');
  });

  test('a client still discovering claims nothing until its discovery ends', () => {
    const t = new NameTable(10);
    t.load([id('192.168.1.40', 'printer', 1000, { discovering: true })]);
    assert.equal(t.lookup('printer'), undefined);
    assert.equal(t.labelsOf('192.168.1.40'), undefined);
    // The end of the discovery, without a new name: the stored one stands.
    t.apply({ ip: '192.168.1.40', discovering: false, at: 2000 });
    assert.deepEqual(t.lookup('printer')?.a, ['192.168.1.40']);
  });

  test('a rename moves the name: the old one stops at once; a name that normalises to nothing removes it', () => {
    const t = new NameTable(10);
    t.apply(id('192.168.1.60', 'old-name', 1000));
    t.apply(id('192.168.1.60', 'new-name', 2000));
    assert.equal(t.lookup('old-name'), undefined);
    assert.deepEqual(t.lookup('new-name')?.a, ['192.168.1.60']);
    t.apply(id('192.168.1.60', '???', 3000));
    assert.equal(t.lookup('new-name'), undefined);
    assert.equal(t.labelsOf('192.168.1.60'), undefined);
  });

  test('an identity without a name for an unknown address is not kept; a MAC alone keeps the stored name', () => {
    const t = new NameTable(10);
    t.apply({ ip: '192.168.1.70', mac: 'aa:bb:cc:dd:ee:ff', discovering: false, at: 1 });
    assert.equal(t.size, 0);
    t.apply(id('192.168.1.70', 'cam', 2));
    t.apply({ ip: '192.168.1.70', mac: 'aa:bb:cc:dd:ee:ff', discovering: false, at: 3 });
    assert.deepEqual(t.lookup('cam')?.a, ['192.168.1.70']);
    t.apply(id('not an address', 'x', 4));
    assert.equal(t.stats.invalid, 1);
  });

  test('bounded by max_names: the least recently identified is evicted and counted', () => {
    const t = new NameTable(3);
    for (let i = 1; i <= 5; i++) t.apply(id(`10.0.0.${i}`, `dev${i}`, i));
    assert.equal(t.size, 3);
    assert.equal(t.stats.evicted, 2);
    assert.equal(t.lookup('dev1'), undefined);
    assert.deepEqual(t.lookup('dev5')?.a, ['10.0.0.5']);
    // Identified again: moves to the newest end.
    t.apply(id('10.0.0.3', 'dev3', 10));
    t.apply(id('10.0.0.6', 'dev6', 11));
    assert.ok(t.lookup('dev3'));
    assert.equal(t.lookup('dev4'), undefined);
  });

  test('the load keeps what was learned live (newer), and the live devices stay the last to be evicted', () => {
    const t = new NameTable(3);
    t.apply(id('10.0.0.1', 'renamed', 5000));
    // Most recent first, as loadIdentities returns them.
    t.load([id('10.0.0.1', 'stale-name', 4000), id('10.0.0.2', 'b', 3000), id('10.0.0.3', 'c', 2000), id('10.0.0.4', 'd', 1000)]);
    assert.equal(t.loaded, true);
    assert.deepEqual(t.lookup('renamed')?.a, ['10.0.0.1']);
    assert.equal(t.lookup('stale-name'), undefined);
    assert.equal(t.size, 3);
    assert.equal(t.lookup('d'), undefined, 'the oldest loaded one went');
    assert.ok(t.lookup('b') && t.lookup('c'));
  });

  test('static entries beat discovered devices and answer PTR first', () => {
    const t = new NameTable(10);
    t.apply(id('192.168.1.80', 'nas', 1000));
    t.apply(id('192.168.1.81', 'desk', 1000));
    t.setStatic(new Map([['nas', ['192.168.1.10', 'fd00::10']], ['alias', ['192.168.1.81']]]));
    assert.deepEqual(t.lookup('nas'), { a: ['192.168.1.10'], aaaa: ['fd00::10'] });
    assert.equal(t.labelsOf('192.168.1.80'), undefined, 'the discovered nas lost its name to the static one');
    assert.deepEqual(t.labelsOf('192.168.1.81'), ['alias']);
    assert.equal(t.labelOf('fd00:0::10'), 'nas');
    assert.equal(t.names, 3);
  });
});

describe('clientnames: options and README', () => {
  test('`- clientnames: {}` works on its defaults; bad zones, reverse zones and hosts name their option', async () => {
    const file = path.join(path.dirname(README), 'Corefile.yaml');
    const ok = await parseConfig(`servers:\n  - listen: [udp://127.0.0.1:0]\n    plugins:\n      - clientnames: {}\n      - forward: { to: [127.0.0.1:1] }\n`, file, builtinCatalog);
    const entry = ok.servers[0].plugins.find((p) => p.name === 'clientnames')!;
    assert.deepEqual((entry.options as { zones: string[] }).zones, ['home.arpa.']);
    assert.equal((entry.options as { ttl: number }).ttl, 60);
    // Semantic checks run in setup (a real start): each names its option.
    for (const [opts, where] of [
      ['{ zones: ["bad zone!"] }', /option zones\[0\]/],
      ['{ zones: [home.arpa., 168.192.in-addr.arpa] }', /option zones\[1\].*reverse_zones/],
      ['{ reverse_zones: [home.arpa] }', /option reverse_zones\[0\]/],
      ['{ hosts: { "nas.home.arpa": 192.168.1.10 } }', /option hosts\.nas\.home\.arpa/],
      ['{ hosts: { nas: not-an-ip } }', /option hosts\.nas.*not an IP/],
    ] as const) {
      await assert.rejects(
        startServer(`servers:\n  - listen: [udp://127.0.0.1:0]\n    plugins:\n      - clientnames: ${opts}\n      - forward: { to: ["127.0.0.1:1"] }\n`),
        (err: Error) => {
          assert.match(err.message, /plugin clientnames/);
          assert.match(err.message, where, err.message);
          return true;
        },
      );
    }
  });

  test('`- clientnames: {}` serves home.arpa on its defaults (without clienttrack: a warning, NXDOMAIN with the SOA)', async () => {
    const s = await startServer(`servers:\n  - listen: [udp://127.0.0.1:0]\n    plugins:\n      - clientnames: {}\n      - forward: { to: ["127.0.0.1:1"] }\n`);
    try {
      const r = await s.query('anything.home.arpa', 'A');
      assert.equal(r.rcode, 'NXDOMAIN');
      assert.equal(r.flag_aa, true);
      const soa = r.authorities?.[0] as { type: string; name: string; ttl: number; data: { minimum: number } };
      assert.deepEqual([soa.type, soa.name, soa.ttl, soa.data.minimum], ['SOA', 'home.arpa', 10, 10]);
      assert.ok(s.logs.some((l) => /clienttrack is not in this server block/.test(l)));
    } finally {
      await s.stop();
    }
  });

  test('the README is in CoreDNS order, every option is in its table with its default, and every example validates', async () => {
    const md = fs.readFileSync(README, 'utf8');
    const order = ['## Name', '## Description', '## Syntax', '## Options', '## Metrics', '## Examples'].map((h) => md.indexOf(h));
    assert.ok(order.every((i) => i !== -1));
    assert.deepEqual([...order].sort((a, b) => a - b), order);
    for (const [name, schema] of Object.entries(ClientnamesOptions.properties)) {
      const row = md.split('\n').find((l) => l.startsWith(`| \`${name}\` |`));
      assert.ok(row, `option ${name} documented`);
      const def = (schema as { default?: unknown }).default;
      if (typeof def === 'number' || typeof def === 'string') assert.ok(row.includes(`\`${def}\``), `${name}: default ${def} shown in: ${row}`);
      if (Array.isArray(def) && def.length <= 2) assert.ok(row.includes(`[${def.join(', ')}]`), `${name}: default shown in: ${row}`);
    }
    for (const z of PRIVATE_REVERSE_ZONES.filter((x) => !/^(1[7-9]|2\d|30)\.172/.test(x))) assert.ok(md.includes(z), `README names ${z}`);
    for (const m of ['devices', 'capacity', 'names', 'loaded', 'learned_total', 'evicted_total', 'forgotten_total', 'answers_total']) {
      assert.ok(md.includes(`codexdns_clientnames_${m}`), `metric ${m} documented`);
    }
    const blocks = [...md.matchAll(/```yaml\n([\s\S]*?)```/g)].map((m) => m[1]);
    assert.ok(blocks.length >= 3);
    for (const yaml of blocks) {
      try {
        const cfg = await parseConfig(yaml, path.join(path.dirname(README), 'Corefile.yaml'), builtinCatalog);
        assert.ok(cfg.servers.some((b) => b.plugins.some((p) => p.name === 'clientnames')));
      } catch (err) {
        if (err instanceof ConfigError) assert.fail(err.issues.map(formatIssue).join('\n') + '\n---\n' + yaml);
        throw err;
      }
    }
  });
});
