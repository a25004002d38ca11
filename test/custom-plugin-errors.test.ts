// A custom plugin that fails to load is reported at its entry in Corefile.yaml and at the line and column inside
// the plugin's own file: a syntax error (CommonJS and ES module) and an exception thrown while loading.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startServer } from '../testing';
import { ConfigError, formatIssue } from '../config/errors';

const corefile = (file: string): string => `servers:\n  - listen: [udp://127.0.0.1:0]\n    plugins:\n      - use: ./${file}\n`;
const broken = 'module.exports = {\n  name: "x",\n  options: {},\n  setup(api) {\n    const a = ;\n  },\n};\n';

const cases: Array<[string, string, string, RegExp]> = [
  ['a CommonJS syntax error', 'bad.js', broken, /Corefile\.yaml:4:14 plugin \.\/bad\.js: cannot load plugin: \/.*\/bad\.js:5:15: Unexpected token ';'/],
  ['an ES module syntax error', 'bad.mjs', broken.replace('module.exports =', 'export default'), /cannot load plugin: \/.*\/bad\.mjs:5:15: Unexpected token ';'/],
  ['an exception while loading', 'throws.js', 'module.exports = { name: "z", options: {}, setup() {} };\n\nundefinedThing.call();\n', /cannot load plugin: \/.*\/throws\.js:3:1: undefinedThing is not defined/],
];

for (const [what, file, text, expected] of cases) {
  test(`${what} names the line and column inside the plugin file`, async () => {
    const err = await startServer(corefile(file), { files: { [file]: text } }).then(
      (s) => s.stop().then(() => null),
      (e: unknown) => e,
    );
    assert.ok(err instanceof ConfigError, String(err));
    const lines = err.issues.map(formatIssue).join('\n');
    assert.match(lines, expected);
  });
}
