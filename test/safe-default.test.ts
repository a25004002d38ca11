// Safe by default (issue 15, point 6): a server block with no acl (nor another guard) is not an open resolver.
// It answers loopback and the private subnets of the machine's interfaces, REFUSED otherwise (counted, not
// tracked), and `codexdns validate` warns about the block.
import { test, describe, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { spawnSync } from 'node:child_process';
import { startServer } from '../testing';
import { definePlugin, type AnyPluginDefinition } from '../core/plugin';
import { Type } from '../config/types';
import { DnsResponse } from '../core/response';
import { builtinCatalog } from '../server/catalog';
import { parseConfig } from '../config/load';
import { localInterfaces, localNetworks } from '../plugins/acl';

const CLI = path.resolve(__dirname, '../cli/codexdns.js');
const denied: (string | undefined)[] = [];
const answerer = definePlugin({
  name: 'answerer',
  options: Type.Object({}),
  setup(api) {
    api.hooks.query.tap('answerer', (ctx) => DnsResponse.fromPacket({ type: 'response', id: 0, flags: 0, questions: ctx.message.questions, answers: [{ name: ctx.message.questions![0].name, type: 'A', ttl: 60, data: '192.0.2.9' }] }));
    api.hooks.served.tap('answerer', (ctx) => void denied.push(ctx.denied));
  },
});
const catalog = { get: (n: string) => (n === 'answerer' ? (answerer as unknown as AnyPluginDefinition) : builtinCatalog.get(n)), names: () => builtinCatalog.names() };

const iface = (address: string, cidr: string, family: 'IPv4' | 'IPv6' = 'IPv4'): os.NetworkInterfaceInfo =>
  ({ address, cidr, family, netmask: '', mac: '00:00:00:00:00:00', internal: false, ...(family === 'IPv6' ? { scopeid: 0 } : {}) }) as os.NetworkInterfaceInfo;

const realRead = localInterfaces.read;
afterEach(() => {
  localInterfaces.read = realRead;
});

describe('safe by default', () => {
  test('local networks: loopback and the private on-link subnets, never a public one', () => {
    const nets = localNetworks({
      lo: [iface('127.0.0.1', '127.0.0.1/8'), iface('::1', '::1/128', 'IPv6')],
      eth0: [iface('192.168.1.10', '192.168.1.10/24'), iface('fd12:3456::1', 'fd12:3456::1/64', 'IPv6'), iface('2001:db8::5', '2001:db8::5/64', 'IPv6')],
      wan: [iface('203.0.113.5', '203.0.113.5/24')],
      cgnat: [iface('100.64.3.4', '100.64.3.4/10')],
    });
    assert.ok(nets.includes('127.0.0.0/8') && nets.includes('::1/128'));
    assert.ok(nets.includes('192.168.1.0/24'), nets.join(','));
    assert.ok(nets.includes('fd12:3456::/64'), nets.join(','));
    assert.ok(nets.includes('100.64.0.0/10'), nets.join(','));
    assert.ok(!nets.some((n) => n.startsWith('203.0.113') || n.startsWith('2001:db8')), `no public subnet: ${nets.join(',')}`);
  });

  test('a block without a guard answers loopback; a client outside the local networks gets REFUSED, counted, not tracked', async () => {
    // This machine as one whose loopback interface declares only 127.0.0.1/32 and whose LAN is 192.168.7.0/24:
    // 127.0.0.2 then stands for a client on no local network.
    localInterfaces.read = () => ({ lo: [iface('127.0.0.1', '127.0.0.1/32')], eth0: [iface('192.168.7.2', '192.168.7.2/24')] });
    const s = await startServer('servers:\n  - listen: [udp://127.0.0.1:0, tcp://127.0.0.1:0]\n    plugins:\n      - answerer: {}\n', { catalog });
    try {
      assert.equal((await s.query('x.example', 'A', { from: '127.0.0.1' })).rcode, 'NOERROR');
      assert.equal(denied.at(-1), undefined);
      const far = await s.query('x.example', 'A', { from: '127.0.0.2' });
      assert.equal(far.rcode, 'REFUSED');
      assert.equal(denied.at(-1), 'acl', 'marked denied: clienttrack does not track it');
      assert.equal((await s.query('x.example', 'A', { from: '127.0.0.2', tcp: true })).rcode, 'REFUSED');
      const metrics = await (s.server as unknown as { metrics: { registry: { metrics(): Promise<string> } } }).metrics.registry.metrics();
      assert.match(metrics, /codexdns_acl_refused_total\{server="block0"\} 2/);
      assert.equal(s.logs.filter((l) => /no acl \(or other guard\)/.test(l)).length, 1, 'warned once at start');
    } finally {
      await s.stop();
    }
  });

  test('a block with its own acl, or another guard, gets no implicit one', async () => {
    localInterfaces.read = () => ({ lo: [iface('127.0.0.1', '127.0.0.1/32')] });
    const s = await startServer('servers:\n  - listen: [udp://127.0.0.1:0]\n    plugins:\n      - ratelimit: { queries: { rate: 1000, burst: 1000 } }\n      - answerer: {}\n', { catalog });
    try {
      assert.equal((await s.query('x.example', 'A', { from: '127.0.0.2' })).rcode, 'NOERROR');
      assert.ok(!s.logs.some((l) => /no acl \(or other guard\)/.test(l)));
    } finally {
      await s.stop();
    }
  });

  test('validate warns about a block without a guard, at its plugin list', async () => {
    const text = 'servers:\n  - listen: [udp://127.0.0.1:5300]\n    plugins:\n      - answerer: {}\n  - listen: [udp://127.0.0.1:5301]\n    plugins:\n      - acl: { allow: [10.0.0.0/8] }\n      - answerer: {}\n';
    const cfg = await parseConfig(text, '/tmp/Corefile.yaml', catalog);
    const w = cfg.unguarded.filter((x) => /no acl/.test(x.message));
    assert.equal(w.length, 1);
    assert.equal(w[0].line, 4, 'the first entry of its plugin list');
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'codexdns-safe-'));
    try {
      const file = path.join(dir, 'Corefile.yaml');
      fs.writeFileSync(file, 'servers:\n  - listen: [udp://127.0.0.1:5300]\n    plugins:\n      - cache: {}\n');
      const r = spawnSync(process.execPath, [CLI, 'validate', file], { encoding: 'utf8' });
      assert.equal(r.status, 0, r.stderr);
      assert.match(r.stdout, /Corefile\.yaml:4:\d+.*no acl \(or other guard\)/);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
