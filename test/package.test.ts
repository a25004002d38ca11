/**
 * The release artifact: `npm pack` → install the tarball with only the runtime dependencies into a temporary
 * folder → run the installed `codexdns --conf …` on a loopback port (acl + cache + forward to a fake upstream)
 * → one query answered → SIGTERM → exit 0.
 *
 * sqlite3 is a native module. A full `npm install` of the tarball compiles it from source on this machine
 * (no prebuilt binary is reachable here): 3 min 27 s measured, beyond a test's budget. So the tarball is
 * installed with `--ignore-scripts`, and the binary the checkout already built
 * (node_modules/sqlite3/build/Release/node_sqlite3.node, N-API, so not tied to the Node version) is copied into
 * the installed sqlite3 — after checking both are the same sqlite3 version. Everything else (the files the
 * tarball ships, the dependency tree npm resolves from the registry without devDependencies, the `bin` link)
 * is exactly what a user gets. Set CODEXDNS_PACK_FULL_BUILD=1 to run sqlite3's own install script instead.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import * as dgram from 'node:dgram';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { query, startFakeUpstream } from '../testing';

const root = path.resolve(__dirname, '..', '..');
const fullBuild = process.env.CODEXDNS_PACK_FULL_BUILD === '1';
// PATH with this Node first: the installed bin is `#!/usr/bin/env node`.
const env = { ...process.env, PATH: `${path.dirname(process.execPath)}${path.delimiter}${process.env.PATH ?? ''}`, npm_config_update_notifier: 'false' };

function sh(cmd: string, args: string[], cwd: string, timeoutMs = 150_000): string {
  const r = spawnSync(cmd, args, { cwd, env, encoding: 'utf8', timeout: timeoutMs });
  assert.equal(r.status, 0, `${cmd} ${args.join(' ')} failed (${r.status ?? r.signal}):\n${r.stdout}\n${r.stderr}`);
  return r.stdout;
}

async function freePort(): Promise<number> {
  const s = dgram.createSocket('udp4');
  await new Promise<void>((r) => s.bind(0, '127.0.0.1', () => r()));
  const port = s.address().port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

function exited(child: ChildProcess): Promise<number | null> {
  return new Promise((r) => child.once('exit', (code) => r(code)));
}

const version = (dir: string): string => (JSON.parse(fs.readFileSync(path.join(dir, 'package.json'), 'utf8')) as { version: string }).version;

test('npm pack → npm install --omit=dev → codexdns --conf answers a query and exits 0 on SIGTERM', { timeout: fullBuild ? 600_000 : 175_000 }, async () => {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'codexdns-pack-'));
  const up = await startFakeUpstream({ records: { 'www.example.org': { A: '192.0.2.10' } } });
  let child: ChildProcess | undefined;
  try {
    // 1. The tarball, from what `npm run build` left in dist/.
    assert.ok(fs.existsSync(path.join(root, 'dist', 'cli', 'codexdns.js')), 'build first (npm run build)');
    const packed = JSON.parse(sh('npm', ['pack', '--json', '--pack-destination', tmp], root)) as { filename: string; files: { path: string }[] }[];
    const tarball = path.join(tmp, packed[0].filename);
    const files = packed[0].files.map((f) => f.path);
    for (const f of ['dist/cli/codexdns.js', 'dist/index.js', 'migrations/000000_create_clients.js', 'packaging/codexdns.service', 'packaging/install.sh', 'packaging/Corefile.yaml', 'Corefile.yaml']) {
      assert.ok(files.includes(f), `the tarball lacks ${f}`);
    }
    // (examples/ ships sources on purpose: they are for reading.)
    const stray = files.filter((f) => f.startsWith('dist/test/') || f.startsWith('dist/bench/') || f.endsWith('.map') || (f.endsWith('.ts') && !f.endsWith('.d.ts') && !f.startsWith('examples/')));
    assert.deepEqual(stray, [], 'tests, benches, TypeScript sources and source maps stay out of the tarball');

    // 2. Install it into a folder, runtime dependencies only.
    const app = path.join(tmp, 'app');
    fs.mkdirSync(app);
    fs.writeFileSync(path.join(app, 'package.json'), JSON.stringify({ name: 'codexdns-pack-test', private: true }));
    const args = ['install', '--omit=dev', '--no-audit', '--no-fund', '--prefer-offline', '--loglevel=error', ...(fullBuild ? [] : ['--ignore-scripts']), tarball];
    sh('npm', args, app, fullBuild ? 580_000 : 170_000);
    const installed = path.join(app, 'node_modules', 'codexdns');
    assert.equal(version(installed), version(root));
    for (const dev of ['typescript', '@types/node', 'playwright-core']) assert.ok(!fs.existsSync(path.join(app, 'node_modules', dev)), `${dev} (a devDependency) was installed`);
    if (!fullBuild) {
      const sqliteHere = path.join(root, 'node_modules', 'sqlite3');
      const sqliteThere = path.join(app, 'node_modules', 'sqlite3');
      assert.equal(version(sqliteThere), version(sqliteHere), 'the installed sqlite3 differs from the checkout\'s: its binary cannot be reused (CODEXDNS_PACK_FULL_BUILD=1)');
      const binary = path.join('build', 'Release', 'node_sqlite3.node');
      fs.mkdirSync(path.dirname(path.join(sqliteThere, binary)), { recursive: true });
      fs.copyFileSync(path.join(sqliteHere, binary), path.join(sqliteThere, binary));
    }
    assert.ok((fs.statSync(path.join(installed, 'packaging', 'install.sh')).mode & 0o111) !== 0, 'packaging/install.sh is executable in the package');
    const bin = path.join(app, 'node_modules', '.bin', 'codexdns');
    assert.ok(fs.existsSync(bin), 'the codexdns bin is linked');
    assert.equal(sh(bin, ['--version'], app).trim(), version(root));

    // 3. Run it: acl + cache + forward to the fake upstream, SQLite in the temp folder, on a loopback port.
    const port = await freePort();
    const conf = path.join(tmp, 'etc', 'Corefile.yaml');
    fs.mkdirSync(path.dirname(conf));
    fs.writeFileSync(conf, [
      'servers:',
      `  - listen: [udp://127.0.0.1:${port}, tcp://127.0.0.1:${port}]`,
      '    plugins:',
      '      - acl: { allow: [127.0.0.0/8] }',
      '      - cache: { capacity: 1000 }',
      `      - forward: { to: ["${up.address}"] }`,
      `storage: { client: sqlite3, connection: { filename: ${JSON.stringify(path.join(tmp, 'state', 'codexdns.sqlite'))} } }`,
      'reload: { watch: false }',
      '',
    ].join('\n'));
    assert.match(sh(bin, ['validate', conf], app), /OK/);
    // The database side of the installed package (sqlite3's native binary, the shipped migrations).
    assert.match(sh(bin, ['migrate', 'up', '--conf', conf], app), /applied: 000000_create_clients\.js, 000001_add_discovering_field\.js/);

    child = spawn(bin, ['--conf', conf], { cwd: app, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let log = '';
    child.stdout!.on('data', (d: Buffer) => (log += d.toString()));
    child.stderr!.on('data', (d: Buffer) => (log += d.toString()));
    const done = exited(child);
    const until = Date.now() + 15_000;
    let answer;
    for (;;) {
      try {
        answer = await query('www.example.org', 'A', { port, timeoutMs: 500 });
        break;
      } catch (err) {
        if (Date.now() > until || child.exitCode !== null) assert.fail(`no answer from the installed codexdns: ${String(err)}\n${log}`);
        await new Promise((r) => setTimeout(r, 100));
      }
    }
    assert.equal(answer.rcode, 'NOERROR', log);
    assert.deepEqual(answer.answers?.map((a) => (a as { data?: unknown }).data), ['192.0.2.10']);
    assert.equal(up.queries.length, 1);

    child.kill('SIGTERM');
    let timer: NodeJS.Timeout | undefined;
    const code = await Promise.race([done, new Promise<string>((r) => (timer = setTimeout(() => r('timeout'), 15_000)))]);
    clearTimeout(timer);
    assert.equal(code, 0, `exit code after SIGTERM\n${log}`);
    assert.match(log, /codexdns stopped/);
    child = undefined;
  } finally {
    child?.kill('SIGKILL');
    await up.stop();
    fs.rmSync(tmp, { recursive: true, force: true });
  }
});
