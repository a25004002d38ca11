/**
 * The discovery plugin: the engine on its own (fake methods: order, merging, retries with backoff, the queue
 * and the backlog, guards deferring jobs, restore from the database), then real servers from a Corefile string
 * whose clients are 127.x.y.z addresses answered by responders this file starts: a NetBIOS responder on
 * 127.0.37.X:137, an mDNS responder on 127.0.53.Y:5353, PTR answers from a fake upstream, lease files of
 * each format. The database is read back with ClientStore.
 *
 * Network rule: every packet goes to a 127.0.0.0/8 address; nothing binds or sends to port 53; no multicast.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import * as dgram from 'node:dgram';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { SyncBailHook, SyncHook } from 'tapable';
import { startFakeUpstream, startServer, type FakeUpstream, type TestServer } from '../testing';
import { definePlugin, type AnyPluginDefinition } from '../core/plugin';
import { Type } from '../config/types';
import { createLogger, type Logger } from '../core/log';
import { builtinCatalog } from '../server/catalog';
import type { PluginCatalog } from '../config/load';
import { ClientStore, type ClientRow } from '../plugins/clienttrack/store';
import { openStorage } from '../storage/open';
import type { DiscoveryUpdate } from '../plugins/clienttrack/hooks';
import { DiscoveryEngine, getDiscoveryMetrics, guessLeaseFormat, type EngineOptions, type EngineStore } from '../plugins/discovery';
import type { DiscoveryDenial, DiscoveryHooks, DiscoveryMetrics, DiscoveryOutcome, DiscoveryReport, DiscoveryRequest, MethodName } from '../plugins/discovery/hooks';
import { buildNbstatResponse, parseNbstatRequest } from '../plugins/discovery/methods/netbios';
import { reverseName } from '../plugins/pkg/address';
import { vendorOf, PRIVATE_ADDRESS } from '../plugins/discovery/vendor';
import { registerPrometheus } from '../plugins/discovery/metrics';
import { MetricsHub } from '../core/metricsRegistry';
import type { DiscoveryMethod, MethodOutcome } from '../plugins/discovery/methods/types';
import { chooseResolvers, defaultGateways } from '../plugins/discovery/resolvers';
import { bindUdp, randomOctet, sleep, waitFor, startMdnsResponder } from './helpers/net';

function capture(): { log: Logger; lines: string[] } {
  const lines: string[] = [];
  return { log: createLogger({ level: 'debug', format: 'text' }, (l) => lines.push(l)), lines };
}

function newHooks(): DiscoveryHooks {
  return {
    beforeDiscover: new SyncBailHook<[DiscoveryRequest], DiscoveryDenial | undefined>(['request']),
    attemptDenied: new SyncHook<[DiscoveryRequest, DiscoveryDenial]>(['request', 'denial']),
    discovered: new SyncHook<[DiscoveryOutcome]>(['outcome']),
    report: new SyncHook<[DiscoveryReport]>(['report']),
    snapshot: new SyncBailHook<[], DiscoveryMetrics>([]),
  };
}

/** A method whose answer per ip is a function (sync or after `delayMs`), counting its calls. */
function fakeMethod(name: MethodName, answer: (ip: string, call: number) => MethodOutcome, delayMs = 0): DiscoveryMethod & { calls: string[]; closed: boolean } {
  const m = {
    name,
    calls: [] as string[],
    closed: false,
    async lookup(ip: string, signal: AbortSignal): Promise<MethodOutcome> {
      m.calls.push(ip);
      const n = m.calls.filter((x) => x === ip).length;
      if (delayMs > 0) {
        await new Promise<void>((resolve) => {
          const t = setTimeout(resolve, delayMs);
          signal.addEventListener('abort', () => {
            clearTimeout(t);
            resolve();
          });
        });
      }
      if (signal.aborted) return { kind: 'failure', error: `${name}: aborted` };
      return answer(ip, n);
    },
    close() {
      m.closed = true;
    },
  };
  return m;
}

const found = (source: MethodName, hostname?: string, mac?: string): MethodOutcome => ({
  kind: 'found',
  result: { source, ...(hostname !== undefined ? { hostname } : {}), ...(mac !== undefined ? { mac } : {}) },
});
const NEG: MethodOutcome = { kind: 'negative' };
const FAIL = (e: string): MethodOutcome => ({ kind: 'failure', error: e });

interface Rig {
  engine: DiscoveryEngine;
  hooks: DiscoveryHooks;
  applied: DiscoveryUpdate[];
  outcomes: DiscoveryOutcome[];
  finals: () => Map<string, DiscoveryUpdate>;
}

