import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import * as dgram from 'node:dgram';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { query } from '../testing';

const CLI = path.resolve(__dirname, '..', 'cli', 'codexdns.js');

async function freePort(): Promise<number> {
  const s = dgram.createSocket('udp4');
  await new Promise<void>((r) => s.bind(0, '127.0.0.1', () => r()));
  const port = s.address().port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

function tmpConfig(text: string): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'codexdns-cli-'));
  const file = path.join(dir, 'Corefile.yaml');
  fs.writeFileSync(file, text);
  return file;
}

async function waitForAnswer(port: number, name: string, ms = 5000): Promise<string> {
  const until = Date.now() + ms;
  for (;;) {
    try {
      return (await query(name, 'A', { port, timeoutMs: 1000 })).rcode;
    } catch (err) {
      if (Date.now() > until) throw err;
      await new Promise((r) => setTimeout(r, 50));
    }
  }
}

function exited(child: ChildProcess): Promise<number | null> {
  return new Promise((r) => child.once('exit', (code) => r(code)));
}

describe('codexdns CLI', () => {
  test('validate prints every error with FILE:LINE:COL and exits 1', () => {
    const file = tmpConfig('servers:\n  - listen: [udp://127.0.0.1:5300]\n    plugins:\n      - nope: {}\n      - acl: { what: 1 }\n');
    const r = spawnSync(process.execPath, [CLI, 'validate', file], { encoding: 'utf8' });
    assert.equal(r.status, 1);
    const lines = r.stderr.trim().split('\n');
    assert.equal(lines.length, 2, r.stderr);
    assert.match(lines[0], /Corefile\.yaml:4:9 plugin nope: unknown plugin/);
    assert.match(lines[1], /Corefile\.yaml:5:\d+ plugin acl: unknown option what/);
  });

  test('validate accepts a good file and exits 0', () => {
    const file = tmpConfig('servers:\n  - listen: [udp://127.0.0.1:5300]\n    plugins: [acl]\n');
    const r = spawnSync(process.execPath, [CLI, 'validate', file], { encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /OK/);
  });

  test('schema prints a JSON Schema naming every built-in plugin', () => {
    const r = spawnSync(process.execPath, [CLI, 'schema'], { encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    const schema = JSON.parse(r.stdout) as { properties: { servers: { items: { properties: { plugins: { items: { anyOf: { properties?: Record<string, unknown> }[] } } } } } } };
    const names = schema.properties.servers.items.properties.plugins.items.anyOf.flatMap((a) => Object.keys(a.properties ?? {}));
    assert.ok(names.includes('acl'));
  });

  test('runs, reloads on SIGHUP (a broken file keeps the old chain), stops on SIGTERM with exit 0', async () => {
    const port = await freePort();
    const file = tmpConfig(`servers:\n  - listen: [udp://127.0.0.1:${port}]\n    plugins:\n      - acl: { allow: [127.0.0.1] }\nreload: { watch: false }\n`);
    const child = spawn(process.execPath, [CLI, '--conf', file], { stdio: ['ignore', 'pipe', 'pipe'] });
    let log = '';
    child.stderr!.on('data', (d: Buffer) => (log += d.toString()));
    const done = exited(child);
    try {
      // Only acl in the chain: an allowed client falls through to SERVFAIL, a denied one gets REFUSED.
      assert.equal(await waitForAnswer(port, 'a.example'), 'SERVFAIL');
      fs.writeFileSync(file, `servers:\n  - listen: [udp://127.0.0.1:${port}]\n    plugins:\n      - acl: { allow: [127.0.0.2] }\nreload: { watch: false }\n`);
      child.kill('SIGHUP');
      const until = Date.now() + 5000;
      while (!/configuration reloaded/.test(log) && Date.now() < until) await new Promise((r) => setTimeout(r, 20));
      assert.equal((await query('a.example', 'A', { port })).rcode, 'REFUSED');
      fs.writeFileSync(file, 'servers:\n  - listen: [udp://127.0.0.1:1]\n    plugins: [{ broken: yes }]\n');
      child.kill('SIGHUP');
      while (!/reload failed/.test(log) && Date.now() < until + 5000) await new Promise((r) => setTimeout(r, 20));
      assert.match(log, /reload failed; the previous configuration keeps serving.*Corefile\.yaml:3:\d+ plugin broken: unknown plugin/);
      assert.equal((await query('a.example', 'A', { port })).rcode, 'REFUSED');
      child.kill('SIGTERM');
      assert.equal(await done, 0);
    } finally {
      if (child.exitCode === null) child.kill('SIGKILL');
    }
  });

  test('SIGTERM lets a query in flight finish before exiting 0', async () => {
    const port = await freePort();
    const file = tmpConfig(`servers:\n  - listen: [udp://127.0.0.1:${port}]\n    plugins:\n      - use: ./slow.js\nreload: { watch: false }\n`);
    fs.writeFileSync(path.join(path.dirname(file), 'slow.js'), `
      const { DnsResponse } = require(${JSON.stringify(path.resolve(__dirname, '..', 'core', 'response.js'))});
      module.exports = { name: 'slow', options: { type: 'object', properties: {} }, setup(api) {
        api.hooks.query.tapPromise('slow', (ctx) => new Promise((r) => setTimeout(() => r(ctx.reply(3)), 400)));
      } };`);
    const child = spawn(process.execPath, [CLI, '--conf', file], { stdio: ['ignore', 'pipe', 'pipe'] });
    const done = exited(child);
    try {
      assert.equal(await waitForAnswer(port, 'warmup.example'), 'NXDOMAIN');
      const pending = query('inflight.example', 'A', { port, timeoutMs: 3000 });
      await new Promise((r) => setTimeout(r, 100));
      child.kill('SIGTERM');
      assert.equal((await pending).rcode, 'NXDOMAIN');
      assert.equal(await done, 0);
    } finally {
      if (child.exitCode === null) child.kill('SIGKILL');
    }
  });

  test('a port already in use fails start-up with a message at the listen line', async () => {
    const s = dgram.createSocket('udp4');
    await new Promise<void>((r) => s.bind(0, '127.0.0.1', () => r()));
    const file = tmpConfig(`servers:\n  - listen: [udp://127.0.0.1:${s.address().port}]\n    plugins: [acl]\n`);
    const r = spawnSync(process.execPath, [CLI, '--conf', file], { encoding: 'utf8', timeout: 10000 });
    s.close();
    assert.equal(r.status, 1);
    assert.match(r.stderr, /Corefile\.yaml:2:14 option listen: .*address already in use/);
  });
});

describe('cli: read-only commands create nothing', () => {
  test('migrate status, down and unlock on a SQLite file that does not exist leave no file; up creates it', () => {
    const file = tmpConfig('servers:\n  - listen: [udp://127.0.0.1:5399]\n    plugins: [forward: { to: [127.0.0.1:5398] }]\nstorage: { client: sqlite3, connection: { filename: ./data/db.sqlite } }\n');
    const dir = path.dirname(file);
    try {
      for (const action of ['status', 'down', 'unlock']) {
        const r = spawnSync(process.execPath, [CLI, 'migrate', action, '--conf', file], { encoding: 'utf8' });
        assert.equal(r.status, 0, r.stderr);
        assert.match(r.stdout, /no database at .*db\.sqlite: nothing is applied/);
        assert.ok(!fs.existsSync(path.join(dir, 'data')), `migrate ${action} created ${path.join(dir, 'data')}`);
      }
      const up = spawnSync(process.execPath, [CLI, 'migrate', 'up', '--conf', file], { encoding: 'utf8' });
      assert.equal(up.status, 0, up.stderr);
      assert.ok(fs.existsSync(path.join(dir, 'data', 'db.sqlite')));
      const status = spawnSync(process.execPath, [CLI, 'migrate', 'status', '--conf', file], { encoding: 'utf8' });
      assert.deepEqual((JSON.parse(status.stdout) as { pending: string[] }).pending, []);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('cli: a listener that cannot bind', () => {
  test('is reported at its listen line, with no misleading database warning first', async () => {
    const taken = dgram.createSocket('udp4');
    await new Promise<void>((r) => taken.bind(0, '127.0.0.1', () => r()));
    const port = taken.address().port;
    const file = tmpConfig(`servers:\n  - listen: [udp://127.0.0.1:${port}]\n    plugins:\n      - acl: {}\n      - clienttrack: {}\n      - forward: { to: [127.0.0.1:5399] }\nstorage: { client: sqlite3, connection: { filename: ./data/db.sqlite } }\n`);
    try {
      const r = spawnSync(process.execPath, [CLI, '--conf', file], { encoding: 'utf8', timeout: 30_000 });
      assert.equal(r.status, 1);
      assert.match(r.stderr, /Corefile\.yaml:2:\d+ option listen: udp:\/\/127\.0\.0\.1:\d+: address already in use/);
      assert.doesNotMatch(r.stdout + r.stderr, /database unavailable/);
    } finally {
      taken.close();
      fs.rmSync(path.dirname(file), { recursive: true, force: true });
    }
  });
});
