/**
 * An author's path from the release artifact: `npm pack` → an empty plugin folder → `npm install` the tarball
 * offline → a TypeScript plugin using definePlugin, typed options and clienttrack's published hooks, compiled
 * with `declaration: true` by this checkout's tsc → the plugin's own test, written with `codexdns/testing`, run
 * with `node --test` against a server that loads the plugin with `use:`.
 *
 * No network: before `npm install --offline`, the folder's node_modules gets a link to this checkout's copy of
 * each of codexdns's runtime dependencies. npm keeps a link that satisfies a dependency (it is what the user's
 * hoisted copy would be) and fetches nothing, so the tarball is the one thing npm unpacks. The plugin resolves
 * `codexdns` and `codexdns/testing` to the unpacked package, exactly as an author's would. sqlite3's native
 * binary is the checkout's (built by `npm ci`), so nothing is compiled. (test/package.test.ts installs the
 * tarball's dependency tree from the registry instead, as a user runs the server.)
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

const root = path.resolve(__dirname, '..', '..');
const env: NodeJS.ProcessEnv = { ...process.env, PATH: `${path.dirname(process.execPath)}${path.delimiter}${process.env.PATH ?? ''}`, npm_config_update_notifier: 'false' };
// The plugin's test is a test run of its own, not a child of this one.
delete env.NODE_TEST_CONTEXT;

function run(cmd: string, args: string[], cwd: string, timeoutMs = 60_000): string {
  const r = spawnSync(cmd, args, { cwd, env, encoding: 'utf8', timeout: timeoutMs });
  assert.equal(r.status, 0, `${cmd} ${args.join(' ')} failed (${r.status ?? r.signal}):\n${r.stdout}\n${r.stderr}`);
  return r.stdout;
}

/**
 * The plugin: `seen.test` TXT answers clienttrack's worker count, read in setup through its published
 * `queueMetrics` hook (the plugin is listed before clienttrack: `uses` sets clienttrack up first), and the
 * clients clienttrack announced on `newClient`. The `@ts-expect-error` lines only compile if hooksOf is typed
 * (with `never` the call itself fails, with `any` the directive is unused), and the message's only if
 * dns-packet's types are there.
 */
const PLUGIN = `import { definePlugin, DnsResponse, Duration, Type, type ClienttrackHooks, type NewClientEvent, type Static } from 'codexdns';

const Options = Type.Object({
  name: Type.String({ default: 'seen.test' }),
  ttl: Type.Integer({ minimum: 0, default: 0 }),
  window: Duration(60_000),
  order: Type.Union([Type.Literal('sorted'), Type.Literal('arrival')], { default: 'sorted' }),
  note: Type.Optional(Type.String()),
});
export type SeenOptions = Static<typeof Options>;

export default definePlugin({
  name: 'seen',
  options: Options,
  uses: ['clienttrack'],
  setup(api, options: SeenOptions) {
    const track: ClienttrackHooks | undefined = api.hooksOf('clienttrack');
    const workers = track?.queueMetrics.call()?.workers ?? 0;
    const seen: string[] = [];
    track?.newClient.tap('seen', (ev: NewClientEvent) => {
      if (!seen.includes(ev.ip)) seen.push(ev.ip);
    });
    // @ts-expect-error newClient's taps get a NewClientEvent, not a number
    track?.newClient.tap('seen', (ev: number) => ev + 1);
    // @ts-expect-error no plugin named nosuch publishes hooks
    api.hooksOf('nosuch');
    api.hooks.query.tap(api.name, (ctx) => {
      if (ctx.qname !== options.name) return undefined;
      const q = ctx.message.questions![0];
      // @ts-expect-error a question has no ttl (ctx.message is dns-packet's Packet, not any)
      void q.ttl;
      const list = options.order === 'sorted' ? [...seen].sort() : seen;
      return DnsResponse.fromPacket({ type: 'response', flags: 0, questions: [q], answers: [{ name: q.name, type: 'TXT', ttl: options.ttl, data: ['workers=' + workers, 'new=' + list.join(',')] }] });
    });
  },
});
`;