function rig(opts: Partial<EngineOptions>, methods: DiscoveryMethod[], extra: { store?: EngineStore; probeable?: (ip: string) => boolean; restoreDelayMs?: number; restoreEveryMs?: number; refreshDelayMs?: number } = {}): Rig {
  const hooks = newHooks();
  const applied: DiscoveryUpdate[] = [];
  const outcomes: DiscoveryOutcome[] = [];
  hooks.discovered.tap('test', (o) => void outcomes.push(o));
  const engine = new DiscoveryEngine(
    {
      workers: 4,
      queue: 100,
      backlog: 1000,
      methods: methods.map((m) => m.name),
      timeoutMs: 1000,
      stopOnFirst: true,
      refreshMs: 3_600_000,
      retry: { attempts: 3, backoffMs: 30, maxBackoffMs: 200 },
      ...opts,
    },
    {
      methods: new Map(methods.map((m) => [m.name, m])),
      log: capture().log,
      probeable: extra.probeable ?? (() => true),
      vendorOf: async (mac) => (mac.startsWith('00:11:22') ? 'Cimsys Inc' : undefined),
      store: extra.store,
      tickMs: 20,
      restoreDelayMs: extra.restoreDelayMs ?? 50,
      restoreEveryMs: extra.restoreEveryMs ?? 50,
      refreshDelayMs: extra.refreshDelayMs ?? 3_600_000,
    },
  );
  engine.connect({ own: hooks, apply: (u) => void applied.push({ ...u }) });
  return {
    engine,
    hooks,
    applied,
    outcomes,
    finals: () => {
      const m = new Map<string, DiscoveryUpdate>();
      for (const u of applied) if (u.done) m.set(u.ip, u);
      return m;
    },
  };
}

