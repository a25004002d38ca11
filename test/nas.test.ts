/**
 * The NAS build: the systemd unit (checked by `systemd-analyze verify`), the install script (run against a
 * fake root, never the real system), and upgrades (a database made by the first release's schema is opened by
 * this release, and `codexdns migrate down` / `up` work on it).
 */
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import * as crypto from 'node:crypto';
import * as dgram from 'node:dgram';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import knexFactory, { type Knex } from 'knex';
import { parse as parseYaml } from 'yaml';
import { query, startFakeUpstream } from '../testing';

const root = path.resolve(__dirname, '..', '..');
const CLI = path.join(root, 'dist', 'cli', 'codexdns.js');
const UNIT = path.join(root, 'packaging', 'codexdns.service');
const INSTALL = path.join(root, 'packaging', 'install.sh');
const DEFAULT_CONF = path.join(root, 'packaging', 'Corefile.yaml');

function tmpDir(tag: string): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), `codexdns-nas-${tag}-`));
}

function has(cmd: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${cmd}`]).status === 0;
}

function run(cmd: string, args: string[], opts: { env?: NodeJS.ProcessEnv; cwd?: string } = {}): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(cmd, args, { encoding: 'utf8', env: opts.env ?? process.env, cwd: opts.cwd, timeout: 60_000 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** `codexdns` on the checkout's build, as a small executable (the unit needs a path that exists). */
function shim(dir: string): string {
  const bin = path.join(dir, 'bin', 'codexdns');
  fs.mkdirSync(path.dirname(bin), { recursive: true });
  fs.writeFileSync(bin, `#!/bin/sh\nexec ${JSON.stringify(process.execPath)} ${JSON.stringify(CLI)} "$@"\n`, { mode: 0o755 });
  return bin;
}

/** The unit's `[Section] Key=Value` lines (last value wins, as systemd does for these keys). */
function unitKeys(text: string): Map<string, string[]> {
  const out = new Map<string, string[]>();
  let section = '';
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#') || line.startsWith(';')) continue;
    const s = /^\[(.+)\]$/.exec(line);
    if (s) {
      section = s[1];
      continue;
    }
    const eq = line.indexOf('=');
    const key = `${section}.${line.slice(0, eq)}`;
    out.set(key, [...(out.get(key) ?? []), line.slice(eq + 1)]);
  }
  return out;
}

const sha = (file: string): string => (fs.existsSync(file) ? crypto.createHash('sha256').update(fs.readFileSync(file)).digest('hex') : 'absent');