const PLUGIN_TEST = `import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as path from 'node:path';
import { startFakeUpstream, startServer, type Answer } from 'codexdns/testing';

const txt = (a: Answer): string[] => ((a.answers?.[0] as { data?: Buffer[] } | undefined)?.data ?? []).map((b) => b.toString());

test('seen answers clienttrack\\'s worker count read in setup and the new clients it announced', async () => {
  const up = await startFakeUpstream({ records: { 'www.example.org': { A: '192.0.2.10' } } });
  const s = await startServer(\`servers:
  - listen: [udp://127.0.0.1:0, tcp://127.0.0.1:0]
    plugins:
      - acl: { allow: [127.0.0.0/8] }
      - use: \${JSON.stringify(path.join(__dirname, 'seen.js'))}
        options: { name: seen.test }
      - clienttrack: { workers: 7, flush: 100ms }
      - forward: { to: ["\${up.address}"] }
storage: { client: sqlite3, connection: { filename: ./clients.sqlite } }
\`);
  try {
    const a = await s.query('www.example.org', 'A', { from: '127.0.0.7' });
    assert.equal(a.rcode, 'NOERROR');
    assert.equal(up.count('www.example.org'), 1);
    let answer: string[] = [];
    for (let i = 0; i < 100; i++) {
      answer = txt(await s.query('seen.test', 'TXT'));
      if (answer[1]?.split('=')[1]?.split(',').includes('127.0.0.7')) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    assert.equal(answer[0], 'workers=7');
    assert.ok(answer[1]?.split('=')[1]?.split(',').includes('127.0.0.7'), answer.join(' '));
  } finally {
    await s.stop();
    await up.stop();
  }
});
`;

const TSCONFIG = {
  compilerOptions: {
    target: 'ES2022', module: 'node16', moduleResolution: 'node16', strict: true, declaration: true,
    outDir: 'dist', rootDir: 'src', skipLibCheck: true, types: ['node'],
  },
  include: ['src'],
};

test('npm pack → npm install --offline in an empty plugin folder → a typed TypeScript plugin compiles with declaration: true and its codexdns/testing test passes', { timeout: 120_000 }, () => {
  assert.ok(fs.existsSync(path.join(root, 'dist', 'index.d.ts')), 'build first (npm run build)');
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'codexdns-author-'));
  try {
    const packed = JSON.parse(run('npm', ['pack', '--json', '--pack-destination', tmp], root)) as { filename: string }[];
    const tarball = path.join(tmp, packed[0].filename);

    const dir = path.join(tmp, 'seen-plugin');
    fs.mkdirSync(path.join(dir, 'node_modules'), { recursive: true });
    fs.writeFileSync(path.join(dir, 'package.json'), JSON.stringify({ name: 'codexdns-plugin-seen', version: '1.0.0', private: true }));
    const deps = Object.keys((JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8')) as { dependencies: Record<string, string> }).dependencies);
    for (const d of deps) {
      fs.mkdirSync(path.dirname(path.join(dir, 'node_modules', d)), { recursive: true });
      fs.symlinkSync(path.join(root, 'node_modules', d), path.join(dir, 'node_modules', d), 'dir');
    }
    run('npm', ['install', '--offline', '--no-audit', '--no-fund', '--ignore-scripts', '--loglevel=error', tarball], dir);
    const installed = path.join(dir, 'node_modules', 'codexdns');
    assert.ok(!fs.lstatSync(installed).isSymbolicLink(), 'codexdns is unpacked from the tarball, not linked');
    assert.ok(fs.existsSync(path.join(installed, 'dist', 'testing', 'index.d.ts')), 'the tarball ships codexdns/testing with its types');
    // What `npm install -D @types/node @types/dns-packet` gives an author (docs/writing-plugins.md §1.5): the
    // DNS messages of codexdns's types (ctx.message, DnsResponse.fromPacket, the test kit's answers) are
    // dns-packet's, whose types are a devDependency of codexdns and so never installed with it.
    fs.mkdirSync(path.join(dir, 'node_modules', '@types'), { recursive: true });
    for (const t of ['node', 'dns-packet']) fs.symlinkSync(path.join(root, 'node_modules', '@types', t), path.join(dir, 'node_modules', '@types', t), 'dir');

    fs.mkdirSync(path.join(dir, 'src'));
    fs.writeFileSync(path.join(dir, 'src', 'seen.ts'), PLUGIN);
    fs.writeFileSync(path.join(dir, 'src', 'seen.test.ts'), PLUGIN_TEST);
    fs.writeFileSync(path.join(dir, 'tsconfig.json'), JSON.stringify(TSCONFIG, null, 2));
    run(process.execPath, [path.join(root, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', dir], dir);
    // The declaration names what definePlugin inferred through codexdns, not through a package the plugin lacks.
    const dts = fs.readFileSync(path.join(dir, 'dist', 'seen.d.ts'), 'utf8');
    assert.match(dts, /import\("codexdns"\)\.PluginDefinition<import\("codexdns"\)\.TObject<\{/);
    assert.doesNotMatch(dts, /@sinclair|tapable|node_modules/);

    const out = run(process.execPath, ['--test', '--test-reporter=tap', '--test-timeout=60000', path.join('dist', 'seen.test.js')], dir, 90_000);
    assert.match(out, /# pass 1\n/, out);
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
});