describe('discovery engine', () => {
  test('runs methods in order, stops at the first name, keeps the best MAC, and reports every attempt', async () => {
    const dhcp = fakeMethod('dhcp', () => NEG);
    const arp = fakeMethod('arp', () => found('arp', undefined, '00:11:22:33:44:55'));
    const rdns = fakeMethod('rdns', () => found('rdns', 'pc.lan'));
    const netbios = fakeMethod('netbios', () => found('netbios', 'PC', '66:66:66:66:66:66'));
    const r = rig({}, [dhcp, arp, rdns, netbios]);
    try {
      r.engine.announce('10.0.0.5');
      await waitFor('done', () => r.finals().has('10.0.0.5'));
      assert.deepEqual(r.finals().get('10.0.0.5'), { ip: '10.0.0.5', done: true, hostname: 'pc.lan', mac: '00:11:22:33:44:55', vendor: 'Cimsys Inc', method: 'rdns' });
      assert.equal(netbios.calls.length, 0, 'stopped at the first name');
      assert.deepEqual(r.outcomes.map((o) => `${o.method}:${o.kind}`), ['dhcp:negative', 'arp:found', 'rdns:found']);
      assert.ok(r.outcomes.every((o) => o.ip === '10.0.0.5' && o.latencyMs >= 0));
      const m = r.engine.metrics();
      assert.equal(m.totals.total, 1);
      assert.equal(m.totals.succeeded, 1);
      assert.equal(m.discovering, 0);
      assert.equal(m.perMethod.rdns?.found, 1);
      assert.equal(m.perMethod.dhcp?.negative, 1);
    } finally {
      r.engine.close();
    }
    assert.ok(rdns.closed && dhcp.closed, 'close() closes the methods');
  });

  test('stop_on_first: false runs everything and merges: the name from the first method, the MAC from arp > dhcp > netbios', async () => {
    const dhcp = fakeMethod('dhcp', () => found('dhcp', 'laptop', '00:11:22:00:00:01'));
    const rdns = fakeMethod('rdns', () => found('rdns', 'laptop.lan'));
    const netbios = fakeMethod('netbios', () => found('netbios', 'LAPTOP', '00:11:22:00:00:09'));
    const r = rig({ stopOnFirst: false }, [rdns, netbios, dhcp]);
    try {
      r.engine.announce('10.0.0.6');
      await waitFor('done', () => r.finals().has('10.0.0.6'));
      const u = r.finals().get('10.0.0.6')!;
      assert.equal(u.hostname, 'laptop.lan', 'the first method in `methods` that found a name');
      assert.equal(u.method, 'rdns');
      assert.equal(u.mac, '00:11:22:00:00:01', 'the leases before NetBIOS');
      assert.equal(r.outcomes.length, 3);
    } finally {
      r.engine.close();
    }
  });

  test('a failure without a name is retried with exponential backoff, then given up; the client stays discovering meanwhile', async () => {
    const rdns = fakeMethod('rdns', (ip, n) => (ip === '10.0.0.7' && n >= 3 ? found('rdns', 'late.lan') : FAIL('rdns: 127.0.0.1:1 timed out')));
    const r = rig({ retry: { attempts: 3, backoffMs: 40, maxBackoffMs: 1000 } }, [rdns]);
    try {
      r.engine.announce('10.0.0.7');
      r.engine.announce('10.0.0.8');
      await waitFor('both final', () => r.finals().size === 2, 5000);
      const seven = r.applied.filter((u) => u.ip === '10.0.0.7');
      assert.deepEqual(seven.map((u) => u.done), [false, false, true]);
      assert.match(String(seven[0].error), /timed out/);
      assert.equal(seven[2].hostname, 'late.lan');
      assert.equal(seven[2].error, undefined);
      const eight = r.applied.filter((u) => u.ip === '10.0.0.8');
      assert.deepEqual(eight.map((u) => u.done), [false, false, true]);
      assert.match(String(eight[2].error), /timed out/, 'given up: done with the error');
      const m = r.engine.metrics();
      assert.equal(m.totals.retries, 4);
      assert.equal(m.totals.gaveUp, 1);
      assert.equal(m.totals.failed, 5);
      assert.equal(m.discovering, 0);
      // Given up, it waits for the next refresh in the backlog.
      assert.deepEqual(r.engine.client('10.0.0.8')?.reason, 'refresh');
      // Backoff doubles: the third attempt of .8 came at least 40 + 80 ms after the first.
      const times = rdns.calls.length;
      assert.equal(times, 6);
    } finally {
      r.engine.close();
    }
  });

  test('a queue that is full counts a drop but loses nobody', async () => {
    const rdns = fakeMethod('rdns', (ip) => found('rdns', `h-${ip}`), 5);
    const r = rig({ workers: 1, queue: 2 }, [rdns]);
    try {
      for (let i = 1; i <= 20; i++) r.engine.announce(`10.0.1.${i}`);
      const m0 = r.engine.metrics();
      assert.ok(m0.totals.dropped >= 17, `dropped ${m0.totals.dropped}`);
      assert.ok(m0.backlog.size >= 17);
      assert.equal(m0.discovering, 20);
      await waitFor('all 20', () => r.finals().size === 20);
      // First come, first served.
      assert.deepEqual(rdns.calls, Array.from({ length: 20 }, (_, i) => `10.0.1.${i + 1}`));
      assert.equal(r.engine.metrics().discovering, 0);
    } finally {
      r.engine.close();
    }
  });

  test('first attempts wait in arrival order, any number of them, and a deferred job goes back ahead of later arrivals', async () => {
    const rdns = fakeMethod('rdns', (ip) => found('rdns', `h-${ip}`));
    const r = rig({ workers: 1, queue: 1, backlog: 10_000 }, [rdns]);
    const asked = new Set<string>();
    // Every client is denied once (its first ask), as a rate limiter would: it must keep its place.
    r.hooks.beforeDiscover.tap('once', (req) => {
      if (asked.has(req.ip)) return undefined;
      asked.add(req.ip);
      return { reason: 'rate-limited', retryAfterMs: 1 };
    });
    const ips = Array.from({ length: 700 }, (_, i) => `10.9.${i >> 8}.${i & 255}`);
    try {
      // 300, then 400 more while the first are being served: the waiting room grows and wraps around.
      for (const ip of ips.slice(0, 300)) r.engine.announce(ip);
      assert.deepEqual(r.engine.client(ips[299]), { where: 'waiting', reason: 'new', attempts: 0, dueInMs: 0 });
      const m0 = r.engine.metrics();
      assert.ok(m0.backlog.size >= 297, `backlog ${m0.backlog.size}`);
      assert.equal(m0.backlog.size + m0.queue.depth + m0.busy, 300);
      assert.equal(m0.backlog.due, m0.backlog.size);
      assert.equal(m0.discovering, 300);
      await waitFor('100 done', () => r.finals().size >= 100, 10_000);
      for (const ip of ips.slice(300)) r.engine.announce(ip);
      await waitFor('all 700', () => r.finals().size === 700, 20_000);
      assert.deepEqual(rdns.calls, ips, 'served in arrival order, deferred ones included');
      assert.equal(r.engine.metrics().totals.rateLimited, 700);
      assert.equal(r.engine.metrics().discovering, 0);
      assert.equal(r.engine.client(ips[0]), undefined);
    } finally {
      r.engine.close();
    }
  });

  test('a guard that denies defers the job (counted by reason), pauses for retryAfterMs, and loses nobody', async () => {
    const rdns = fakeMethod('rdns', (ip) => found('rdns', `h-${ip}`));
    const r = rig({ workers: 4 }, [rdns]);
    let allowNext = 0;
    const asked: number[] = [];
    const denied: string[] = [];
    r.hooks.beforeDiscover.tap('gate', () => {
      asked.push(performance.now());
      if (allowNext-- > 0) return undefined;
      return { reason: 'rate-limited', retryAfterMs: 50 };
    });
    r.hooks.attemptDenied.tap('observer', (req, d) => void denied.push(`${req.ip}:${d.reason}`));
    const refill = setInterval(() => (allowNext = 1), 50);
    try {
      for (let i = 1; i <= 10; i++) r.engine.announce(`10.0.2.${i}`);
      await waitFor('all 10', () => r.finals().size === 10, 10_000);
      const m = r.engine.metrics();
      assert.ok(m.totals.rateLimited >= 1);
      assert.equal(m.totals.rateLimited, denied.length);
      assert.equal(m.totals.denied['rate-limited'], denied.length);
      // Paused while denied: not one question per client per tick.
      assert.ok(asked.length <= 10 + denied.length);
      assert.ok(denied.length < 60, `denials ${denied.length}`);
      assert.equal(m.totals.total, 10);
    } finally {
      clearInterval(refill);
      r.engine.close();
    }
  });

  test('skipped methods (circuit open) make a job without a name a failure; trial methods run even after a name', async () => {
    const rdns = fakeMethod('rdns', () => found('rdns', 'x.lan'));
    const netbios = fakeMethod('netbios', () => NEG);
    const mdns = fakeMethod('mdns', () => NEG);
    const r = rig({ retry: { attempts: 1, backoffMs: 10, maxBackoffMs: 10 } }, [rdns, netbios, mdns]);
    r.hooks.beforeDiscover.tap('breakerish', (req) => {
      if (req.ip === '10.0.3.1') req.trial.add('mdns');
      if (req.ip === '10.0.3.2') req.skip.add('rdns');
      return undefined;
    });
    try {
      r.engine.announce('10.0.3.1');
      r.engine.announce('10.0.3.2');
      await waitFor('both', () => r.finals().size === 2);
      assert.deepEqual(mdns.calls.filter((ip) => ip === '10.0.3.1'), ['10.0.3.1'], 'the trial ran after the name');
      assert.deepEqual(netbios.calls.filter((ip) => ip === '10.0.3.1'), [], 'a method that is not a trial did not');
      const two = r.finals().get('10.0.3.2')!;
      assert.match(String(two.error), /rdns: circuit open/);
      assert.equal(r.engine.metrics().perMethod.rdns?.skipped, 1);
    } finally {
      r.engine.close();
    }
  });

  test('public addresses are never probed; every method negative is done without a name', async () => {
    const netbios = fakeMethod('netbios', () => NEG);
    const r = rig({}, [netbios], { probeable: (ip) => ip.startsWith('10.') });
    try {
      r.engine.announce('8.8.8.8');
      r.engine.announce('10.0.4.1');
      await waitFor('both', () => r.finals().size === 2);
      assert.deepEqual(netbios.calls, ['10.0.4.1']);
      assert.match(String(r.finals().get('8.8.8.8')!.error), /not probed/);
      assert.deepEqual(r.finals().get('10.0.4.1'), { ip: '10.0.4.1', done: true });
      const m = r.engine.metrics();
      assert.equal(m.totals.skipped, 1);
      assert.equal(m.totals.notFound, 1);
    } finally {
      r.engine.close();
    }
  });

  test('a full backlog leaves clients to the database, and restore picks them up: nobody is lost', async () => {
    const db = new Set<string>(); // rows saying discovering
    const rdns = fakeMethod('rdns', (ip) => found('rdns', `h-${ip}`), 10);
    const store: EngineStore = {
      discovering: async (limit) => [...db].slice(0, limit),
      stale: async () => [],
    };
    const r = rig({ workers: 1, queue: 1, backlog: 3 }, [rdns], { store, restoreDelayMs: 30, restoreEveryMs: 30 });
    const hub = new MetricsHub();
    r.engine.stats.prom = registerPrometheus(hub.factory('discovery'), () => undefined);
    r.engine.connect({
      own: r.hooks,
      apply: (u) => {
        r.applied.push({ ...u });
        if (u.done) db.delete(u.ip);
      },
    });
    try {
      for (let i = 1; i <= 30; i++) {
        db.add(`10.0.5.${i}`);
        r.engine.announce(`10.0.5.${i}`);
      }
      assert.ok(r.engine.metrics().backlog.overflowed > 0);
      const overflowMetric = (await hub.registry.getSingleMetric('codexdns_discovery_backlog_overflow_total')!.get()).values[0].value;
      assert.equal(overflowMetric, r.engine.metrics().backlog.overflowed, 'every overflow is counted in /metrics');
      await waitFor('all 30', () => r.finals().size === 30, 15_000);
      assert.equal(db.size, 0);
      assert.ok(r.engine.metrics().totals.restored > 0);
      // Each client was discovered once.
      assert.equal(rdns.calls.length, 30);
    } finally {
      r.engine.close();
    }
  });

  test('refresh: names older than `refresh` are looked up again, without marking the client discovering', async () => {
    const rdns = fakeMethod('rdns', () => found('rdns', 'renamed.lan'));
    let asked = 0;
    const store: EngineStore = {
      discovering: async () => [],
      stale: async () => (asked++ === 0 ? ['10.0.6.1'] : []),
    };
    const r = rig({ refreshMs: 200 }, [rdns], { store, refreshDelayMs: 20 });
    try {
      await waitFor('refreshed', () => r.finals().has('10.0.6.1'));
      assert.deepEqual(r.applied, [{ ip: '10.0.6.1', done: true, hostname: 'renamed.lan', method: 'rdns' }], 'no done:false (discovering) on a refresh');
      assert.equal(r.engine.metrics().totals.refreshed, 1);
    } finally {
      r.engine.close();
    }
  });

  test('close() aborts lookups in flight and reports nothing for them', async () => {
    const rdns = fakeMethod('rdns', () => found('rdns', 'never.lan'), 10_000);
    const r = rig({}, [rdns]);
    r.engine.announce('10.0.7.1');
    await waitFor('running', () => rdns.calls.length === 1);
    const t0 = performance.now();
    r.engine.close();
    await sleep(50);
    assert.equal(r.applied.length, 0);
    assert.equal(r.outcomes.length, 0);
    assert.ok(performance.now() - t0 < 1000);
  });
});

