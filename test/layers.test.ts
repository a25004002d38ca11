import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import {
  OUTSIDE_ROOTS, SOURCE_ROOTS, importCycles, importGraph, layerViolations, readSources, type ImportKind,
} from './helpers/layers';

// The rules themselves are written out in docs/architecture.md; this test is what keeps the code to them.

const ROOT = path.resolve(__dirname, '..', '..');

/**
 * The files that load a module by a computed name, which no rule can follow, and why each may. A new one
 * fails the test until it is looked at and listed here.
 */
const COMPUTED_LOADS: Readonly<Record<string, string>> = {
  'config/customPlugin.ts': 'the configuration\'s own plugins, by path or package name',
  'server/catalog.ts': 'the built-in plugins, by name (the assembly may load any plugin)',
  'plugins/metrics/http.ts': 'the dashboard\'s vendored assets (uPlot) from node_modules',
};

describe('layers: imports point down only', () => {
  const files = readSources(ROOT);
  const edges = importGraph(files);
  const local = edges.filter((e) => e.to !== null);

  test('the checker reads the whole source tree and every kind of import in it', () => {
    // A checker that reads nothing passes every rule: the counts keep it honest (today: ~137 files, ~530 local imports).
    assert.ok(files.size >= 100, `only ${files.size} source files found under ${ROOT}`);
    assert.ok(local.length >= 400, `only ${local.length} local imports found`);
    for (const root of SOURCE_ROOTS) {
      const n = [...files.keys()].filter((f) => f === root || f.startsWith(`${root}/`)).length;
      assert.ok(n > 0, `no source file found in ${root}`);
    }
    for (const f of ['core/plugin.ts', 'core/dispatcher.ts', 'server/server.ts', 'server/catalog.ts', 'config/load.ts', 'storage/open.ts', 'plugins/cache/index.ts']) {
      assert.ok(files.has(f), `${f} was not read`);
    }
    const kinds = new Set<ImportKind>(local.map((e) => e.kind));
    for (const k of ['import', 'export', 'require', 'import-type', 'augmentation'] as const) {
      assert.ok(kinds.has(k), `no import of kind ${k} was found: the parser walk misses it`);
    }
    assert.ok(local.some((e) => e.typeOnly && e.kind === 'import'), 'no `import type` was found');
  });

  test('every TypeScript folder is either a layer or outside the layers (tests, benchmarks, examples)', () => {
    const known = new Set<string>([...SOURCE_ROOTS, ...OUTSIDE_ROOTS]);
    const unknown = fs.readdirSync(ROOT, { withFileTypes: true })
      .filter((d) => !['node_modules', 'dist'].includes(d.name) && !d.name.startsWith('.'))
      .filter((d) => (d.isDirectory() ? hasTs(path.join(ROOT, d.name)) : d.name.endsWith('.ts')))
      .map((d) => d.name)
      .filter((n) => !known.has(n));
    assert.deepEqual(unknown, [], `TypeScript outside the known layers (add it to SOURCE_ROOTS in test/helpers/layers.ts and a rule): ${unknown.join(', ')}`);
  });

  test('every relative import resolves to a source file (an unresolved one would escape every rule)', () => {
    const unresolved = edges
      .filter((e) => e.to === null && !e.computed && e.specifier.startsWith('.') && !e.specifier.endsWith('.json'))
      .map((e) => `${e.from}:${e.line} → ${e.specifier}`);
    assert.deepEqual(unresolved, [], `unresolved relative imports:\n${unresolved.join('\n')}`);
  });

  test('modules loaded by a computed name are the known ones', () => {
    const found = [...new Set(edges.filter((e) => e.computed).map((e) => e.from))].sort();
    const unknown = found.filter((f) => !(f in COMPUTED_LOADS));
    assert.deepEqual(unknown, [], `a require()/import() with a computed name (list it in COMPUTED_LOADS with the reason): ${unknown.join(', ')}`);
    const gone = Object.keys(COMPUTED_LOADS).filter((f) => !found.includes(f));
    assert.deepEqual(gone, [], `COMPUTED_LOADS names files that no longer load by a computed name: ${gone.join(', ')}`);
  });

  test('core, config, storage, plugins, server: no import points up; plugins meet only through hooks.ts types', () => {
    const bad = layerViolations(edges);
    assert.equal(bad.length, 0, `imports against the layers (FILE:LINE → IMPORT):\n${bad.join('\n')}`);
  });

  test('no import cycles among the source files, type-only imports included', () => {
    const cycles = importCycles(edges);
    assert.equal(cycles.length, 0, `import cycles:\n${cycles.join('\n')}`);
  });
});

