import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { parseConfig } from '../config/load';
import { ConfigError, formatIssue } from '../config/errors';
import { builtinCatalog } from '../server/catalog';

const root = path.resolve(__dirname, '..', '..');

/** Every ```yaml block of every plugin README (and the top README, and the default Corefile) must validate. */
function examples(): { file: string; index: number; text: string }[] {
  const files = [
    ...fs.readdirSync(path.join(root, 'plugins')).map((d) => path.join(root, 'plugins', d, 'README.md')).filter((f) => fs.existsSync(f)),
    path.join(root, 'README.md'),
  ];
  const out: { file: string; index: number; text: string }[] = [];
  for (const file of files) {
    const md = fs.readFileSync(file, 'utf8');
    const re = /```yaml\n([\s\S]*?)```/g;
    let m: RegExpExecArray | null;
    let i = 0;
    while ((m = re.exec(md)) !== null) {
      if (/^servers:/m.test(m[1])) out.push({ file: path.relative(root, file), index: i++, text: m[1] });
    }
  }
  return out;
}

test('every plugin has a README in CoreDNS order', () => {
  for (const name of builtinCatalog.names()) {
    const file = path.join(root, 'plugins', name, 'README.md');
    assert.ok(fs.existsSync(file), `${name} has no README.md`);
    const md = fs.readFileSync(file, 'utf8');
    const order = ['## Name', '## Description', '## Syntax', '## Options', '## Metrics', '## Examples'].map((h) => md.indexOf(h));
    assert.ok(order.every((i) => i !== -1), `${name}/README.md lacks a section: ${order}`);
    assert.deepEqual([...order].sort((a, b) => a - b), order, `${name}/README.md sections out of order`);
  }
});

test('the default Corefile.yaml validates', async () => {
  await parseConfig(fs.readFileSync(path.join(root, 'Corefile.yaml'), 'utf8'), path.join(root, 'Corefile.yaml'), builtinCatalog);
});

for (const ex of examples()) {
  test(`example ${ex.index + 1} of ${ex.file} validates`, async () => {
    try {
      await parseConfig(ex.text, path.join(root, 'examples-check', 'Corefile.yaml'), builtinCatalog);
    } catch (err) {
      if (err instanceof ConfigError) assert.fail(`${ex.file} example ${ex.index + 1}:\n${err.issues.map(formatIssue).join('\n')}\n---\n${ex.text}`);
      throw err;
    }
  });
}