describe('discovery helpers', () => {
  test('lease formats are guessed from file names', () => {
    assert.equal(guessLeaseFormat('/var/lib/misc/dnsmasq.leases'), 'dnsmasq');
    assert.equal(guessLeaseFormat('/var/lib/dhcp/dhcpd.leases'), 'isc');
    assert.equal(guessLeaseFormat('/var/lib/dhcp/dhcpd6.leases'), 'isc');
    assert.equal(guessLeaseFormat('/var/lib/kea/kea-leases4.csv'), 'kea');
    assert.equal(guessLeaseFormat('/tmp/odhcpd.leases'), 'odhcpd');
    assert.equal(guessLeaseFormat('/tmp/hosts.txt'), undefined);
  });

  test('rdns resolvers: configured, else forward private, else a private default gateway; never ourselves, never public', () => {
    const base = { resolvePath: (p: string) => p, own: new Set(['127.0.0.1|5300']), machine: new Set(['192.168.1.2']) };
    const c1 = chooseResolvers({ ...base, configured: ['127.0.0.9:5301', '127.0.0.1:5300'], forwardPrivate: ['192.168.1.1'], gateways: () => ['192.168.1.1'] });
    assert.deepEqual(c1.resolvers, [{ host: '127.0.0.9', port: 5301 }]);
    assert.equal(c1.source, 'rdns.resolvers');
    assert.match(c1.warnings.join('\n'), /it is this server/);
    const c2 = chooseResolvers({ ...base, configured: undefined, forwardPrivate: ['192.168.1.1:5353'], gateways: () => [] });
    assert.deepEqual(c2.resolvers, [{ host: '192.168.1.1', port: 5353 }]);
    assert.equal(c2.source, 'forward.private');
    const c3 = chooseResolvers({ ...base, configured: undefined, forwardPrivate: undefined, gateways: () => ['192.0.2.1', '192.168.1.2', '10.0.0.1', 'fe80::1%eth0'] });
    assert.deepEqual(c3.resolvers, [{ host: '10.0.0.1', port: 53 }, { host: 'fe80::1%eth0', port: 53 }]);
    assert.match(c3.warnings.join('\n'), /192\.0\.2\.1 is not a private/);
    assert.match(c3.warnings.join('\n'), /192\.168\.1\.2 is this machine/);
    assert.throws(() => chooseResolvers({ ...base, configured: ['resolver.example'], forwardPrivate: undefined }), /not an IP address/);
    // The real routing table parses (whatever it holds).
    assert.ok(Array.isArray(defaultGateways()));
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'codexdns-route-'));
    try {
      fs.writeFileSync(path.join(dir, 'route'), 'Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\neth0\t00000000\t0101A8C0\t0003\t0\t0\t0\t00000000\t0\t0\t0\neth0\t0001A8C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n');
      fs.writeFileSync(path.join(dir, 'route6'), '00000000000000000000000000000000 00 00000000000000000000000000000000 00 fe800000000000000000000000000001 00000400 00000002 00000000 00000003     eth0\n');
      assert.deepEqual(defaultGateways(path.join(dir, 'route'), path.join(dir, 'route6')), ['192.168.1.1', 'fe80::1%eth0']);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

// ------------------------------------------------------------------------------------------------
// Real servers.

/** A test plugin that hands the chain's discovery hooks to the test. */
const probes = new Map<string, { discovery: DiscoveryHooks | undefined; outcomes: DiscoveryOutcome[]; starts: number[] }>();
const dprobe = definePlugin({
  name: 'dprobe',
  options: Type.Object({ id: Type.String() }),
  setup(api, o) {
    const d = api.hooksOf('discovery');
    const entry = { discovery: d, outcomes: [] as DiscoveryOutcome[], starts: [] as number[] };
    d?.discovered.tap('dprobe', (ev) => void entry.outcomes.push(ev));
    // Asked last: reached only by jobs every guard let through, i.e. the jobs that start.
    d?.beforeDiscover.tap({ name: 'dprobe', stage: 1000 }, () => {
      entry.starts.push(performance.now());
      return undefined;
    });
    probes.set(o.id, entry);
  },
});
const catalog: PluginCatalog = {
  get: (name) => (name === 'dprobe' ? (dprobe as unknown as AnyPluginDefinition) : builtinCatalog.get(name)),
  names: () => [...builtinCatalog.names(), 'dprobe'],
};

/** Lease files of each format for 127.10.x.y clients, from the fixtures (addresses moved into 127/8, expiries into the far future). */
function leaseFiles(): Record<string, string> {
  const dir = path.resolve(__dirname, '../../test/fixtures/leases');
  const move = (text: string): string => text.replace(/\b10\.0\./g, '127.10.').replace(/1800000000/g, '2100000000').replace(/2027\/01\/15/g, '2036/01/15');
  return {
    'leases/dnsmasq.leases': move(fs.readFileSync(path.join(dir, 'dnsmasq.leases'), 'utf8')),
    'leases/dhcpd.leases': move(fs.readFileSync(path.join(dir, 'dhcpd.leases'), 'utf8')),
    'leases/kea-leases4.csv': move(fs.readFileSync(path.join(dir, 'kea-leases4.csv'), 'utf8')),
    'leases/odhcpd.leases': move(fs.readFileSync(path.join(dir, 'odhcpd.leases'), 'utf8')),
  };
}

async function rowOf(s: TestServer, ip: string): Promise<ClientRow | undefined> {
  const storage = await openStorage({ client: 'sqlite3', connection: { filename: path.join(s.dir, 'clients.sqlite') } }, { baseDir: s.dir });
  try {
    return await new ClientStore(storage).get(ip);
  } finally {
    await storage.close();
  }
}

/** The rows of these clients; empty while the server has not created the table yet. */
async function rowsOf(s: TestServer, ips: readonly string[]): Promise<Map<string, ClientRow>> {
  if (!fs.existsSync(path.join(s.dir, 'clients.sqlite'))) return new Map();
  const storage = await openStorage({ client: 'sqlite3', connection: { filename: path.join(s.dir, 'clients.sqlite') } }, { baseDir: s.dir });
  try {
    const store = new ClientStore(storage);
    const out = new Map<string, ClientRow>();
    try {
      for (const ip of ips) {
        const r = await store.get(ip);
        if (r) out.set(ip, r);
      }
    } catch (err) {
      if (/no such table/.test(String(err))) return out;
      throw err;
    }
    return out;
  } finally {
    await storage.close();
  }
}

describe('discovery in a server', () => {
  let up: FakeUpstream;
  let nbIp = '';
  let nbPort = 137;
  let nb: dgram.Socket;
  let mdnsIp = '';
  let mdnsPort = 5353;
  let mdns: dgram.Socket;
  const rdnsIp = `127.0.60.${randomOctet()}`;

  before(async () => {
    up = await startFakeUpstream({ records: { '*.test': { A: '192.0.2.1' } } });
    up.set(reverseName(rdnsIp), 'PTR', ['pc-rdns.lan', 'zz-alias.lan.example']);
    nbIp = `127.0.37.${randomOctet()}`;
    ({ socket: nb, port: nbPort } = await bindUdp(nbIp, 137));
    nb.on('message', (msg, rinfo) => {
      const id = parseNbstatRequest(msg);
      if (id === undefined) return;
      nb.send(
        buildNbstatResponse(id, [{ name: 'WORKGROUP', group: true }, { name: 'DESKTOP-7Q', suffix: 0x20 }, { name: 'DESKTOP-7Q', suffix: 0x00 }], 'D8:3A:DD:01:02:03'),
        rinfo.port,
        rinfo.address,
      );
    });
    mdnsIp = `127.0.53.${randomOctet()}`;
    ({ socket: mdns, port: mdnsPort } = await startMdnsResponder(mdnsIp, 'printer.local'));
  });

  after(async () => {
    await up.stop();
    nb.close();
    mdns.close();
  });

  const corefile = (plugins: string, extra = ''): string => `
servers:
  - listen: [udp://127.0.0.1:0, tcp://127.0.0.1:0]
    plugins:
      - acl: { allow: [127.0.0.0/8] }
${plugins}
      - forward: { to: ["${up.address}"] }
storage: { client: sqlite3, connection: { filename: ./clients.sqlite } }
${extra}`;

  test('a query from each client address ends with the right hostname and MAC in the database (rdns, netbios, mdns, each lease format)', async (t) => {
    t.diagnostic(`NetBIOS responder ${nbIp}:${nbPort}, mDNS responder ${mdnsIp}:${mdnsPort}, PTR upstream ${up.address}`);
    const s = await startServer(
      corefile(`      - clienttrack: { flush: 100ms }
      - discovery:
          timeout: 500ms
          rdns: { resolvers: ["${up.address}"] }
          netbios: { port: ${nbPort} }
          mdns: { port: ${mdnsPort} }
          dhcp: { leases: [./leases/dnsmasq.leases, ./leases/dhcpd.leases, { path: ./leases/kea-leases4.csv, format: kea }, ./leases/odhcpd.leases] }
      - dprobe: { id: each }`),
      { catalog, files: leaseFiles() },
    );
    const expected: Record<string, { hostname: string; mac: string | null; method: string; vendor?: string }> = {
      [rdnsIp]: { hostname: 'pc-rdns.lan', mac: null, method: 'rdns' },
      [nbIp]: { hostname: 'DESKTOP-7Q', mac: 'd8:3a:dd:01:02:03', method: 'netbios' },
      [mdnsIp]: { hostname: 'printer', mac: null, method: 'mdns' },
      '127.10.0.11': { hostname: 'laptop', mac: 'aa:bb:cc:00:00:01', method: 'dhcp', vendor: PRIVATE_ADDRESS },
      // The ISC journal's last block for the address wins.
      '127.10.1.6': { hostname: 'phone-renamed', mac: '00:11:22:33:44:06', method: 'dhcp' },
      '127.10.2.5': { hostname: 'smith,jones.lan', mac: '00:11:22:33:55:05', method: 'dhcp' },
      '127.10.5.10': { hostname: 'phone4', mac: '00:11:22:33:77:01', method: 'dhcp' },
    };
    try {
      await waitFor('the client index', () => probes.get('each') !== undefined);
      await sleep(300);
      for (const ip of Object.keys(expected)) {
        const a = await s.query('www.example.test', 'A', { from: ip });
        assert.equal(a.rcode, 'NOERROR', ip);
      }
      const ips = Object.keys(expected);
      await waitFor('every client discovered and written', async () => {
        const rows = await rowsOf(s, ips);
        return ips.every((ip) => rows.get(ip)?.discovering === false && rows.get(ip)?.discoveredAt != null);
      }, 20_000);
      const rows = await rowsOf(s, ips);
      for (const [ip, want] of Object.entries(expected)) {
        const r = rows.get(ip)!;
        assert.equal(r.hostname, want.hostname, `${ip} hostname`);
        assert.equal(r.mac, want.mac, `${ip} mac`);
        assert.equal(r.method, want.method, `${ip} method`);
        assert.equal(r.lastError, null);
        assert.equal(r.queryCount, 1);
        const vendor = want.vendor ?? (want.mac ? await vendorOf(want.mac) : undefined);
        assert.equal(r.vendor, vendor ?? null, `${ip} vendor`);
      }
      // The server never asked itself: every PTR went to the upstream, none through our chain.
      assert.ok(up.count(reverseName(rdnsIp), 'PTR') >= 1);
      const m = getDiscoveryMetrics()!;
      assert.equal(m.totals.succeeded, ips.length);
      assert.equal(m.totals.failed, 0);
      assert.deepEqual(m.methods, ['dhcp', 'arp', 'rdns', 'netbios', 'mdns']);
      assert.equal(m.perMethod.netbios?.found, 1);
      assert.equal(m.perMethod.mdns?.found, 1);
      // Every attempt was reported on `discovered`.
      const outcomes = probes.get('each')!.outcomes;
      assert.equal(outcomes.length, m.perMethod.dhcp!.attempts + m.perMethod.arp!.attempts + m.perMethod.rdns!.attempts + m.perMethod.netbios!.attempts + m.perMethod.mdns!.attempts);
    } finally {
      await s.stop();
    }
  });

  test('rate limit: 100 new clients at once start at most burst + rate × elapsed discoveries, and every one is discovered', async (t) => {
    const clients = Array.from({ length: 100 }, (_, i) => `127.0.70.${i + 1}`);
    for (const ip of clients) up.set(reverseName(ip), 'PTR', `host-${ip.split('.').join('-')}.lan`);
    up.reset();
    const RATE = 40;
    const BURST = 10;
    const s = await startServer(
      corefile(`      - ratelimit: { discovery: { rate: ${RATE}, burst: ${BURST} } }
      - clienttrack: { flush: 100ms }
      - discovery: { methods: [rdns], workers: 20, timeout: 1s, rdns: { resolvers: ["${up.address}"] } }
      - dprobe: { id: rate }`),
      { catalog },
    );
    try {
      await sleep(300);
      const answers = await Promise.all(clients.map((from) => s.query('www.example.test', 'A', { from })));
      assert.ok(answers.every((a) => a.rcode === 'NOERROR'));
      await waitFor('every client discovered and written', async () => {
        const rows = await rowsOf(s, clients);
        return clients.every((ip) => rows.get(ip)?.hostname != null && rows.get(ip)?.discovering === false);
      }, 20_000);
      // One PTR query per discovery job.
      assert.equal(up.queries.filter((q) => q.type === 'PTR' && q.name.endsWith('.70.0.127.in-addr.arpa')).length, 100);
      // The jobs the limiter let through, when they were let through.
      const starts = probes.get('rate')!.starts;
      assert.equal(starts.length, 100);
      const t0 = starts[0];
      starts.forEach((at, i) => {
        const allowed = BURST + (RATE * (at - t0)) / 1000;
        assert.ok(i + 1 <= allowed + 1e-6, `discovery ${i + 1} started ${(at - t0).toFixed(1)} ms after the first: at most ${allowed.toFixed(2)} allowed`);
      });
      const elapsed = starts[starts.length - 1] - t0;
      assert.ok(elapsed >= ((100 - BURST) / RATE) * 1000 - 5, `100 discoveries took ${elapsed} ms`);
      t.diagnostic(`100 discoveries started over ${elapsed.toFixed(0)} ms (burst ${BURST}, then ${RATE}/s: at least ${((100 - BURST) / RATE) * 1000} ms)`);
      const m = getDiscoveryMetrics()!;
      assert.ok(m.totals.rateLimited > 0);
      assert.equal(m.totals.succeeded, 100);
      assert.deepEqual(Object.keys(m.guards), ['ratelimit']);
      const rows = await rowsOf(s, clients);
      for (const ip of clients) assert.equal(rows.get(ip)!.hostname, `host-${ip.split('.').join('-')}.lan`);
    } finally {
      await s.stop();
    }
  });

  test('removing ratelimit or breaker from Corefile.yaml removes that guard and nothing else', async () => {
    const both = corefile(`      - breaker: { discovery: { failures: 3, reset: 10s } }
      - ratelimit: { discovery: { rate: 2, burst: 1 } }
      - clienttrack: { flush: 100ms }
      - discovery: { methods: [rdns, netbios], timeout: 300ms, rdns: { resolvers: ["${up.address}"] }, netbios: { port: ${nbPort} } }
      - dprobe: { id: guards }`);
    const s = await startServer(both, { catalog, verbose: process.env.DEBUG_DISCOVERY === '1' });
    const tapsOf = (): string[] => probes.get('guards')!.discovery!.beforeDiscover.taps.map((t) => t.name).filter((n) => n !== 'dprobe');
    try {
      assert.deepEqual(tapsOf(), ['breaker', 'ratelimit']);
      assert.deepEqual(Object.keys(getDiscoveryMetrics()!.guards).sort(), ['breaker', 'ratelimit']);

      const noRate = both.replace(/ {6}- ratelimit.*\n/, '');
      assert.deepEqual(await s.reload(noRate), { ok: true });
      assert.deepEqual(tapsOf(), ['breaker']);
      assert.deepEqual(Object.keys(getDiscoveryMetrics()!.guards), ['breaker']);
      // Discovery still runs, unlimited: 6 clients at once are all discovered at once.
      const batch1 = Array.from({ length: 6 }, (_, i) => `127.0.71.${i + 1}`);
      for (const ip of batch1) up.set(reverseName(ip), 'PTR', `b1-${ip.split('.')[3]}.lan`);
      await Promise.all(batch1.map((from) => s.query('www.example.test', 'A', { from })));
      await waitFor('batch 1', async () => [...(await rowsOf(s, batch1)).values()].filter((r) => r.hostname !== null).length === 6, 10_000);
      assert.equal(getDiscoveryMetrics()!.totals.rateLimited, 0);

      const noBreaker = both.replace(/ {6}- breaker.*\n/, '');
      assert.deepEqual(await s.reload(noBreaker), { ok: true });
      assert.deepEqual(tapsOf(), ['ratelimit']);
      assert.deepEqual(Object.keys(getDiscoveryMetrics()!.guards), ['ratelimit']);
      const batch2 = Array.from({ length: 4 }, (_, i) => `127.0.72.${i + 1}`);
      for (const ip of batch2) up.set(reverseName(ip), 'PTR', `b2-${ip.split('.')[3]}.lan`);
      await Promise.all(batch2.map((from) => s.query('www.example.test', 'A', { from })));
      await waitFor('batch 2', async () => [...(await rowsOf(s, batch2)).values()].filter((r) => r.hostname !== null).length === 4, 10_000);
      assert.ok(getDiscoveryMetrics()!.totals.rateLimited > 0, 'the rate limit is still there');
      // Tracking and answering went on throughout.
      const a = await s.query('www.example.test', 'A', { from: '127.0.72.9' });
      assert.equal(a.rcode, 'NOERROR');
      assert.equal((await rowOf(s, batch1[0]))!.queryCount, 1);
    } finally {
      await s.stop();
    }
  });

  test('without clienttrack, discovery has nothing to do and says so; the server still answers', async () => {
    const s = await startServer(corefile(`      - discovery: { methods: [rdns], rdns: { resolvers: ["${up.address}"] } }`), { catalog });
    try {
      assert.equal((await s.query('www.example.test', 'A', { from: '127.0.73.1' })).rcode, 'NOERROR');
      assert.ok(s.logs.some((l) => /clienttrack is not in this server block/.test(l)));
    } finally {
      await s.stop();
    }
  });
});