describe('systemd unit', () => {
  const text = fs.readFileSync(UNIT, 'utf8');
  const keys = unitKeys(text);
  const one = (k: string): string | undefined => keys.get(k)?.at(-1);

  test('runs as its own user with only CAP_NET_BIND_SERVICE, restarts on failure, keeps state in /var/lib/codexdns', () => {
    assert.equal(one('Service.User'), 'codexdns');
    assert.equal(one('Service.Group'), 'codexdns');
    assert.equal(one('Service.AmbientCapabilities'), 'CAP_NET_BIND_SERVICE');
    assert.equal(one('Service.CapabilityBoundingSet'), 'CAP_NET_BIND_SERVICE');
    assert.equal(one('Service.NoNewPrivileges'), 'yes');
    assert.equal(one('Service.Restart'), 'on-failure');
    assert.equal(one('Service.StateDirectory'), 'codexdns');
    assert.equal(one('Service.ExecStartPre'), '/usr/local/bin/codexdns validate /etc/codexdns/Corefile.yaml');
    assert.equal(one('Service.ExecStart'), '/usr/bin/env node --single-threaded-gc /usr/local/bin/codexdns --conf /etc/codexdns/Corefile.yaml');
    assert.equal(one('Service.ExecReload'), '/bin/kill -HUP $MAINPID');
    assert.equal(one('Service.LimitNOFILE'), '65536');
    assert.ok(keys.get('Service.Environment')?.some((e) => /^"?NODE_OPTIONS=--max-old-space-size=\d+( --max-semi-space-size=\d+)?"?$/.test(e)), String(keys.get('Service.Environment')));
    assert.equal(one('Service.ProtectSystem'), 'strict');
    assert.equal(one('Service.ReadWritePaths'), '/var/lib/codexdns');
    assert.equal(one('Install.WantedBy'), 'multi-user.target');
    // V8's JIT needs writable-executable memory: this one would crash node at start.
    assert.equal(keys.get('Service.MemoryDenyWriteExecute'), undefined);
  });

  test("ExecStart's command line, with the unit's environment, starts a server that answers (node accepts its flags)", { timeout: 60_000 }, async () => {
    const dir = tmpDir('execstart');
    const up = await startFakeUpstream({ records: { '*.example': { A: '192.0.2.8' } } });
    let child: ChildProcess | undefined;
    try {
      const port = await freePort();
      const conf = writeCorefile(dir, port, up.address, JSON.stringify(path.join(dir, 'db.sqlite')));
      const argv = one('Service.ExecStart')!.split(' ').map((a) => (a === '/usr/local/bin/codexdns' ? CLI : a === '/etc/codexdns/Corefile.yaml' ? conf : a));
      const env: NodeJS.ProcessEnv = { ...process.env };
      for (const e of keys.get('Service.Environment') ?? []) {
        const [k, ...v] = e.replace(/^"|"$/g, '').split('=');
        env[k] = v.join('=');
      }
      child = spawn(argv[0], argv.slice(1), { stdio: ['ignore', 'ignore', 'pipe'], env });
      let log = '';
      child.stderr!.on('data', (d: Buffer) => (log += d.toString()));
      const exited = new Promise<number | null>((r) => child!.once('exit', (code) => r(code)));
      await firstAnswer(child, port, () => log, 15_000);
      // /usr/bin/env execs node in place: the pid is node's, and its command line carries the unit's flags.
      const cmdline = fs.readFileSync(`/proc/${child.pid}/cmdline`, 'utf8').split('\0');
      assert.ok(cmdline.includes('--single-threaded-gc'), cmdline.join(' '));
      child.kill('SIGTERM');
      assert.equal(await exited, 0, log);
      child = undefined;
    } finally {
      child?.kill('SIGKILL');
      await up.stop();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  test('systemd-analyze verify accepts it (ExecStart pointed at a copy that exists), without a warning', (t) => {
    if (!has('systemd-analyze')) return t.skip('systemd-analyze missing: install Debian\'s systemd package (scripts/test-deps.sh)');
    const dir = tmpDir('unit');
    try {
      const bin = shim(dir);
      const unit = path.join(dir, 'codexdns.service');
      fs.writeFileSync(unit, text.replaceAll('/usr/local/bin/codexdns', bin));
      const r = run('systemd-analyze', ['verify', unit]);
      assert.equal(r.status, 0, r.stderr);
      assert.equal(r.stderr.trim(), '', `systemd-analyze verify warned:\n${r.stderr}`);
      // And the unmodified unit fails only for the missing program, so nothing else is hidden by the copy.
      const orig = run('systemd-analyze', ['verify', UNIT]);
      const other = orig.stderr.split('\n').filter((l) => l.trim() && !/\/usr\/local\/bin\/codexdns is not executable/.test(l));
      assert.deepEqual(other, []);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  test('the default service configuration validates (ExecStartPre) and keeps its database in /var/lib/codexdns', () => {
    const r = run(process.execPath, [CLI, 'validate', DEFAULT_CONF]);
    assert.equal(r.status, 0, r.stderr);
    const doc = parseYaml(fs.readFileSync(DEFAULT_CONF, 'utf8')) as { storage: { connection: { filename: string } } };
    assert.equal(doc.storage.connection.filename, '/var/lib/codexdns/codexdns.sqlite');
  });
});

describe('install.sh', () => {
  const realFiles = ['/etc/passwd', '/etc/group', '/etc/shadow', '/etc/systemd/system/codexdns.service', '/etc/codexdns/Corefile.yaml', '/usr/lib/sysusers.d/codexdns.conf'];
  const realBefore = new Map(realFiles.map((f) => [f, sha(f)]));
  const realUntouched = (): void => {
    for (const f of realFiles) assert.equal(sha(f), realBefore.get(f), `${f} was changed on the real system`);
    assert.equal(fs.existsSync('/var/lib/codexdns'), realBefore.get('/var/lib/codexdns') === 'present');
  };
  realBefore.set('/var/lib/codexdns', fs.existsSync('/var/lib/codexdns') ? 'present' : 'absent');

  test('--dry-run prints the steps and changes nothing, with DESTDIR or without', () => {
    const dest = tmpDir('dry');
    try {
      const r = run('bash', [INSTALL, '--dry-run'], { env: { ...process.env, DESTDIR: dest } });
      assert.equal(r.status, 0, r.stderr);
      assert.match(r.stdout, /\+ systemd-sysusers --root=\S+ \S+\/usr\/lib\/sysusers\.d\/codexdns\.conf|\+ useradd .*codexdns/);
      assert.match(r.stdout, /\+ install -d -m 0750 \S+\/var\/lib\/codexdns/);
      assert.match(r.stdout, /\+ install -m 0644 \S+\/packaging\/Corefile\.yaml \S+\/etc\/codexdns\/Corefile\.yaml/);
      assert.match(r.stdout, /\+ write \S+\/etc\/systemd\/system\/codexdns\.service/);
      assert.deepEqual(fs.readdirSync(dest), [], 'a dry run wrote into DESTDIR');
      // Without DESTDIR it is the real system's plan — still only printed.
      const real = run('bash', [INSTALL, '--dry-run']);
      assert.equal(real.status, 0, real.stderr);
      assert.match(real.stdout, /\+ install -m 0644 \S+ \/etc\/codexdns\/Corefile\.yaml|keeping \/etc\/codexdns\/Corefile\.yaml/);
      realUntouched();
    } finally {
      fs.rmSync(dest, { recursive: true, force: true });
    }
  });

  test('DESTDIR: creates the user entry, the folders, the configuration and the unit in the fake root only', (t) => {
    if (!has('systemd-sysusers')) return t.skip('systemd-sysusers missing: install Debian\'s systemd package (scripts/test-deps.sh)');
    const dest = tmpDir('root');
    const progDir = tmpDir('prog');
    try {
      const bin = shim(progDir);
      const r = run('bash', [INSTALL, '--prefix', progDir], { env: { ...process.env, DESTDIR: dest } });
      assert.equal(r.status, 0, `${r.stdout}\n${r.stderr}`);
      const passwd = fs.readFileSync(path.join(dest, 'etc', 'passwd'), 'utf8');
      assert.match(passwd, /^codexdns:x:\d+:\d+:codexdns DNS server:\/var\/lib\/codexdns:\/usr\/sbin\/nologin$/m);
      assert.match(fs.readFileSync(path.join(dest, 'etc', 'group'), 'utf8'), /^codexdns:x:\d+:/m);
      const state = fs.statSync(path.join(dest, 'var', 'lib', 'codexdns'));
      assert.ok(state.isDirectory());
      assert.equal(state.mode & 0o777, 0o750);
      if (process.getuid?.() === 0) {
        const uid = Number(/^codexdns:x:(\d+):/m.exec(passwd)![1]);
        assert.equal(state.uid, uid, 'the state folder belongs to the codexdns user of the fake root');
      }
      assert.equal(fs.readFileSync(path.join(dest, 'etc', 'codexdns', 'Corefile.yaml'), 'utf8'), fs.readFileSync(DEFAULT_CONF, 'utf8'));
      const unit = fs.readFileSync(path.join(dest, 'etc', 'systemd', 'system', 'codexdns.service'), 'utf8');
      assert.match(unit, new RegExp(`^ExecStart=/usr/bin/env node --single-threaded-gc ${bin} --conf /etc/codexdns/Corefile\\.yaml$`, 'm'), 'ExecStart follows --prefix');
      assert.ok(fs.existsSync(path.join(dest, 'usr', 'lib', 'sysusers.d', 'codexdns.conf')));
      if (has('systemd-analyze')) {
        const v = run('systemd-analyze', ['verify', path.join(dest, 'etc', 'systemd', 'system', 'codexdns.service')]);
        assert.equal(v.status, 0, v.stderr);
        assert.equal(v.stderr.trim(), '', v.stderr);
      }

      // Again, over an edited configuration: it is kept, the new default goes beside it; the user is not duplicated.
      const conf = path.join(dest, 'etc', 'codexdns', 'Corefile.yaml');
      fs.writeFileSync(conf, '# edited\n');
      const again = run('bash', [INSTALL, '--prefix', progDir], { env: { ...process.env, DESTDIR: dest } });
      assert.equal(again.status, 0, again.stderr);
      assert.equal(fs.readFileSync(conf, 'utf8'), '# edited\n');
      assert.equal(fs.readFileSync(`${conf}.dist`, 'utf8'), fs.readFileSync(DEFAULT_CONF, 'utf8'));
      assert.equal(fs.readFileSync(path.join(dest, 'etc', 'passwd'), 'utf8').match(/^codexdns:/gm)?.length, 1);
      realUntouched();
    } finally {
      fs.rmSync(dest, { recursive: true, force: true });
      fs.rmSync(progDir, { recursive: true, force: true });
    }
  });
});

/** DIR/Corefile.yaml: one UDP listener on `port`, acl (loopback), clienttrack, forward to `upstream`; SQLite at `db`. */
function writeCorefile(dir: string, port: number, upstream: string, db: string): string {
  const conf = path.join(dir, 'Corefile.yaml');
  fs.writeFileSync(conf, [
    'servers:',
    `  - listen: [udp://127.0.0.1:${port}]`,
    '    plugins:',
    '      - acl: { allow: [127.0.0.0/8] }',
    '      - clienttrack: { flush: 100ms }',
    `      - forward: { to: ["${upstream}"] }`,
    `storage: { client: sqlite3, connection: { filename: ${db} } }`,
    'reload: { watch: false }',
    '',
  ].join('\n'));
  return conf;
}

/** Waits until the server `child` answers `a.example` on `port`; fails with its log if it exits or `ms` pass. */
async function firstAnswer(child: ChildProcess, port: number, log: () => string, ms: number): Promise<void> {
  const until = Date.now() + ms;
  for (;;) {
    try {
      assert.equal((await query('a.example', 'A', { port, timeoutMs: 500, from: '127.0.0.1' })).rcode, 'NOERROR');
      return;
    } catch (err) {
      if (Date.now() > until || child.exitCode !== null) assert.fail(`no answer: ${String(err)}\n${log()}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}

async function freePort(): Promise<number> {
  const s = dgram.createSocket('udp4');
  await new Promise<void>((r) => s.bind(0, '127.0.0.1', () => r()));
  const port = s.address().port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

function sqlite(filename: string): Knex {
  return knexFactory({ client: 'sqlite3', connection: { filename }, useNullAsDefault: true, pool: { min: 1, max: 1 } });
}

describe('upgrades', () => {
  test('a database of the first release opens with its rows intact; migrate down, then up, keep them', { timeout: 60_000 }, async () => {
    const dir = tmpDir('upgrade');
    const db = path.join(dir, 'state', 'codexdns.sqlite');
    const up = await startFakeUpstream({ records: { '*.example': { A: '192.0.2.7' } } });
    let child: ChildProcess | undefined;
    try {
      // 1. The first release: only migration 000000 existed, in the core set (as it was before clienttrack owned
      // the table: the core file is empty now).
      const first = path.join(dir, 'release-0.0.1-migrations');
      fs.mkdirSync(first);
      fs.copyFileSync(path.join(root, 'test', 'fixtures', 'legacy-core-migrations', '000000_create_clients.js'), path.join(first, '000000_create_clients.js'));
      fs.mkdirSync(path.dirname(db));
      let k = sqlite(db);
      const [, applied] = (await k.migrate.latest({ directory: first, loadExtensions: ['.js'] })) as [number, string[]];
      assert.deepEqual(applied, ['000000_create_clients.js']);
      const old = [
        { ip: '192.168.1.10', hostname: 'nas', mac: 'aa:bb:cc:00:00:10', vendor: 'Synology', discovery_method: 'dhcp', first_seen: 1_600_000_000_000, last_seen: 1_650_000_000_000, query_count: 1234, discovered_at: 1_600_000_001_000, last_error: null },
        { ip: '192.168.1.11', hostname: null, mac: null, vendor: null, discovery_method: null, first_seen: 1_600_000_000_500, last_seen: 1_600_000_900_000, query_count: 7, discovered_at: null, last_error: 'timeout' },
        { ip: '127.0.0.1', hostname: 'localhost', mac: null, vendor: null, discovery_method: 'rdns', first_seen: 1_500_000_000_000, last_seen: 1_500_000_000_000, query_count: 41, discovered_at: 1_500_000_000_100, last_error: null },
      ];
      await k('clients').insert(old);
      await k.destroy();

      const port = await freePort();
      const conf = writeCorefile(dir, port, up.address, './state/codexdns.sqlite');
      const cli = (...args: string[]): string => {
        const r = run(process.execPath, [CLI, ...args, '--conf', conf]);
        assert.equal(r.status, 0, `codexdns ${args.join(' ')}: ${r.stderr}`);
        return r.stdout;
      };
      const status = JSON.parse(cli('migrate', 'status')) as { applied: string[]; pending: string[] };
      assert.deepEqual(status.applied, ['000000_create_clients.js']);
      assert.deepEqual(status.pending, ['000001_add_discovering_field.js']);

      // 2. This release starts on it: migrations up at start-up, rows intact, tracking goes on.
      child = spawn(process.execPath, [CLI, '--conf', conf], { stdio: ['ignore', 'pipe', 'pipe'] });
      let log = '';
      child.stderr!.on('data', (d: Buffer) => (log += d.toString()));
      const exited = new Promise<number | null>((r) => child!.once('exit', (code) => r(code)));
      await firstAnswer(child, port, () => log, 10_000);
      assert.equal((await query('b.example', 'A', { port, from: '127.0.0.9' })).rcode, 'NOERROR');
      child.kill('SIGTERM');
      assert.equal(await exited, 0, log);
      child = undefined;
      assert.match(log, /migrations applied/);

      k = sqlite(db);
      try {
        const cols = Object.keys(await k('clients').columnInfo());
        assert.ok(cols.includes('discovering'), `columns: ${cols.join(', ')}`);
        const rows = (await k('clients').select('*').orderBy('ip')) as Record<string, unknown>[];
        const byIp = new Map(rows.map((r) => [r.ip as string, r]));
        for (const o of old.filter((r) => r.ip !== '127.0.0.1')) {
          const { discovering, ...rest } = byIp.get(o.ip)!;
          assert.deepEqual(rest, o, `row ${o.ip} changed`);
          assert.equal(Number(discovering), 0);
        }
        const lo = byIp.get('127.0.0.1')!;
        assert.equal(lo.hostname, 'localhost');
        assert.equal(lo.first_seen, 1_500_000_000_000, 'first seen is kept');
        assert.ok(Number(lo.query_count) >= 42, `query_count ${String(lo.query_count)}: the old count plus the new query`);
        assert.ok(byIp.has('127.0.0.9'), 'a new client is tracked after the upgrade');
      } finally {
        await k.destroy();
      }

      // 3. The way back, and forward again: the column is clienttrack's (its set), the core's 000001 is empty.
      assert.match(cli('migrate', 'down', 'clienttrack'), /rolled back: 000001_add_discovering_field\.js/);
      k = sqlite(db);
      try {
        assert.ok(!Object.keys(await k('clients').columnInfo()).includes('discovering'));
        const rows = (await k('clients').select('*').orderBy('ip')) as Record<string, unknown>[];
        assert.equal(rows.length, 4);
        assert.deepEqual(rows.find((r) => r.ip === '192.168.1.10'), old[0]);
        // The index the first release made survives SQLite's table rebuild.
        const idx = (await k.raw("select name from sqlite_master where type = 'index' and tbl_name = 'clients'")) as { name: string }[];
        assert.ok(idx.some((i) => i.name === 'clients_last_seen_idx'), JSON.stringify(idx));
      } finally {
        await k.destroy();
      }
      assert.match(cli('migrate', 'up', 'clienttrack'), /applied: 000001_add_discovering_field\.js/);
      assert.match(cli('migrate', 'up'), /already up to date/);
      k = sqlite(db);
      try {
        const rows = (await k('clients').select('*')) as Record<string, unknown>[];
        assert.equal(rows.length, 4);
        const { discovering, ...rest } = rows.find((r) => r.ip === '192.168.1.10')!;
        assert.deepEqual(rest, old[0]);
        assert.equal(Number(discovering), 0);
      } finally {
        await k.destroy();
      }
    } finally {
      child?.kill('SIGKILL');
      await up.stop();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
