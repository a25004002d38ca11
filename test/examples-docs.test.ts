/**
 * docs/writing-plugins.md stays true: the walk-through's files (greet.js, its test, the TypeScript version and
 * its tsconfig) are taken from the page as written, put in a project where `codexdns` is installed, and run.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import ts from 'typescript';
import { startServer } from '../testing';

const root = path.resolve(__dirname, '..', '..');

/** The code blocks the page introduces as "`my-plugins/FILE`…:". */
function filesOfPage(): Map<string, string> {
  const md = fs.readFileSync(path.join(root, 'docs', 'writing-plugins.md'), 'utf8');
  const files = new Map<string, string>();
  const re = /`my-plugins\/([^`]+)`[^\n]*:\n\n```\w+\n([\s\S]*?)```/g;
  let m: RegExpExecArray | null;
  while ((m = re.exec(md)) !== null) files.set(m[1], m[2]);
  return files;
}

test('the walk-through of docs/writing-plugins.md: greet.js and its test pass as written; the TypeScript version compiles and runs', async () => {
  const files = filesOfPage();
  for (const f of ['greet.js', 'greet.test.js', 'tsconfig.json', 'src/greet.ts']) assert.ok(files.has(f), `the page has no my-plugins/${f}`);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'codexdns-docs-'));
  try {
    // `npm install codexdns`, as the page says: a link to this build.
    fs.mkdirSync(path.join(dir, 'node_modules'));
    fs.symlinkSync(root, path.join(dir, 'node_modules', 'codexdns'), 'dir');
    for (const [name, text] of files) {
      fs.mkdirSync(path.dirname(path.join(dir, name)), { recursive: true });
      fs.writeFileSync(path.join(dir, name), text);
    }
    const env = { ...process.env };
    delete env.NODE_TEST_CONTEXT; // run as a test run of its own, not as a child of ours
    const run = spawnSync(process.execPath, ['--test', '--test-reporter=tap', 'greet.test.js'], { cwd: dir, env, encoding: 'utf8', timeout: 60_000 });
    assert.equal(run.status, 0, `${run.stdout}\n${run.stderr}`);
    assert.match(run.stdout, /# pass 1/);

    const config = ts.parseJsonConfigFileContent(JSON.parse(files.get('tsconfig.json')!), ts.sys, dir);
    config.options.typeRoots = [path.join(root, 'node_modules', '@types')];
    const program = ts.createProgram(config.fileNames, config.options);
    const emitted = program.emit();
    const diagnostics = ts.getPreEmitDiagnostics(program).concat(emitted.diagnostics);
    assert.equal(diagnostics.length, 0, diagnostics.map((d) => ts.flattenDiagnosticMessageText(d.messageText, '\n')).join('\n'));
    const s = await startServer(`servers:
  - listen: [udp://127.0.0.1:0]
    plugins:
      - use: ${path.join(dir, 'dist', 'greet.js')}
        options: { name: hello.test }
`);
    try {
      const a = await s.query('hello.test', 'TXT');
      assert.equal(Buffer.concat((a.answers![0] as { data: Buffer[] }).data).toString(), 'hi');
    } finally {
      await s.stop();
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
