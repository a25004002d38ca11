/**
 * examples/plugins/minimal: the CommonJS, ES module and TypeScript versions load through `use:`, answer their
 * name and let every other query go on down the chain.
 */
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import ts from 'typescript';
import { startFakeUpstream, startServer, type FakeUpstream } from '../testing';

const root = path.resolve(__dirname, '..', '..');
const example = (...p: string[]): string => path.join(root, 'examples', 'plugins', ...p);

function txt(a: { answers?: unknown[] }): string[] {
  return (a.answers ?? []).filter((r) => (r as { type: string }).type === 'TXT').map((r) => Buffer.concat((r as { data: Buffer[] }).data).toString());
}

const conf = (use: string, upstream: string, extra = ''): string => `
servers:
  - listen: [udp://127.0.0.1:0, tcp://127.0.0.1:0]
    plugins:
${extra}      - use: ${use}
        options: { name: hello.test, text: "hi there" }
      - forward: { to: ["${upstream}"] }
`;

describe('examples/plugins/minimal', () => {
  let up: FakeUpstream;
  before(async () => {
    up = await startFakeUpstream({ records: { 'www.example.org': { A: '192.0.2.80' } } });
  });
  after(async () => up.stop());

  for (const file of ['index.js', 'index.mjs']) {
    test(`${file}: answers its name, passes the others down, counts in its own metrics`, async () => {
      const s = await startServer(conf(example('minimal', file), up.address));
      try {
        const a = await s.query('Hello.Test', 'TXT');
        assert.equal(a.rcode, 'NOERROR');
        assert.equal(a.flag_aa, true);
        assert.deepEqual(txt(a), ['hi there']);
        const nodata = await s.query('hello.test', 'A');
        assert.equal(nodata.rcode, 'NOERROR');
        assert.equal(nodata.answers!.length, 0);
        const other = await s.query('www.example.org', 'A');
        assert.equal((other.answers![0] as { data: string }).data, '192.0.2.80');
        const metrics = await s.server.metrics.registry.metrics();
        assert.match(metrics, /codexdns_minimal_answered_total 2/);
        assert.ok(s.logs.some((l) => /\[minimal\] answering name=hello.test/.test(l)), s.logs.join('\n'));
      } finally {
        await s.stop();
      }
    });
  }

  test('typescript/minimal.ts compiles under strict, its published hook is typed for other plugins (declaration merging), and it runs', async () => {
    // What an author does: tsc their plugin, then name the .js in Corefile.yaml. A second TypeScript plugin,
    // listed BEFORE minimal, taps minimal's published hook through api.hooksOf('minimal') — typed by the
    // declaration merging in minimal.ts, and available because setup runs in two phases.
    const out = fs.mkdtempSync(path.join(os.tmpdir(), 'codexdns-ts-plugin-'));
    try {
      fs.mkdirSync(path.join(out, 'node_modules'));
      fs.symlinkSync(root, path.join(out, 'node_modules', 'codexdns'), 'dir');
      fs.symlinkSync(path.join(root, 'node_modules', 'tapable'), path.join(out, 'node_modules', 'tapable'), 'dir');
      fs.mkdirSync(path.join(out, 'src'));
      fs.copyFileSync(example('minimal', 'typescript', 'minimal.ts'), path.join(out, 'src', 'minimal.ts'));
      fs.writeFileSync(path.join(out, 'src', 'listener.ts'), `
import { definePlugin, DnsResponse, Type } from 'codexdns';
import './minimal';

export default definePlugin({
  name: 'listener',
  options: Type.Object({}),
  setup(api) {
    const seen: string[] = [];
    // Typed: hooksOf('minimal') is MinimalHooks | undefined, and answered takes (name: string).
    api.hooksOf('minimal')?.answered.tap('listener', (name: string) => { seen.push(name); });
    // @ts-expect-error a plugin nobody registered is not a key of PluginHookRegistry
    api.hooksOf('no-such-plugin');
    api.hooks.query.tap('listener', (ctx) => {
      if (ctx.qname !== 'seen.test') return undefined;
      const q = ctx.message.questions![0];
      return DnsResponse.fromPacket({ type: 'response', flags: 0, questions: [q], answers: [{ name: q.name, type: 'TXT', ttl: 0, data: [seen.join(',')] }] });
    });
  },
});
`);
      const options: ts.CompilerOptions = {
        target: ts.ScriptTarget.ES2022, module: ts.ModuleKind.Node16, moduleResolution: ts.ModuleResolutionKind.Node16,
        strict: true, outDir: path.join(out, 'dist'), rootDir: path.join(out, 'src'), skipLibCheck: true, types: ['node'],
        typeRoots: [path.join(root, 'node_modules', '@types')],
      };
      const program = ts.createProgram([path.join(out, 'src', 'minimal.ts'), path.join(out, 'src', 'listener.ts')], options);
      const emitted = program.emit();
      const diagnostics = ts.getPreEmitDiagnostics(program).concat(emitted.diagnostics);
      const text = diagnostics.map((d) => ts.flattenDiagnosticMessageText(d.messageText, '\n')).join('\n');
      assert.equal(diagnostics.length, 0, text);

      const s = await startServer(`
servers:
  - listen: [udp://127.0.0.1:0]
    plugins:
      - use: ${path.join(out, 'dist', 'listener.js')}
      - use: ${path.join(out, 'dist', 'minimal.js')}
        options: { name: hello.test }
`);
      try {
        assert.deepEqual(txt(await s.query('hello.test', 'TXT')), ['hello from codexdns']);
        await s.query('hello.test', 'TXT');
        assert.deepEqual(txt(await s.query('seen.test', 'TXT')), ['hello.test,hello.test']);
      } finally {
        await s.stop();
      }
    } finally {
      fs.rmSync(out, { recursive: true, force: true });
    }
  });
});
