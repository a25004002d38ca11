// clienttrack's identity hooks — identified, forgotten, loadIdentities — on a tracker over a real SQLite
// database, then in a server across reloads (the hooks follow the chain that serves).
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { startServer } from '../testing';
import { definePlugin } from '../core/plugin';
import { Type } from '../config/types';
import { createLogger, type Logger } from '../core/log';
import { ClientStore, registerClientsMigrations } from '../plugins/clienttrack/store';
import { openStorage, type Storage } from '../storage/open';
import clienttrack, { connectHooks, Tracker, type TrackerOptions } from '../plugins/clienttrack';
import type { ClientIdentity, ClienttrackHooks } from '../plugins/clienttrack/hooks';
import { sleep, waitFor } from './helpers/net';
import { catalogWith } from './helpers/catalog';

const BASE: TrackerOptions = {
  workers: 4,
  queue: 1000,
  batch: 500,
  flushMs: 3_600_000,
  maxPending: 50_000,
  maxClients: 50_000,
  retentionMs: 90 * 86_400_000,
  pruneIntervalMs: 3_600_000,
  logIntervalMs: 10_000,
  indexWaitMs: 10_000,
  shutdownFlushMs: 2_000,
};

function capture(): { log: Logger; lines: string[] } {
  const lines: string[] = [];
  return { log: createLogger({ level: 'debug', format: 'text' }, (l) => lines.push(l)), lines };
}

interface Rig {
  t: Tracker;
  hooks: ClienttrackHooks;
  store: ClientStore;
  storage: Storage;
  lines: string[];
  identified: ClientIdentity[];
  forgotten: string[][];
  close(): Promise<void>;
}