describe('layers: the checker reports what it should', () => {
  // Small in-memory trees: each line names what it tests.
  const fake = new Map<string, string>([
    ['core/a.ts', [
      "import { x } from '../plugins/p/index';", // core → plugins
      "export type S = import('../storage/open').Storage;", // core → storage, in a type position
      "import { b } from './b';",
    ].join('\n')],
    ['core/b.ts', "import type { A } from './a';\nexport const b = 1;"], // closes a type-only cycle a → b → a
    ['core/self.ts', "export * from './self';"], // a file importing itself
    ['config/c.ts', "const s = require('../server/s');"], // config → server, by require
    ['storage/open.ts', "import type { P } from '../core/plugin';\nexport interface Storage {}"], // down: fine
    ['core/plugin.ts', 'export interface P {}'],
    ['plugins/p/index.ts', [
      "import type { H } from '../q/hooks';", // the one allowed way: fine
      "import { makeQ } from '../q/hooks';", // a runtime import of another plugin's hooks
      "import type {} from '../q';", // another plugin's index, even as a type
      "import { cidr } from '../pkg/cidr';", // the shared helpers: fine
      "declare module '../../core/plugin' { interface P { p: 1 } }", // augmenting core: fine
      "const later = () => import('../../cli/main');", // plugins → cli, dynamically
    ].join('\n')],
    ['plugins/q/hooks.ts', "export type H = 1;\nexport const makeQ = 1;"],
    ['plugins/q/index.ts', 'export {};'],
    ['plugins/pkg/cidr.ts', "import type { H } from '../q/hooks';\nexport const cidr = 1;"], // pkg → a plugin
    ['server/s.ts', "import { x } from '../plugins/p';\nexport * from '../cli/main';"], // server → cli
    ['cli/main.ts', "import { s } from '../server/s';"], // cli → server: fine, but closes server → cli → server
    ['testing/kit.ts', "import { s } from '../server/s';\nexport const kit = 1;"], // the test kit starts a server: fine
    ['index.ts', "export { kit } from './testing/kit';"], // the package's entry must not pull in the test kit
  ]);
  const edges = importGraph(fake);

  test('reads each kind of import, type-only ones marked', () => {
    const of = (from: string) => edges.filter((e) => e.from === from).map((e) => `${e.kind}${e.typeOnly ? ' type' : ''} ${e.to ?? e.specifier}`);
    assert.deepEqual(of('core/a.ts'), ['import plugins/p/index.ts', 'import-type type storage/open.ts', 'import core/b.ts']);
    assert.deepEqual(of('plugins/p/index.ts'), [
      'import type plugins/q/hooks.ts', 'import plugins/q/hooks.ts', 'import type plugins/q/index.ts', 'import plugins/pkg/cidr.ts',
      'augmentation type core/plugin.ts', 'dynamic-import cli/main.ts',
    ]);
    assert.deepEqual(of('config/c.ts'), ['require server/s.ts']);
  });

  test('reports every import against the layers, and nothing else', () => {
    assert.deepEqual(layerViolations(edges), [
      'core/a.ts:1 → ../plugins/p/index (core/ must not import plugins/)',
      'core/a.ts:2 → ../storage/open (core/ must not import storage/)',
      'config/c.ts:1 → ../server/s (config/ must not import server/)',
      'plugins/p/index.ts:2 → ../q/hooks (a plugin reaches another only through `import type` of plugins/q/hooks.ts)',
      'plugins/p/index.ts:3 → ../q (a plugin reaches another only through `import type` of plugins/q/hooks.ts)',
      'plugins/p/index.ts:6 → ../../cli/main (plugins/ must not import cli/)',
      'plugins/pkg/cidr.ts:1 → ../q/hooks (plugins/pkg/ is shared by plugins and imports none of them)',
      'server/s.ts:2 → ../cli/main (server/ must not import cli/)',
      'index.ts:1 → ./testing/kit (the root index.ts must not import testing/)',
    ]);
  });

  test('reports each cycle once, as a path back to its start', () => {
    assert.deepEqual(importCycles(edges), [
      'cli/main.ts → server/s.ts → cli/main.ts',
      'core/a.ts → core/b.ts → core/a.ts',
      'core/self.ts → core/self.ts',
      // plugins/p's dynamic import of cli/main closes a longer one through the 2-cycle above.
      'cli/main.ts → server/s.ts → plugins/p/index.ts → cli/main.ts',
    ]);
  });
});

function hasTs(dir: string): boolean {
  for (const d of fs.readdirSync(dir, { withFileTypes: true })) {
    if (d.name === 'node_modules') continue;
    if (d.isDirectory() ? hasTs(path.join(dir, d.name)) : d.name.endsWith('.ts')) return true;
  }
  return false;
}
