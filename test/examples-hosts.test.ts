/** examples/plugins/hosts: A/AAAA/PTR from a hosts file, re-read on change, fallthrough to the rest of the chain. */
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { startFakeUpstream, startServer, type FakeUpstream, type TestServer } from '../testing';
import { ConfigError } from '../config/errors';

const plugin = path.resolve(__dirname, '..', '..', 'examples', 'plugins', 'hosts', 'index.js');

const HOSTS = `# a comment
127.0.0.1   localhost
192.168.1.10  nas.home.arpa nas   # two names, one line
192.168.1.11  Printer.Home.Arpa.
fd00::10      nas.home.arpa
2001:db8::1   v6only.home.arpa
`;

const conf = (upstream: string, options = ''): string => `
servers:
  - listen: [udp://127.0.0.1:0, tcp://127.0.0.1:0]
    plugins:
      - use: ${plugin}
        options: { file: ./hosts/hosts.txt, debounce: 50ms${options} }
      - forward: { to: ["${upstream}"] }
`;

function data(a: { answers?: unknown[] }): string[] {
  return (a.answers ?? []).map((r) => String((r as { data: unknown }).data));
}

async function until(what: string, fn: () => Promise<boolean>, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  for (;;) {
    if (await fn()) return;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

describe('examples/plugins/hosts', () => {
  let up: FakeUpstream;
  let s: TestServer;
  let hostsFile: string;
  before(async () => {
    up = await startFakeUpstream({ records: { 'www.example.org': { A: '192.0.2.80' } } });
    s = await startServer(conf(up.address), { files: { 'hosts/hosts.txt': HOSTS } });
    hostsFile = path.join(s.dir, 'hosts', 'hosts.txt');
  });
  after(async () => {
    await s.stop();
    await up.stop();
  });

  test('A and AAAA for names in the file, any letter case, authoritative; the question keeps its case', async () => {
    const a = await s.query('NAS.home.arpa', 'A');
    assert.equal(a.rcode, 'NOERROR');
    assert.equal(a.flag_aa, true);
    assert.deepEqual(data(a), ['192.168.1.10']);
    assert.equal(a.questions![0].name, 'NAS.home.arpa');
    assert.deepEqual(data(await s.query('nas', 'A')), ['192.168.1.10']);
    assert.deepEqual(data(await s.query('nas.home.arpa', 'AAAA')), ['fd00::10']);
    assert.deepEqual(data(await s.query('printer.home.arpa', 'A')), ['192.168.1.11']);
    assert.equal((a.answers![0] as { ttl: number }).ttl, 3600);
  });

  test('a name in the file without the asked type gets NODATA, not the upstream', async () => {
    const before = up.count();
    const a = await s.query('v6only.home.arpa', 'A');
    assert.equal(a.rcode, 'NOERROR');
    assert.equal(a.answers!.length, 0);
    const mx = await s.query('nas.home.arpa', 'MX');
    assert.equal(mx.rcode, 'NOERROR');
    assert.equal(mx.answers!.length, 0);
    assert.equal(up.count(), before);
  });

  test('PTR for IPv4 and IPv6 addresses: every name of the line, the first one first', async () => {
    assert.deepEqual(data(await s.query('10.1.168.192.in-addr.arpa', 'PTR')), ['nas.home.arpa', 'nas']);
    const v6 = '1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa';
    assert.deepEqual(data(await s.query(v6, 'PTR')), ['v6only.home.arpa']);
  });

  test('names it does not have fall through to the rest of the chain', async () => {
    const a = await s.query('www.example.org', 'A');
    assert.deepEqual(data(a), ['192.0.2.80']);
    assert.equal(up.count('www.example.org'), 1);
    const ptr = await s.query('9.9.9.9.in-addr.arpa', 'PTR');
    assert.equal(up.count('9.9.9.9.in-addr.arpa'), 1);
    assert.equal(ptr.rcode, 'NXDOMAIN');
  });

  test('an edit of the file is picked up (debounced), also when saved by rename; a broken save keeps the entries', async () => {
    fs.appendFileSync(hostsFile, '192.168.1.12 tv.home.arpa\n');
    await until('tv.home.arpa', async () => data(await s.query('tv.home.arpa', 'A'))[0] === '192.168.1.12');
    // An editor's atomic save: write a new file, rename it over the old one.
    const tmp = path.join(path.dirname(hostsFile), '.hosts.txt.swp');
    fs.writeFileSync(tmp, HOSTS.replace('192.168.1.10', '192.168.1.20'));
    fs.renameSync(tmp, hostsFile);
    await until('the renamed file', async () => data(await s.query('nas.home.arpa', 'A'))[0] === '192.168.1.20');
    // tv.home.arpa is not in the new file: it falls through (forward answers home.arpa locally: NXDOMAIN).
    assert.equal((await s.query('tv.home.arpa', 'A')).rcode, 'NXDOMAIN');
    // The file disappears (moved away): the plugin keeps what it had and says why.
    const aside = hostsFile + '.bak';
    fs.renameSync(hostsFile, aside);
    await until('the warning', async () => s.logs.some((l) => /cannot re-read the hosts file/.test(l)));
    assert.deepEqual(data(await s.query('nas.home.arpa', 'A')), ['192.168.1.20']);
    fs.renameSync(aside, hostsFile);
    await until('the file back', async () => s.logs.filter((l) => /hosts file reloaded/.test(l)).length >= 3);
  });

  test('after a reload of Corefile.yaml the new chain watches the file and the old one no longer does', async () => {
    const r = await s.reload(conf(up.address, ', ttl: 60'));
    assert.equal(r.ok, true, r.error);
    const reloadsBefore = s.logs.filter((l) => /hosts file reloaded/.test(l)).length;
    fs.appendFileSync(hostsFile, '192.168.1.13 radio.home.arpa\n');
    await until('radio.home.arpa', async () => data(await s.query('radio.home.arpa', 'A'))[0] === '192.168.1.13');
    const a = await s.query('radio.home.arpa', 'A');
    assert.equal((a.answers![0] as { ttl: number }).ttl, 60);
    await new Promise((r) => setTimeout(r, 300));
    // One re-read for one edit: the retired chain's watcher was closed by its shutdown hook.
    assert.equal(s.logs.filter((l) => /hosts file reloaded/.test(l)).length, reloadsBefore + 1);
  });

  test('metrics: entries and loads', async () => {
    const text = await s.server.metrics.registry.metrics();
    assert.match(text, /codexdns_hosts_entries \d+/);
    assert.match(text, /codexdns_hosts_loads_total\{result="ok"\} \d+/);
    assert.match(text, /codexdns_hosts_loads_total\{result="error"\} [1-9]/);
  });
});

describe('examples/plugins/hosts options', () => {
  test('fallthrough: false answers NXDOMAIN for names it does not have', async () => {
    const up = await startFakeUpstream({ records: { 'www.example.org': { A: '192.0.2.80' } } });
    const s = await startServer(conf(up.address, ', fallthrough: false, watch: false'), { files: { 'hosts/hosts.txt': HOSTS } });
    try {
      assert.equal((await s.query('www.example.org', 'A')).rcode, 'NXDOMAIN');
      assert.equal(up.count(), 0);
      assert.deepEqual(data(await s.query('nas', 'A')), ['192.168.1.10']);
    } finally {
      await s.stop();
      await up.stop();
    }
  });

  test('a missing file stops start-up with Corefile.yaml line:col at `file` and the reason', async () => {
    await assert.rejects(startServer(conf('127.0.0.1:9'), { files: {} }), (err: unknown) => {
      assert.ok(err instanceof ConfigError);
      assert.match(err.message, /Corefile\.yaml:6:\d+ plugin hosts.* option file: cannot read .*hosts\.txt: ENOENT/);
      return true;
    });
  });
});