async function rig(o: Partial<TrackerOptions> = {}, wall?: () => number): Promise<Rig> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'codexdns-ident-'));
  const storage = await openStorage({ client: 'sqlite3', connection: { filename: path.join(dir, 'clients.sqlite') } }, { baseDir: dir });
  registerClientsMigrations(storage);
  await storage.migrate.latest();
  const store = new ClientStore(storage);
  const { log, lines } = capture();
  const t = new Tracker({ ...BASE, ...o }, { openStore: async () => store, log, wallClock: wall });
  const hooks = clienttrack.declare!({ block: {} as never }) as ClienttrackHooks;
  connectHooks(t, hooks);
  t.setIdentityHooks(hooks.identified, hooks.forgotten);
  const identified: ClientIdentity[] = [];
  const forgotten: string[][] = [];
  hooks.identified.tap('test', (id) => void identified.push(id));
  hooks.forgotten.tap('test', (ips) => void forgotten.push([...ips]));
  return {
    t,
    hooks,
    store,
    storage,
    lines,
    identified,
    forgotten,
    close: async () => {
      await t.close();
      await storage.close();
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

async function ready(t: Tracker): Promise<void> {
  t.start();
  await waitFor('index loaded', () => t.indexLoaded);
}

/** Runs what is queued and writes what is pending. */
async function settle(r: Rig): Promise<void> {
  assert.equal(await r.t.pool.drain(5000), true);
  assert.equal(await r.t.batcher.flushAll(performance.now() + 5000), true);
}

describe('clienttrack identity hooks: identified', () => {
  test('fires for an accepted update with a name or a MAC (discovering = not done), and for the end of a discovery', async () => {
    const r = await rig({}, () => 1_700_000_000_000);
    try {
      await ready(r.t);
      r.t.track('10.0.0.5', Date.now(), 'x', 1, 0);
      r.hooks.applyDiscovery.call({ ip: '10.0.0.5', mac: 'aa:bb:cc:00:00:05', method: 'arp', error: 'rdns timed out', done: false });
      r.hooks.applyDiscovery.call({ ip: '10.0.0.5', error: 'rdns timed out', done: false });
      r.hooks.applyDiscovery.call({ ip: '10.0.0.5', hostname: 'nas', mac: 'aa:bb:cc:00:00:05', vendor: 'Acme', method: 'rdns', done: true });
      r.hooks.applyDiscovery.call({ ip: '10.0.0.6', done: true });
      assert.deepEqual(r.identified, [
        { ip: '10.0.0.5', mac: 'aa:bb:cc:00:00:05', method: 'arp', discovering: true, at: 1_700_000_000_000 },
        { ip: '10.0.0.5', hostname: 'nas', mac: 'aa:bb:cc:00:00:05', vendor: 'Acme', method: 'rdns', discovering: false, at: 1_700_000_000_000 },
        { ip: '10.0.0.6', discovering: false, at: 1_700_000_000_000 },
      ]);
      // Before the write: answerable at once, not after the next batch.
      assert.equal((await r.store.get('10.0.0.5'))?.hostname ?? null, null);
      await settle(r);
      assert.equal((await r.store.get('10.0.0.5'))?.hostname, 'nas');
    } finally {
      await r.close();
    }
  });

  test('a tap that throws never reaches discovery; the update is still written and the failure logged once per interval', async () => {
    const r = await rig();
    try {
      await ready(r.t);
      r.hooks.identified.tap('broken', () => {
        throw new Error('boom');
      });
      assert.doesNotThrow(() => r.hooks.applyDiscovery.call({ ip: '10.0.0.7', hostname: 'tv', done: true }));
      assert.doesNotThrow(() => r.hooks.applyDiscovery.call({ ip: '10.0.0.8', hostname: 'tv2', done: true }));
      await settle(r);
      assert.equal((await r.store.get('10.0.0.7'))?.hostname, 'tv');
      assert.equal((await r.store.get('10.0.0.8'))?.hostname, 'tv2');
      r.t.tick();
      const warnings = r.lines.filter((l) => /an identified or forgotten observer threw/.test(l));
      assert.equal(warnings.length, 2, r.lines.join('\n'));
      assert.match(warnings[0], /boom/);
      assert.match(warnings[1], /count=1|"count":1/);
    } finally {
      await r.close();
    }
  });

  test('an update the tracker refuses (shutting down) is not announced', async () => {
    const r = await rig();
    await ready(r.t);
    await r.t.close();
    r.hooks.applyDiscovery.call({ ip: '10.0.0.9', hostname: 'late', done: true });
    assert.deepEqual(r.identified, []);
    await r.close();
  });

  test('a client left discovering by an earlier run, settled without discovery, is announced as not discovering', async () => {
    const r = await rig();
    try {
      const now = Date.now();
      await r.store.writeBatch([{ ip: '10.0.0.10', firstSeen: now - 1000, lastSeen: now - 1000, queries: 1, hostname: 'printer', discovering: true }]);
      await ready(r.t);
      // No discovery taps newClient: the next query settles the client.
      r.t.track('10.0.0.10', now, 'x', 1, 0);
      await settle(r);
      assert.deepEqual(r.identified.map((i) => [i.ip, i.discovering, i.hostname]), [['10.0.0.10', false, undefined]]);
    } finally {
      await r.close();
    }
  });
});

describe('clienttrack identity hooks: forgotten', () => {
  test('retention removes old clients and tells their addresses; a throwing tap does not make the prune fail', async () => {
    const r = await rig({ retentionMs: 60_000 });
    try {
      const now = Date.now();
      await r.store.writeBatch([
        { ip: '10.0.1.1', firstSeen: now - 3_600_000, lastSeen: now - 3_600_000, queries: 1, hostname: 'old-a' },
        { ip: '10.0.1.2', firstSeen: now - 7_200_000, lastSeen: now - 7_200_000, queries: 1, hostname: 'old-b' },
        { ip: '10.0.1.3', firstSeen: now - 1000, lastSeen: now - 1000, queries: 1, hostname: 'recent' },
      ]);
      await ready(r.t);
      r.hooks.forgotten.tap('broken', () => {
        throw new Error('observer failed');
      });
      const deleted = await r.t.prune();
      assert.equal(deleted, 2);
      assert.deepEqual(r.forgotten.map((l) => [...l].sort()), [['10.0.1.1', '10.0.1.2']]);
      assert.equal(await r.store.get('10.0.1.1'), undefined);
      assert.ok(await r.store.get('10.0.1.3'));
      assert.ok(r.lines.some((l) => /an identified or forgotten observer threw/.test(l) && /observer failed/.test(l)), r.lines.join('\n'));
      assert.ok(!r.lines.some((l) => /pruning old clients failed/.test(l)));
      // Nothing old left: nothing told.
      assert.equal(await r.t.prune(), 0);
      assert.equal(r.forgotten.length, 1);
    } finally {
      await r.close();
    }
  });
});

describe('clienttrack identity hooks: loadIdentities', () => {
  test('the `limit` most recently seen clients with a name or a MAC, most recent first, even behind many unnamed ones', async () => {
    const r = await rig({ maxClients: 100 });
    try {
      const now = Date.now();
      const rows = [
        // 20 unnamed clients, more recent than every named one: taking `limit` rows and filtering would find none.
        ...Array.from({ length: 20 }, (_, i) => ({ ip: `10.0.2.${i + 1}`, firstSeen: now - 1000, lastSeen: now - 1000 + i, queries: 1 })),
        { ip: '10.0.3.1', firstSeen: now - 50_000, lastSeen: now - 50_000, queries: 1, hostname: 'laptop', mac: 'aa:bb:cc:00:00:01', vendor: 'Acme', method: 'dhcp', discovering: false },
        { ip: '10.0.3.2', firstSeen: now - 60_000, lastSeen: now - 60_000, queries: 1, mac: 'aa:bb:cc:00:00:02', method: 'arp', discovering: true },
        { ip: '10.0.3.3', firstSeen: now - 70_000, lastSeen: now - 70_000, queries: 1, hostname: 'phone' },
        { ip: '10.0.3.4', firstSeen: now - 80_000, lastSeen: now - 80_000, queries: 1, hostname: 'old' },
      ];
      await r.store.writeBatch(rows);
      const two = await r.hooks.loadIdentities.promise(2);
      assert.deepEqual(two, [
        { ip: '10.0.3.1', hostname: 'laptop', mac: 'aa:bb:cc:00:00:01', vendor: 'Acme', method: 'dhcp', discovering: false, at: now - 50_000 },
        { ip: '10.0.3.2', mac: 'aa:bb:cc:00:00:02', method: 'arp', discovering: true, at: now - 60_000 },
      ]);
      const all = await r.hooks.loadIdentities.promise(100);
      assert.deepEqual(all.map((i) => i.ip), ['10.0.3.1', '10.0.3.2', '10.0.3.3', '10.0.3.4']);
      assert.deepEqual(await r.hooks.loadIdentities.promise(0), []);
    } finally {
      await r.close();
    }
  });

  test('rejects while the database is unreachable', async () => {
    const { log } = capture();
    const t = new Tracker(BASE, { openStore: async () => Promise.reject(new Error('database is down')), log });
    const hooks = clienttrack.declare!({ block: {} as never }) as ClienttrackHooks;
    connectHooks(t, hooks);
    await assert.rejects(hooks.loadIdentities.promise(10), /database is down/);
    await t.close(100);
  });
});

// ---------------------------------------------------------------------------------------------------------
// In a server: the hooks follow the chain that serves.

interface IdProbe {
  hooks: ClienttrackHooks;
  identified: ClientIdentity[];
}
const probes = new Map<string, IdProbe>();
const idprobe = definePlugin({
  name: 'idprobe',
  options: Type.Object({ id: Type.String() }),
  setup(api, o) {
    const hooks = api.hooksOf('clienttrack');
    if (!hooks) throw new Error('idprobe needs clienttrack');
    const p: IdProbe = { hooks, identified: [] };
    hooks.identified.tap('idprobe', (i) => void p.identified.push(i));
    probes.set(o.id, p);
  },
});
const catalog = catalogWith(idprobe);

describe('clienttrack identity hooks in a server', () => {
  let dir: string;
  before(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'codexdns-ident-srv-'));
  });
  after(() => fs.rmSync(dir, { recursive: true, force: true }));

  const corefile = (probe: string, extra = ''): string => `
servers:
  - listen: [udp://127.0.0.1:0, tcp://127.0.0.1:0]
    plugins:
      - acl: { allow: [127.0.0.0/8] }
      - clienttrack: { flush: 100ms }
      - idprobe: { id: ${probe} }
${extra}
storage: { client: sqlite3, connection: { filename: ${JSON.stringify(path.join(dir, 'clients.sqlite'))} } }
`;

  test('identities go to the serving chain: a reload that fails after clienttrack set up leaves them with the chain that still serves', async () => {
    const s = await startServer(corefile('first'), { catalog });
    try {
      await waitFor('first probe', () => probes.has('first'));
      const first = probes.get('first')!;
      first.hooks.applyDiscovery.call({ ip: '127.0.80.1', hostname: 'one', done: true });
      assert.deepEqual(first.identified.map((i) => i.hostname), ['one']);

      // clienttrack and the probe set up, then a later plugin's setup throws: the reload fails.
      const failed = await s.reload(corefile('failed', '      - clientnames: { hosts: { "not a label": 127.0.0.9 } }'));
      assert.equal(failed.ok, false);
      assert.match(String(failed.error), /hosts/);
      first.hooks.applyDiscovery.call({ ip: '127.0.80.2', hostname: 'two', done: true });
      assert.deepEqual(first.identified.map((i) => i.hostname), ['one', 'two'], 'still told to the serving chain');
      assert.deepEqual(probes.get('failed')?.identified ?? [], []);

      const ok = await s.reload(corefile('second'));
      assert.equal(ok.ok, true);
      const second = probes.get('second')!;
      second.hooks.applyDiscovery.call({ ip: '127.0.80.3', hostname: 'three', done: true });
      assert.deepEqual(second.identified.map((i) => i.hostname), ['three']);
      assert.deepEqual(first.identified.map((i) => i.hostname), ['one', 'two'], 'the retired chain hears nothing more');
      await sleep(0);
    } finally {
      await s.stop();
    }
  });
});
